"""Serving a saved model: one camera frame in, one steering value out, as fast as batch 1 allows.

    predictor = Predictor.load("models/effnet.h5")   # or .keras, or .tflite
    steering = predictor(frame_rgb)                  # RGB uint8 frame -> float

The frame goes through driving.preprocess.preprocess with the geometry stored in the model file
(driving/modelio.py), the same function and geometry training used, so serving cannot drift from
training. A frame of another size than the model was trained on is refused (FrameError), never
cropped at the wrong rows. .tflite files run in the LiteRT interpreter. Keras files are, by
default, converted to LiteRT in memory and checked against Keras on probe frames (several times
faster at batch 1 on a CPU); with backend="keras" they run through one traced tf.function with a
fixed batch-1 signature (model.predict builds a data pipeline per call and costs ~100x more per
frame). Keras files load in safe mode: a model that carries code (a Lambda layer) is refused
instead of executed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from driving.config import Preprocessing
from driving.drive_config import BACKENDS
from driving.modelio import (
    KERAS_SUFFIXES,
    TFLITE_EXTENSION,
    ModelFileError,
    ModelInfo,
    info_or_default,
    load_info,
    load_keras,
    tflite_info,
    to_tflite,
)
from driving.preprocess import check_frame, preprocess
from driving.tfsetup import quiet_stderr

AGREEMENT = 1e-3  # max steering difference accepted between a converted model and Keras

log = logging.getLogger("driving.runtime")


def litert_threads() -> int:
    """Threads for the LiteRT interpreter: every core this process may use. Left unset, LiteRT
    runs effnet at batch 1 slower than with 1 thread here (about 2.0 vs 1.6 ms); with both cores
    of this 2-core box it takes about 0.9 ms (docs/benchmarks.md)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _probe_frames(geometry: Preprocessing) -> list[np.ndarray]:
    """Frames to compare two versions of a model on: a gradient and seeded noise."""
    rng = np.random.default_rng(0)
    height, width, _ = geometry.frame_shape
    ramp = np.broadcast_to(
        np.linspace(0, 255, width, dtype=np.uint8)[None, :, None], geometry.frame_shape
    ).copy()
    return [ramp, rng.integers(0, 256, geometry.frame_shape, dtype=np.uint8)]


def _check_input_shape(shape, geometry: Preprocessing, source: str) -> None:
    if tuple(shape[1:]) != geometry.input_shape:
        raise ModelFileError(
            f"{source}: model input is {tuple(shape[1:])}, but its preprocessing makes "
            f"{geometry.input_shape} ({geometry.describe()})"
        )


