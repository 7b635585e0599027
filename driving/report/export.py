"""Every LiteRT export of a model, checked against Keras and timed; and every export driven.

tflite_exports(model, info, folder, name, x_val, keras_pred, calibration, runs)
    NAME.tflite, NAME.float16.tflite, NAME.int8.tflite written beside the model, each compared
    with the Keras model on the validation frames (|TFLite - Keras| steering, within TOLERANCE)
    and timed at batch 1 as drive.py runs it.
precision_section(folder, rows, suite, jobs, runs)
    each of those files driven over an evaluation suite (driving.evaluate): size, one-core and
    all-core latency, autonomy. What a small-car builder asks: the smallest file that still
    drives, and how fast it is on one core.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import keras
import numpy as np

from driving.evaluation import suites
from driving.evaluation.registry import SUITES, Suite
from driving.modelio import ModelInfo, export_tflite
from driving.report.measure import time_calls
from driving.runtime import Predictor

# Largest |TFLite - Keras| steering difference accepted per export (steering spans [-1, 1]).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 0.1}
EXPORT_SUFFIXES = {"float32": ".tflite", "float16": ".float16.tflite", "int8": ".int8.tflite"}


def load_tflite(path: Path, threads: int | None = None) -> Predictor:
    """A .tflite file run as drive.py runs it (a Predictor): LiteRT on every core unless `threads`
    says otherwise, int8 input and output (de)quantised. `.run(x)` takes one preprocessed frame."""
    return Predictor.from_tflite(path.read_bytes(), name=path.name, num_threads=threads)


def tflite_exports(
    model: keras.Model,
    info: ModelInfo | None,
    folder: Path,
    name: str,
    x_val: np.ndarray,
    keras_pred: np.ndarray,
    calibration: np.ndarray,
    runs: int,
) -> dict[str, dict]:
    """Per kind (float32, float16, int8): the file written, its bytes, its batch-1 latency and its
    steering error against the Keras model's `keras_pred` on `x_val`. The int8 file is calibrated
    on `calibration` frames."""
    exports = {}
    frame = x_val[:1]
    for kind, suffix in EXPORT_SUFFIXES.items():
        path = folder / f"{name}{suffix}"
        export_tflite(model, path, kind, info or ModelInfo(), calibration)
        lite = load_tflite(path)
        error = np.abs(np.array([lite.run(x_val[i : i + 1]) for i in range(len(x_val))]) - keras_pred)
        exports[kind] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "latency": time_calls(partial(lite.run, frame), runs),
            "max_abs_error": float(error.max()),
            "mean_abs_error": float(error.mean()),
            "p99_abs_error": float(np.percentile(error, 99)),
            "tolerance": TOLERANCE[kind],
            "within_tolerance": bool(error.max() <= TOLERANCE[kind]),
        }
    return exports


def precision_section(
    folder: Path, rows: list[dict], suite: Suite | str, jobs: int | None, runs: int
) -> dict:
    """Each model's float32, float16 and int8 LiteRT files (the rows' "tflite" figures) driven over
    `suite` (a Suite or a name in driving.evaluation.registry.SUITES): per file its size, batch-1 latency on
    one core and on every core, and autonomy. Empty when nothing was exported."""
    suite = SUITES[suite] if isinstance(suite, str) else suite
    files = {(r["model"], kind): folder / t["file"] for r in rows for kind, t in r.get("tflite", {}).items()}
    if not files:
        return {}
    names = [f"{model} {kind}" for model, kind in files]
    driven = suites.run(
        list(files.values()), suite, jobs, out=folder / "precision", names=names, progress=False
    )
    frame = np.zeros((1, *load_tflite(next(iter(files.values()))).preprocessing.input_shape), np.float32)
    table = []
    for (model, kind), path, name in zip(files, files.values(), names, strict=True):
        one, every = load_tflite(path, threads=1), load_tflite(path)
        summary = driven["summary"][name]
        table.append(
            {
                "model": model,
                "precision": kind,
                "file": path.name,
                "kib": path.stat().st_size / 1024,
                "one_core_ms": time_calls(partial(one.run, frame), runs)["median_ms"],
                "all_cores_ms": time_calls(partial(every.run, frame), runs)["median_ms"],
                "autonomy_mean": summary["autonomy_mean"],
                "autonomy_ci95": summary["autonomy_ci95"],
                "success_rate": summary["success_rate"],
            }
        )
    return {"suite": suite.label, "drives": len(suite.drives), "rows": table}
