"""New looks from a seed, and the one place a track's style name is resolved.

    style = generate_style(7)             # a Style nobody designed: look 7
    style, conditions = draw_new_look(7)  # and the light it was drawn with
    style_named("look-7") == style        # a track may name it; the named styles resolve here too
    new_look(7).describe()                # "red asphalt, yellow dashed edges, ... dusk, forest"

A look varies every surface: the road (grey, dark or light concrete, reddish, dirt, gravel), the
ground (grass, dry grass, sand, snow, red soil, rock, dark earth, moss), the shoulder, the grain
and patches of each, the edge markings (lines, dashed, curbs in many colour pairs, or none), the
centre line (any kind and colour, or none), the sky (clear, hazy, dawn pink, dusk orange,
overcast grey), the scenery (every kind) and the light (the sun down to MIN_ELEVATION_DEG,
overcast). Everything comes from numpy's default_rng seeded with the look's seed and pure Python
arithmetic, so look N is the same on any machine.

Plausible and drivable: a draw is refused, and the next one from the same stream taken, unless its
road stands out from what borders it (ground and shoulder), lit and unlit: by
MIN_CONTRAST_UNMARKED without edge markings, MIN_CONTRAST_MARKED with them, whose paint must stand
out from the road by MIN_MARKING_CONTRAST (as must a centre line). Contrast is the distance of
the lit RGB colours (the three named styles measure 24 to 75).

Look seeds are kept apart by purpose, as the suites' track seeds are (driving/evaluation/registry.py):

    TRAINING_LOOKS  0 - 999,999            looks a recording may paint (recorder: vary="looks")
    SUITE_LOOKS     1,000,000 - 1,999,999  looks only evaluation suites drive; recordings refuse them
    above           up to MAX_LOOK_SEED    neither: free for checks of one's own

A faint road (faint_road) is one told from its roadside by little: weak edge markings and a road
colour near the roadside's. A recording may ask for training looks of that kind alone
(recorder: vary="faint-looks"), as the `looks-faint` recipe does for half its laps.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from driving.sim.conditions import MIN_ELEVATION_DEG, Conditions
from driving.sim.style import CENTRES, EDGES, RGB, STYLES, Style

LOOK_PREFIX = "look-"
MAX_LOOK_SEED = 2**31 - 1
TRAINING_LOOKS = range(0, 1_000_000)
SUITE_LOOKS = range(1_000_000, 2_000_000)
# A recording with new looks (sim record --new-looks) paints every 1/24 of a lap in a look of its
# own (about 20 m): a model meets hundreds of looks, not dozens. At 6 a lap the `looks` recipe
# left the gap as it was; at 24 it narrowed it (docs/evaluation.md).
NEW_LOOKS_PER_LAP = 24
# How a recording varies its look (the recorder's `vary`): "styles" (also True) each part of a lap
# in another named style and light; "looks" each 1/24 of a lap a generated training look;
# "faint-looks" the same in faint-road looks alone.
VARY_KINDS = ("styles", "looks", "faint-looks")
NEW_LOOK_KINDS = ("looks", "faint-looks")  # the kinds that paint generated looks
STYLE_NAMES = f"{', '.join(STYLES)} or look-N (N a whole number from 0 to {MAX_LOOK_SEED})"
MIN_CONTRAST_UNMARKED = 45.0  # a road without edge markings: desert's measures 75, lake's 47
MIN_CONTRAST_MARKED = 25.0  # with edge markings (jungle's curbed road measures 24)
MIN_MARKING_CONTRAST = 60.0  # paint against the road it is painted on
# A faint road (faint_road): edges unmarked or dashed under half their length, and the road's
# colour near its roadside's (the named styles measure 24 to 75; an unmarked road needs 45).
FAINT_DASH_SHARE = 0.5
FAINT_CONTRAST = 60.0
BUSH_AREA_M2 = 14.5  # the mean area of one ground-cover blob as world.py paints them (axes 0.8-3.5 m)
_STREAM = 0x100C  # keeps a look's stream apart from other draws made with the same seed

Hsv = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]  # degrees, 0-1, 0-1

ASPHALTS: dict[str, Hsv] = {
    "grey asphalt": ((190, 250), (0.0, 0.07), (0.33, 0.50)),
    "dark asphalt": ((190, 260), (0.0, 0.08), (0.15, 0.30)),
    "light concrete": ((25, 60), (0.02, 0.10), (0.58, 0.80)),
    "reddish asphalt": ((-8, 12), (0.30, 0.55), (0.32, 0.55)),
    "brown dirt road": ((18, 35), (0.30, 0.55), (0.30, 0.58)),
    "pale gravel road": ((30, 50), (0.10, 0.25), (0.50, 0.72)),
}
GROUNDS: dict[str, Hsv] = {
    "grass": ((75, 130), (0.35, 0.70), (0.28, 0.60)),
    "dry grass": ((38, 60), (0.35, 0.65), (0.45, 0.75)),
    "sand": ((28, 48), (0.22, 0.45), (0.62, 0.90)),
    "snow": ((190, 230), (0.0, 0.08), (0.82, 0.97)),
    "red soil": ((5, 22), (0.40, 0.70), (0.35, 0.62)),
    "rock": ((15, 45), (0.05, 0.20), (0.30, 0.60)),
    "dark earth": ((20, 40), (0.25, 0.50), (0.16, 0.32)),
    "moss": ((55, 95), (0.15, 0.35), (0.35, 0.55)),
}
SHOULDERS = ("gravel", "dirt", "verge", "concrete", "blend")  # blend: between road and ground
PAINTS: dict[str, Hsv] = {
    "white": ((0, 360), (0.0, 0.05), (0.86, 0.98)),
    "yellow": ((44, 56), (0.70, 0.92), (0.80, 0.95)),
    "orange": ((25, 35), (0.75, 0.95), (0.85, 0.97)),
    "red": ((-6, 6), (0.70, 0.90), (0.70, 0.90)),
    "blue": ((205, 230), (0.60, 0.85), (0.60, 0.85)),
    "black": ((0, 360), (0.0, 0.10), (0.06, 0.16)),
    "green": ((110, 140), (0.60, 0.85), (0.45, 0.70)),
}
EDGE_PAINTS = ("white", "yellow", "red", "blue", "orange")
CENTRE_PAINTS = ("white", "yellow", "orange", "red", "blue")
CURB_PAIRS = (
    ("red", "white"),
    ("black", "white"),
    ("yellow", "black"),
    ("blue", "white"),
    ("red", "yellow"),
    ("green", "white"),
)
NO_CENTRE_SHARE = 0.3  # roads drawn without a centre line
# Sky: (share of looks, top colour, horizon colour, extra cloud cover, sun elevation, overcast).
SKIES: dict[str, tuple[float, Hsv, Hsv, tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "clear": (
        0.35,
        ((200, 225), (0.35, 0.60), (0.70, 0.90)),
        ((195, 225), (0.08, 0.25), (0.85, 0.95)),
        (0.0, 0.3),
        (35.0, 80.0),
        (0.0, 0.15),
    ),
    "hazy": (
        0.15,
        ((195, 220), (0.15, 0.30), (0.78, 0.90)),
        ((30, 220), (0.02, 0.10), (0.86, 0.96)),
        (0.1, 0.4),
        (25.0, 70.0),
        (0.15, 0.45),
    ),
    "dawn": (
        0.15,
        ((220, 265), (0.25, 0.45), (0.55, 0.75)),
        ((330, 360), (0.25, 0.45), (0.85, 0.97)),
        (0.0, 0.4),
        (MIN_ELEVATION_DEG, 25.0),
        (0.0, 0.25),
    ),
    "dusk": (
        0.15,
        ((210, 240), (0.40, 0.60), (0.45, 0.65)),
        ((15, 35), (0.45, 0.70), (0.85, 0.97)),
        (0.0, 0.4),
        (MIN_ELEVATION_DEG, 25.0),
        (0.0, 0.25),
    ),
    "overcast": (
        0.20,
        ((195, 225), (0.02, 0.08), (0.55, 0.75)),
        ((0, 360), (0.0, 0.05), (0.70, 0.85)),
        (0.6, 1.0),
        (20.0, 70.0),
        (0.55, 1.0),
    ),
}
SCENERY_BASES: dict[str, Hsv] = {  # the near scenery's colour; the far one fades into the sky
    "hills": ((20, 140), (0.15, 0.50), (0.30, 0.55)),
    "forest": ((10, 150), (0.30, 0.65), (0.15, 0.40)),
    "mesas": ((0, 45), (0.15, 0.60), (0.35, 0.70)),
}


@dataclass(frozen=True)
class Look:
    """One generated look: its style, the light it was drawn with, and what was drawn, in words."""

    seed: int
    style: Style
    conditions: Conditions
    kinds: dict[str, str] = field(default_factory=dict)  # asphalt, ground, shoulder, edge, ...

    @property
    def name(self) -> str:
        return look_name(self.seed)

    def describe(self) -> str:
        """For people: 'reddish asphalt, yellow dashed edges, no centre line, gravel shoulder on
        snow; dusk sky, forest'."""
        k = self.kinds
        return (
            f"{k['asphalt']}, {k['edge']}, {k['centre']}, {k['shoulder']} shoulder on {k['ground']}; "
            f"{k['sky']} sky, {k['scenery']}"
        )


