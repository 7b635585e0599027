"""How each kind of track looks: colours, edge markings, shoulders, shadows and skyline.

One Style per name in STYLES; a track names its style (one of these, or `look-N`: a look generated
from seed N by driving/sim/looks.py, which resolves every name), and track files are checked against
these names (driving/sim/track.py). The world texture (world.py) and the cameras' sky (camera.py)
paint from a Style; driving/sim/conditions.py varies its colours and light. No OpenCV here, so track
validation stays light.

The texture and marking knobs after `texture_amp` default to the values every style was painted
with before they existed, so the three named styles paint byte for byte as they always did.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]
EDGES = ("lines", "dashed", "curbs", "none")  # the road's edge markings
CENTRES = ("dashed", "solid", "double")  # the centre line's kinds


@dataclass(frozen=True)
class Style:
    """How a track looks. Colours are RGB."""

    asphalt: RGB
    ground: RGB
    shoulder: RGB
    shoulder_m: float  # width of the shoulder strip on each side
    edge: str  # one of EDGES
    edge_colour: RGB = (235, 235, 225)
    centre_colour: RGB | None = None  # the centre line's colour; None: no centre line
    centre: str = "dashed"  # one of CENTRES, when there is a centre line
    curb_colours: tuple[RGB, RGB] = ((200, 30, 30), (240, 240, 240))
    texture_amp: float = 10.0  # fine grain of the asphalt and ground, in grey levels
    ground_texture_amp: float | None = None  # grain beyond road and shoulder; None: texture_amp
    wear: float = 0.06  # strength of the patches of wear (smooth noise) on every surface
    wear_m: float = 1.5  # their size
    light_patches: float = 0.10  # strength of the broad patches of light and dark
    light_patches_m: float = 40.0  # their size
    edge_width_m: float = 0.18  # edge lines
    edge_inset_m: float = 0.35  # from the road's edge to the middle of an edge line or curb
    centre_width_m: float = 0.15  # a dashed or solid centre line
    dash_m: float = 3.0  # dashed lines: each dash, and the gap after it
    dash_gap_m: float = 6.0
    curb_m: float = 1.5  # curbs: each block's length and the curb's width
    curb_width_m: float = 0.7
    shadows: int = 40  # soft shadow blobs per 10,000 m^2
    bushes: int = 0  # dark ground-cover blobs per 10,000 m^2
    bush_colour: RGB = (40, 80, 35)
    # sky and scenery (used by driving.sim.camera)
    sky_top: RGB = (90, 140, 210)
    sky_horizon: RGB = (190, 210, 230)
    scenery: str = "hills"  # "hills" | "forest" | "mesas"
    far_colour: RGB = (110, 130, 150)  # distant scenery
    near_colour: RGB = (60, 100, 50)  # near scenery
    haze: RGB = (170, 180, 185)  # the colour the ground fades into far away
    clouds: float = 0.0  # cloud cover added to the sky's few clouds: 0 as designed, 1 overcast


STYLES: dict[str, Style] = {
    "lake": Style(
        asphalt=(105, 105, 108),
        ground=(80, 130, 55),
        shoulder=(120, 140, 80),
        shoulder_m=0.6,
        edge="lines",
        edge_colour=(240, 240, 235),
        centre_colour=(225, 190, 40),
        shadows=25,
        bushes=30,
        scenery="hills",
        far_colour=(105, 125, 150),
        near_colour=(70, 105, 60),
        haze=(165, 180, 185),
    ),
    "jungle": Style(
        asphalt=(62, 60, 62),
        ground=(45, 85, 35),
        shoulder=(80, 70, 50),
        shoulder_m=0.8,
        edge="curbs",
        texture_amp=12.0,
        shadows=120,
        bushes=160,
        bush_colour=(25, 60, 22),
        sky_top=(110, 150, 200),
        sky_horizon=(180, 200, 205),
        scenery="forest",
        far_colour=(45, 80, 45),
        near_colour=(20, 55, 20),
        haze=(120, 140, 120),
    ),
    "desert": Style(
        asphalt=(95, 88, 82),
        ground=(205, 180, 135),
        shoulder=(160, 125, 90),
        shoulder_m=2.5,
        edge="none",
        texture_amp=14.0,
        shadows=8,
        bushes=12,
        bush_colour=(120, 115, 70),
        sky_top=(120, 165, 220),
        sky_horizon=(225, 215, 200),
        scenery="mesas",
        far_colour=(185, 120, 85),
        near_colour=(170, 120, 80),
        haze=(215, 200, 180),
    ),
}

# Random tracks, varied recordings and drawn conditions choose among these one-lane styles only, so
# adding a style elsewhere changes none of their draws.
ONE_LANE_STYLES = ("lake", "jungle", "desert")
# Two-lane roads: a yellow centre line between the lanes, white edge lines (track "lanes": 2).
LANE_STYLES = ("lanes", "lanes-dashed")
STYLES["lanes"] = Style(
    asphalt=(92, 94, 98),
    ground=(90, 135, 60),
    shoulder=(130, 125, 105),
    shoulder_m=0.8,
    edge="lines",
    edge_colour=(240, 240, 235),
    centre_colour=(230, 185, 30),
    centre="double",
    shadows=20,
    bushes=40,
    scenery="hills",
    near_colour=(65, 100, 55),
)
STYLES["lanes-dashed"] = Style(
    asphalt=(75, 74, 76),
    ground=(150, 145, 95),
    shoulder=(115, 105, 85),
    shoulder_m=1.0,
    edge="dashed",
    edge_colour=(235, 235, 230),
    centre_colour=(235, 195, 45),
    centre="dashed",
    texture_amp=12.0,
    shadows=35,
    bushes=25,
    bush_colour=(85, 95, 50),
    scenery="forest",
    far_colour=(70, 95, 70),
    near_colour=(45, 70, 40),
    haze=(160, 170, 165),
)


def styles_for(lanes: int) -> tuple[str, ...]:
    """The styles a road of `lanes` lanes takes turns in (varied recordings, suites)."""
    return LANE_STYLES if lanes == 2 else ONE_LANE_STYLES
