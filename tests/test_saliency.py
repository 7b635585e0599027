"""Saliency maps on real tiny Keras models: their size and range, that they fall where the
steering looks, that VisualBackProp adds no pattern of its own, the faithfulness check (hiding
the salient pixels against hiding random ones), the simulator's label render against its road
mask, the score, and the commands that draw them (driving.saliency, driving.video --saliency, the
report's section)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
from keras import layers

from driving.config import CROP_BOTTOM, CROP_TOP, DEFAULT_PREPROCESSING, INPUT_SHAPE
from driving.modelio import ModelInfo, save_keras
from driving.models import MODELS, build
from driving.report import render, stage
from driving.saliency import METHOD_NAMES, faithfulness, methods
from driving.saliency.cli import main as saliency_main
from driving.saliency.frames import Probe, track_probes
from driving.sim.simulator import Simulator
from driving.sim.track import builtin_track
from driving.sim.world import CAR, EDGE, ROAD, SKY, World
from driving.video.__main__ import main as video_main
from driving.video.writer import count_frames
from tests.conftest import write_recording


def tiny(input_shape=(32, 48, 3), crop=((0, 0), (0, 0)), seed: int = 0) -> keras.Model:
    """A small steering CNN with the layer kinds the registered models use (a ReLU inside a conv,
    LeakyReLU layers, (2, 1) pooling, a (1, 2) stride, a depthwise conv with 'valid' padding),
    seeing only the `crop` of its input."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = layers.Cropping2D(crop)(inputs)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D((2, 1))(x)
    x = layers.Conv2D(6, (2, 1), strides=(1, 2), padding="same")(x)
    x = layers.LeakyReLU(negative_slope=0.3)(x)
    x = layers.DepthwiseConv2D(3)(x)
    x = layers.ReLU()(x)
    outputs = layers.Dense(1)(layers.Flatten()(x))
    return keras.Model(inputs, outputs)