# --- names ----------------------------------------------------------------------------------------


def _check_seed(seed: object, what: str = "look seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_LOOK_SEED:
        raise ValueError(f"{what} must be a whole number from 0 to {MAX_LOOK_SEED}, got {seed!r}")
    return int(seed)


def look_name(seed: int) -> str:
    """The style name of look `seed`: 'look-N'."""
    return f"{LOOK_PREFIX}{_check_seed(seed)}"


def look_seed(name: object) -> int | None:
    """N of a style name 'look-N' (N written plainly: no sign, no leading zeros), else None."""
    if not isinstance(name, str) or not name.startswith(LOOK_PREFIX):
        return None
    digits = name[len(LOOK_PREFIX) :]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 10 or digits != str(int(digits)):
        return None
    seed = int(digits)
    return seed if seed <= MAX_LOOK_SEED else None


def is_style_name(name: object) -> bool:
    """Whether a track may name this style: one of STYLES, or look-N."""
    return (isinstance(name, str) and name in STYLES) or look_seed(name) is not None


def style_named(name: str) -> Style:
    """The Style a track's style name stands for: a named style, or generated look N."""
    if isinstance(name, str) and name in STYLES:
        return STYLES[name]
    seed = look_seed(name)
    if seed is None:
        raise ValueError(f"unknown style {name!r}: use {STYLE_NAMES}")
    return generate_style(seed)


def _span(seeds: range) -> str:
    return f"{seeds.start}-{seeds.stop - 1}"


def check_recordable(style: str, what: str = "") -> None:
    """Refuse, in one line naming `what`, a style a recording may not paint: a suite look."""
    seed = look_seed(style)
    if seed is not None and seed in SUITE_LOOKS:
        raise ValueError(
            f"{what + ': ' if what else ''}{style} is a suite look (seeds {_span(SUITE_LOOKS)}); "
            f"recordings may paint training looks only ({_span(TRAINING_LOOKS)})"
        )


def check_suite_look(seed: object, what: str) -> int:
    """`seed` as a look a suite may drive, or a one-line ValueError naming `what`: never a
    training look, which a recording may have painted."""
    seed = _check_seed(seed, f"{what}: look")
    if seed in TRAINING_LOOKS:
        raise ValueError(
            f"{what}: look {seed} is a training look (seeds {_span(TRAINING_LOOKS)}); a suite drives "
            f"looks no recording paints ({_span(SUITE_LOOKS)})"
        )
    return seed


def vary_kind(vary: bool | str | None) -> str | None:
    """None (one look), or one of VARY_KINDS for a `vary` argument; ValueError otherwise."""
    if vary is None or vary is False:
        return None
    if vary is True:
        return "styles"
    if vary in VARY_KINDS:
        return vary
    raise ValueError(f"vary must be True, False or one of {', '.join(VARY_KINDS)}, got {vary!r}")


def training_look(seed: int, index: int, faint: bool = False) -> int:
    """The look (a seed in TRAINING_LOOKS) of stretch `index` of a recording made with `seed`;
    with `faint`, the first faint-road look (faint_road) of a stream of its own."""
    if not faint:
        rng = np.random.default_rng([_STREAM, seed, index])
        return TRAINING_LOOKS.start + int(rng.integers(len(TRAINING_LOOKS)))
    rng = np.random.default_rng([_STREAM, seed, index, 2])
    while True:  # about one training look in six is faint
        look = TRAINING_LOOKS.start + int(rng.integers(len(TRAINING_LOOKS)))
        if faint_road(new_look(look)):
            return look


# --- drawing a look -------------------------------------------------------------------------------


def generate_style(seed: int) -> Style:
    """The Style of look `seed`: the same on any machine."""
    return new_look(seed).style


def look_conditions(seed: int) -> Conditions:
    """The light look `seed` was drawn with: dawn to dusk, clear to overcast."""
    return new_look(seed).conditions


def draw_new_look(seed: int) -> tuple[Style, Conditions]:
    """Look `seed`'s style and the light it was drawn with (what a suite's new-look drive uses)."""
    look = new_look(seed)
    return look.style, look.conditions


def roadside(style: Style) -> np.ndarray:
    """The ground's colour as it looks from the road: the ground mixed with its ground cover, by
    the share of the ground the cover's blobs hide."""
    cover = 1 - np.exp(-style.bushes * BUSH_AREA_M2 / 1e4)
    return np.array(style.ground) * (1 - cover) + np.array(style.bush_colour) * cover


def road_contrast(style: Style, conditions: Conditions = Conditions()) -> float:
    """How far the road's colour stands from the nearest of what borders it (the ground with its
    cover, and the shoulder when there is one), painted and lit by `conditions`: an RGB distance."""
    lit, painted = np.array(conditions.light), conditions.paint(style)
    road = np.array(painted.asphalt) * lit
    sides = [roadside(painted)] + ([np.array(painted.shoulder)] if painted.shoulder_m > 0 else [])
    return float(min(np.linalg.norm(road - side * lit) for side in sides))


def marking_contrast(style: Style, conditions: Conditions = Conditions()) -> dict[str, float]:
    """How far each marking's paint stands from the road, lit: 'edge' (curbs: the more visible of
    the pair) and 'centre', where the road has them."""
    lit = np.array(conditions.light)
    road = np.array(conditions.paint(style).asphalt) * lit

    def distance(rgb: RGB) -> float:
        return float(np.linalg.norm(road - np.array(rgb) * lit))

    out = {}
    if style.edge in ("lines", "dashed"):
        out["edge"] = distance(style.edge_colour)
    elif style.edge == "curbs":
        out["edge"] = max(distance(c) for c in style.curb_colours)
    if style.centre_colour is not None:
        out["centre"] = distance(style.centre_colour)
    return out


def drivable(style: Style, conditions: Conditions = Conditions()) -> bool:
    """Whether the road stands out from its roadside, and its markings from the road (the floors
    above), under `conditions`."""
    floor = MIN_CONTRAST_UNMARKED if style.edge == "none" else MIN_CONTRAST_MARKED
    marks = marking_contrast(style, conditions).values()
    return road_contrast(style, conditions) >= floor and all(m >= MIN_MARKING_CONTRAST for m in marks)


def faint_road(look: Look) -> bool:
    """Whether the look's road is told from its roadside by little: its edges unmarked or marked by
    dashes that cover under FAINT_DASH_SHARE of the edge, and its colour within FAINT_CONTRAST of
    the roadside's (road_contrast, lit or unlit). About one look in six; the looks that cost the
    models most are of this kind (docs/evaluation.md)."""
    style = look.style
    dashes = style.dash_m / (style.dash_m + style.dash_gap_m)
    weakly_marked = style.edge == "none" or (style.edge == "dashed" and dashes < FAINT_DASH_SHARE)
    contrast = min(road_contrast(style), road_contrast(style, look.conditions))
    return weakly_marked and contrast < FAINT_CONTRAST


def new_look(seed: int) -> Look:
    """Look `seed`, drawn (and redrawn from the same stream until drivable, lit and unlit)."""
    return _new_look(_check_seed(seed))


@lru_cache(maxsize=512)
def _new_look(seed: int) -> Look:
    rng = np.random.default_rng([_STREAM, seed])
    while True:  # about one draw in four is refused; each try is a fresh draw
        look = _draw(rng, seed)
        if drivable(look.style) and drivable(look.style, look.conditions):
            return look


def _uniform(rng: np.random.Generator, low: float, high: float, digits: int = 3) -> float:
    return round(float(rng.uniform(low, high)), digits)


def _pick(rng: np.random.Generator, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _colour(rng: np.random.Generator, hsv: Hsv) -> RGB:
    (h0, h1), (s0, s1), (v0, v1) = hsv
    hue = float(rng.uniform(h0, h1)) % 360
    rgb = colorsys.hsv_to_rgb(hue / 360, float(rng.uniform(s0, s1)), float(rng.uniform(v0, v1)))
    return tuple(int(round(255 * c)) for c in rgb)


def _mix(a: RGB, b: RGB, share: float) -> RGB:
    """`share` of the way from `a` to `b`."""
    return tuple(int(round(x + (y - x) * share)) for x, y in zip(a, b, strict=True))


def _scaled(rgb: RGB, factor: float) -> RGB:
    return tuple(int(min(255, round(c * factor))) for c in rgb)


def _draw(rng: np.random.Generator, seed: int) -> Look:
    """One draw of a look from `rng` (not yet checked for contrast)."""
    kinds = {}
    kinds["asphalt"] = _pick(rng, ASPHALTS)
    asphalt = _colour(rng, ASPHALTS[kinds["asphalt"]])
    kinds["ground"] = _pick(rng, GROUNDS)
    ground = _colour(rng, GROUNDS[kinds["ground"]])
    kinds["shoulder"] = _pick(rng, SHOULDERS)
    shoulder = {
        "gravel": lambda: _colour(rng, ((25, 50), (0.05, 0.25), (0.45, 0.75))),
        "dirt": lambda: _colour(rng, ((20, 38), (0.30, 0.50), (0.30, 0.55))),
        "verge": lambda: _scaled(ground, float(rng.uniform(0.85, 1.1))),
        "concrete": lambda: _colour(rng, ((0, 360), (0.0, 0.06), (0.60, 0.85))),
        "blend": lambda: _mix(asphalt, ground, float(rng.uniform(0.3, 0.7))),
    }[kinds["shoulder"]]()
    shoulder_m = 0.0 if rng.random() < 0.15 else _uniform(rng, 0.2, 3.0, 2)
    if rng.random() < 0.5:  # ground cover: the ground, darker, or vegetation of its own
        bush = _scaled(ground, float(rng.uniform(0.55, 0.85)))
    else:
        bush = _colour(rng, ((40, 150), (0.25, 0.60), (0.15, 0.45)))

    edge = _pick(rng, EDGES)
    edge_paint = _pick(rng, EDGE_PAINTS)
    edge_colour = _colour(rng, PAINTS[edge_paint])
    curb_names = _pick(rng, CURB_PAIRS)
    curbs = (_colour(rng, PAINTS[curb_names[0]]), _colour(rng, PAINTS[curb_names[1]]))
    kinds["edge"] = {
        "lines": f"{edge_paint} edge lines",
        "dashed": f"{edge_paint} dashed edges",
        "curbs": f"{' and '.join(curb_names)} curbs",
        "none": "no edge markings",
    }[edge]
    centre = _pick(rng, CENTRES)
    centre_paint = _pick(rng, CENTRE_PAINTS)
    centre_colour = _colour(rng, PAINTS[centre_paint])
    if rng.random() < NO_CENTRE_SHARE:
        centre_colour, kinds["centre"] = None, "no centre line"
    else:
        kinds["centre"] = f"{centre_paint} {centre} centre line"

    names = list(SKIES)
    shares = np.cumsum([SKIES[n][0] for n in names])
    kinds["sky"] = sky = names[min(int(np.searchsorted(shares, rng.random() * shares[-1])), len(names) - 1)]
    _, top_hsv, horizon_hsv, clouds, elevation, overcast = SKIES[sky]
    sky_top, sky_horizon = _colour(rng, top_hsv), _colour(rng, horizon_hsv)
    kinds["scenery"] = scenery = _pick(rng, SCENERY_BASES)
    near = _colour(rng, SCENERY_BASES[scenery])
    far = _mix(near, sky_horizon, float(rng.uniform(0.25, 0.6)))
    haze = _mix(sky_horizon, ground, float(rng.uniform(0.15, 0.4)))

    style = Style(
        asphalt=asphalt,
        ground=ground,
        shoulder=shoulder,
        shoulder_m=shoulder_m,
        edge=edge,
        edge_colour=edge_colour,
        centre_colour=centre_colour,
        centre=centre,
        curb_colours=curbs,
        texture_amp=_uniform(rng, 4.0, 22.0, 1),
        ground_texture_amp=None if rng.random() < 0.3 else _uniform(rng, 4.0, 26.0, 1),
        wear=_uniform(rng, 0.02, 0.12),
        wear_m=_uniform(rng, 0.8, 4.0, 2),
        light_patches=_uniform(rng, 0.03, 0.18),
        light_patches_m=_uniform(rng, 15.0, 80.0, 1),
        edge_width_m=_uniform(rng, 0.10, 0.30, 2),
        edge_inset_m=_uniform(rng, 0.15, 0.60, 2),
        centre_width_m=_uniform(rng, 0.10, 0.22, 2),
        dash_m=_uniform(rng, 1.5, 6.0, 1),
        dash_gap_m=_uniform(rng, 1.5, 12.0, 1),
        curb_m=_uniform(rng, 0.8, 2.5, 2),
        curb_width_m=_uniform(rng, 0.3, 1.0, 2),
        shadows=int(rng.integers(0, 151)),
        bushes=int(rng.integers(0, 201)),
        bush_colour=bush,
        sky_top=sky_top,
        sky_horizon=sky_horizon,
        scenery=scenery,
        far_colour=far,
        near_colour=near,
        haze=haze,
        clouds=_uniform(rng, *clouds),
    )
    if sky == "dawn":  # the sun low in the east; at dusk in the west; else anywhere
        azimuth = _uniform(rng, -30.0, 30.0) % 360
    elif sky == "dusk":
        azimuth = _uniform(rng, 150.0, 210.0)
    else:
        azimuth = _uniform(rng, 0.0, 360.0)
    conditions = Conditions(
        sun_azimuth_deg=round(azimuth, 3),
        sun_elevation_deg=_uniform(rng, *elevation),
        shadow_density=_uniform(rng, 0.3, 1.8),
        grain=_uniform(rng, 0.8, 1.25),
        overcast=_uniform(rng, *overcast),
    )
    return Look(seed, style, conditions, kinds)
