"""Two-lane maps: small loops of tight corners where the car keeps to the right lane.

lane_track(seed) draws a polygon of 5 to 8 corners around an ellipse (one or two pulled in deeply,
so that corners turn both ways), driven clockwise or counter-clockwise, rounds every corner with
an arc of LANE_CORNER_RADIUS_M and joins the arcs with straights: a road of about 180 to 340 m
where every bend is tight, unlike a suite track's long sweepers. Each corner's radius is drawn,
then shrunk where two arcs would not fit on one edge; a map whose corners cannot stay at least
LANE_CORNER_RADIUS_M[0] is drawn again, as is one the track's own validation refuses, one with
fewer than LANE_MIN_BENDS bends, or one without a bend to each side (the right lane is the inner
one in right-hand bends only).

Map seeds come from two ranges kept apart by purpose, defined here once:

    LANE_TRAINING_SEEDS   0 - 4999     maps a recording may drive
    LANE_HELD_OUT_SEEDS   5000 - 9999  maps only evaluation drives (the two-lane suites)
    LANE_VALIDATION_SEEDS 9000 - 9999  of those, the maps train.py's drive check drives (the
                                       two-lane-validation suite); no other suite draws from them

check_training_seed() refuses a held-out seed in one line; the recorder's command line and the
recipes call it before anything is recorded, and the recorder's record() refuses a held-out map
handed to it as a Track (check_recordable_map).
"""

from __future__ import annotations

import math

import numpy as np

from driving.sim.style import LANE_STYLES, STYLES
from driving.sim.track import (
    MIN_TWO_LANE_WIDTH_M,
    SUITE_STEP_M,
    Track,
    TrackError,
    _bends,
    _number,
    make_track,
)

LANE_PREFIX = "lanes-"  # a two-lane map's track name: lanes-<seed>
LANE_TRAINING_SEEDS = range(0, 5000)
LANE_HELD_OUT_SEEDS = range(5000, 10000)
LANE_VALIDATION_SEEDS = range(9000, 10000)  # held out too: a checkpoint is chosen on them
LANE_WIDTH_M = (6.5, 8.0)  # the whole road: two lanes of 1.6 to 2 m either side of the centre line
LANE_MAX_WIDTH_M = 10.0  # a given width: wider roads would need wider corners to keep their clearance
# Every corner's arc (the centre line's radius; the right lane's is a quarter width more or less).
# The tightest keeps the inner lane at about 10 m, a wheel angle of 15 degrees: within the two-lane
# car's 20 degrees with room for recoveries.
LANE_CORNER_RADIUS_M = (12.0, 24.0)
LANE_LOOP_RADIUS_M = (35.0, 55.0)  # the polygon's corners lie about this far from its middle
LANE_MIN_BENDS = 3
LANE_TRIES = 500
MIN_STRAIGHT_M = 2.0  # at least this much straight between two arcs


class HeldOutSeed(ValueError):
    """A held-out map seed asked for where only training maps may be used."""


def check_training_seed(seed: int, option: str = "map seed") -> int:
    """`seed` if it names a training map; HeldOutSeed (one line, naming `option`) otherwise."""
    if seed not in LANE_TRAINING_SEEDS:
        first, last = LANE_TRAINING_SEEDS.start, LANE_TRAINING_SEEDS.stop - 1
        held = f"{LANE_HELD_OUT_SEEDS.start}-{LANE_HELD_OUT_SEEDS.stop - 1}"
        raise HeldOutSeed(
            f"{option} {seed}: recordings use training maps {first}-{last}; maps {held} are held out "
            "for evaluation (the two-lane suites)"
        )
    return seed


def check_recordable_map(track: Track, what: str = "") -> None:
    """Refuse, in one line naming `what`, a held-out two-lane map handed to a recording as a
    Track: one named lanes-<seed> whose seed is held out and whose road is that map's. A track of
    one's own that only shares the name is recorded."""
    digits = track.name.removeprefix(LANE_PREFIX) if track.name.startswith(LANE_PREFIX) else ""
    if (
        track.lanes != 2
        or not (digits.isascii() and digits.isdigit())
        or int(digits) not in LANE_HELD_OUT_SEEDS
    ):
        return
    try:
        generated = lane_track(int(digits), width=track.width)
    except TrackError:
        return  # no generated map has this width
    if generated.control.shape == track.control.shape and np.allclose(generated.control, track.control):
        check_training_seed(int(digits), f"{what + ': ' if what else ''}two-lane map")


