"""The model registry: exact sizes, MAC counting, and model files that reload identically."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from driving import models
from driving.config import AugmentConfig, RunConfig
from driving.modelio import TFLITE_KINDS, ModelFileError, ModelInfo, export_tflite, load_keras, save_keras
from driving.runtime import Predictor

# The slimming family after effnet-slim: (params, trainable, MACs per frame), as measured.
FAMILY = {
    "effnet-w050": (31_929, 30_825, 5_964_864),
    "effnet-w050-h32": (19_057, 18_017, 5_946_400),
    "effnet-w050-h32-r64": (17_105, 16_225, 1_768_480),
    "effnet-w025-h32-r64": (8_141, 7_669, 538_144),
    "effnet-tiny": (6_605, 6_277, 129_568),
}


def test_base_and_effnet_have_the_original_parameter_counts():
    assert models.count_params(models.build("base")) == (865_921, 865_921)
    assert models.count_params(models.build("effnet")) == (630_433, 629_537)
    # The Flatten->Dense 256 layer of effnet holds 524,544 weights, as the write-up says.
    dense = next(layer for layer in models.build("effnet").layers if isinstance(layer, layers.Dense))
    assert dense.count_params() == 524_544


def test_slim_variants_are_10x_smaller_and_cheaper_than_base():
    base = models.build("base")
    for name in ("effnet-slim", "effnet-gap"):
        slim = models.build(name)
        assert base.count_params() / slim.count_params() >= 10, name
        assert models.count_macs(base) / models.count_macs(slim) >= 10, name


def test_every_model_maps_a_batch_of_frames_to_one_steering_value():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 128, 128, 3)).astype("float32")
    for name in models.MODELS:
        model = models.build(name)
        y = model(x, training=False)
        assert tuple(y.shape) == (2, 1), name
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(y))), name
        assert not any(type(layer).__name__ == "Lambda" for layer in model.layers), name


def test_features_reaching_the_steering_output_keep_their_scale_at_initialisation():
    # With Keras' default depthwise initialisation EffNet's features at Flatten were 1e-11 of the
    # input's scale and training never left a constant output; now they are 1e-2 to 1e0 of it
    # (effnet-gap lowest: global pooling averages noise frames alike). `base` keeps Keras'
    # defaults, as the original did (and so does `base-lcn`, base reading local contrast);
    # `base-he` is the same network He-initialised.
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 128, 128, 3)).astype("float32")
    spreads = {}
    for name in sorted(models.MODELS):
        keras.utils.set_random_seed(0)
        model = models.build(name)
        features = keras.Model(model.input, model.get_layer("steering").input)(x, training=False)
        spreads[name] = keras.ops.convert_to_numpy(features).std(axis=0).mean() / x.std()
    glorot = ("base", "base-lcn")
    assert all(spread > 0.01 for name, spread in spreads.items() if name not in glorot), spreads
    # base's Glorot features reach its head at about 1% of the input's scale (docs/models.md)
    assert spreads["base-he"] > 10 * spreads["base"], spreads


def test_count_macs_matches_hand_counts():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)  # 64 px * 9 * 3 * 4 = 6912
    x = layers.DepthwiseConv2D((1, 3), padding="same")(x)  # 64 px * 3 * 4 = 768
    x = layers.Conv2D(2, (2, 1), strides=(1, 2), padding="same")(x)  # 32 px * 2 * 4 * 2 = 512
    x = layers.Flatten()(x)
    outputs = layers.Dense(5)(x)  # 64 * 5 = 320
    assert models.count_macs(keras.Model(inputs, outputs)) == 6912 + 768 + 512 + 320


def test_unknown_model_name_lists_choices():
    with pytest.raises(KeyError, match="effnet"):
        models.build("nope")


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_saved_model_round_trip_gives_identical_predictions(tmp_path, suffix):
    model = models.build("effnet-slim", input_shape=(32, 32, 3))  # tiny input: same layers, fast
    models.compile_for_training(model)
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (4, 32, 32, 3)).astype("float32")
    rng = np.random.default_rng(2)  # random weights everywhere, BN statistics included
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") ** 2 for w in model.get_weights()])
    model.optimizer.build(model.trainable_variables)  # optimizer state, without a slow training step
    path = tmp_path / f"m{suffix}"
    save_keras(model, path, ModelInfo(model="effnet-slim"))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    again, info = load_keras(path)
    assert info.model == "effnet-slim"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(again(x)))
    # The training config reloads too (the string loss "mse" would not from .h5).
    compiled, _ = load_keras(path, compile=True)
    assert isinstance(compiled.optimizer, keras.optimizers.Adam)
    assert isinstance(compiled.loss, keras.losses.MeanSquaredError)


def test_h5_save_does_not_drop_the_optimizer_from_a_later_keras_save(tmp_path):
    model = models.build("effnet-slim", input_shape=(32, 32, 3))
    models.compile_for_training(model, lr=3e-4)
    model.optimizer.build(model.trainable_variables)
    save_keras(model, tmp_path / "m.h5", ModelInfo())
    save_keras(model, tmp_path / "m.keras", ModelInfo())
    again, _ = load_keras(tmp_path / "m.keras", compile=True)
    assert isinstance(again.optimizer, keras.optimizers.Adam)
    assert len(again.optimizer.variables) == len(model.optimizer.variables)
    assert abs(float(again.optimizer.learning_rate) - 3e-4) < 1e-9


def test_failed_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"previous")

    class Unsaveable(keras.Model):
        def save(self, *a, **kw):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_keras(Unsaveable(), path, ModelInfo())
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_load_names_the_bad_file(tmp_path):
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ModelFileError, match="model.txt"):
        load_keras(tmp_path / "model.txt")
    with pytest.raises(ModelFileError, match="missing.h5: no such model file"):
        load_keras(tmp_path / "missing.h5")


@pytest.mark.parametrize("name", ["base", "effnet", "effnet-slim", "effnet-tiny", "pilotnet"])
def test_models_take_other_input_sizes_or_say_which_they_cannot(name):
    model = models.build(name, input_shape=(64, 96, 3))
    assert tuple(model.input_shape[1:]) == (64, 96, 3) and tuple(model.output_shape) == (None, 1)
    if name != "pilotnet":  # PilotNet resizes any input to 66x200
        with pytest.raises(ValueError, match=f"model '{name}' cannot take input"):
            models.build(name, input_shape=(8, 8, 3))


def test_listing_the_registry_does_not_import_tensorflow():
    code = (
        "import sys, driving.models as m; assert 'effnet' in m.MODELS; assert 'tensorflow' not in sys.modules"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_cli_lists_every_model_as_json_and_saves_one(tmp_path, capsys):
    models.main(["--json"])
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(models.MODELS)
    assert rows["effnet"]["trainable"] == 629_537
    assert rows["base"]["macs"] > 7 * rows["effnet"]["macs"]
    path = tmp_path / "untrained.h5"
    assert models.main(["save", "pilotnet", str(path)]) == 0
    assert load_keras(path)[0].count_params() == 252_219


# --- the slimming family ----------------------------------------------------------------------------


def test_the_family_is_registered_in_order_and_starts_at_effnet_slim():
    assert ("effnet-slim", *FAMILY) == models.SLIMMING_FAMILY
    assert set(FAMILY) <= set(models.MODELS)


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_steps_have_their_exact_sizes(name):
    model = models.build(name)
    assert (*models.count_params(model), models.count_macs(model)) == FAMILY[name]
    assert model.name == name


def test_the_family_gets_smaller_and_cheaper_at_every_step():
    sizes = []
    for name in models.SLIMMING_FAMILY:
        model = models.build(name)
        sizes.append((name, model.count_params(), models.count_macs(model)))
        keras.backend.clear_session()
    assert sizes[0][1:] == (70_625, 20_990_016)  # effnet-slim, unchanged
    assert all(macs > 0 for _, _, macs in sizes)
    for (before, params0, macs0), (after, params1, macs1) in zip(sizes, sizes[1:]):
        assert params1 < params0 and macs1 < macs0, (before, after)
    smallest = sizes[-1]
    assert smallest[1] <= 10_000, smallest


def test_a_variant_is_effnet_slim_with_its_knobs_set():
    assert models.build("effnet-slim", width=0.5).count_params() == FAMILY["effnet-w050"][0]
    assert models.build("effnet-w050-h32-r64").get_layer("input_pool").pool_size == (2, 2)
    tiny = models.build("effnet-tiny")
    assert tiny.get_layer("input_pool").pool_size == (4, 4)
    # BN straight after each convolution (the converter folds it), not after the activation.
    folding = (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)
    for before, layer in zip(tiny.layers, tiny.layers[1:]):  # a chain: each layer feeds the next
        if isinstance(layer, layers.BatchNormalization):
            assert isinstance(before, folding) and layer.input is before.output, layer.name
    # Depth alone does not slim: a block fewer at 128x128 leaves Flatten an 8x8 map instead of 4x4.
    assert models.build("effnet-slim", blocks=models.SLIM_D4).count_params() > 70_625


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_steps_save_load_and_convert_to_every_litert_kind(tmp_path, name):
    model = models.build(name)
    models.compile_for_training(model)
    rng = np.random.default_rng(4)  # random weights everywhere (BN statistics included): outputs vary
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") ** 2 for w in model.get_weights()])
    x = rng.uniform(-0.5, 0.5, (4, 128, 128, 3)).astype("float32")  # also the int8 calibration set
    expected = keras.ops.convert_to_numpy(model(x)).reshape(-1)
    for suffix in (".keras", ".h5"):
        save_keras(model, tmp_path / f"{name}{suffix}", ModelInfo(model=name))
        again, info = load_keras(tmp_path / f"{name}{suffix}")
        assert info.model == name
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x)).reshape(-1), expected)
    # The record a trained model's file carries (its run and augmentation) counts towards its size.
    info = ModelInfo(
        model=name, augment=AugmentConfig().to_dict(), run=RunConfig(data=["data/lake"]).to_dict()
    )
    kib = {}
    for kind in TFLITE_KINDS:
        path = export_tflite(again, tmp_path / f"{name}.{kind}.tflite", kind, info, calibration=x)
        kib[kind] = path.stat().st_size / 1024
        served = Predictor.load(path)
        steering = np.array([served.run(frame[None]) for frame in x])
        assert np.all(np.isfinite(steering)), kind
        if kind == "float32":
            np.testing.assert_allclose(steering, expected, atol=1e-4)
    assert kib["int8"] < kib["float16"] < kib["float32"], kib
    if name == "effnet-tiny":
        assert kib["int8"] <= 32, kib


def test_cli_gives_litert_file_sizes(capsys):
    rows = models.summary_rows(["effnet-tiny"], litert=True)
    sizes = rows[0]["litert_bytes"]
    assert list(sizes) == list(TFLITE_KINDS)
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert sizes["int8"] <= 30 * 1024  # room for the record a trained model's file carries
    capsys.readouterr()
    assert models.main(["--model", "effnet-tiny", "--model", "effnet-w050"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["model", "effnet-tiny", "effnet-w050"]
    assert lines[1].split()[1] == "6,605"  # ratios to base even though base is not listed
