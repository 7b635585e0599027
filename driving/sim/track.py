"""Tracks: a closed centre line in metres, smoothed into a loop, and geometry queries on it.

World frame: x east, y north, metres; headings in radians counter-clockwise from +x. The centre
line is a periodic cubic B-spline through the control points' neighbourhood (smooth to the second
derivative, so curvature is continuous), resampled every SPACING metres of arc length.

A track file is JSON: {"name": str, "width": metres, "points": [[x, y], ...], "style": ...}
where the optional "style" is a built-in style name ("lake", "jungle", "desert"); see docs/sim.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPACING = 0.5  # metres between centre-line samples
MIN_POINTS = 4
STYLES = ("lake", "jungle", "desert")


class TrackError(ValueError):
    """A track definition that cannot be driven: says what is wrong and where."""


def smooth_loop(control: np.ndarray, spacing: float = SPACING) -> np.ndarray:
    """Closed control polygon (K, 2) -> centre line (N, 2) sampled every `spacing` metres of arc.

    Uniform periodic cubic B-spline: each span blends four consecutive control points."""
    k = len(control)
    u = np.linspace(0.0, 1.0, 64, endpoint=False)[:, None]
    basis = np.hstack([(1 - u) ** 3, 3 * u**3 - 6 * u**2 + 4, -3 * u**3 + 3 * u**2 + 3 * u + 1, u**3]) / 6
    spans = [basis @ control[[(i - 1) % k, i, (i + 1) % k, (i + 2) % k]] for i in range(k)]
    dense = np.vstack(spans)
    closed = np.vstack([dense, dense[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    n = max(int(round(arc[-1] / spacing)), 8)
    s = np.linspace(0.0, arc[-1], n, endpoint=False)
    return np.column_stack([np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])])


@dataclass(frozen=True)
class Location:
    """Where a point is relative to the centre line."""

    index: int  # nearest centre-line sample
    s: float  # arc length of that sample, metres from the start line
    cte: float  # signed cross-track error, metres; positive = right of the centre line
    heading: float  # centre-line heading there, radians


@dataclass
class Track:
    """A closed road: centre line samples, width and the look (style name)."""

    name: str
    width: float
    control: np.ndarray  # (K, 2) control points, metres
    style: str = "lake"
    points: np.ndarray = field(init=False)  # (N, 2) centre line, every `spacing` metres
    spacing: float = field(init=False)
    length: float = field(init=False)
    headings: np.ndarray = field(init=False)
    curvature: np.ndarray = field(init=False)  # 1/m, positive = turning left

    def __post_init__(self) -> None:
        self.control = np.asarray(self.control, dtype=np.float64)
        self.points = smooth_loop(self.control)
        steps = np.roll(self.points, -1, axis=0) - self.points
        self.spacing = float(np.linalg.norm(steps, axis=1).mean())
        self.length = self.spacing * len(self.points)
        # Central differences around the loop.
        tangent = np.roll(self.points, -1, axis=0) - np.roll(self.points, 1, axis=0)
        self.headings = np.arctan2(tangent[:, 1], tangent[:, 0])
        turn = np.angle(np.exp(1j * (np.roll(self.headings, -1) - np.roll(self.headings, 1))))
        self.curvature = turn / (2 * self.spacing)

    # --- geometry queries ---------------------------------------------------------------------
    def locate(self, xy, hint: int | None = None, window: float = 30.0) -> Location:
        """Nearest centre-line point to `xy`. With `hint` (the last index) only +-window metres
        around it are searched: O(1) per step for a drive loop, and it cannot jump across to a
        nearby but different part of the track."""
        xy = np.asarray(xy, dtype=np.float64)
        n = len(self.points)
        if hint is None:
            idx = np.arange(n)
        else:
            w = int(window / self.spacing)
            idx = np.arange(hint - w, hint + w + 1) % n
        d2 = ((self.points[idx] - xy) ** 2).sum(axis=1)
        i = int(idx[np.argmin(d2)])
        h = self.headings[i]
        dx, dy = xy - self.points[i]
        cte = dx * math.sin(h) - dy * math.cos(h)  # projection on the right-hand normal
        return Location(i, i * self.spacing, float(cte), float(h))

    def index_at(self, s: float) -> int:
        return int(round(s / self.spacing)) % len(self.points)

    def point_at(self, s: float, offset: float = 0.0) -> np.ndarray:
        """Point at arc length `s`, `offset` metres to the right of the centre line."""
        i = self.index_at(s)
        h = self.headings[i]
        return self.points[i] + offset * np.array([math.sin(h), -math.cos(h)])

    def heading_at(self, s: float) -> float:
        return float(self.headings[self.index_at(s)])

    def curvature_at(self, s: float) -> float:
        return float(self.curvature[self.index_at(s)])

    def edges(self, offset: float) -> np.ndarray:
        """The curve `offset` metres right of the centre line (negative = left), (N, 2)."""
        normal = np.column_stack([np.sin(self.headings), -np.cos(self.headings)])
        return self.points + offset * normal

    # --- validation ---------------------------------------------------------------------------
    def validate(self, source: str = "track") -> Track:
        """Raise TrackError unless the road is drivable: no fold on the inside of a bend and no
        part of the road overlapping another part."""
        half = self.width / 2
        tightest = float(np.abs(self.curvature).max())
        if tightest * half * 1.25 > 1.0:
            i = int(np.abs(self.curvature).argmax())
            raise TrackError(
                f"{source}: bend too tight for a {self.width:g} m road near "
                f"({self.points[i, 0]:.1f}, {self.points[i, 1]:.1f}) m: radius "
                f"{1 / tightest:.1f} m, needs at least {1.25 * half:.1f} m"
            )
        # Parts of the loop further apart along the road than a U-turn must stay a road width
        # plus a margin apart, or the road overlaps (or crosses) itself.
        sub = self.points[:: max(1, int(1.0 / self.spacing))]
        step = self.length / len(sub)
        d = np.sqrt(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(axis=-1))
        sep = np.arange(len(sub))
        along = np.abs(sep[:, None] - sep[None, :]) * step
        along = np.minimum(along, self.length - along)
        clearance = self.width * 1.5
        near = (along > math.pi * clearance) & (d < clearance)
        if near.any():
            i, j = np.argwhere(near)[0]
            raise TrackError(
                f"{source}: the road overlaps itself: ({sub[i, 0]:.1f}, {sub[i, 1]:.1f}) m "
                f"and ({sub[j, 0]:.1f}, {sub[j, 1]:.1f}) m are {d[i, j]:.1f} m apart, "
                f"less than 1.5 road widths ({clearance:.1f} m)"
            )
        return self


def make_track(name: str, width: float, points, style: str = "lake", source: str = "track") -> Track:
    """Check raw values, build and validate a track. Every error names `source` and the field."""
    if (
        not isinstance(width, (int, float))
        or isinstance(width, bool)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise TrackError(f"{source}: 'width' must be a positive number of metres, got {width!r}")
    if not 3.0 <= width <= 30.0:
        raise TrackError(f"{source}: 'width' {width:g} m is not a road width (3 to 30 m)")
    if style not in STYLES:
        raise TrackError(f"{source}: 'style' must be one of {', '.join(STYLES)}, got {style!r}")
    try:
        control = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise TrackError(f"{source}: 'points' must be a list of [x, y] pairs of numbers") from None
    if control.ndim != 2 or control.shape[1] != 2:
        raise TrackError(f"{source}: 'points' must be a list of [x, y] pairs, got shape {control.shape}")
    if len(control) < MIN_POINTS:
        raise TrackError(f"{source}: a loop needs at least {MIN_POINTS} points, got {len(control)}")
    bad = ~np.isfinite(control).all(axis=1)
    if bad.any():
        raise TrackError(f"{source}: point {int(np.argmax(bad))} is not finite: {control[bad][0].tolist()}")
    if np.linalg.norm(np.diff(control, axis=0, append=control[:1]), axis=1).min() < 1e-6:
        raise TrackError(f"{source}: two consecutive points coincide")
    return Track(name, float(width), control, style).validate(source)


def load_track(path: str | Path) -> Track:
    """Read and validate a track JSON file."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TrackError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise TrackError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(spec, dict):
        raise TrackError(f"{path}: expected a JSON object with 'name', 'width' and 'points'")
    missing = [k for k in ("name", "width", "points") if k not in spec]
    if missing:
        raise TrackError(f"{path}: missing field(s) {', '.join(repr(m) for m in missing)}")
    return make_track(str(spec["name"]), spec["width"], spec["points"], spec.get("style", "lake"), str(path))


