"""Serving a saved model: one camera frame in, one steering value out, as fast as batch 1 allows.

    predictor = Predictor.load("models/effnet.h5")   # or .keras, or .tflite
    steering = predictor(frame_rgb)                  # 160x320x3 RGB uint8 -> float

The frame goes through driving.preprocess.preprocess, the same function training uses, so serving
cannot drift from training. .tflite files run in the LiteRT interpreter. Keras files are, by
default, converted to LiteRT in memory and checked against Keras on probe frames (several times
faster at batch 1 on a CPU); with backend="keras" they run through one traced tf.function with a
fixed batch-1 signature (model.predict builds a data pipeline per call and costs ~100x more per
frame). Keras files load in safe mode: a model that carries code (a Lambda layer) is refused
instead of executed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)

import keras
import numpy as np
import tensorflow as tf

from driving.config import FRAME_HEIGHT, FRAME_WIDTH, INPUT_SHAPE
from driving.preprocess import check_frame, preprocess

KERAS_SUFFIXES = (".h5", ".keras")
TFLITE_SUFFIX = ".tflite"
BACKENDS = ("auto", "keras", "litert")
AGREEMENT = 1e-3  # max steering difference accepted between a converted model and Keras
TFLITE_KINDS = ("float32", "float16", "int8")

log = logging.getLogger("driving.runtime")


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ logging bypasses Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def litert_threads() -> int:
    """Threads for the LiteRT interpreter: every core this process may use. Left unset, LiteRT
    runs effnet at batch 1 slower than with 1 thread here (about 2.0 vs 1.6 ms); with both cores
    of this 2-core box it takes about 0.9 ms (docs/benchmarks.md)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def to_tflite(model: keras.Model, kind: str = "float32", calibration: np.ndarray | None = None) -> bytes:
    """`model` as a LiteRT flatbuffer with a fixed batch-1 input, the shape serving uses: float32,
    float16 weights, or full-integer int8 (int8 input and output, calibrated on `calibration`,
    preprocessed frames float32 [N, 128, 128, 3]). The one conversion path of the project:
    drive.py's in-memory conversion and the report's exported files are the same model."""
    if kind not in TFLITE_KINDS:
        raise ValueError(f"unknown TFLite kind {kind!r}; choose from {', '.join(TFLITE_KINDS)}")
    if kind == "int8" and (calibration is None or len(calibration) == 0):
        raise ValueError("int8 conversion needs calibration frames")
    with tempfile.TemporaryDirectory() as saved, _quiet_stderr():
        # Via a SavedModel: its variables are frozen into constants, which int8 calibration needs.
        model.export(
            saved,
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec([1, *INPUT_SHAPE], tf.float32)],
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if kind == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif kind == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [calibration[i : i + 1]] for i in range(len(calibration))
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()


def _probe_frames() -> list[np.ndarray]:
    """Frames to compare two versions of a model on: a gradient and seeded noise."""
    rng = np.random.default_rng(0)
    ramp = np.broadcast_to(
        np.linspace(0, 255, FRAME_WIDTH, dtype=np.uint8)[None, :, None], (FRAME_HEIGHT, FRAME_WIDTH, 3)
    ).copy()
    return [ramp, rng.integers(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)]


class ModelError(ValueError):
    """A model file that cannot be served: unknown format, unsafe content, wrong input shape."""


