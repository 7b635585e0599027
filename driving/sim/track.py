"""Tracks: a closed centre line in metres, smoothed into a loop, and geometry queries on it.

World frame: x east, y north, metres; headings in radians counter-clockwise from +x. The centre
line is a periodic cubic B-spline through the control points' neighbourhood (smooth to the second
derivative, so curvature is continuous), resampled every SPACING metres of arc length.

A track file is JSON: {"name": str, "width": metres, "points": [[x, y], ...], "style": ...,
"lanes": 1 | 2} where the optional "style" is a style name (driving/sim/style.py) or look-N, a look
generated from seed N (driving/sim/looks.py), and the optional "lanes" says whether the car drives
on the centre line (1, the default) or keeps to the right lane of a two-lane road (2); see
docs/sim.md and docs/worlds.md. Files are read with bounded memory and every field is checked, so a
hostile file ends in one TrackError line.

track_features() measures what a road holds (hairpins, S-bends, tightest radius);
random_track() and suite_track() draw valid loops from a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from driving.files import RecordError, parse_json, read_regular_bytes, write_json
from driving.sim.looks import STYLE_NAMES, is_style_name
from driving.sim.style import ONE_LANE_STYLES

SPACING = 0.5  # metres between centre-line samples
MIN_POINTS, MAX_POINTS = 4, 1000
MAX_FILE_BYTES = 1_000_000  # a track file is a few kB; read no more than this
MAX_DEPTH = 8  # a track file nests 3 deep ({"points": [[x, y], ...]}); deeper is not a track
MAX_NAME_CHARS = 100
MAX_COORD_M = 10_000.0  # control points lie within this distance of the origin on each axis
MIN_LENGTH_M = 50.0
MAX_LENGTH_M = 10_000.0  # bounds the centre line's samples and the overlap check's work
MAX_EXTENT_M = 1_000.0  # bounds the world texture (world.MAX_TEXTURE_PIXELS)
OVERLAP_ROWS = 256  # the overlap check compares this many samples with all others at a time
LANE_COUNTS = (1, 2)  # 1: drive on the centre line; 2: keep to the right lane
MIN_TWO_LANE_WIDTH_M = 5.0  # two lanes of at least 2.5 m: a car (1.8 m wide) fits in each


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
    """A closed road: centre line samples, width, the look (style name) and its lanes."""

    name: str
    width: float
    control: np.ndarray  # (K, 2) control points, metres
    style: str = "lake"
    lanes: int = 1  # 1: the car drives on the centre line; 2: it keeps to the right lane
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

    # --- lanes --------------------------------------------------------------------------------
    @property
    def lane_offset(self) -> float:
        """Where the car's lane centre lies, metres right of the centre line (0 on one lane)."""
        return self.width / 4 if self.lanes == 2 else 0.0

    @property
    def lane_half_width(self) -> float:
        """How far the car's centre may stray from its lane centre before it leaves the lane."""
        return self.width / 4 if self.lanes == 2 else self.width / 2

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
        # plus a margin apart, or the road overlaps (or crosses) itself. Compared in blocks of
        # rows, so memory grows with the length, not its square.
        sub = self.points[:: max(1, int(1.0 / self.spacing))]
        step = self.length / len(sub)
        clearance = self.width * 1.5
        x, y = sub[:, 0], sub[:, 1]
        for start in range(0, len(sub), OVERLAP_ROWS):
            block = slice(start, start + OVERLAP_ROWS)
            d2 = (x[block, None] - x) ** 2 + (y[block, None] - y) ** 2
            rows, cols = np.nonzero(d2 < clearance**2)  # close in space: few pairs per row
            along = np.abs(rows + start - cols) * step
            along = np.minimum(along, self.length - along)
            far = np.flatnonzero(along > math.pi * clearance)  # ...but far apart along the road
            if len(far) == 0:
                continue
            i, j = rows[far[0]], cols[far[0]]
            raise TrackError(
                f"{source}: the road overlaps itself: ({x[start + i]:.1f}, {y[start + i]:.1f}) m "
                f"and ({x[j]:.1f}, {y[j]:.1f}) m are {math.sqrt(d2[i, j]):.1f} m apart, "
                f"less than 1.5 road widths ({clearance:.1f} m)"
            )
        return self