def save_track(track: Track, path: str | Path) -> None:
    """Write a track as JSON (control points), e.g. to keep a random track."""
    spec = {
        "name": track.name,
        "width": track.width,
        "style": track.style,
        "points": [[round(x, 3), round(y, 3)] for x, y in track.control.tolist()],
    }
    Path(path).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")


# --- Built-in tracks -------------------------------------------------------------------------------
# Control points in metres. Each mixes long straights, sweepers, S-bends and at least one hairpin.
BUILTIN = {
    "lake": dict(
        width=8.0,
        style="lake",
        points=[
            (0, 0),
            (50, 0),
            (100, 0),
            (140, 5),
            (162, 25),
            (160, 65),
            (125, 78),
            (110, 105),
            (120, 135),
            (150, 150),
            (165, 180),
            (145, 205),
            (105, 205),
            (85, 175),
            (70, 140),
            (45, 120),
            (10, 115),
            (-20, 100),
            (-35, 65),
            (-30, 25),
        ],
    ),
    "jungle": dict(
        width=7.0,
        style="jungle",
        points=[
            (0, 0),
            (40, -5),
            (75, 10),
            (90, 40),
            (80, 70),
            (95, 100),
            (130, 105),
            (150, 80),
            (175, 70),
            (195, 95),
            (185, 135),
            (150, 150),
            (110, 150),
            (80, 165),
            (62, 172),
            (58, 205),
            (44, 212),
            (34, 200),
            (38, 170),
            (15, 150),
            (25, 120),
            (5, 95),
            (-30, 95),
            (-45, 65),
            (-35, 25),
        ],
    ),
    "desert": dict(
        width=9.0,
        style="desert",
        points=[
            (0, 0),
            (70, 0),
            (140, 0),
            (200, 10),
            (235, 45),
            (225, 90),
            (185, 105),
            (150, 95),
            (120, 110),
            (100, 145),
            (60, 160),
            (10, 150),
            (-30, 125),
            (-55, 85),
            (-50, 40),
            (-30, 10),
        ],
    ),
}


