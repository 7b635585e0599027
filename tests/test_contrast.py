"""LocalContrast, the `-lcn` models' first layer: what it does to a frame, and model files that
carry it (saved, reloaded in safe mode, exported to LiteRT and served)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from driving import models
from driving.contrast import LocalContrast, gaussian_taps, mirrored_blur
from driving.modelio import ModelInfo, export_tflite, load_keras, save_keras
from driving.runtime import Predictor


def contrast(x: np.ndarray, **kw) -> np.ndarray:
    return keras.ops.convert_to_numpy(LocalContrast(**kw)(x.astype("float32")))


def road(step: float, size: int = 128, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A frame in [-0.5, 0.5]: a vertical road edge of height `step` in the middle, grey either side."""
    x = np.full((1, size, size, 3), -0.1, dtype="float32")
    x[:, :, size // 2 :] += step
    return x + np.random.default_rng(seed).normal(0, noise, x.shape).astype("float32")


def test_a_faint_edge_comes_out_as_strong_as_a_clear_one():
    faint, clear = contrast(road(0.08)), contrast(road(0.4))
    assert np.abs(clear).max() / np.abs(faint).max() == pytest.approx(1.0, abs=0.02)
    # ...and across the edge: the output changes sign there, as the road's tone does
    assert faint[0, 64, 60, 0] < 0 < faint[0, 64, 68, 0]


def test_the_frames_brightness_and_contrast_do_not_reach_the_output():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 128, 128, 3)).astype("float32")  # texture
    dim = 0.3 * x - 0.2  # the same frame at dusk: a third of the contrast, darker
    np.testing.assert_allclose(contrast(dim), contrast(x), atol=1e-4)


def test_a_flat_frame_gives_zeros_not_a_division_by_zero():
    out = contrast(np.full((1, 64, 64, 3), 0.3))
    assert np.all(np.isfinite(out)) and np.abs(out).max() < 1e-5


def test_faint_noise_on_a_flat_frame_is_not_blown_up():
    # The floor: a spread below it is noise, divided by the floor, not by itself.
    out = contrast(road(0.0, noise=0.002))
    assert out.std() < 0.25 * 0.002 / 0.02 * 1.5  # gain x noise / floor, with room for the blur


@pytest.mark.parametrize("size", [32, 66, 128])
def test_any_input_size_down_to_the_smallest_model_input(size):
    out = contrast(road(0.2, size=size, noise=0.01))
    assert out.shape == (1, size, size, 3) and np.all(np.isfinite(out))


def test_the_gaussian_is_normalised_and_three_sigma_wide():
    taps = gaussian_taps(4.0)
    assert taps.dtype == np.float32 and len(taps) == 25 and taps.sum() == pytest.approx(1.0)
    assert taps.argmax() == 12 and np.allclose(taps, taps[::-1])


