"""Camera rendering: frame layout, the crop keeps the road, side-camera geometry, track looks."""

import numpy as np
import pytest

from driving.config import CROP_BOTTOM, CROP_TOP, FRAME_HEIGHT, FRAME_WIDTH, INPUT_SHAPE
from driving.preprocess import check_frame, preprocess
from driving.sim import world as world_module
from driving.sim.camera import Camera, CameraSpec
from driving.sim.expert import SIDE_CAMERA_OFFSET_M, Expert
from driving.sim.simulator import Simulator
from driving.sim.track import builtin_track
from driving.sim.world import World


@pytest.fixture(scope="module")
def lake():
    return Simulator(builtin_track("lake"), seed=0)


def poses(track, count=6):
    return [
        (s, track.point_at(s), track.heading_at(s))
        for s in np.linspace(0, track.length, count, endpoint=False)
    ]


def test_frames_have_the_simulator_layout_and_the_crop_keeps_the_road(lake):
    for s, (x, y), heading in poses(lake.track):
        for name, cam in lake.cameras.items():
            frame = cam.render(x, y, heading)
            check_frame(frame)
            road = cam.render_road_mask(x, y, heading)
            crop = road[CROP_TOP:CROP_BOTTOM]
            assert crop.any(axis=1).all(), f"{name} at {s:.0f} m: a crop row without road"
            assert crop.mean() > 0.3, f"{name} at {s:.0f} m: road is {crop.mean():.0%} of the crop"
            assert 40 < cam.first_ground_row < CROP_TOP  # sky and scenery above, ground below
            assert road[CROP_TOP:].mean() > 3 * road[:CROP_TOP].mean()
            assert cam.bonnet_top >= CROP_BOTTOM  # the bonnet is below the crop
            assert preprocess(frame).shape == INPUT_SHAPE
    # The sky is brighter and bluer than the road.
    frame = lake.render("center")
    sky, road = frame[:30].reshape(-1, 3).mean(0), frame[110:130, 140:180].reshape(-1, 3).mean(0)
    assert sky[2] > road[2] + 40 and sky[2] > sky[0]


def test_lane_edges_are_visible_in_the_crop(lake):
    lake.reset(s=40.0)  # straight, on the centre line
    frame = lake.render("center").astype(int)
    row = frame[120].sum(axis=1)
    asphalt = np.median(row[120:200])
    bright = np.nonzero(row > asphalt + 200)[0]  # white edge lines
    assert (bright < 120).any() and (bright > 200).any()


def test_heading_turns_the_sky_and_position_moves_the_road(lake):
    x, y = lake.track.point_at(40.0)
    cam = lake.cameras["center"]
    a, b = cam.render(x, y, 0.0), cam.render(x, y, 0.3)
    top = slice(0, cam.first_ground_row)
    assert np.abs(a[top].astype(int) - b[top]).mean() > 3
    # Turning left by 0.3 rad moves the scenery right, by about focal * 0.3 pixels.
    errors = [np.abs(a[top, 100:140].astype(int) - b[top, 100 + k : 140 + k]).mean() for k in range(120)]
    assert int(np.argmin(errors)) == pytest.approx(cam.spec.focal * 0.3, rel=0.15)


def test_left_camera_sees_the_road_as_if_the_car_were_further_left(lake):
    """The left camera's image equals the centre camera's from a car SIDE_CAMERA_OFFSET_M to the
    left; that car must steer right to get back, so the left image's label is steering + correction."""
    s = 40.0
    x, y = lake.track.point_at(s)
    h = lake.track.heading_at(s)
    lx, ly = lake.track.point_at(s, -SIDE_CAMERA_OFFSET_M)
    left = lake.cameras["left"].render(x, y, h)
    moved = lake.cameras["center"].render(lx, ly, h)
    assert np.abs(left[:CROP_BOTTOM].astype(int) - moved[:CROP_BOTTOM]).mean() < 1.0
    # The road's centre appears to the right in the left camera.
    c = lake.cameras["center"].render_road_mask(x, y, h)[120].nonzero()[0].mean()
    l_ = lake.cameras["left"].render_road_mask(x, y, h)[120].nonzero()[0].mean()
    assert l_ > c + 10
    # And the expert, placed where the left camera is, steers right.
    expert = Expert(
        lake.track, config=Expert(lake.track).cfg.__class__(weave=False, steer_tau_s=0.0, steer_rate=99)
    )
    lake.reset(s=s, offset=-SIDE_CAMERA_OFFSET_M, speed=5.0)
    assert expert.act(lake.car, lake.location.s, 1 / 15)[0] > 0.1


def test_built_in_tracks_look_different():
    means = {}
    for name in ("lake", "jungle", "desert"):
        track = builtin_track(name)
        cam = Camera(World(track, ppm=3.0), CameraSpec())
        x, y = track.point_at(30.0)
        frame = cam.render(x, y, track.heading_at(30.0))
        assert frame.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
        means[name] = np.concatenate(
            [frame[:60].reshape(-1, 3).mean(0), frame[80:140].reshape(-1, 3).mean(0)]
        )
    names = list(means)
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(means[names[i]] - means[names[j]]) > 15, (names[i], names[j])


def test_world_texture_memory_is_bounded(monkeypatch):
    """A track too large for the texture budget is painted at fewer pixels per metre."""
    track = builtin_track("desert")
    monkeypatch.setattr(world_module, "MAX_TEXTURE_PIXELS", 250_000)
    world = World(track, ppm=10.0)
    h, w = world.shape
    assert h * w <= 250_000 and world.ppm < 2.0
    assert world.colour[0].shape == (h, w, 3)
    x, y = track.point_at(30.0)
    road = Camera(world).render_road_mask(x, y, track.heading_at(30.0))
    assert road[CROP_TOP:CROP_BOTTOM].mean() > 0.2  # still a road to drive on


@pytest.mark.parametrize("ppm", [0, -1.0, float("nan"), float("inf"), "10"])
def test_world_refuses_bad_resolutions(ppm):
    with pytest.raises(ValueError, match="ppm"):
        World(builtin_track("lake"), ppm=ppm)


def test_a_world_must_fit_the_simulators_road(lake):
    other = World(builtin_track("desert"), ppm=2.0)
    with pytest.raises(ValueError, match="does not fit"):
        lake.use_world(other, seed=0)


def test_marking_kinds_paint_as_much_line_as_they_should(monkeypatch):
    """A solid centre line marks about three times the road a dashed one does (3 m every 9 m), a
    double line about twice the solid; dashed edge lines a third of solid ones."""
    from dataclasses import replace

    from driving.sim.style import STYLES

    magenta = (255, 0, 255)  # a colour nothing else in the world has

    def marked_pixels(**marking) -> int:
        monkeypatch.setitem(STYLES, "lake", replace(STYLES["lake"], **marking))
        texture = World(builtin_track("lake"), ppm=4.0).colour[0].astype(int)
        r, g, b = texture[..., 0], texture[..., 1], texture[..., 2]
        return int(((r - g > 80) & (b - g > 80)).sum())

    centre = {
        kind: marked_pixels(edge="none", centre_colour=magenta, centre=kind)
        for kind in ("dashed", "solid", "double")
    }
    assert 2.3 < centre["solid"] / centre["dashed"] < 3.7
    assert 1.4 < centre["double"] / centre["solid"] < 2.6
    lines = marked_pixels(edge="lines", edge_colour=magenta, centre_colour=None)
    dashed = marked_pixels(edge="dashed", edge_colour=magenta, centre_colour=None)
    assert 0.2 < dashed / lines < 0.5
