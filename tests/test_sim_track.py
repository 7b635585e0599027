"""Tracks, car physics and the expert driver (physics only, no rendering)."""

import json
import math

import numpy as np
import pytest

from driving.config import MAX_WHEEL_ANGLE_DEG, SAMPLE_RATE_HZ, STEERING_CORRECTION
from driving.sim.car import MAX_SPEED_MPH, Car
from driving.sim.expert import (
    LOOKAHEAD_FOR_CORRECTION_M,
    SIDE_CAMERA_OFFSET_M,
    Expert,
    ExpertConfig,
    implied_correction,
    pure_pursuit,
)
from driving.sim.simulator import Simulator
from driving.sim.track import (
    BUILTIN,
    TrackError,
    builtin_track,
    get_track,
    load_track,
    random_track,
    save_track,
)


def write_json(path, spec):
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_tracks_mix_straights_and_bends(name):
    t = builtin_track(name)
    radius = 1 / np.abs(t.curvature)
    assert 500 < t.length < 1000
    assert (radius > 200).mean() > 0.05  # straight stretches (35 m or more)
    assert radius.min() < 40  # and real bends
    # S-bends: the turn direction changes several times around the loop.
    sign = np.sign(t.curvature[np.abs(t.curvature) > 0.01])
    assert (np.diff(sign) != 0).sum() >= 2


def test_tracks_differ_in_style_and_hairpin():
    assert len({builtin_track(n).style for n in BUILTIN}) == 3
    assert min(1 / np.abs(builtin_track(n).curvature).max() for n in BUILTIN) < 10  # a hairpin


def test_random_track_is_deterministic_and_valid():
    a, b, c = random_track(5), random_track(5), random_track(6)
    np.testing.assert_array_equal(a.points, b.points)
    assert a.points.shape != c.points.shape or not np.allclose(a.points, c.points)
    assert get_track("random", seed=5).name == "random-5"


def test_json_round_trip(tmp_path):
    t = random_track(2)
    save_track(t, tmp_path / "t.json")
    back = load_track(tmp_path / "t.json")
    assert back.style == t.style and back.width == t.width
    np.testing.assert_allclose(back.points, t.points, atol=0.01)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "x", "width": 8, "points": [[0, 0], [100, 0], [50, 80]]}, "at least 4 points"),
        (
            {"name": "x", "width": 8, "points": [[0, 0], [100, 0], [float("nan"), 80], [0, 80]]},
            "point 2 is not finite",
        ),
        (
            {"name": "x", "width": 8, "points": [[0, 0], [100, 0]] * 3},
            "consecutive points coincide|overlaps|too tight",
        ),
        # a figure eight: the road crosses itself
        (
            {
                "name": "x",
                "width": 8,
                "points": [[0, 0], [60, 60], [120, 0], [60, -60], [0, 0.5], [-60, 60], [-120, 0], [-60, -60]],
            },
            "overlaps itself",
        ),
        ({"name": "x", "width": 8, "points": [[0, 0], [10, 0], [10, 10], [0, 10]]}, "too tight"),
        ({"name": "x", "width": -3, "points": [[0, 0], [100, 0], [100, 100], [0, 100]]}, "'width'"),
        ({"name": "x", "points": [[0, 0], [100, 0], [100, 100], [0, 100]]}, "missing field"),
        (
            {"name": "x", "width": 8, "points": [[0, 0], [100, 0], [100, 100], [0, 100]], "style": "moon"},
            "'style'",
        ),
    ],
)
def test_bad_track_files_give_clear_errors(tmp_path, spec, message):
    path = write_json(tmp_path / "bad.json", spec)
    with pytest.raises(TrackError, match=message) as err:
        load_track(path)
    assert "bad.json" in str(err.value)


def test_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{nope")
    with pytest.raises(TrackError, match="broken.json: not valid JSON"):
        load_track(path)


def test_cross_track_error_is_positive_right_of_the_line():
    t = builtin_track("lake")
    s = 40.0  # on the first straight, heading east
    assert abs(t.heading_at(s)) < 0.1
    right = t.locate(t.point_at(s, 1.5))
    left = t.locate(t.point_at(s, -1.5))
    assert right.cte == pytest.approx(1.5, abs=0.05) and left.cte == pytest.approx(-1.5, abs=0.05)


def test_car_steers_right_for_positive_steering_and_respects_limits():
    car = Car(speed=10.0)
    for _ in range(30):
        car.step(0.5, 0.3, 0.0, 0.05)
    assert car.heading < 0 and car.y < 0  # facing east, turned right = south
    # Turning radius matches the bicycle model: R = L / tan(wheel angle) at the rear axle.
    assert abs(car.heading) == pytest.approx(
        10.0 * 1.5 * math.tan(math.radians(0.5 * MAX_WHEEL_ANGLE_DEG)) / 2.6, rel=0.2
    )
    fast = Car()
    for _ in range(600):
        fast.step(0.0, 1.0, 0.0, 0.1)
    assert 25 < fast.mph <= MAX_SPEED_MPH
    for _ in range(50):
        fast.step(0.0, -1.0, 0.0, 0.1)  # negative throttle brakes
    assert fast.mph == 0.0


@pytest.mark.parametrize("name", list(BUILTIN))
def test_expert_completes_a_lap_without_leaving_the_road(name):
    track = builtin_track(name)
    sim = Simulator(track, render=False)
    expert = Expert(track, seed=1)
    dt = 1 / SAMPLE_RATE_HZ
    steering, ctes = [], []
    while sim.laps < 1.0:
        action = expert.act(sim.car, sim.location.s, dt)
        sim.step(*action, dt=dt)
        assert not sim.off_road, f"{name}: left the road at {sim.progress:.0f} m"
        steering.append(action[0])
        ctes.append(sim.location.cte)
        assert len(steering) < 4000, "lap not finished in time"
    steering, ctes = np.array(steering), np.abs(ctes)
    assert np.abs(np.diff(steering)).max() <= ExpertConfig.steer_rate * dt + 1e-3  # smooth hands
    assert ctes.max() > 1.0  # it drifted on purpose, so the recording has recoveries
    assert ctes.max() < track.width / 2 - 0.8


def test_side_camera_offset_implies_the_documented_correction():
    assert implied_correction() == pytest.approx(STEERING_CORRECTION, abs=0.005)
    # A car SIDE_CAMERA_OFFSET_M left of a straight line, aiming at the line one lookahead ahead
    # of its rear axle, steers right (positive) by that correction.
    car = Car(x=0.0, y=SIDE_CAMERA_OFFSET_M, heading=0.0)
    target = np.array([-1.3 + math.sqrt(LOOKAHEAD_FOR_CORRECTION_M**2 - SIDE_CAMERA_OFFSET_M**2), 0.0])
    assert pure_pursuit(car, target) == pytest.approx(STEERING_CORRECTION, abs=0.01)
    mirrored = Car(x=0.0, y=-SIDE_CAMERA_OFFSET_M, heading=0.0)
    assert pure_pursuit(mirrored, target) == pytest.approx(-STEERING_CORRECTION, abs=0.01)