@pytest.mark.parametrize("size, sigma", [(32, 4.0), (8, 4.0), (2, 1.0)])
def test_the_blur_is_a_mirror_padded_gaussian_even_where_the_taps_reach_past_the_mirror(size, sigma):
    # The reference: numpy's reflect padding (which mirrors again past a mirror) and a convolution.
    taps = gaussian_taps(sigma)
    line = np.random.default_rng(size).uniform(size=size)
    padded = np.pad(line, len(taps) // 2, mode="reflect")
    np.testing.assert_allclose(
        mirrored_blur(size, sigma) @ line, np.convolve(padded, taps, "valid"), atol=1e-6
    )
    with pytest.raises(ValueError, match="a line of 1 pixel"):
        mirrored_blur(1, sigma)


def test_bad_settings_are_refused_by_name():
    for bad in (
        {"sigma": 0},
        {"floor": -1},
        {"gain": 0},
        {"pool": 0},
        {"sigma": float("nan")},
        {"floor": float("inf") * 0},
    ):
        with pytest.raises(ValueError, match="LocalContrast needs"):
            LocalContrast(**bad)
    with pytest.raises(ValueError, match="^model 'pilotnet': local_contrast must be one of only, beside"):
        models.build("pilotnet", local_contrast="always")


def test_the_lcn_models_keep_their_base_models_parameters():
    assert models.count_params(models.build("pilotnet-lcn")) == models.count_params(models.build("pilotnet"))
    assert models.count_params(models.build("effnet-lcn")) == (630_433, 629_537)
    assert models.count_params(models.build("effnet-slim-lcn")) == (70_625, 68_545)
    assert models.count_params(models.build("base-lcn")) == (865_921, 865_921)
    for name in ("pilotnet-lcn", "effnet-lcn", "effnet-slim-lcn", "base-lcn"):
        assert models.build(name).layers[1].name == "local_contrast"  # the first thing the frame meets
    # beside the frame: PilotNet's first convolution reads 6 channels, 24 x 5 x 5 x 3 weights more
    assert models.build("pilotnet-rawlcn").count_params() == 252_219 + 1_800
    layer = LocalContrast()
    layer.build((None, 128, 128, 3))
    assert layer.weights == []


@pytest.mark.parametrize("name", ["pilotnet-lcn", "pilotnet-rawlcn"])
def test_a_model_file_carries_the_layer_through_reload_and_litert(tmp_path, name):
    model = models.build(name)
    rng = np.random.default_rng(3)  # random weights: an untrained model's output is all zeros
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    x = rng.uniform(-0.5, 0.5, (4, 128, 128, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x)).reshape(-1)
    for suffix in (".keras", ".h5"):
        save_keras(model, tmp_path / f"m{suffix}", ModelInfo(model=name))
        again, info = load_keras(tmp_path / f"m{suffix}")  # safe mode: the layer is known by name
        assert info.model == name and again.get_layer("local_contrast").sigma == 16.0
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x)).reshape(-1), expected)
    path = export_tflite(again, tmp_path / "m.float32.tflite", "float32", ModelInfo(model=name))
    served = Predictor.load(path)
    steering = np.array([served.run(frame[None]) for frame in x]).reshape(-1)
    assert np.abs(expected).max() > 1e-3  # outputs that say something
    np.testing.assert_allclose(steering, expected, atol=1e-4)


def test_int8_keeps_the_layer_float_between_an_int8_input_and_int8_body(tmp_path):
    # The 24 simulator frames of tests/data/replay, preprocessed as serving does, calibrate and test.
    from ai_edge_litert.interpreter import Interpreter

    from driving.preprocess import preprocess, read_frame
    from tests import replay_frames

    x = np.stack([preprocess(read_frame(path)) for path in sorted(replay_frames.FOLDER.glob("*.jpg"))])
    keras.utils.set_random_seed(0)
    model = models.build("pilotnet-lcn")
    replay_frames.steer_along_first_component(model, x, 0.25)  # so that rounding shows
    expected = keras.ops.convert_to_numpy(model(x)).reshape(-1)

    path = export_tflite(model, tmp_path / "m.int8.tflite", "int8", ModelInfo(model="pilotnet-lcn"), x)
    graph = Interpreter(model_path=str(path))
    assert graph.get_input_details()[0]["dtype"] == np.int8 == graph.get_output_details()[0]["dtype"]
    tensors = graph.get_tensor_details()
    layer = [t for t in tensors if "/local_contrast" in t["name"] and t["dtype"] != np.int32]
    assert layer and all(t["dtype"] == np.float32 for t in layer), {t["name"]: t["dtype"] for t in layer}
    assert sum(t["dtype"] == np.int8 for t in tensors if t not in layer) > 20  # the body is int8
    served = Predictor.load(path)
    error = np.abs(np.array([served.run(frame[None]) for frame in x]) - expected)
    # the report's tolerance; on average as the int8 body alone (measured 0.011; with the layer in
    # int8 too: 0.035)
    assert error.max() < 0.1 and error.mean() < 0.02, (error.max(), error.mean())
