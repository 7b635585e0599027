"""Model files carry their preprocessing: written into .keras, .h5 and .tflite, read back without
TensorFlow, and used by the Predictor, so a model is served exactly as it was trained whatever the
defaults are. Older files without a record load with today's defaults, saying so once."""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from driving import modelio
from driving.config import DEFAULT_PREPROCESSING, Preprocessing
from driving.modelio import ModelFileError, ModelInfo
from driving.preprocess import FrameError, preprocess
from driving.run import Checkpoint
from driving.runtime import Predictor
from tests.conftest import road_frame

# Not today's defaults anywhere: other crop rows, another input size, another frame size.
ODD = Preprocessing(
    frame_height=120, frame_width=240, crop_top=40, crop_bottom=110, input_height=48, input_width=96
)


def tiny(geometry: Preprocessing) -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input(geometry.input_shape)
    x = keras.layers.Conv2D(3, 5, strides=4, activation="tanh")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def frame_of(geometry: Preprocessing, offset: float) -> np.ndarray:
    import cv2

    frame = road_frame(offset, np.random.default_rng(1))
    return cv2.resize(frame, (geometry.frame_width, geometry.frame_height), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".tflite"])
def test_every_format_carries_its_preprocessing_and_the_predictor_uses_it(tmp_path, suffix):
    model = tiny(ODD)
    best = Checkpoint(kind="val-best", epoch=3, step=240, metric="val_loss", value=0.0125)
    info = ModelInfo(preprocessing=ODD, model="tiny", run={"seed": 7}, checkpoint=best)
    path = tmp_path / f"odd{suffix}"
    if suffix == ".tflite":
        modelio.export_tflite(model, path, "float32", info)
    else:
        modelio.save_keras(model, path, info)
    read = modelio.load_info(path)
    assert read.preprocessing == ODD and read.model == "tiny" and read.run == {"seed": 7}
    assert (
        read.checkpoint == best and read.checkpoint.label == "best validation loss 0.0125, epoch 3 (step 240)"
    )

    predictor = Predictor.load(path)
    assert predictor.preprocessing == ODD
    for offset in (-0.6, 0.4):
        frame = frame_of(ODD, offset)
        want = float(model(preprocess(frame, ODD)[None], training=False)[0, 0])
        assert predictor(frame) == pytest.approx(want, abs=1e-4)
    # A frame of another size would be cropped at the wrong rows: refused.
    with pytest.raises(FrameError, match="expected a 240x120"):
        predictor(road_frame(0.0))