def _shown(value, limit: int = 40) -> str:
    """A value for an error message: its repr, shortened, on one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    """`text` with control characters escaped, so a message naming it stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _number(value) -> float | None:
    """`value` as a float if it is a number (not a bool), else None; huge integers become inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _control_points(points, source: str) -> np.ndarray:
    """`points` as a (K, 2) array after checking its count, shape and values."""
    if isinstance(points, np.ndarray):
        points = points.tolist()
    if not isinstance(points, (list, tuple)):
        raise TrackError(f"{source}: 'points' must be a list of [x, y] pairs, got {_shown(points)}")
    if len(points) < MIN_POINTS:
        raise TrackError(f"{source}: a loop needs at least {MIN_POINTS} points, got {len(points)}")
    if len(points) > MAX_POINTS:
        raise TrackError(f"{source}: 'points' holds {len(points)} points, more than {MAX_POINTS}")
    rows = []
    for i, pair in enumerate(points):
        xy = [_number(v) for v in pair] if isinstance(pair, (list, tuple)) else []
        if len(xy) != 2 or None in xy:
            raise TrackError(f"{source}: point {i} must be [x, y], two numbers, got {_shown(pair)}")
        if not all(map(math.isfinite, xy)):
            raise TrackError(f"{source}: point {i} is not finite: {_shown(pair)}")
        if max(map(abs, xy)) > MAX_COORD_M:
            raise TrackError(
                f"{source}: point {i} {_shown(pair)} lies beyond {MAX_COORD_M:g} m of the origin"
            )
        rows.append(xy)
    control = np.array(rows)
    steps = np.linalg.norm(np.diff(control, axis=0, append=control[:1]), axis=1)
    if steps.min() < 1e-6:
        i = int(steps.argmin())
        raise TrackError(
            f"{source}: two consecutive points coincide (points {i} and {(i + 1) % len(control)})"
        )
    # The smoothed loop is never longer than its control polygon (a B-spline cuts corners).
    if steps.sum() > MAX_LENGTH_M:
        raise TrackError(
            f"{source}: the points trace {steps.sum():.0f} m, more than {MAX_LENGTH_M:g} m of road"
        )
    return control


def make_track(
    name: str, width: float, points, style: str = "lake", source: str = "track", lanes: int = 1
) -> Track:
    """Check raw values, build and validate a track. Every error names `source` and the field."""
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS and name.isprintable()):
        raise TrackError(
            f"{source}: 'name' must be text of 1 to {MAX_NAME_CHARS} printable characters, got {_shown(name)}"
        )
    metres = _number(width)
    if metres is None or not 3.0 <= metres <= 30.0:  # NaN fails the comparison too
        raise TrackError(f"{source}: 'width' must be a road width from 3 to 30 metres, got {_shown(width)}")
    if not is_style_name(style):
        raise TrackError(f"{source}: 'style' must be {STYLE_NAMES}, got {_shown(style)}")
    if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes not in LANE_COUNTS:
        raise TrackError(f"{source}: 'lanes' must be 1 or 2, got {_shown(lanes)}")
    if lanes == 2 and metres < MIN_TWO_LANE_WIDTH_M:
        raise TrackError(
            f"{source}: 'width' of a two-lane road must be at least {MIN_TWO_LANE_WIDTH_M:g} metres "
            f"(two lanes a car fits in), got {_shown(width)}"
        )
    track = Track(name, metres, _control_points(points, source), style, int(lanes))
    extent = np.ptp(track.points, axis=0)
    if extent.max() > MAX_EXTENT_M:
        raise TrackError(
            f"{source}: the road spans {extent[0]:.0f} x {extent[1]:.0f} m, more than {MAX_EXTENT_M:g} m "
            "across (its world texture would not fit in memory)"
        )
    track.validate(source)
    if track.length < MIN_LENGTH_M:
        raise TrackError(
            f"{source}: the loop is only {track.length:.3g} m long, at least {MIN_LENGTH_M:g} m "
            "(coordinates are metres)"
        )
    return track


def _read_json(path: Path):
    """The JSON value in file `path`: a regular file (a FIFO or device could block or never end) of
    at most MAX_FILE_BYTES, UTF-8, nested at most MAX_DEPTH deep, without NaN or Infinity tokens
    (driving.files); TrackError naming the file otherwise."""
    name = _one_line(str(path))
    try:
        data = read_regular_bytes(path, MAX_FILE_BYTES, "track file")
    except FileNotFoundError:
        raise TrackError(f"{name}: no such file") from None
    except OSError as e:
        reason = e.strerror or str(e).removeprefix(f"{path}: ")  # ours name the path; errno's do not
        raise TrackError(f"{name}: {_one_line(reason)}") from None
    try:
        text = data.decode("utf-8-sig")  # an editor's byte-order mark is harmless
    except UnicodeDecodeError as e:
        raise TrackError(f"{name}: not UTF-8 text (byte {e.start}); a track file is JSON") from None
    try:
        return parse_json(text, name, MAX_DEPTH)
    except RecordError as e:
        raise TrackError(_one_line(str(e))) from None


def load_track(path: str | Path) -> Track:
    """Read and validate a track JSON file."""
    path = Path(path)
    spec = _read_json(path)
    name = _one_line(str(path))
    if not isinstance(spec, dict):
        raise TrackError(f"{name}: expected a JSON object with 'name', 'width' and 'points'")
    missing = [k for k in ("name", "width", "points") if k not in spec]
    if missing:
        raise TrackError(f"{name}: missing field(s) {', '.join(repr(m) for m in missing)}")
    lanes = spec.get("lanes", 1)
    style = spec.get("style", "lanes" if lanes == 2 and not isinstance(lanes, bool) else "lake")
    return make_track(spec["name"], spec["width"], spec["points"], style, name, lanes)


def save_track(track: Track, path: str | Path) -> Path:
    """Write a track as JSON (control points), atomically, e.g. to keep a random track."""
    spec = {
        "name": track.name,
        "width": track.width,
        "style": track.style,
        **({"lanes": track.lanes} if track.lanes != 1 else {}),  # one-lane files stay as they were
        "points": [[round(x, 3), round(y, 3)] for x, y in track.control.tolist()],
    }
    return write_json(path, spec)


# --- Built-in tracks -------------------------------------------------------------------------------
# Control points in metres. Each mixes long straights and sweepers; lake and jungle have S-bends,
# jungle a hairpin (track_features; `python -m driving.sim tracks` lists them).
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


def _random_control(rng: np.random.Generator, radius_m: tuple[float, float]) -> np.ndarray:
    """Control points of a random loop: jittered radii around an ellipse, one or two pulled in
    deeply (dents, for tight bends and S-bends)."""
    k = int(rng.integers(12, 20))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radius = rng.uniform(*radius_m) * (1 + rng.uniform(-0.3, 0.3, k))
    dents = rng.choice(k, size=int(rng.integers(1, 3)), replace=False)
    radius[dents] *= rng.uniform(0.45, 0.7, len(dents))
    stretch = rng.uniform(0.7, 1.3)
    return np.column_stack([radius * np.cos(angles) * stretch, radius * np.sin(angles) / stretch])


def random_track(seed: int, style: str | None = None) -> Track:
    """A random valid loop (see _random_control), drawn again from the same seed stream until the
    road is valid."""
    rng = np.random.default_rng(seed)
    style = style or ONE_LANE_STYLES[int(rng.integers(len(ONE_LANE_STYLES)))]
    for _ in range(200):
        points = _random_control(rng, (70.0, 110.0))
        width = float(rng.uniform(7.0, 9.0))
        try:
            return make_track(f"random-{seed}", round(width, 2), points, style, f"random track {seed}")
        except TrackError:
            continue
    raise TrackError(f"random track {seed}: no valid loop found")  # pragma: no cover (never seen)


# --- What a road holds --------------------------------------------------------------------------
# A bend: a stretch where the radius stays under BEND_RADIUS_M, turning one way by at least
# BEND_MIN_TURN_DEG in all. A hairpin: the road turns through HAIRPIN_TURN_DEG or more within
# HAIRPIN_WITHIN_M of road (so its mean radius is under 19 m); one per stretch of road such turns
# cover. An S-bend: two consecutive bends turning opposite ways with at most S_BEND_GAP_M of road
# between.
BEND_RADIUS_M = 60.0
BEND_MIN_TURN_DEG = 30.0
HAIRPIN_TURN_DEG = 150.0
HAIRPIN_WITHIN_M = 50.0
S_BEND_GAP_M = 25.0


def _bends(track: Track) -> list[tuple[int, int, float]]:
    """(first sample, one past the last (may pass the end: bends wrap), turn in radians) of each
    bend in order along the road."""
    n, k = len(track.points), track.curvature
    side = np.where(np.abs(k) > 1 / BEND_RADIUS_M, np.sign(k), 0.0)
    starts = np.flatnonzero(side != np.roll(side, 1))
    if len(starts) == 0:  # one curvature class all round: a single bend, or none
        runs = [(0, n)] if side[0] else []
    else:
        runs = [(a, b) for a, b in zip(starts, [*starts[1:], starts[0] + n]) if side[a]]
    turned = np.concatenate([[0.0], np.cumsum(np.tile(k, 2)) * track.spacing])
    bends = [(int(a), int(b), float(turned[b] - turned[a])) for a, b in runs]
    return [bend for bend in bends if abs(bend[2]) >= math.radians(BEND_MIN_TURN_DEG)]


def _hairpins(track: Track) -> int:
    n = len(track.points)
    window = min(int(round(HAIRPIN_WITHIN_M / track.spacing)), n - 1)
    turned = np.concatenate([[0.0], np.cumsum(np.tile(track.curvature, 2)) * track.spacing])
    sharp = np.abs(turned[window : window + n] - turned[:n]) >= math.radians(HAIRPIN_TURN_DEG)
    # The road the sharp windows cover; each stretch of it is one hairpin, however often the
    # turn crosses the threshold inside it (so hairpins closer than the window count as one).
    starts = np.concatenate([[0], np.cumsum(np.tile(sharp, 2))])
    covered = starts[n + 1 : 2 * n + 1] - starts[n + 1 - window : 2 * n + 1 - window] > 0
    if covered.all():
        return 1
    return int((covered & ~np.roll(covered, 1)).sum())


def track_features(track: Track) -> dict:
    """What the road holds: length, tightest radius, bends, hairpins and S-bends (defined above)."""
    bends = _bends(track)
    n = len(track.points)
    pairs = zip(bends, bends[1:] + bends[:1]) if len(bends) > 1 else []
    s_bends = sum(
        1 for a, b in pairs if a[2] * b[2] < 0 and ((b[0] - a[1]) % n) * track.spacing <= S_BEND_GAP_M
    )
    return {
        "length_m": track.length,
        "min_radius_m": 1 / float(np.abs(track.curvature).max()),
        "bends": len(bends),
        "hairpins": _hairpins(track),
        "s_bends": s_bends,
    }


# --- Suite tracks: random loops with a hairpin and S-bends ----------------------------------------
SUITE_WIDTH_M = (6.5, 10.0)
SUITE_RADIUS_M = (55.0, 85.0)  # smaller loops than random_track's: worlds keep 10 pixels per metre
SUITE_MAX_WIDTH_M = 14.0  # a wider road's hairpin cannot turn 150 degrees within 50 m and stay valid
SUITE_STEP_M = 4.0  # control points this far apart follow a drawn shape closely
SUITE_TRIES = 500


def _along(start: np.ndarray, heading: float, pieces: list[tuple[float, float]]) -> np.ndarray:
    """Points about SUITE_STEP_M apart along consecutive pieces (length m, curvature 1/m, positive
    turns left) from `start`, facing `heading`; the last point is the end."""
    out, p, h = [], np.asarray(start, dtype=np.float64), heading
    for length, kappa in pieces:
        count = max(1, round(length / SUITE_STEP_M))
        s = np.arange(1, count + 1) * (length / count)
        if kappa == 0:
            out.append(p + s[:, None] * [math.cos(h), math.sin(h)])
        else:
            a = h + kappa * s
            out.append(p + np.column_stack([np.sin(a) - math.sin(h), math.cos(h) - np.cos(a)]) / kappa)
            h += kappa * length
        p = out[-1][-1]
    return np.vstack(out)


def _with_hairpin(loop: np.ndarray, rng: np.random.Generator, width: float) -> np.ndarray:
    """Closed polyline `loop` (points SUITE_STEP_M apart) with one of its straightest stretches
    replaced by a spur: a 90-degree bend to one side, a short straight, a hairpin back, the straight
    again and a 90-degree bend onto the loop. The spur's bends turn against the hairpin: two
    S-bends. Its legs are a hairpin's diameter apart, at least 1.5 road widths."""
    tip = rng.uniform(0.85, 1.3) * max(width, SUITE_WIDTH_M[0])  # hairpin radius
    mouth = rng.uniform(1.5, 3.0) * width
    leg = rng.uniform(4.0, 18.0)
    side = float(rng.choice([-1.0, 1.0]))
    span = 2 * (mouth + tip)  # the spur replaces this much of the loop, end to end
    n, cut = len(loop), math.ceil(span / SUITE_STEP_M)
    step = np.roll(loop, -1, axis=0) - loop
    heading = np.unwrap(np.tile(np.arctan2(step[:, 1], step[:, 0]), 2))  # continuous over two rounds
    bent = np.abs(heading[cut : cut + n] - heading[:n]) + rng.uniform(0, 0.3, n)  # near-ties drawn
    i = int(np.argmin(bent))
    a, b = loop[i], loop[(i + cut) % n]
    scale = float(np.linalg.norm(b - a)) / span  # so that the spur ends exactly at b
    mouth, tip = mouth * scale, tip * scale
    spur = _along(
        a,
        math.atan2(*(b - a)[::-1]),
        [
            (mouth * math.pi / 2, side / mouth),
            (leg, 0.0),
            (tip * math.pi, -side / tip),
            (leg, 0.0),
            (mouth * math.pi / 2, side / mouth),
        ],
    )
    return np.vstack([np.roll(loop, -i, axis=0)[cut:], [a], spur[:-1]])