def builtin_track(name: str) -> Track:
    spec = BUILTIN[name]
    return make_track(name, spec["width"], spec["points"], spec["style"], f"built-in track {name!r}")


def random_track(seed: int, style: str | None = None) -> Track:
    """A random valid loop: jittered radii around a circle, with a few deep dents for hairpins
    and S-bends. Drawn again (same seed stream) until the road is valid."""
    rng = np.random.default_rng(seed)
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    for _ in range(200):
        k = int(rng.integers(12, 20))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(70, 110) * (1 + rng.uniform(-0.3, 0.3, k))
        dents = rng.choice(k, size=int(rng.integers(1, 3)), replace=False)
        radius[dents] *= rng.uniform(0.45, 0.7, len(dents))
        stretch = rng.uniform(0.7, 1.3)
        points = np.column_stack([radius * np.cos(angles) * stretch, radius * np.sin(angles) / stretch])
        width = float(rng.uniform(7.0, 9.0))
        try:
            return make_track(f"random-{seed}", round(width, 2), points, style, f"random track {seed}")
        except TrackError:
            continue
    raise TrackError(f"random track {seed}: no valid loop found")  # pragma: no cover (never seen)


def get_track(spec: str, seed: int = 0) -> Track:
    """'lake' | 'jungle' | 'desert' | 'random' (uses `seed`) | a path to a .json track file."""
    if spec in BUILTIN:
        return builtin_track(spec)
    if spec == "random":
        return random_track(seed)
    if spec.endswith(".json") or Path(spec).exists():
        return load_track(spec)
    raise TrackError(f"unknown track {spec!r}: use {', '.join(BUILTIN)}, random, or a .json file")