def test_reading_a_record_needs_no_tensorflow(tmp_path):
    path = tmp_path / "m.keras"
    modelio.save_keras(tiny(ODD), path, ModelInfo(preprocessing=ODD))
    code = (
        "import sys; from driving.modelio import load_info; "
        f"info = load_info({str(path)!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
        "print(info.preprocessing.input_width)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "96", run.stderr


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_without_a_record_uses_the_defaults_and_says_so_once(tmp_path, suffix, caplog):
    path = tmp_path / f"old{suffix}"
    tiny(DEFAULT_PREPROCESSING).save(path)  # as models were saved before records existed
    assert modelio.load_info(path) is None
    with caplog.at_level(logging.WARNING, logger="driving.modelio"):
        first = Predictor.load(path, backend="keras")
        Predictor.load(path, backend="keras")
    assert first.preprocessing == DEFAULT_PREPROCESSING
    warnings = [r.getMessage() for r in caplog.records if "no preprocessing record" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0] and "rows 80:140" in warnings[0]


def test_damaged_files_say_what_is_wrong(tmp_path):
    good = tmp_path / "good.keras"
    modelio.save_keras(tiny(ODD), good, ModelInfo(preprocessing=ODD))
    data = good.read_bytes()
    cases = {
        "truncated.keras": (data[: len(data) // 2], "not a zip archive"),
        "empty.keras": (b"", "not a zip archive"),
        "text.h5": (b"hello", "not an HDF5 file"),
        "noise.tflite": (bytes(range(256)) * 4, "LiteRT"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelFileError, match=message) as error:
            Predictor.load(path)
        assert name in str(error.value) and "File not found" not in str(error.value)
    # A record that is not JSON is a damaged file too, named as such.
    bad = tmp_path / "bad.keras"
    tiny(ODD).save(bad)
    with zipfile.ZipFile(bad, "a") as archive:
        archive.writestr(modelio.KERAS_MEMBER, "{not json")
    with pytest.raises(ModelFileError, match="record is unreadable"):
        modelio.load_info(bad)


def test_saving_over_a_model_is_atomic(tmp_path):
    path = tmp_path / "m.keras"
    modelio.save_keras(tiny(ODD), path, ModelInfo(preprocessing=ODD))
    before = path.read_bytes()

    class Broken(keras.Model):
        def save(self, *args, **kw):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        modelio.save_keras(Broken(), path, ModelInfo())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # no temp file left


def with_record(tmp_path, name: str, record: str):
    path = tmp_path / name
    tiny(ODD).save(path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(modelio.KERAS_MEMBER, record)
    return path


def test_a_record_is_read_with_bounds_before_it_is_inflated_or_parsed(tmp_path):
    # A few KB on disk that would inflate to 2 MB: refused by its stated size, never inflated.
    bomb = with_record(tmp_path, "bomb.keras", '{"model": "' + " " * 2_000_000 + '"}')
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ModelFileError, match="bomb.keras: its 'driving.json' record inflates to 2,000,013"):
        modelio.load_info(bomb)
    deep = with_record(tmp_path, "deep.keras", "[" * 20_000 + "]" * 20_000)
    with pytest.raises(ModelFileError, match="deep.keras: its 'driving' record is unreadable .*levels deep"):
        modelio.load_info(deep)
    h5 = tmp_path / "big.h5"
    modelio.save_keras(tiny(ODD), h5, ModelInfo(preprocessing=ODD))
    import h5py

    with h5py.File(h5, "a") as f:
        f.attrs[modelio.INFO_NAME] = "x" * (modelio.MAX_INFO_BYTES + 1)
    with pytest.raises(ModelFileError, match="big.h5: its 'driving' record is 262,145 bytes"):
        modelio.load_info(h5)


@pytest.mark.parametrize(
    "record, field",
    [
        ('{"preprocessing": {"crop_top": "80"}}', "crop_top"),
        ('{"preprocessing": {}, "model": 7}', "model"),
        ('{"preprocessing": {}, "run": [1, 2]}', "run"),
        ('{"preprocessing": {"input_height": 1e9}}', "input_height"),
        ('{"preprocessing": {"crop_bottom": NaN}}', "NaN"),
        ('{"preprocessing": {}, "checkpoint": {"kind": "best"}}', "checkpoint: field 'kind'"),
        ('{"preprocessing": {}, "checkpoint": {"kind": "last", "epoch": "2"}}', "checkpoint: field 'epoch'"),
        ('{"preprocessing": {}, "checkpoint": {"kind": "last", "step": -1}}', "checkpoint: field 'step'"),
        ('{"preprocessing": {}, "checkpoint": 7}', "checkpoint: expected a JSON object"),
    ],
)
def test_a_record_of_the_wrong_types_is_refused_naming_the_field(tmp_path, record, field):
    path = with_record(tmp_path, "typed.keras", record)
    with pytest.raises(ModelFileError, match=field) as error:
        modelio.load_info(path)
    assert "typed.keras" in str(error.value) and "\n" not in str(error.value)


def test_a_record_without_its_preprocessing_says_so_once(tmp_path, caplog):
    path = with_record(tmp_path, "bare.keras", '{"model": "effnet"}')
    with caplog.at_level(logging.WARNING, logger="driving.modelio"):
        for _ in range(3):
            info = modelio.load_info(path)
    assert info.preprocessing == DEFAULT_PREPROCESSING and info.model == "effnet"
    warnings = [r for r in caplog.records if "bare.keras" in r.getMessage()]
    assert len(warnings) == 1 and "names no preprocessing" in warnings[0].getMessage()


def test_an_older_files_checkpoint_label_is_kept_as_the_note_of_an_unknown_checkpoint(tmp_path):
    record = '{"preprocessing": {}, "checkpoint": "best validation drive, step 240 (epoch 2)"}'
    info = modelio.load_info(with_record(tmp_path, "old.keras", record))
    assert info.checkpoint == Checkpoint(kind="unknown", note="best validation drive, step 240 (epoch 2)")
    assert info.checkpoint.label == "best validation drive, step 240 (epoch 2)"
    assert modelio.load_info(with_record(tmp_path, "none.keras", '{"preprocessing": {}}')).checkpoint is None
