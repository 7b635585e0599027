"""Conditions: deterministic draws, plausible looks, JSON round trips, and what they change."""

import json
import math

import numpy as np
import pytest

from driving.sim.camera import Camera
from driving.sim.conditions import MIN_ROAD_CONTRAST, ColourShift, Conditions
from driving.sim.simulator import Simulator
from driving.sim.style import LANE_STYLES, ONE_LANE_STYLES, STYLES
from driving.sim.track import builtin_track, make_track
from driving.sim.world import World, cast_shadow


@pytest.fixture(scope="module")
def ring():
    """A small loop: small textures, quick worlds."""
    a = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    return make_track("ring", 8.0, np.column_stack([40 * np.cos(a), 28 * np.sin(a)]).tolist(), "lake")


def test_default_conditions_change_nothing():
    c = Conditions()
    assert c.light == (1.0, 1.0, 1.0) and c.shadow_length == 0.0
    for style in STYLES.values():
        assert c.paint(style) == style
    assert ColourShift().apply((12, 34, 56)) == (12, 34, 56)


def test_draw_is_deterministic_and_pinned():
    """Same seed, same conditions: the values are pinned, so another machine (or a refactor)
    that draws differently fails here."""
    assert Conditions.draw(3) == Conditions.draw(3)
    assert Conditions.draw(3) != Conditions.draw(4)
    c = Conditions.draw(0)
    assert (c.sun_azimuth_deg, c.sun_elevation_deg, c.shadow_density, c.grain) == (
        229.306,
        34.838,
        0.545,
        0.615,
    )
    assert c.asphalt == ColourShift(6.265, 1.339, 1.032)


@pytest.mark.parametrize("styles", [ONE_LANE_STYLES, LANE_STYLES])
def test_drawn_conditions_are_plausible(styles):
    """Conditions drawn for a group of styles (one-lane roads by default, two-lane roads for the
    two-lane world) keep each of them's road contrast."""
    for seed in range(200):
        c = Conditions.draw(seed, styles)
        assert 20 <= c.sun_elevation_deg <= 75 and 0 <= c.sun_azimuth_deg <= 360
        assert min(c.light) > 0.65  # daylight, never night
        for name in styles:
            assert c.road_contrast(STYLES[name]) >= MIN_ROAD_CONTRAST
    seeds = [Conditions.draw(s) for s in range(50)]
    assert len({c.sun_azimuth_deg for c in seeds}) == 50  # varied
    assert np.ptp([c.sun_elevation_deg for c in seeds]) > 30


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_draw_refuses_seeds_that_are_not_whole_numbers(seed):
    with pytest.raises(ValueError, match="seed"):
        Conditions.draw(seed)


def test_json_round_trip():
    c = Conditions.draw(11)
    text = json.dumps(c.to_dict())
    assert Conditions.from_dict(json.loads(text)) == c
    assert Conditions.from_dict({}) == Conditions()
    assert Conditions.from_dict({"sky": {"value": 1.1}}).sky == ColourShift(value=1.1)


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2], "JSON object"),
        ({"sun": 3}, "unknown field.*'sun'"),
        ({"sun_elevation_deg": 0}, "sun_elevation_deg"),  # night
        ({"sun_elevation_deg": math.nan}, "sun_elevation_deg"),
        ({"shadow_density": "lots"}, "shadow_density"),
        ({"grain": True}, "grain"),
        ({"asphalt": [1, 2, 3]}, "asphalt.*JSON object"),
        ({"asphalt": {"hue": 3}}, "asphalt.*unknown field.*'hue'"),
        ({"ground": {"value": 9}}, "ground.*value"),
        ({"ground": {"saturation": math.inf}}, "ground.*saturation"),
    ],
)
def test_from_dict_refuses_bad_fields_by_name(data, message):
    with pytest.raises(ValueError, match=message):
        Conditions.from_dict(data)


def test_shadows_stretch_along_the_sun():
    (major, minor), angle = cast_shadow((10, 10), 0.0, 2.0, 45.0)  # sun in the north-east
    assert major == int(math.sqrt(10**2 + 20**2)) and minor == 10
    assert angle % 180 == pytest.approx(135)  # texture rows run south: north-east is up and right
    assert cast_shadow((20, 8), 30.0, 0.0, 90.0) == ((20, 8), pytest.approx(30.0))


def test_conditions_change_the_world_and_keep_the_road(ring):
    plain = World(ring, ppm=5.0)
    assert np.array_equal(plain.colour[0], World(ring, ppm=5.0, conditions=Conditions()).colour[0])
    for seed in range(3):
        varied = World(ring, ppm=5.0, conditions=Conditions.draw(seed))
        assert np.abs(varied.colour[0].astype(int) - plain.colour[0]).mean() > 3
        np.testing.assert_array_equal(varied.road[0], plain.road[0])  # the same road


def test_frames_under_drawn_conditions_show_a_road_in_daylight(ring):
    for style in STYLES:
        track = make_track("ring", ring.width, ring.control.tolist(), style)
        for seed in range(3):
            sim = Simulator(track, seed=0, ppm=5.0, conditions=Conditions.draw(seed))
            sim.reset(s=20.0)
            cam = sim.cameras["center"]
            frame = sim.render("center").astype(float)
            road = cam.render_road_mask(sim.car.x, sim.car.y, sim.car.heading)
            ground = ~road & ~cam.bonnet_mask
            ground[: cam.first_ground_row] = False
            assert frame.mean() > 60, (style, seed)  # no night-black frames
            contrast = np.abs(frame[road].mean(0) - frame[ground].mean(0)).sum()
            assert contrast > 30, (style, seed, contrast)


def test_sky_and_scenery_follow_the_light():
    track = builtin_track("desert")
    noon = Camera(World(track, ppm=2.0)).pano.astype(float).mean(axis=(0, 1))
    low_sun = Conditions(sun_elevation_deg=20.0)
    dusk = Camera(World(track, ppm=2.0, conditions=low_sun)).pano.astype(float).mean(axis=(0, 1))
    assert (dusk < noon).all() and dusk[0] / dusk[2] > noon[0] / noon[2]  # dimmer and warmer