def frames(n: int, shape=(32, 48, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def lake():
    return Simulator(builtin_track("lake"), seed=0)


# --- the methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_maps_have_the_inputs_size_and_lie_in_0_1(method):
    maps = methods.METHODS[method](tiny())(frames(3))
    assert maps.shape == (3, 32, 48) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)


@pytest.mark.parametrize("name", list(MODELS))
def test_visual_backprop_works_for_every_registered_model(name):
    model = build(name, input_shape=(32, 32, 3))  # the smallest input five halvings take
    maps = methods.VisualBackProp(model)(frames(2, (32, 32, 3)))
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0
    keras.backend.clear_session()


def test_a_model_that_branches_is_refused_and_one_that_stacks_its_input_is_read():
    inputs = keras.Input((32, 32, 3))
    conv = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    flat = layers.Flatten()(layers.Add()([inputs, conv]))  # a skip connection: not a chain
    with pytest.raises(ValueError, match="layer add is not fed by the layer before it"):
        methods.VisualBackProp(keras.Model(inputs, layers.Dense(1)(flat)))
    stacked = layers.Concatenate()([inputs, layers.Conv2D(3, 1)(inputs)])  # the frame beside a map of it
    conv = layers.Conv2D(4, 3, activation="relu")(stacked)
    maps = methods.VisualBackProp(keras.Model(inputs, layers.Dense(1)(layers.Flatten()(conv))))(
        frames(2, (32, 32, 3))
    )
    assert maps.shape == (2, 32, 32) and maps.max() > 0


@pytest.mark.parametrize(
    "kernel, strides, padding",
    [((3, 3), (1, 1), "same"), ((5, 5), (2, 2), "valid"), ((3, 1), (2, 1), "same"), ((2, 1), (1, 2), "same")],
)
def test_the_mask_is_spread_back_by_a_transposed_convolution_of_ones(kernel, strides, padding):
    """Checked against TensorFlow: a transposed convolution of ones is the gradient of the
    mask-weighted sum of a convolution of ones."""
    import tensorflow as tf

    inputs = keras.Input((13, 17, 1))
    conv = layers.Conv2D(
        1, kernel, strides=strides, padding=padding, use_bias=False, kernel_initializer="ones"
    )
    keras.Model(inputs, conv(inputs))
    mask = np.random.default_rng(1).uniform(0, 1, (1, *conv.output.shape[1:3])).astype(np.float32)
    x = tf.zeros((1, 13, 17, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        weighted = tf.reduce_sum(conv(x)[..., 0] * mask)
    expected = tape.gradient(weighted, x).numpy()[..., 0]
    np.testing.assert_allclose(methods._transposed_ones(mask, conv), expected, rtol=1e-6)


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_saliency_falls_on_the_only_region_the_steering_sees(method):
    model = tiny(crop=((16, 0), (12, 12)))  # sees rows 16:32, columns 12:36
    maps = methods.METHODS[method](model)(frames(2))
    inside = np.zeros((32, 48), bool)
    inside[16:32, 12:36] = True
    assert (maps[:, ~inside] == 0).all() and (maps[:, inside].sum(axis=1) > 0).all()


def effnet_strides(uniform: bool) -> keras.Model:
    """EffNet's way of halving the width, twice: a (1, 3) depthwise, then a (2, 1) kernel at
    stride (1, 2). uniform: zero kernels, a bias of one and ReLUs, so every feature map is 1
    everywhere whatever the input; else kernels of ones, no bias, no activation, summed: the
    network whose input gradient counts the routes from each pixel to the output."""
    if uniform:
        flat = {"activation": "relu", "bias_initializer": "ones", "padding": "same"}
        kernels = {"kernel_initializer": "zeros"}, {"depthwise_initializer": "zeros"}
    else:
        flat = {"use_bias": False, "padding": "same"}
        kernels = {"kernel_initializer": "ones"}, {"depthwise_initializer": "ones"}
    inputs = keras.Input((8, 24, 1))
    x = inputs
    for _ in range(2):
        x = layers.DepthwiseConv2D((1, 3), **kernels[1], **flat)(x)
        x = layers.Conv2D(1, (2, 1), strides=(1, 2), **kernels[0], **flat)(x)
    if uniform:
        return keras.Model(inputs, layers.Dense(1)(layers.Flatten()(x)))
    return keras.Model(inputs, keras.ops.sum(x, axis=(1, 2, 3)))


def test_visual_backprop_on_uniform_features_counts_the_routes_through_the_chain():
    """The known answer: where the features are alike everywhere, the map is the input gradient of
    the same layers with every weight one, which for EffNet's strides is striped (the odd columns
    reached by more routes), not flat."""
    import tensorflow as tf

    maps = methods.VisualBackProp(effnet_strides(uniform=True))(frames(1, (8, 24, 1)))
    x = tf.zeros((1, 8, 24, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = effnet_strides(uniform=False)(x)
    routes = tape.gradient(total, x).numpy()[..., 0]
    np.testing.assert_allclose(maps, routes / routes.max(), rtol=1e-6)
    middle = maps[0, 4, 8:16]
    assert (middle[1::2] > middle[::2]).all()  # striped: odd columns, more routes


def test_maps_go_back_onto_the_crop_rows_of_the_frame():
    maps = np.ones((1, *INPUT_SHAPE[:2]), np.float32)
    on_frame = methods.to_frame(maps, DEFAULT_PREPROCESSING)
    assert on_frame.shape == (1, 160, 320)
    assert (on_frame[0, CROP_TOP:CROP_BOTTOM] == 1).all()
    assert on_frame[0, :CROP_TOP].sum() == 0 and on_frame[0, CROP_BOTTOM:].sum() == 0


# --- the faithfulness check -----------------------------------------------------------------------


def patch_reader() -> keras.Model:
    """Steering that reads one 12x12 patch of a 32x48 input (rows 4:16, columns 30:42), 9% of it."""
    return tiny(crop=((4, 16), (30, 6)))


PATCH = np.zeros((32, 48), bool)
PATCH[4:16, 30:42] = True


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_hiding_what_the_maps_point_at_moves_the_steering_of_a_model_that_reads_one_patch(method):
    model, x = patch_reader(), frames(12)
    checked = faithfulness.check(model, x, methods.METHODS[method](model)(x))
    # On noise frames the hidden pixels' pulls add up like a random walk: hiding the whole patch
    # against a tenth of it moves the steering about sqrt(10) times as far, not 10 times.
    assert checked.salient > 2 * checked.scattered.effect > 0 and checked.salient > 2 * checked.moved.effect
    assert checked.earns_its_place and checked.verdict == "earns its place"
    assert checked.moved.low <= checked.moved.ratio <= checked.moved.high


@pytest.mark.parametrize("blur", [0, 4])
def test_maps_that_point_anywhere_do_not_earn_their_place(blur):
    """Noise, speckled or smoothed into blobs: a blob hides a region whole, which scattered pixels
    never do, so the verdict is judged against the same mask moved elsewhere."""
    model, x = patch_reader(), frames(16)
    noise = np.random.default_rng(5).uniform(size=x.shape[:3]).astype(np.float32)
    if blur:
        noise = np.stack([cv2.GaussianBlur(m, (0, 0), blur) for m in noise])
    at_random = faithfulness.check(model, x, noise)
    assert not at_random.earns_its_place and at_random.verdict != "earns its place"
    if not blur:  # speckle hides a tenth of the patch wherever it falls; a blob, all of it or none
        assert 0.5 < at_random.moved.ratio < 1.5 and at_random.verdict == "not clearly better than elsewhere"


def test_maps_that_point_away_are_worse_than_elsewhere():
    model, x = patch_reader(), frames(8)
    away = faithfulness.check(model, x, np.broadcast_to(~PATCH, x.shape[:3]).astype(np.float32))
    assert away.salient == 0 and away.verdict == "worse than elsewhere"


def test_a_moved_mask_is_the_same_shape_somewhere_else():
    masks = np.zeros((2, 32, 48), bool)
    masks[:, 4:16, 30:42] = True
    moved = faithfulness.moved_masks(masks, 5, np.random.default_rng(0))
    assert moved.shape == (2, 5, 32, 48) and (moved.sum(axis=(2, 3)) == 144).all()
    for copy in moved[0]:
        offsets = [
            (dy, dx)
            for dy in range(32)
            for dx in range(48)
            if (np.roll(masks[0], (dy, dx), axis=(0, 1)) == copy).all()
        ]
        assert len(offsets) == 1


def test_the_check_is_deterministic_given_a_seed():
    model, x = patch_reader(), frames(6)
    maps = methods.VisualBackProp(model)(x)
    first, again = faithfulness.check(model, x, maps, seed=3), faithfulness.check(model, x, maps, seed=3)
    assert first == again
    assert faithfulness.check(model, x, maps, seed=4).moved.per_frame != first.moved.per_frame


def test_ratios_where_a_control_never_moves_the_steering():
    rng = np.random.default_rng(0)
    assert faithfulness.ratio_interval(np.array([1.0, 2.0]), np.zeros(2), 50, rng) == (np.inf,) * 3
    assert np.isnan(faithfulness.ratio_interval(np.zeros(2), np.zeros(2), 50, rng)).all()
    ratio, low, high = faithfulness.ratio_interval(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 50, rng)
    assert ratio == 1 and low == 0 and high == np.inf


def test_hidden_pixels_take_the_frames_mean_colour_and_only_they_change():
    x = frames(2)
    masks = faithfulness.salient_masks(
        np.broadcast_to(PATCH, (2, 32, 48)).astype(np.float32), 0.05, np.random.default_rng(0)
    )
    assert masks.sum(axis=(1, 2)).tolist() == [77, 77] and PATCH[masks[0]].all()
    hidden = faithfulness.hide(x, masks)
    np.testing.assert_allclose(hidden[masks], np.repeat(x.mean(axis=(1, 2)), 77, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(hidden[~masks], x[~masks])


def test_a_steering_that_never_moves_is_said_so():
    model = patch_reader()
    dense = model.layers[-1]
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    x = frames(4)
    assert faithfulness.check(model, x, methods.SmoothGrad(model)(x)).verdict == "steering does not move"


# --- the label render -----------------------------------------------------------------------------


def test_labels_match_the_renderers_geometry(lake):
    lake.reset(s=40.0)  # a straight, on the centre line
    camera, pose = lake.cameras["center"], (lake.car.x, lake.car.y, lake.car.heading)
    labels, road = camera.render_labels(*pose), camera.render_road_mask(*pose)
    assert labels.shape == road.shape == (160, 320) and labels.dtype == np.uint8
    assert labels[130, 160] == ROAD  # straight ahead, just above the bonnet
    # Both ways round, but for a few boundary pixels far away (the mask samples blurred levels):
    assert road[labels == ROAD].mean() > 0.999  # a road pixel is road surface
    assert np.isin(labels[road], (ROAD, EDGE)).mean() > 0.999  # road surface is road, or its edge band
    assert (labels[: camera.first_ground_row] == SKY).all() and (labels[camera.bonnet_mask] == CAR).all()
    frame = lake.render("center").astype(int)
    white = frame[120].sum(axis=1) > np.median(frame[120, 120:200].sum(axis=1)) + 200
    # The painted edge lines are edge (but for their anti-aliased rims).
    assert white.sum() > 10 and (labels[120, white] == EDGE).mean() > 0.9


def test_labels_are_painted_only_when_asked_and_change_no_pixel(lake):
    world = World(lake.track, seed=0)
    assert "labels" not in vars(world)
    np.testing.assert_array_equal(world.colour[0], lake.world.colour[0])
    before = lake.render("center")
    lake.cameras["center"].render_labels(lake.car.x, lake.car.y, lake.car.heading)
    np.testing.assert_array_equal(lake.render("center"), before)


def test_a_model_that_sees_only_road_scores_near_1(lake):
    lake.reset(s=40.0)
    camera, pose = lake.cameras["center"], (lake.car.x, lake.car.y, lake.car.heading)
    probe = Probe("lake", camera.render(*pose), camera.render_labels(*pose))
    # Input rows 32:128 and columns 40:88 are frame rows 95:140, columns 100:220: the road ahead.
    model = tiny(INPUT_SHAPE, crop=((32, 0), (40, 40)))
    for method in methods.METHODS.values():
        maps = methods.frame_saliency(method(model), probe.frame[None], DEFAULT_PREPROCESSING)
        found = methods.score(maps, [probe], DEFAULT_PREPROCESSING)
        assert found["score"] > 0.97 and found["off_road"] < 0.03
        assert found["chance"] < found["score"]


# --- the commands ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_keras(tiny(INPUT_SHAPE), path, ModelInfo(model="tiny"))
    return path


def test_help_imports_no_tensorflow():
    code = "import sys; from driving.saliency import cli; cli.build_parser(); "
    code += "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_the_command_lines_offer_every_method():
    assert tuple(methods.METHODS) == METHOD_NAMES  # named in --help before the methods load


def test_command_line_writes_overlays_and_a_grid(model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert saliency_main([str(model_file), "--track", "lake", "--frames", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "road and edge" in printed and "looks everywhere alike" in printed
    assert sorted(p.name for p in out.iterdir()) == ["frame-000.png", "frame-001.png", "grid.png"]
    recording = write_recording(tmp_path / "rec", n=5, sides=False)
    args = [str(model_file), "--data", str(recording), "--frames", "3", "--method", "smoothgrad"]
    assert saliency_main([*args, "--out", str(tmp_path / "rec-out")]) == 0
    shown = cv2.imread(str(tmp_path / "rec-out" / "frame-002.png"))
    assert shown.shape == (160, 320, 3)


def test_command_line_checks_the_maps_when_asked(model_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(model_file), "--track", "lake", "--frames", "3", "--faithfulness", "--out", str(out)]
    assert saliency_main(args) == 0
    printed = capsys.readouterr().out
    assert "faithfulness (vbp, 3 frames)" in printed and "moved elsewhere" in printed
    assert "earns its place above 1.5" in printed and "scattered pixels" in printed
    found = json.loads((out / "faithfulness.json").read_text())
    assert found["frames"] == 3 and found["draws"] == faithfulness.CONTROL_DRAWS and found["method"] == "vbp"
    assert set(found["moved"]) == set(found["scattered"]) == {"effect", "ratio", "low", "high", "per_frame"}
    assert found["verdict"] in printed


def test_careless_command_lines_end_in_one_line(model_file, tmp_path, capsys):
    for args in (
        [str(model_file), "--track", "lake", "--frames", "0"],
        [str(model_file), "--track", "lake", "--data", str(tmp_path)],
        [str(model_file)],
        [str(model_file), "--track", "lake", "--method", "gradcam"],
    ):
        with pytest.raises(SystemExit) as exit_code:
            saliency_main(args)
        assert exit_code.value.code == 2 and "Traceback" not in capsys.readouterr().err
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"not a model")
    for args, why in (
        ([str(tmp_path / "none.keras"), "--track", "lake"], "no such model file"),
        ([str(model_file), "--track", "nowhere"], "unknown track"),
        ([str(model_file), "--data", str(tmp_path / "nothing")], "no such folder"),
        ([str(tflite), "--track", "lake"], "not a usable LiteRT model"),
    ):
        assert saliency_main([*args, "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1, err


def test_video_with_saliency(model_file, tmp_path, capsys):
    recording = write_recording(tmp_path / "lap", n=4, sides=False)
    plain, painted = tmp_path / "plain.mp4", tmp_path / "painted.mp4"
    assert video_main([str(recording), "--out", str(plain)]) == 0
    assert video_main([str(recording), "--out", str(painted), "--saliency", str(model_file)]) == 0
    assert count_frames(painted) == 4
    _, a = cv2.VideoCapture(str(plain)).read()
    _, b = cv2.VideoCapture(str(painted)).read()
    assert np.abs(a[CROP_TOP:CROP_BOTTOM].astype(int) - b[CROP_TOP:CROP_BOTTOM]).mean() > 3
    assert video_main([str(recording), "--saliency", str(tmp_path / "none.keras")]) == 1
    assert "no such model file" in capsys.readouterr().err


def test_report_section_scores_every_model_and_survives_a_broken_one(model_file, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.keras").write_bytes(model_file.read_bytes())
    (folder / "broken.keras").write_bytes(b"truncated")
    probes = track_probes("lake", 2)
    section = stage.saliency_section(folder, ["tiny", "broken"], ["vbp", "smoothgrad"], probes)
    assert set(section["scores"]["tiny"]) == {"vbp", "smoothgrad"} and "broken" in section["not_scored"]
    assert 0 <= section["scores"]["tiny"]["vbp"]["score"] <= 1
    assert (folder / render.SALIENCY_GRID).is_file()
    checked = section["scores"]["tiny"]["smoothgrad"]["faithfulness"]
    moved = checked["moved"]
    assert checked["frames"] == 2 and moved["low"] <= moved["ratio"] <= moved["high"]
    text = "\n".join(render.saliency_markdown(section))
    assert "| tiny | vbp |" in text and "broken: not scored" in text
    assert "| model | vbp | smoothgrad |" in text and checked["verdict"] in text
