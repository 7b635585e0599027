"""The two-lane world: lane tracks and their files, the map generator and its seed ranges, the kind
of world (camera, steering scale), the expert in its lane, lane interventions in the closed loop,
recordings the loader reads, and the recipe's training flags."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driving.config import (
    BUDGETS,
    CSV_NAME,
    DEFAULT_PREPROCESSING,
    DRIVE_CHECK_SUITES,
    MAX_WHEEL_ANGLE_DEG,
    STEERING_CORRECTION,
    AugmentConfig,
    RunConfig,
)
from driving.data.reader import load_recordings
from driving.evaluation.closed_loop import DriveOptions, drive
from driving.evaluation.registry import RECIPES, SUITES, Recording
from driving.evaluation.seeds import run_config
from driving.sim.__main__ import main
from driving.sim.camera import Camera, ground_grid
from driving.sim.car import WHEELBASE_M, Car
from driving.sim.expert import Expert, ExpertConfig, pure_pursuit
from driving.sim.kinds import CLASSIC, KINDS, TWO_LANE, CameraSpec, kind_for
from driving.sim.lanes import (
    LANE_CORNER_RADIUS_M,
    LANE_HELD_OUT_SEEDS,
    LANE_TRAINING_SEEDS,
    LANE_VALIDATION_SEEDS,
    LANE_WIDTH_M,
    HeldOutSeed,
    check_training_seed,
    lane_track,
)
from driving.sim.recorder import record
from driving.sim.simulator import CAMERA_SPECS, Simulator
from driving.sim.style import LANE_STYLES, STYLES
from driving.sim.track import (
    TrackError,
    _bends,
    builtin_track,
    load_track,
    save_track,
    suite_track,
    track_features,
)
from driving.sim.world import SKY, World

FIRST_HELD_OUT = LANE_HELD_OUT_SEEDS.start


@pytest.fixture(scope="module")
def held_out_map():
    return lane_track(FIRST_HELD_OUT)


# --- track files ---------------------------------------------------------------------------------


def test_a_two_lane_track_round_trips_through_json(tmp_path):
    track = lane_track(3, "lanes-dashed")
    path = save_track(track, tmp_path / "lanes.json")
    saved = json.loads(path.read_text())
    assert saved["lanes"] == 2 and saved["style"] == "lanes-dashed"
    loaded = load_track(path)
    assert (loaded.lanes, loaded.style, loaded.width, loaded.name) == (
        2,
        "lanes-dashed",
        track.width,
        "lanes-3",
    )
    np.testing.assert_allclose(loaded.points, track.points, atol=0.01)
    assert loaded.lane_offset == pytest.approx(track.width / 4)
    # Without a style, a two-lane file takes the first lane style; one-lane files stay as they were.
    del saved["style"]
    (tmp_path / "bare.json").write_text(json.dumps(saved))
    assert load_track(tmp_path / "bare.json").style == LANE_STYLES[0]
    one_lane = json.loads(save_track(builtin_track("lake"), tmp_path / "lake.json").read_text())
    assert "lanes" not in one_lane and load_track(tmp_path / "lake.json").lanes == 1


@pytest.mark.parametrize(
    "lanes, width, message",
    [
        (3, 7.0, "'lanes' must be 1 or 2, got 3"),
        ("2", 7.0, "'lanes' must be 1 or 2, got '2'"),
        (True, 7.0, "'lanes' must be 1 or 2, got True"),
        (2.0, 7.0, "'lanes' must be 1 or 2, got 2.0"),
        (None, 7.0, "'lanes' must be 1 or 2, got None"),
        (2, 4.0, "'width' of a two-lane road must be at least 5 metres"),
    ],
)
def test_bad_lanes_end_in_one_line_naming_the_file_and_field(tmp_path, lanes, width, message):
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    spec = {
        "name": "ring",
        "width": width,
        "lanes": lanes,
        "points": np.column_stack([40 * np.cos(a), 30 * np.sin(a)]).tolist(),
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(TrackError) as caught:
        load_track(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


# --- maps and their seeds ------------------------------------------------------------------------


def test_lane_maps_are_valid_tight_deterministic_and_turn_both_ways():
    radii = []
    for seed in (*range(6), FIRST_HELD_OUT, FIRST_HELD_OUT + 1):
        track = lane_track(seed)
        assert track.lanes == 2 and track.name == f"lanes-{seed}"
        assert LANE_WIDTH_M[0] <= track.width <= LANE_WIDTH_M[1]
        features = track_features(track)
        radii.append(features["min_radius_m"])
        assert features["bends"] >= 3
        assert track.curvature.min() < -1 / 30 and track.curvature.max() > 1 / 30  # tight bends both ways
    # Every corner's arc stays within the drawn radii (the B-spline rounds them a little tighter).
    assert 0.9 * LANE_CORNER_RADIUS_M[0] < min(radii) and max(radii) < LANE_CORNER_RADIUS_M[1]

    # More of the road in tight corners than on a suite track (whose one hairpin is tighter still,
    # a turn the two-lane car could not take in its inner lane).
    def tight_share(track):
        return np.mean(np.abs(track.curvature) > 1 / 25)

    lanes = np.mean([tight_share(lane_track(seed)) for seed in range(4)])
    suites = np.mean([tight_share(suite_track(seed, "lake")) for seed in range(4)])
    assert lanes > 1.3 * suites
    np.testing.assert_array_equal(lane_track(4).points, lane_track(4).points)
    assert lane_track(4).points.shape != lane_track(5).points.shape or not np.allclose(
        lane_track(4).points, lane_track(5).points
    )


def test_training_and_held_out_seeds_are_disjoint_and_suites_use_held_out_maps():
    assert not set(LANE_TRAINING_SEEDS) & set(LANE_HELD_OUT_SEEDS)
    suites = [SUITES["two-lane"], SUITES["two-lane-quick"]]
    assert len(suites[0].drives) == 12 and 3 <= len(suites[1].drives) <= 4
    seeds = [d.track_seed for s in suites for d in s.drives]
    assert len(set(seeds)) == len(seeds) and all(s in LANE_HELD_OUT_SEEDS for s in seeds)
    for suite in suites:
        assert suite.version == 1 and {d.world for d in suite.drives} == {TWO_LANE.name}
        assert {d.style for d in suite.drives} == set(LANE_STYLES)
    assert suites[1].drives[0].track().lanes == 2
    for recipe in RECIPES.values():
        for spec in recipe.recordings:
            assert spec.track != TWO_LANE.name or spec.seed in LANE_TRAINING_SEEDS
    with pytest.raises(HeldOutSeed, match=r"^two-lane recording seed 5000: .*held out") as caught:
        Recording(TWO_LANE.name, 1.0, FIRST_HELD_OUT).make_track()
    assert "\n" not in str(caught.value)
    assert check_training_seed(LANE_TRAINING_SEEDS.stop - 1) == LANE_TRAINING_SEEDS.stop - 1


def test_the_two_lane_validation_maps_are_held_out_its_own_and_hold_corners(tmp_path, capsys):
    suite = SUITES["two-lane-validation"]
    seeds = [d.track_seed for d in suite.drives]
    assert suite.version == 1 and len(seeds) == 3 and {d.laps for d in suite.drives} == {0.5}
    assert {d.world for d in suite.drives} == {TWO_LANE.name} and {d.look for d in suite.drives} == {None}
    assert all(s in LANE_VALIDATION_SEEDS for s in seeds)
    assert set(LANE_VALIDATION_SEEDS) <= set(LANE_HELD_OUT_SEEDS)
    # No other suite drives a map of that range (or any of these, in any world).
    for other in SUITES.values():
        if other is not suite:
            assert not {d.track_seed for d in other.drives} & set(seeds), other.name
            lane_seeds = {d.track_seed for d in other.drives if d.world == TWO_LANE.name}
            assert not lane_seeds & set(LANE_VALIDATION_SEEDS), other.name
    # Every half lap holds at least two bends (counting one the start lies in).
    for half_lap in suite.drives:
        track = half_lap.track()
        n = len(track.points)
        assert track.lanes == 2 and len([1 for a, b, _ in _bends(track) if a < n / 2 or b > n]) >= 2
    # No recording may use them: the recipes' check and the recorder's command line both refuse.
    for seed in (seeds[0], LANE_VALIDATION_SEEDS.stop - 1):
        with pytest.raises(HeldOutSeed, match=rf"^two-lane recording seed {seed}: .*held out"):
            Recording(TWO_LANE.name, 1.0, seed).make_track()
    out = tmp_path / "rec"
    assert main(["record", "--track", "two-lane", "--map-seed", str(seeds[0]), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --map-seed {seeds[0]}: ") and "\n" not in err and not out.exists()


def test_every_drive_check_suite_is_a_suite():
    assert DRIVE_CHECK_SUITES[0] == "validation" == RunConfig(data=[]).drive_check_suite
    for name in DRIVE_CHECK_SUITES:
        assert SUITES[name].name == name


def test_the_recorder_command_refuses_a_held_out_map_in_one_line(tmp_path, capsys):
    out = tmp_path / "rec"
    argv = ["record", "--track", "two-lane", "--map-seed", str(FIRST_HELD_OUT), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --map-seed {FIRST_HELD_OUT}: ") and "held out" in err and "\n" not in err
    assert not out.exists()
    assert main(["record", "--track", "lake", "--map-seed", "3", "--out", str(out)]) == 2
    assert "for --track two-lane" in capsys.readouterr().err and not out.exists()


def test_the_recorder_library_refuses_a_held_out_map_but_not_a_namesake(tmp_path):
    out = tmp_path / "rec"
    for seed in (FIRST_HELD_OUT, LANE_VALIDATION_SEEDS.start):
        with pytest.raises(
            HeldOutSeed, match=rf"^track lanes-{seed}: two-lane map {seed}: .*held out"
        ) as caught:
            record(lane_track(seed, LANE_STYLES[1]), out, laps=0.05, progress=False)
        assert "\n" not in str(caught.value) and not out.exists()
    # A road of one's own that only shares a held-out map's name is recorded.
    namesake = replace(lane_track(LANE_TRAINING_SEEDS.start), name=f"lanes-{FIRST_HELD_OUT}")
    result = record(namesake, out, laps=0.05, progress=False, topdown=False)
    assert result.samples > 0 and (out / "driving_log.csv").stat().st_size > 0


# --- the kind of world ---------------------------------------------------------------------------


def test_classic_is_todays_world():
    assert kind_for(builtin_track("lake")) is CLASSIC and kind_for(lane_track(1)) is TWO_LANE
    assert set(KINDS) == {"classic", "two-lane"}
    assert {
        "center": CameraSpec(right_m=0.0),
        "left": CameraSpec(right_m=-0.8),
        "right": CameraSpec(right_m=0.8),
    } == CAMERA_SPECS
    assert CLASSIC.max_wheel_deg == MAX_WHEEL_ANGLE_DEG == 25.0 and Car().max_wheel_deg == 25.0
    assert CLASSIC.steering_correction() == pytest.approx(STEERING_CORRECTION, abs=0.001)
    assert CLASSIC.shift_steering_per_px() == AugmentConfig().shift_steering_per_px == 0.004
    assert CLASSIC.crop_rows == (DEFAULT_PREPROCESSING.crop_top, DEFAULT_PREPROCESSING.crop_bottom)
    sim = Simulator(builtin_track("lake"), render=False)
    assert sim.kind is CLASSIC and sim.car.max_wheel_deg == 25.0 and sim.lane_cte == sim.location.cte


@pytest.mark.parametrize("kind", [CLASSIC, TWO_LANE], ids=lambda k: k.name)
def test_the_camera_puts_the_horizon_and_the_crop_where_the_kind_says(kind, held_out_map):
    spec = kind.camera
    _, dist = ground_grid(spec)
    horizon = int(spec.horizon_row)
    assert np.isinf(dist[: horizon - 1]).all() and np.isfinite(dist[horizon + 1 :]).all()
    # A rendered frame on a straight: sky above the horizon row, ground below it.
    track = held_out_map if kind.lanes == 2 else builtin_track("lake")
    world = World(track, ppm=4.0)
    camera = Camera(world, spec)
    s = float(np.argmin(np.abs(track.curvature))) * track.spacing  # the straightest spot
    x, y = track.point_at(s, track.lane_offset)
    labels = camera.render_labels(float(x), float(y), track.heading_at(s))
    centre = labels[:, 160]
    assert (centre[:horizon] == SKY).all() and (centre[horizon + 1 : kind.crop_rows[1]] != SKY).all()
    # The crop keeps the road from 16-21 m ahead down to above the bonnet: no sky, no bonnet.
    top, bottom = kind.crop_rows
    grid, _ = ground_grid(spec)
    assert 15.5 < grid[top, 160, 0] < 21.0 and bottom <= camera.bonnet_top
    if kind is TWO_LANE:  # the classic crop would see no further than about 7 m in this camera
        assert grid[CLASSIC.crop_rows[0], 160, 0] < 7.5
        assert spec.fov_deg != CLASSIC.camera.fov_deg and spec.height_m != CLASSIC.camera.height_m


def test_the_two_lane_car_and_side_cameras_have_their_own_steering_scale():
    """Steering 1.0 is 20 degrees here; the side-camera correction and the shift's steering follow
    from the camera offset, the lookahead and that scale, and the recipe trains with them."""
    assert TWO_LANE.max_wheel_deg < CLASSIC.max_wheel_deg
    # Full lock: a circle of radius L / tan(20 degrees) (about the centre; slip angle aside).
    car = Car(speed=5.0, steering=0.0, max_wheel_deg=TWO_LANE.max_wheel_deg)
    for _ in range(60):
        car.step(1.0, 0.0, 0.0, 1 / 60)
    turned = -car.heading  # 5 m/s for 1 s, full right
    beta = math.atan(0.5 * math.tan(math.radians(20)))
    assert turned == pytest.approx(5.0 * math.cos(beta) * math.tan(math.radians(20)) / WHEELBASE_M, rel=0.05)
    # Pure pursuit from a car side_camera_m left of the line reproduces the kind's correction.
    d, look = TWO_LANE.side_camera_m, TWO_LANE.correction_lookahead_m
    car = Car(x=0.0, y=d, heading=0.0, max_wheel_deg=TWO_LANE.max_wheel_deg)
    target = np.array([-WHEELBASE_M / 2 + math.sqrt(look**2 - d**2), 0.0])
    assert pure_pursuit(car, target) == pytest.approx(TWO_LANE.steering_correction(), abs=0.01)
    assert TWO_LANE.steering_correction() == pytest.approx(0.193, abs=0.001)
    assert TWO_LANE.shift_steering_per_px() == pytest.approx(0.00643, abs=1e-5)
    augment = RECIPES["two-lane"].augment
    assert augment.steering_correction == round(TWO_LANE.steering_correction(), 3)
    assert augment.shift_steering_per_px == round(TWO_LANE.shift_steering_per_px(), 5)
    specs = TWO_LANE.camera_specs()
    assert specs["right"].right_m - specs["left"].right_m == pytest.approx(2 * d)


# --- the expert and interventions ----------------------------------------------------------------


def test_the_expert_keeps_its_lane_over_a_lap_of_a_held_out_map(held_out_map):
    track = held_out_map
    sim = Simulator(track, seed=3, render=False)
    expert = Expert(track, seed=3)
    lane_cte, steering, speed, curvature = [], [], [], []
    while sim.laps < 1:
        st, th, br = expert.act(sim.car, sim.location.s, 1 / 15)
        sim.step(st, th, br, 1 / 15)
        assert not sim.off_lane
        lane_cte.append(sim.lane_cte)
        steering.append(st)
        speed.append(sim.car.speed)
        curvature.append(abs(track.curvature[sim.location.index]))
    lane_cte, steering = np.abs(lane_cte), np.abs(steering)
    assert lane_cte.max() < 0.8 * track.lane_half_width  # drifts and recoveries stay inside the lane
    assert lane_cte.max() > 0.3  # ...and there are some: the recording teaches recoveries
    assert 0.4 < steering.max() < 1.0  # tight corners need large steering, never full lock
    tight = np.array(curvature) > 1 / 20
    assert np.mean(np.array(speed)[tight]) < 7.0 < ExpertConfig().cruise_mph * 0.44704  # slows in corners
    assert np.mean(speed) > 4.0


def test_another_lane_or_off_the_road_is_an_intervention(held_out_map):
    track = held_out_map
    sim = Simulator(track, render=False)
    sim.reset(s=30.0)
    assert not sim.off_lane and abs(sim.lane_cte) < 1e-6
    sim.reset(s=30.0, offset=-2 * track.lane_offset)  # the other lane's centre
    assert sim.off_lane and not sim.off_road
    sim.reset(s=30.0, offset=track.lane_half_width + 0.3)  # beyond the road edge
    assert sim.off_lane and sim.off_road
    one_lane = Simulator(replace(track, lanes=1), render=False)
    one_lane.reset(s=30.0, offset=-track.lane_offset)  # where the other lane's centre was
    assert not one_lane.off_lane  # on one lane the whole road is the car's


class _HardLeft:
    """A pilot that steers left and accelerates, whatever it sees."""

    def connect(self, jpeg):
        return "steer", {"steering_angle": -0.5, "throttle": 1.0}

    def send(self, steering, throttle, speed, jpeg):
        return "steer", {"steering_angle": -0.5, "throttle": 1.0}

    def close(self):
        pass


def test_the_closed_loop_counts_leaving_the_lane_and_puts_the_car_back_in_it(held_out_map):
    options = DriveOptions(laps=0.5, max_seconds=8.0, progress=False)
    metrics, trace = drive(held_out_map, _HardLeft(), options)
    assert metrics.interventions >= 1
    half = held_out_map.lane_half_width
    for event in trace.interventions:
        i = trace.time_s.index(event.time_s)
        assert trace.cte[i] < -half  # left its lane across the centre line
        assert abs(trace.cte[i + 1]) < 0.5  # put back on the lane's centre
    assert metrics.max_abs_cte_m < 2 * half  # measured from the lane's centre


# --- recordings and training ---------------------------------------------------------------------


def test_two_lane_recordings_load_with_the_right_steering_and_are_deterministic(tmp_path):
    track = lane_track(2)
    a = record(track, tmp_path / "a", laps=0.08, seed=1, progress=False, topdown=False)
    b = record(track, tmp_path / "b", laps=0.08, seed=1, progress=False, topdown=False)
    loaded = load_recordings([a.folder], strict=True)
    assert len(loaded.frames) == a.samples > 10
    steering = loaded.frames["steering"].to_numpy()
    assert np.abs(steering).max() <= 1.0
    assert np.abs(steering).max() > 0.3  # the map starts in a tight corner: large steering
    assert a.off_road_samples == 0 and a.max_abs_cte < track.lane_half_width
    text = (a.folder / CSV_NAME).read_text().replace(str(a.folder), "")
    assert text == (b.folder / CSV_NAME).read_text().replace(str(b.folder), "")
    for image in sorted((a.folder / "IMG").iterdir()):
        assert image.read_bytes() == (b.folder / "IMG" / image.name).read_bytes()


def test_the_two_lane_recipe_trains_with_the_flags_its_world_needs(tmp_path):
    recipe = RECIPES["two-lane"]
    assert recipe.augment.flip is False  # a mirror image drives on the left
    assert (recipe.preprocessing.crop_top, recipe.preprocessing.crop_bottom) == TWO_LANE.crop_rows
    # Its checkpoints are chosen by driving its own world's held-out maps, not the classic tracks.
    assert (recipe.drive_check_steps, recipe.drive_check_suite) == (120, "two-lane-validation")
    assert all(spec.track == TWO_LANE.name and spec.vary for spec in recipe.recordings)
    config = run_config(recipe, ["effnet"], 0, BUDGETS["cpu"], [tmp_path], tmp_path / "run")
    command = config.command()
    for flag in (
        "--no-flip",
        "--crop-top 54",
        "--steering-correction 0.193",
        "--shift-steering 0.00643",
        "--bn-refresh 20",
        "--drive-check-steps 120",
        "--drive-check-suite two-lane-validation",
    ):
        assert flag in command
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))).preprocessing.crop_top == 54
    assert "robust" in RECIPES and RECIPES["robust"].preprocessing == DEFAULT_PREPROCESSING
    # Only the two-lane and looks recipes refresh BatchNorm, and only two-lane drives another suite
    # in its drive check: every other recipe's runs are as they were.
    refreshing = [name for name, r in RECIPES.items() if r.bn_refresh_batches]
    assert refreshing == ["looks", "looks-only", "looks-only-fixed", "looks-faint", "two-lane"]
    fixed = {name: r.patience for name, r in RECIPES.items() if r.patience is not None}
    assert fixed == {"looks-only-fixed": 0, "looks-faint": 0}  # the others keep train.py's early stopping
    changed = {n: r.drive_check_suite for n, r in RECIPES.items() if r.drive_check_suite != "validation"}
    assert changed == {"two-lane": "two-lane-validation"}
    assert RECIPES["robust"].drive_check_steps == 120
    assert set(STYLES) >= set(LANE_STYLES)
    assert Path(recipe.recordings[0].folder_name).name == "two-lane0-2laps-seed0-varied"
