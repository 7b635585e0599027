"""Serving a saved model: one camera frame in, one steering value out, as fast as batch 1 allows.

    predictor = Predictor.load("models/effnet.h5")   # or .keras, or .tflite
    steering = predictor(frame_rgb)                  # 160x320x3 RGB uint8 -> float

The frame goes through driving.preprocess.preprocess, the same function training uses, so serving
cannot drift from training. Keras models run through one traced tf.function with a fixed batch-1
signature (model.predict builds a data pipeline per call and costs ~100x more per frame); .tflite
files run in the LiteRT interpreter. Keras files load in safe mode: a model that carries code
(a Lambda layer) is refused instead of executed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)
import keras
import tensorflow as tf

from driving.config import INPUT_SHAPE
from driving.preprocess import check_frame, preprocess

KERAS_SUFFIXES = (".h5", ".keras")
TFLITE_SUFFIX = ".tflite"


class ModelError(ValueError):
    """A model file that cannot be served: unknown format, unsafe content, wrong input shape."""


def _check_input_shape(shape, source: str) -> None:
    if tuple(shape[1:]) != INPUT_SHAPE:
        raise ModelError(f"{source}: model input is {tuple(shape[1:])}, expected {INPUT_SHAPE} "
                         "(the output of driving.preprocess.preprocess)")


class Predictor:
    """A frame -> steering function over a Keras model or a LiteRT interpreter.

    Calls are serialised by a lock: the LiteRT interpreter is not thread-safe, and a server with
    several clients calls from several threads.
    """

    def __init__(self, run, name: str, backend: str):
        self._run = run  # float32 [1, H, W, 3] -> float
        self.name = name
        self.backend = backend
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> "Predictor":
        """Load a .h5 / .keras (Keras safe mode, not compiled) or .tflite (LiteRT) model."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES:
            try:
                model = keras.saving.load_model(path, compile=False, safe_mode=True)
            except Exception as e:  # Keras raises ValueError, OSError, TypeError... by format
                raise ModelError(f"{path}: cannot load as a Keras model in safe mode: {e}") from None
            return cls.from_keras(model, name=path.name)
        if suffix == TFLITE_SUFFIX:
            return cls.from_tflite(path.read_bytes(), name=path.name)
        raise ModelError(f"{path}: unknown model format {suffix!r} "
                         f"(expected one of {', '.join(KERAS_SUFFIXES + (TFLITE_SUFFIX,))})")

    @classmethod
    def from_keras(cls, model: keras.Model, name: str | None = None) -> "Predictor":
        """Wrap an in-memory Keras model: traced once for batch 1, no Python layer loop per call."""
        name = name or model.name
        _check_input_shape(model.input_shape, name)
        signature = [tf.TensorSpec((1, *INPUT_SHAPE), tf.float32)]
        forward = tf.function(lambda x: model(x, training=False), input_signature=signature)

        def run(x: np.ndarray) -> float:
            return float(np.asarray(forward(x)).reshape(-1)[0])

        predictor = cls(run, name, "keras")
        predictor(np.zeros((160, 320, 3), np.uint8))  # trace now, not on the first real frame
        return predictor

    @classmethod
    def from_tflite(cls, content: bytes, name: str = "model.tflite",
                    num_threads: int | None = None) -> "Predictor":
        """Wrap a LiteRT flatbuffer. int8/uint8-quantised inputs and outputs are (de)quantised here."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_content=content, num_threads=num_threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{name}: not a usable LiteRT model: {e}") from None
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        _check_input_shape(inp["shape"], name)
        in_scale, in_zero = inp["quantization"]
        out_scale, out_zero = out["quantization"]
        quantised_in = np.issubdtype(inp["dtype"], np.integer)
        quantised_out = np.issubdtype(out["dtype"], np.integer)
        info = np.iinfo(inp["dtype"]) if quantised_in else None

        def run(x: np.ndarray) -> float:
            if quantised_in:
                x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            y = float(interpreter.get_tensor(out["index"]).reshape(-1)[0])
            return (y - out_zero) * out_scale if quantised_out else y

        return cls(run, name, "litert")

    def __call__(self, frame_rgb: np.ndarray) -> float:
        """160x320x3 RGB uint8 frame -> steering (about -1..1, positive right)."""
        check_frame(frame_rgb)
        x = preprocess(frame_rgb)[None]
        with self._lock:
            return self._run(x)

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, backend={self.backend!r})"
