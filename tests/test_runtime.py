"""Predictor: every model format loads, predicts what the model computes, and unsafe files are refused."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from driving.config import INPUT_SHAPE
from driving.modelio import ModelFileError
from driving.preprocess import FrameError, preprocess
from driving.runtime import Predictor
from tests.conftest import road_frame


def tiny_model(input_shape=INPUT_SHAPE, seed: int = 1) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 5, strides=4, activation="tanh")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [road_frame(offset, rng) for offset in (-0.8, 0.0, 0.6)]


def expected(model, frame) -> float:
    return float(model(preprocess(frame)[None], training=False)[0, 0])


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_keras_files_predict_what_the_model_computes(tmp_path, model, frames, suffix):
    path = tmp_path / f"tiny{suffix}"
    model.save(path)
    predictor = Predictor.load(path, backend="keras")
    assert predictor.backend == "keras" and predictor.name == path.name
    got = [predictor(f) for f in frames]
    assert all(isinstance(v, float) for v in got)
    np.testing.assert_allclose(got, [expected(model, f) for f in frames], atol=1e-5)
    assert len(set(np.round(got, 4))) == len(frames)  # the frames really give different answers


def test_tflite_matches_keras(tmp_path, model, frames):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    predictor = Predictor.load(path)
    assert predictor.backend == "litert"
    np.testing.assert_allclose(
        [predictor(f) for f in frames], [expected(model, f) for f in frames], atol=1e-4
    )


def test_int8_tflite_is_dequantised(tmp_path, model, frames):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([preprocess(f)[None]] for f in frames * 4)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / "tiny-int8.tflite"
    path.write_bytes(converter.convert())
    predictor = Predictor.load(path)
    want = np.array([expected(model, f) for f in frames])
    got = np.array([predictor(f) for f in frames])
    # int8 rounding: within a few quantisation steps of the float model's range
    assert np.abs(got - want).max() < 0.05 * max(1.0, np.abs(want).max())


def test_lambda_layer_models_are_refused(tmp_path):
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "code.keras"
    keras.Model(inputs, keras.layers.Dense(1)(x)).save(path)
    with pytest.raises(ModelFileError, match="safe mode"):
        Predictor.load(path)


def test_wrong_input_shape_is_refused(tmp_path):
    path = tmp_path / "small.keras"
    tiny_model(input_shape=(66, 200, 3)).save(path)
    with pytest.raises(ModelFileError, match=r"model input is \(66, 200, 3\)"):
        Predictor.load(path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.h5", None, "no such model file"),
        ("model.onnx", b"x", "unknown model format"),
        ("broken.h5", b"not an hdf5 file", "not an HDF5 file"),
        ("broken.keras", b"PK\x03\x04 truncated", "not a zip archive"),
        ("broken.tflite", b"not a flatbuffer", "not a usable LiteRT model"),
    ],
)
def test_bad_model_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as info:
        Predictor.load(path)
    assert name in str(info.value)


def test_wrong_frame_is_refused(model):
    predictor = Predictor.from_keras(model)
    with pytest.raises(FrameError, match="expected a 320x160 RGB uint8 frame"):
        predictor(np.zeros((100, 200, 3), np.uint8))


def test_concurrent_calls_give_the_single_thread_answers(model, frames):
    predictor = Predictor.from_keras(model)
    want = [predictor(f) for f in frames]
    results: list[list[float]] = [[] for _ in range(4)]

    def work(out):
        for _ in range(10):
            out.append([predictor(f) for f in frames])

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r, [want] * 10, atol=1e-6)


def test_keras_file_served_through_litert_by_default(tmp_path, model, frames):
    path = tmp_path / "tiny.keras"
    model.save(path)
    converted = Predictor.load(path)  # backend="auto"
    assert converted.backend == "keras->litert"
    np.testing.assert_allclose(
        [converted(f) for f in frames], [expected(model, f) for f in frames], atol=1e-4
    )
    assert Predictor.load(path, backend="keras").backend == "keras"
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor.load(path, backend="onnx")


def test_one_conversion_path_with_the_serving_batch_of_one(model, frames):
    # drive.py converts Keras files in memory with to_tflite, the report exports with it: a
    # fixed batch-1 input, the shape of every call.
    from ai_edge_litert.interpreter import Interpreter

    from driving.modelio import to_tflite

    float32 = to_tflite(model)
    interpreter = Interpreter(model_content=float32)
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [1, *INPUT_SHAPE]
    assert to_tflite(model) == float32  # deterministic: the served model is the exported one
    calibration = np.stack([preprocess(f) for f in frames * 4])
    int8 = Interpreter(model_content=to_tflite(model, "int8", calibration))
    assert int8.get_input_details()[0]["dtype"] == np.int8
    with pytest.raises(ValueError, match="calibration"):
        to_tflite(model, "int8")
    with pytest.raises(ValueError, match="unknown TFLite kind"):
        to_tflite(model, "float8")


@pytest.mark.parametrize("threads", [1, 2])
def test_interpreter_threads_do_not_change_the_answers(tmp_path, model, frames, threads):
    path = tmp_path / "tiny.keras"
    model.save(path)
    predictor = Predictor.load(path, threads=threads)
    assert predictor.backend == "keras->litert"
    np.testing.assert_allclose(
        [predictor(f) for f in frames], [expected(model, f) for f in frames], atol=1e-4
    )
