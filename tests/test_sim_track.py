"""Tracks, car physics and the expert driver (physics only, no rendering)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

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
    MAX_FILE_BYTES,
    MAX_POINTS,
    TrackError,
    builtin_track,
    get_track,
    load_track,
    make_track,
    random_track,
    save_track,
    suite_track,
    track_features,
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
        (  # NaN is no JSON number: refused as the file is parsed
            {"name": "x", "width": 8, "points": [[0, 0], [100, 0], [float("nan"), 80], [0, 80]]},
            "not valid JSON .*NaN is not a number JSON allows",
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


# --- Hostile track files: one TrackError line naming the file and the field -----------------------
SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100]]


def _spec(**fields):
    return json.dumps({"name": "x", "width": 8, "points": SQUARE, **fields})


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes(range(256)) * 4, "not UTF-8"),  # binary
        ('{"name": "caf\xe9", "width": 8}'.encode("latin-1"), "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than 8 levels deep"),
        (('{"name": "x", "width": 8, "points": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(), "nested"),
        (b" " * (MAX_FILE_BYTES + 1), "more than the 1,000,000 a track file may hold"),
        (('{"name": "x", "width": 8, "points": [[' + "9" * 5000 + ", 0]]}").encode(), "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (_spec(name=5).encode(), "'name'"),
        (_spec(name=["lake"]).encode(), "'name'"),
        (_spec(name="two\nlines").encode(), "'name'"),
        (_spec(name="n" * 1000).encode(), "'name'"),
        (_spec(width="8").encode(), "'width'"),
        (_spec(width=True).encode(), "'width'"),
        (_spec(style=["lake"]).encode(), "'style'"),
        (_spec(style={"a": 1}).encode(), "'style'"),
        (_spec(points="abcd").encode(), "'points'"),
        (_spec(points={"a": 1}).encode(), "'points'"),
        (_spec(points=[[i, i % 7] for i in range(MAX_POINTS + 1)]).encode(), "more than 1000"),
        (_spec(points=[["0", "0"], *SQUARE[1:]]).encode(), "point 0 must be"),
        (_spec(points=[[True, False], *SQUARE[1:]]).encode(), "point 0 must be"),
        (_spec(points=[[0, 0, 0], *SQUARE[1:]]).encode(), "point 0 must be"),
        (_spec(points=[[[0], [0]], *SQUARE[1:]]).encode(), "point 0 must be"),
        (_spec(points=[[0, 0], [1e300, 0], [1e300, 1e300], [0, 1e300]]).encode(), "point 1 .* beyond"),
        (
            (
                '{"name": "x", "width": 8, "points": [[0, 0], [' + "9" * 400 + ", 0], [9, 9], [0, 9]]}"
            ).encode(),
            "not finite",
        ),
        (
            (b'{"name": "x", "width": 8, "points": [[0, 0], [1e999, 0], [9, 9], [0, 9]]}'),
            "not finite",
        ),
        (_spec(points=[[0, 0], [1e-300, 0], [1e-300, 1e-300], [0, 1e-300]]).encode(), "coincide"),
        (_spec(points=[[0, 0], [1e-3, 0], [1e-3, 1e-3], [0, 1e-3]]).encode(), "too tight"),
        (_spec(width=3, points=[[0, 0], [6, 0], [6, 6], [0, 6]]).encode(), "only .* m long"),
        (_spec(points=[[0, 0], [3000, 0], [3000, 3000], [0, 3000]]).encode(), "more than 10000 m of road"),
        (_spec(points=[[0, 0], [2000, 0], [2000, 200], [0, 200]]).encode(), "spans .* more than 1000 m"),
    ],
)
def test_hostile_track_files_end_in_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TrackError, match=message) as err:
        load_track(path)
    text = str(err.value)
    assert text.startswith(str(path)) and "\n" not in text and len(text) < 300


def test_paths_that_are_not_track_files(tmp_path):
    folder = tmp_path / "folder.json"
    folder.mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # reading it would block for ever
    odd = tmp_path / "two\nlines.json"
    odd.write_text("nope")
    for path, message in [
        (folder, "not a regular file"),
        (fifo, "not a regular file"),
        (tmp_path / "missing.json", "no such file"),
        (odd, r"two\\nlines.json: not valid JSON"),
    ]:
        with pytest.raises(TrackError, match=message) as err:
            load_track(path)
        assert "\n" not in str(err.value)
    with pytest.raises(TrackError, match="unknown track"):
        get_track("x" * 5000)  # too long a name for the file system: not a file


@pytest.mark.parametrize(
    "width, message",
    [
        ("NaN", "not valid JSON .*NaN is not a number JSON allows"),
        ("Infinity", "not valid JSON .*Infinity is not a number JSON allows"),
        ("-Infinity", "not valid JSON .*-Infinity is not a number JSON allows"),
        ("1e999", "'width' must be a road width from 3 to 30 metres, got inf"),
        ("-1e999", "'width' .* got -inf"),
        ("-8", "'width' .* got -8"),
        ("0", "'width' .* got 0"),
        ("2.99", "'width' .* got 2.99"),
        ("30.01", "'width' .* got 30.01"),
        ("null", "'width' .* got None"),
        ("[8]", "'width' .* got \\[8\\]"),
        ('{"m": 8}', "'width'"),
    ],
)
def test_widths_that_are_not_a_road_width(tmp_path, width, message):
    path = tmp_path / "w.json"
    path.write_text(f'{{"name": "x", "width": {width}, "points": {json.dumps(SQUARE)}}}')
    with pytest.raises(TrackError, match=message) as err:
        load_track(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_nan_from_python_is_named_by_its_field():
    """Built in code rather than read from a file, NaN reaches the field checks: named there."""
    with pytest.raises(TrackError, match="point 2 is not finite"):
        make_track("x", 8, [[0, 0], [100, 0], [math.nan, 80], [0, 80]])
    for width in (math.nan, math.inf, -8.0):
        with pytest.raises(TrackError, match="'width'"):
            make_track("x", width, SQUARE)


def test_depth_is_bounded_even_in_fields_a_track_ignores(tmp_path):
    def nested(depth: int) -> str:  # the track object is level 1, "extra" holds the rest
        return _spec()[:-1] + ', "extra": ' + "[" * (depth - 1) + "0" + "]" * (depth - 1) + "}"

    path = tmp_path / "deep.json"
    path.write_text(nested(8))
    assert load_track(path).name == "x"  # 8 levels: read, the unknown field ignored
    path.write_text(nested(9))
    with pytest.raises(TrackError, match="deep.json: nested more than 8 levels deep"):
        load_track(path)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:  # sparse: a 1 GB file that takes no disk
        f.truncate(1 << 30)
    with pytest.raises(TrackError, match=r"huge.json: 1,073,741,824 bytes, more than the 1,000,000"):
        load_track(path)


def test_devices_and_links_to_fifos_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    for path in (link, Path("/dev/zero"), Path("/dev/null")):  # zero would never end, null is empty
        with pytest.raises(TrackError, match=f"{path}: not a regular file"):
            load_track(path)


def test_the_command_line_refuses_a_fifo_and_a_deep_file_in_one_line(tmp_path):
    """Real processes: `sim record --track` with a FIFO (no writer: reading it would block for ever)
    and with a deeply nested file; one line naming the file, exit 2, no recording folder made."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    for track, message in ((fifo, "not a regular file"), (deep, "nested more than 8 levels deep")):
        out = tmp_path / "rec"
        done = subprocess.run(
            [sys.executable, "-m", "driving.sim", "record", "--track", str(track), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: {track}: {message}") and done.stderr.count("\n") == 1
        assert not out.exists()


def test_a_byte_order_mark_is_harmless(tmp_path):
    path = tmp_path / "bom.json"
    path.write_text("\ufeff" + _spec(), encoding="utf-8")
    assert load_track(path).name == "x"


def test_saving_a_track_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    path.write_text("old")
    monkeypatch.setattr(json, "dumps", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_track(builtin_track("lake"), path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.json"]


# --- Features, and suite tracks ------------------------------------------------------------------
def test_features_of_the_built_in_tracks():
    lake, jungle, desert = (track_features(builtin_track(n)) for n in ("lake", "jungle", "desert"))
    assert jungle["hairpins"] == 1 and jungle["min_radius_m"] < 10  # the documented hairpin
    assert lake["hairpins"] == desert["hairpins"] == 0  # sweepers, however long, are not hairpins
    assert lake["s_bends"] >= 1 and jungle["s_bends"] >= 1 and desert["s_bends"] == 0
    assert lake["length_m"] == pytest.approx(builtin_track("lake").length)
    json.dumps(lake)  # fit for a JSON report


def test_features_of_simple_shapes():
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    circle = make_track("circle", 8, np.column_stack([80 * np.cos(a), 80 * np.sin(a)]))
    assert track_features(circle) | {"length_m": 0} == {
        "length_m": 0,
        "min_radius_m": pytest.approx(70, abs=3),  # the spline runs inside its control points
        "bends": 0,  # a radius of 80 m is no bend
        "hairpins": 0,
        "s_bends": 0,
    }
    small = make_track("small", 8, np.column_stack([20 * np.cos(a), 20 * np.sin(a)]))
    features = track_features(small)  # one endless left bend, turning 150 degrees every 50 m
    assert features["bends"] == 1 and features["hairpins"] == 1 and features["s_bends"] == 0


def test_suite_tracks_hold_a_hairpin_and_an_s_bend_and_are_deterministic():
    widths = []
    for seed in range(30):
        track = suite_track(seed, "jungle")
        features = track_features(track)
        assert features["hairpins"] >= 1 and features["s_bends"] >= 1, seed
        assert track.name == f"suite-{seed}" and track.style == "jungle"
        assert track.validate() is track
        assert np.ptp(track.points, axis=0).max() < 300  # a world at full resolution
        widths.append(track.width)
    assert 6.5 <= min(widths) < 7.5 and 9 < max(widths) <= 10.0
    a, b = suite_track(7, "lake"), suite_track(7, "desert", width=8.0)
    np.testing.assert_array_equal(a.points, suite_track(7, "lake").points)
    assert b.width == 8.0 and b.style == "desert"
    assert not np.array_equal(a.points, suite_track(8, "lake").points)


@pytest.mark.parametrize("style, width, message", [("moon", None, "'style'"), ("lake", 20.0, "'width'")])
def test_suite_track_refuses_what_cannot_hold_a_hairpin(style, width, message):
    with pytest.raises(TrackError, match=message):
        suite_track(0, style, width)


def test_an_overlap_far_along_a_long_track_is_found():
    """The overlap check compares samples in blocks; a crossing far from the start is found too."""
    eight = [[120, 0], [60, -60], [0, 0.5], [-60, 60], [-120, 0], [-60, -60], [0, 0], [60, 60]]
    with pytest.raises(TrackError, match=r"overlaps itself: \(-?\d"):
        make_track("eight", 8, (np.array(eight) * 4).tolist())
