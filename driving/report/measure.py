"""Measuring models: batch-1 latency, file sizes and the machine. Shared by the slimming report, the
seed study's table and the benchmarks in bench/, so all of them time the same way.

Light to import: the study's table and bench/scaling.py take the timer and the machine line from
here without loading TensorFlow.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import metadata

import h5py
import numpy as np

from driving.modelio import ModelInfo, save_keras
from driving.run import RunFolder


def time_calls(call: Callable[[], object], runs: int, warmup: int = 10) -> dict[str, float]:
    """Median and p99 wall time of `call` in milliseconds, after `warmup` untimed calls."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "p99_ms": float(np.percentile(times, 99))}


def keras_function(model) -> Callable[[np.ndarray], np.ndarray]:
    """A traced, inference-mode call: what serving uses, without model.predict's overhead."""
    # Here, not at the top: the callers of time_calls and machine_description (the study's table,
    # bench/scaling.py) must not load TensorFlow; whoever holds a Keras model has loaded it already.
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: fn(tf.constant(x)).numpy()


def file_sizes(model, run: RunFolder, name: str) -> dict[str, int | bool]:
    """Bytes of NAME.keras / NAME.h5 as train.py saved them, whether the .h5 holds optimizer
    state, and the bytes of the same model saved as .h5 without it."""
    sizes: dict[str, int | bool] = {"keras": run.model(name).stat().st_size}
    h5 = run.h5(name)
    if h5.is_file():
        sizes["h5"] = h5.stat().st_size
        with h5py.File(h5, "r") as f:
            sizes["h5_has_optimizer"] = "optimizer_weights" in f
    with tempfile.TemporaryDirectory() as tmp:
        bare = RunFolder(tmp).h5(name)
        save_keras(model, bare, ModelInfo(), include_optimizer=False)
        sizes["h5_no_optimizer"] = bare.stat().st_size
    return sizes


def machine_description() -> str:
    """CPU, cores and TensorFlow version: what every measured figure is stamped with."""
    cpu = platform.processor() or platform.machine()
    try:
        tf_version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tf_version = "not installed"
    return f"{cpu}, {os.cpu_count()} CPU cores, TensorFlow {tf_version}"