def _check_input_shape(shape, source: str) -> None:
    if tuple(shape[1:]) != INPUT_SHAPE:
        raise ModelError(
            f"{source}: model input is {tuple(shape[1:])}, expected {INPUT_SHAPE} "
            "(the output of driving.preprocess.preprocess)"
        )


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
    def load(cls, path: str | Path, backend: str = "auto", threads: int | None = None) -> Predictor:
        """Load a .h5 / .keras (Keras safe mode, not compiled) or .tflite (LiteRT) model.

        backend, for Keras files: "keras" runs the model as saved (traced tf.function); "litert"
        converts it to LiteRT in memory (float32, several times faster at batch 1 on a CPU);
        "auto" (default) converts, checks the converted model against Keras on probe frames, and
        falls back to Keras, with a log line, if conversion fails or the answers differ.
        threads: LiteRT interpreter threads (default litert_threads(): every usable core)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES:
            try:
                model = keras.saving.load_model(path, compile=False, safe_mode=True)
            except Exception as e:  # Keras raises ValueError, OSError, TypeError... by format
                raise ModelError(f"{path}: cannot load as a Keras model in safe mode: {e}") from None
            keras_predictor = cls.from_keras(model, name=path.name)
            if backend == "keras":
                return keras_predictor
            return cls._converted(model, keras_predictor, strict=backend == "litert", threads=threads)
        if suffix == TFLITE_SUFFIX:
            return cls.from_tflite(path.read_bytes(), name=path.name, num_threads=threads)
        raise ModelError(
            f"{path}: unknown model format {suffix!r} "
            f"(expected one of {', '.join(KERAS_SUFFIXES + (TFLITE_SUFFIX,))})"
        )

    @classmethod
    def from_keras(cls, model: keras.Model, name: str | None = None) -> Predictor:
        """Wrap an in-memory Keras model: traced once for batch 1, no Python layer loop per call."""
        name = name or model.name
        _check_input_shape(model.input_shape, name)
        signature = [tf.TensorSpec((1, *INPUT_SHAPE), tf.float32)]
        forward = tf.function(lambda x: model(x, training=False), input_signature=signature)

        def run(x: np.ndarray) -> float:
            return float(np.asarray(forward(x)).reshape(-1)[0])

        predictor = cls(run, name, "keras")
        predictor(
            np.zeros((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        )  # trace now, not on the first real frame
        return predictor

    @classmethod
    def _converted(
        cls, model: keras.Model, reference: Predictor, strict: bool, threads: int | None = None
    ) -> Predictor:
        """`model` converted to LiteRT, if it converts and agrees with `reference`; else the
        reference (or ModelError when `strict`)."""
        name = reference.name
        try:
            content = to_tflite(model)
            with _quiet_stderr():  # the interpreter logs its delegate in C++
                lite = cls.from_tflite(content, name=name, num_threads=threads)
            lite.backend = "keras->litert"
            gap = max(abs(lite(f) - reference(f)) for f in _probe_frames())
        except Exception as e:  # the converter raises many types (ConverterError, ValueError...)
            problem = f"LiteRT conversion failed ({type(e).__name__}: {str(e).splitlines()[0]})"
        else:
            if gap <= AGREEMENT:
                return lite
            problem = f"LiteRT conversion differs from Keras by {gap:.2g} (> {AGREEMENT})"
        if strict:
            raise ModelError(f"{name}: {problem}")
        log.warning("%s: %s; serving it with Keras", name, problem)
        return reference

    @classmethod
    def from_tflite(
        cls, content: bytes, name: str = "model.tflite", num_threads: int | None = None
    ) -> Predictor:
        """Wrap a LiteRT flatbuffer. int8/uint8-quantised inputs and outputs are (de)quantised here.
        num_threads: the interpreter's threads (default: litert_threads(), every usable core)."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_content=content, num_threads=num_threads or litert_threads())
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

    def run(self, x: np.ndarray) -> float:
        """One preprocessed input, float32 [1, 128, 128, 3] -> steering: the model alone, what
        __call__ runs after preprocessing (the report and the benchmarks time this)."""
        with self._lock:
            return self._run(x)

    def __call__(self, frame_rgb: np.ndarray) -> float:
        """160x320x3 RGB uint8 frame -> steering (about -1..1, positive right)."""
        check_frame(frame_rgb)
        return self.run(preprocess(frame_rgb)[None])

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, backend={self.backend!r})"