def suite_track(seed: int, style: str, width: float | None = None) -> Track:
    """A random valid loop (random_track's shape, smaller) with a hairpin spur (_with_hairpin):
    redrawn from the same seed stream until track_features finds at least one hairpin and one
    S-bend. The road width is drawn from SUITE_WIDTH_M unless given. Same seed, same track."""
    source = f"suite track {seed}"
    if not is_style_name(style):
        raise TrackError(f"{source}: 'style' must be {STYLE_NAMES}, got {_shown(style)}")
    if width is not None and not 3.0 <= (_number(width) or math.nan) <= SUITE_MAX_WIDTH_M:
        raise TrackError(f"{source}: 'width' must be from 3 to {SUITE_MAX_WIDTH_M:g} m, got {_shown(width)}")
    rng = np.random.default_rng(seed)
    if width is None:
        width = round(float(rng.uniform(*SUITE_WIDTH_M)), 2)
    for _ in range(SUITE_TRIES):
        loop = smooth_loop(_random_control(rng, SUITE_RADIUS_M), SUITE_STEP_M)
        try:
            track = make_track(f"suite-{seed}", width, _with_hairpin(loop, rng, width), style, source)
        except TrackError:
            continue
        features = track_features(track)
        if features["hairpins"] and features["s_bends"]:
            return track
    raise TrackError(f"{source}: no valid loop with a hairpin and an S-bend for a {width:g} m road")


def get_track(spec: str, seed: int = 0) -> Track:
    """'lake' | 'jungle' | 'desert' | 'random' (uses `seed`) | a path to a .json track file."""
    if spec in BUILTIN:
        return builtin_track(spec)
    if spec == "random":
        return random_track(seed)
    if spec.endswith(".json") or _is_file_name(spec):
        return load_track(spec)
    raise TrackError(f"unknown track {_shown(spec)}: use {', '.join(BUILTIN)}, random, or a .json file")


def _is_file_name(spec: str) -> bool:
    try:
        return Path(spec).exists()
    except OSError:  # e.g. a name too long for the file system: not a file then
        return False