class Predictor:
    """A frame -> steering function over a Keras model or a LiteRT interpreter.

    `preprocessing` is the geometry the model was trained with (from its file). Calls are
    serialised by a lock: the LiteRT interpreter is not thread-safe, and a server with several
    clients calls from several threads.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], float],
        name: str,
        backend: str,
        preprocessing: Preprocessing | None = None,
    ):
        self._run = run  # float32 [1, H, W, 3] -> float
        self.name = name
        self.backend = backend
        self.preprocessing = preprocessing or Preprocessing()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", threads: int | None = None) -> Predictor:
        """Load a .h5 / .keras (Keras safe mode, not compiled) or .tflite (LiteRT) model with the
        preprocessing stored in it (today's defaults, with one warning, for older files).

        backend, for Keras files: "keras" runs the model as saved (traced tf.function); "litert"
        converts it to LiteRT in memory (float32, several times faster at batch 1 on a CPU);
        "auto" (default) converts, checks the converted model against Keras on probe frames, and
        falls back to Keras, with a log line, if conversion fails or the answers differ.
        threads: LiteRT interpreter threads (default litert_threads(): every usable core).
        Raises ModelFileError with one line for an unusable file."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES:
            model, info = load_keras(path)
            info = info_or_default(info, str(path))
            keras_predictor = cls.from_keras(model, name=path.name, preprocessing=info.preprocessing)
            if backend == "keras":
                return keras_predictor
            return cls._converted(model, keras_predictor, strict=backend == "litert", threads=threads)
        if suffix == TFLITE_EXTENSION:
            load_info(path)  # checks the file; the content is read once below
            content = path.read_bytes()
            return cls.from_tflite(content, name=path.name, num_threads=threads)
        raise ModelFileError(
            f"{path}: unknown model format {suffix!r} "
            f"(expected one of {', '.join((*KERAS_SUFFIXES, TFLITE_EXTENSION))})"
        )

    @classmethod
    def from_keras(
        cls, model: keras.Model, name: str | None = None, preprocessing: Preprocessing | None = None
    ) -> Predictor:
        """Wrap an in-memory Keras model: traced once for batch 1, no Python layer loop per call."""
        name = name or model.name
        preprocessing = preprocessing or Preprocessing()
        _check_input_shape(model.input_shape, preprocessing, name)
        signature = [tf.TensorSpec((1, *preprocessing.input_shape), tf.float32)]
        forward = tf.function(lambda x: model(x, training=False), input_signature=signature)

        def run(x: np.ndarray) -> float:
            return float(np.asarray(forward(x)).reshape(-1)[0])

        predictor = cls(run, name, "keras", preprocessing)
        predictor(np.zeros(preprocessing.frame_shape, np.uint8))  # trace now, not on the first real frame
        return predictor

    @classmethod
    def _converted(
        cls, model: keras.Model, reference: Predictor, strict: bool, threads: int | None = None
    ) -> Predictor:
        """`model` converted to LiteRT, if it converts and agrees with `reference`; else the
        reference (or ModelFileError when `strict`)."""
        name, geometry = reference.name, reference.preprocessing
        try:
            content = to_tflite(model)
            with quiet_stderr():  # the interpreter logs its delegate in C++
                lite = cls.from_tflite(
                    content, name=name, num_threads=threads, info=ModelInfo(preprocessing=geometry)
                )
            lite.backend = "keras->litert"
            gap = max(abs(lite(f) - reference(f)) for f in _probe_frames(geometry))
        except Exception as e:  # the converter raises many types (ConverterError, ValueError...)
            problem = f"LiteRT conversion failed ({type(e).__name__}: {str(e).splitlines()[0]})"
        else:
            if gap <= AGREEMENT:
                return lite
            problem = f"LiteRT conversion differs from Keras by {gap:.2g} (> {AGREEMENT})"
        if strict:
            raise ModelFileError(f"{name}: {problem}")
        log.warning("%s: %s; serving it with Keras", name, problem)
        return reference

    @classmethod
    def from_tflite(
        cls,
        content: bytes,
        name: str = "model.tflite",
        num_threads: int | None = None,
        info: ModelInfo | None = None,
    ) -> Predictor:
        """Wrap a LiteRT flatbuffer, with the preprocessing of `info` or of the record inside it.
        int8/uint8-quantised inputs and outputs are (de)quantised here.
        num_threads: the interpreter's threads (default: litert_threads(), every usable core)."""
        info = info_or_default(info or tflite_info(content, name), name)
        try:
            interpreter = Interpreter(model_content=content, num_threads=num_threads or litert_threads())
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(f"{name}: not a usable LiteRT model: {e}") from None
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        _check_input_shape(inp["shape"], info.preprocessing, name)
        in_scale, in_zero = inp["quantization"]
        out_scale, out_zero = out["quantization"]
        quantised_in = np.issubdtype(inp["dtype"], np.integer)
        quantised_out = np.issubdtype(out["dtype"], np.integer)
        limits = np.iinfo(inp["dtype"]) if quantised_in else None

        def run(x: np.ndarray) -> float:
            if quantised_in:
                x = np.clip(np.round(x / in_scale + in_zero), limits.min, limits.max).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            y = float(interpreter.get_tensor(out["index"]).reshape(-1)[0])
            return (y - out_zero) * out_scale if quantised_out else y

        return cls(run, name, "litert", info.preprocessing)

    def run(self, x: np.ndarray) -> float:
        """One preprocessed input, float32 [1, H, W, 3] -> steering: the model alone, what
        __call__ runs after preprocessing (the report and the benchmarks time this)."""
        with self._lock:
            return self._run(x)

    def __call__(self, frame_rgb: np.ndarray) -> float:
        """RGB uint8 frame of the model's frame size -> steering (about -1..1, positive right).
        Raises driving.preprocess.FrameError for a frame of another size or type."""
        check_frame(frame_rgb, "frame", self.preprocessing)
        return self.run(preprocess(frame_rgb, self.preprocessing)[None])

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, backend={self.backend!r})"
