"""How a world is lit and painted beyond its style: the sun, the shadows, small colour shifts of
each surface, and the strength of the texture grain.

`Conditions()` is every style exactly as designed: a world painted under it is byte for byte the
world painted before conditions existed. `Conditions.draw(seed)` draws a varied but plausible look,
the same for the same seed on any machine (numpy's default_rng, pure Python arithmetic), so an
evaluation suite or a varied recording can name its worlds by seeds.

The sun: its elevation sets the light (0.6 + 0.4 sin(elevation): a low sun is dimmer, and below
35 degrees warmer) and the shadows' length (cot(elevation) per metre of height); its azimuth sets
the direction they stretch along. Overhead (90 degrees, the default) each blob casts its own
outline, as before.

An overcast sky (`overcast`, 0 to 1; 0 the default) makes the light diffuse: its brightness moves
towards OVERCAST_BRIGHTNESS whatever the sun's height, its warmth goes, shadows fade, the sky and
haze turn grey and clouds cover it. Drawn conditions never set it (driving/sim/looks.py does).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from driving.sim.style import ONE_LANE_STYLES, RGB, STYLES, Style

MIN_ELEVATION_DEG = 10.0  # lower suns are too dark and their shadows too long to call daylight
WARM_BELOW_DEG = 35.0  # sunlight turns warmer (golden hour) below this elevation
MIN_ROAD_CONTRAST = 0.6  # drawn conditions keep this share of each style's road/roadside contrast
SURFACES = ("asphalt", "ground", "shoulder", "scenery", "sky")
OVERCAST_BRIGHTNESS = 0.75  # the light under a fully overcast sky, as a share of the noon sun's
OVERCAST_SKY: RGB = (178, 180, 184)  # the grey a fully overcast sky's horizon turns
ADDED_FIELDS = {"overcast": 0.0}  # fields added since recordings began, and their "no change"


def _check(name: str, value, low: float, high: float) -> float:
    """`value` as a float if it is a number within [low, high], else a ValueError naming `name`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and low <= value <= high
    if not ok:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _fields_of(cls, data, name: str) -> dict:
    """The items of `data` (a JSON object) after checking that `cls` has a field for each."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{name} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {', '.join(repr(k) for k in unknown)}")
    return dict(data)


@dataclass(frozen=True)
class ColourShift:
    """A small change of one surface's colours in HSV: hue rotated, saturation and value scaled."""

    hue_deg: float = 0.0
    saturation: float = 1.0
    value: float = 1.0

    def __post_init__(self) -> None:
        _check("hue_deg", self.hue_deg, -180.0, 180.0)
        _check("saturation", self.saturation, 0.0, 2.0)
        _check("value", self.value, 0.5, 1.5)

    def apply(self, rgb: RGB) -> RGB:
        if self == ColourShift():  # exactly as designed: no HSV round trip
            return rgb
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
        shifted = colorsys.hsv_to_rgb(
            (h + self.hue_deg / 360) % 1.0, min(1.0, s * self.saturation), min(1.0, v * self.value)
        )
        return tuple(int(round(255 * c)) for c in shifted)

    @classmethod
    def from_dict(cls, data: Mapping, name: str = "colour shift") -> ColourShift:
        try:
            return cls(**_fields_of(cls, data, name))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