def _corners(rng: np.random.Generator) -> np.ndarray:
    """A closed polygon (K, 2): jittered radii around an ellipse, one or two corners pulled in."""
    k = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radius = rng.uniform(*LANE_LOOP_RADIUS_M) * (1 + rng.uniform(-0.25, 0.25, k))
    dents = rng.choice(k, size=int(rng.integers(1, 3)), replace=False)
    radius[dents] *= rng.uniform(0.15, 0.45, len(dents))
    stretch = rng.uniform(0.75, 1.3)
    corners = np.column_stack([radius * np.cos(angles) * stretch, radius * np.sin(angles) / stretch])
    return corners[::-1] if rng.uniform() < 0.5 else corners  # clockwise: mostly right-hand bends


def _rounded(corners: np.ndarray, radii: np.ndarray) -> np.ndarray | None:
    """Points about SUITE_STEP_M apart along `corners` with each corner rounded by an arc of its
    radius (shrunk where two arcs share too short an edge); None when an arc would have to be
    tighter than LANE_CORNER_RADIUS_M[0]."""
    k = len(corners)
    into = corners - np.roll(corners, 1, axis=0)  # the edge arriving at each corner
    lengths = np.linalg.norm(into, axis=1)
    u = into / lengths[:, None]
    out = np.roll(u, -1, axis=0)  # the edge leaving it
    turn = np.arctan2(u[:, 0] * out[:, 1] - u[:, 1] * out[:, 0], (u * out).sum(axis=1))  # + left
    half_tan = np.tan(np.abs(turn) / 2)
    reach = radii * half_tan  # how far each arc reaches along its two edges
    room = np.roll(lengths, -1) - MIN_STRAIGHT_M  # the edge from corner i to corner i+1
    for _ in range(3):  # shrink the arcs of an edge too short for both, each by its edge's need
        scale = np.minimum(1.0, np.maximum(room, 0.0) / np.maximum(reach + np.roll(reach, -1), 1e-9))
        reach = reach * np.minimum(scale, np.roll(scale, 1))
    radii = reach / np.maximum(half_tan, 1e-9)
    if radii.min() < LANE_CORNER_RADIUS_M[0] or np.any(reach + np.roll(reach, -1) > room + 1e-6):
        return None
    pieces = []
    for i in range(k):
        side = 1.0 if turn[i] > 0 else -1.0
        start = corners[i] - u[i] * reach[i]
        centre = start + side * radii[i] * np.array([-u[i, 1], u[i, 0]])
        count = max(2, math.ceil(radii[i] * abs(turn[i]) / SUITE_STEP_M))
        a0 = math.atan2(start[1] - centre[1], start[0] - centre[0])
        a = a0 + side * np.linspace(0.0, abs(turn[i]), count + 1)
        pieces.append(centre + radii[i] * np.column_stack([np.cos(a), np.sin(a)]))
        leave = corners[i] + out[i] * reach[i]
        arrive = corners[(i + 1) % k] - out[i] * reach[(i + 1) % k]
        count = max(1, round(float(np.linalg.norm(arrive - leave)) / SUITE_STEP_M))
        pieces.append(leave + (np.arange(1, count) / count)[:, None] * (arrive - leave))
    return np.vstack(pieces)


def lane_track(seed: int, style: str = LANE_STYLES[0], width: float | None = None) -> Track:
    """A two-lane map of tight corners (module docstring), named lanes-<seed>; the road width is
    drawn from LANE_WIDTH_M unless given. Same seed, same map."""
    source = f"two-lane map {seed}"
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrackError(f"{source}: the seed must be a whole number >= 0")
    if not (isinstance(style, str) and style in STYLES):
        raise TrackError(f"{source}: 'style' must be one of {', '.join(STYLES)}, got {style!r}")
    if width is not None and not MIN_TWO_LANE_WIDTH_M <= (_number(width) or math.nan) <= LANE_MAX_WIDTH_M:
        low, high = MIN_TWO_LANE_WIDTH_M, LANE_MAX_WIDTH_M
        raise TrackError(f"{source}: 'width' must be from {low:g} to {high:g} m, got {width!r}")
    rng = np.random.default_rng(int(seed))
    drawn = round(float(rng.uniform(*LANE_WIDTH_M)), 2)
    width = drawn if width is None else float(width)
    for _ in range(LANE_TRIES):
        corners = _corners(rng)
        points = _rounded(corners, rng.uniform(*LANE_CORNER_RADIUS_M, len(corners)))
        if points is None:
            continue
        try:
            track = make_track(f"{LANE_PREFIX}{seed}", width, points, style, source, lanes=2)
        except TrackError:
            continue
        turns = [turn for _, _, turn in _bends(track)]
        if len(turns) >= LANE_MIN_BENDS and min(turns) < 0 < max(turns):
            return track
    raise TrackError(f"{source}: no valid map of tight corners for a {width:g} m road")