@dataclass(frozen=True)
class Conditions:
    """Light and paint of a world beyond its style. The defaults change nothing."""

    sun_azimuth_deg: float = 0.0  # where the sun stands, counter-clockwise from east (+x)
    sun_elevation_deg: float = 90.0  # 90 = overhead: full light, no cast shadow length
    shadow_density: float = 1.0  # multiplies the style's shadow blobs per area
    grain: float = 1.0  # multiplies the style's texture grain
    asphalt: ColourShift = ColourShift()
    ground: ColourShift = ColourShift()  # and the ground cover on it
    shoulder: ColourShift = ColourShift()
    scenery: ColourShift = ColourShift()  # hills, forest or mesas on the skyline
    sky: ColourShift = ColourShift()  # and the haze far rows fade into
    overcast: float = 0.0  # 0 clear, 1 fully overcast: diffuse light, no shadows, a grey sky

    def __post_init__(self) -> None:
        _check("sun_azimuth_deg", self.sun_azimuth_deg, -360.0, 360.0)
        _check("sun_elevation_deg", self.sun_elevation_deg, MIN_ELEVATION_DEG, 90.0)
        _check("shadow_density", self.shadow_density, 0.0, 4.0)
        _check("grain", self.grain, 0.0, 4.0)
        _check("overcast", self.overcast, 0.0, 1.0)
        for name in SURFACES:
            if not isinstance(getattr(self, name), ColourShift):
                raise ValueError(f"{name} must be a ColourShift, got {getattr(self, name)!r}")

    @property
    def light(self) -> tuple[float, float, float]:
        """RGB gain of the sunlight: dimmer when the sun is low, and warmer below WARM_BELOW_DEG;
        under an overcast sky, diffuse: towards OVERCAST_BRIGHTNESS, and neutral."""
        brightness = 0.6 + 0.4 * math.sin(math.radians(self.sun_elevation_deg))
        warmth = max(0.0, 1.0 - self.sun_elevation_deg / WARM_BELOW_DEG)
        if self.overcast:
            brightness += (OVERCAST_BRIGHTNESS - brightness) * self.overcast
            warmth *= 1.0 - self.overcast
        return (
            brightness * (1.0 + 0.10 * warmth),
            brightness * (1.0 + 0.02 * warmth),
            brightness * (1.0 - 0.12 * warmth),
        )

    @property
    def shadow_length(self) -> float:
        """Metres of shadow per metre of height: 0 with the sun overhead."""
        if self.sun_elevation_deg >= 90.0:
            return 0.0
        return 1.0 / math.tan(math.radians(self.sun_elevation_deg))

    def paint(self, style: Style) -> Style:
        """`style` with each surface's colours shifted, and under an overcast sky its sky and haze
        greyed and clouded (lighting is applied when rendering)."""
        if self.overcast:
            style = self._overcast(style)
        return replace(
            style,
            asphalt=self.asphalt.apply(style.asphalt),
            ground=self.ground.apply(style.ground),
            bush_colour=self.ground.apply(style.bush_colour),
            shoulder=self.shoulder.apply(style.shoulder),
            far_colour=self.scenery.apply(style.far_colour),
            near_colour=self.scenery.apply(style.near_colour),
            sky_top=self.sky.apply(style.sky_top),
            sky_horizon=self.sky.apply(style.sky_horizon),
            haze=self.sky.apply(style.haze),
        )

    def _overcast(self, style: Style) -> Style:
        """`style`'s sky, haze and far scenery moved towards grey by `overcast`, and clouded."""
        o = self.overcast

        def towards(rgb: RGB, grey: RGB, share: float) -> RGB:
            return tuple(int(round(c + (g - c) * share)) for c, g in zip(rgb, grey, strict=True))

        top = tuple(int(round(0.85 * g)) for g in OVERCAST_SKY)
        return replace(
            style,
            sky_top=towards(style.sky_top, top, o),
            sky_horizon=towards(style.sky_horizon, OVERCAST_SKY, o),
            haze=towards(style.haze, OVERCAST_SKY, 0.7 * o),
            far_colour=towards(style.far_colour, style.haze, 0.3 * o),
            clouds=max(style.clouds, o),
        )

    def road_contrast(self, style: Style) -> float:
        """How distinct the road stays from what borders it (ground and shoulder), lit and painted,
        as a share of the style's own contrast (1.0 = as designed)."""
        lit = np.array(self.light)
        painted = self.paint(style)

        def contrast(s: Style, lighting: np.ndarray) -> float:
            road = np.array(s.asphalt) * lighting
            return min(np.linalg.norm(road - np.array(c) * lighting) for c in (s.ground, s.shoulder))

        return float(contrast(painted, lit) / contrast(style, np.ones(3)))

    def to_dict(self) -> dict:
        """As JSON; a field added since recordings began is left out while it changes nothing, so
        the looks.json of a recording varied as before stays byte for byte what it was."""
        data = asdict(self)
        for name, unchanged in ADDED_FIELDS.items():
            if data[name] == unchanged:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Conditions:
        """Inverse of to_dict. Missing fields keep their defaults; unknown ones are refused."""
        values = _fields_of(cls, data, "conditions")
        for name in SURFACES:
            if name in values:
                values[name] = ColourShift.from_dict(values[name], name)
        return cls(**values)

    @classmethod
    def draw(cls, seed: int, styles: Sequence[str] = ONE_LANE_STYLES) -> Conditions:
        """Varied, plausible conditions: the same for the same seed on any machine. Redrawn from the
        same stream until each of `styles` keeps MIN_ROAD_CONTRAST of its road's contrast."""
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
        rng = np.random.default_rng(int(seed))

        def uniform(low: float, high: float) -> float:
            return round(float(rng.uniform(low, high)), 3)

        def shift(hue: float, saturation: tuple[float, float], value: tuple[float, float]) -> ColourShift:
            return ColourShift(uniform(-hue, hue), uniform(*saturation), uniform(*value))

        while True:  # about one draw in seven is refused; each try is a fresh draw
            conditions = cls(
                sun_azimuth_deg=uniform(0.0, 360.0),
                sun_elevation_deg=uniform(20.0, 75.0),
                shadow_density=uniform(0.5, 1.6),
                grain=uniform(0.6, 1.5),
                asphalt=shift(10.0, (0.7, 1.4), (0.85, 1.15)),
                ground=shift(20.0, (0.75, 1.25), (0.85, 1.15)),
                shoulder=shift(20.0, (0.75, 1.25), (0.85, 1.15)),
                scenery=shift(20.0, (0.8, 1.2), (0.85, 1.15)),
                sky=shift(10.0, (0.7, 1.2), (0.9, 1.1)),
            )
            if all(conditions.road_contrast(STYLES[s]) >= MIN_ROAD_CONTRAST for s in styles):
                return conditions
