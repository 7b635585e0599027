"""Every LiteRT export of a model, checked against Keras and timed; and every export proven on the
road against its Keras model.

tflite_exports(model, info, run, name, x_val, keras_pred, calibration, runs)
    NAME.tflite, NAME.float16.tflite, NAME.int8.tflite written beside the model, each compared
    with the Keras model on the validation frames (|TFLite - Keras| steering, within TOLERANCE)
    and timed at batch 1 as drive.py runs it.
batch1_ms(path, runs, threads)
    one .tflite file's median batch-1 latency, as the tables of the report and of the slimming
    curve (driving.evaluation.curve) time it.
precision_section(run, rows, suite, jobs, runs)
    the Keras model and each of those files driven over the same evaluation suite
    (driving.evaluation.suites): per file its size, one-core and all-core latency, autonomy, and its
    autonomy difference to the Keras model paired by track with a 95% bootstrap interval over the
    tracks. What a small-car builder asks: which file do I flash? The smallest whose interval
    does not lie wholly below -MARGIN_POINTS (`recommended`); one whose interval does is flagged
    (`verdict`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache, partial
from pathlib import Path

import keras
import numpy as np

from driving.config import TARGET_SPEED_MPH
from driving.drive_config import PilotConfig
from driving.evaluation import suites
from driving.evaluation.registry import Suite, SuiteDrive
from driving.evaluation.suites import bootstrap_ci
from driving.modelio import ModelInfo, export_tflite
from driving.pilot import Pilot
from driving.report.config import MARGIN_POINTS
from driving.report.measure import time_calls
from driving.run import PRECISIONS, DrivenFile, DriveResult, ExportCheck, Latency, ReportRow, RunFolder
from driving.runtime import Predictor

# Largest |TFLite - Keras| steering difference accepted per export (steering spans [-1, 1]).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 0.1}


def load_tflite(path: Path, threads: int | None = None) -> Predictor:
    """A .tflite file run as drive.py runs it (a Predictor): LiteRT on every core unless `threads`
    says otherwise, int8 input and output (de)quantised. `.run(x)` takes one preprocessed frame."""
    return Predictor.from_tflite(path.read_bytes(), name=path.name, num_threads=threads)


def batch1_ms(path: Path, runs: int, threads: int | None = None) -> float:
    """Median batch-1 wall time (ms) of a .tflite file run as drive.py runs it, on `threads`
    threads (None: every core), over `runs` timed calls on a blank frame of its input size."""
    lite = load_tflite(path, threads)
    frame = np.zeros((1, *lite.preprocessing.input_shape), np.float32)
    return time_calls(partial(lite.run, frame), runs)["median_ms"]


def tflite_exports(
    model: keras.Model,
    info: ModelInfo | None,
    run: RunFolder,
    name: str,
    x_val: np.ndarray,
    keras_pred: np.ndarray,
    calibration: np.ndarray,
    runs: int,
) -> dict[str, ExportCheck]:
    """Per precision (float32, float16, int8): the file written, its bytes, its batch-1 latency and
    its steering error against the Keras model's `keras_pred` on `x_val`. The int8 file is
    calibrated on `calibration` frames."""
    exports = {}
    frame = x_val[:1]
    for precision in PRECISIONS:
        path = run.tflite(name, precision)
        export_tflite(model, path, precision, info or ModelInfo(), calibration)
        lite = load_tflite(path)
        error = np.abs(np.array([lite.run(x_val[i : i + 1]) for i in range(len(x_val))]) - keras_pred)
        exports[precision] = ExportCheck(
            file=path.name,
            bytes=path.stat().st_size,
            latency=Latency(**time_calls(partial(lite.run, frame), runs)),
            max_abs_error=float(error.max()),
            mean_abs_error=float(error.mean()),
            p99_abs_error=float(np.percentile(error, 99)),
            tolerance=TOLERANCE[precision],
            within_tolerance=bool(error.max() <= TOLERANCE[precision]),
        )
    return exports


# --- the Keras model on the road --------------------------------------------------------------------


@cache
def _keras_pilot(path: str, speed: float) -> Pilot:
    """One Pilot per Keras file and process, running the model as saved (a traced tf.function),
    not converted to LiteRT as drive.py's default does: the reference every export is held to."""
    return Pilot(Predictor.load(path, backend="keras", threads=1), PilotConfig(speed=speed))


def _drive_keras(task: tuple[str, SuiteDrive, float]) -> DriveResult:
    path, drive, speed = task
    return suites.drive_one(path, drive, speed, pilot=_keras_pilot(path, speed))


def drive_keras(
    paths: Sequence[Path], suite: Suite, jobs: int | None = None, speed: float = TARGET_SPEED_MPH
) -> dict[Path, list[DriveResult]]:
    """Every Keras file driven over every drive of `suite` as Keras runs it, `jobs` drives at a
    time in separate processes (default: one per core): {path: [drive results in suite order]}.
    The drives are those driving.evaluation.suites makes (fixed step, seeded worlds), so they pair
    by track with the exports' drives."""
    tasks = [(str(p), d, speed) for p in paths for d in suite.drives]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    if jobs == 1:
        rows = [_drive_keras(task) for task in tasks]
    else:  # the suites' pool: each drive has its own time limit, and a dead worker ends it in one line
        rows = suites.drive_in_workers(_drive_keras, tasks, jobs, what="report")
    out: dict[Path, list[DriveResult]] = {Path(p): [] for p in paths}
    for (path, _, _), row in zip(tasks, rows, strict=True):
        out[Path(path)].append(row)
    return out


# --- paired by track ----------------------------------------------------------------------------------


def paired_difference(
    export: Mapping[str, float], reference: Mapping[str, float]
) -> tuple[float, tuple[float, float], int]:
    """(mean, 95% bootstrap interval, tracks) of the per-track autonomy differences export minus
    reference, over the tracks both drove. Pairing removes what the tracks share (a hard hairpin
    costs both files), so the interval speaks of the export alone. The bootstrap is seeded: the
    same drives give the same interval."""
    tracks = [t for t in export if t in reference]
    differences = [export[t] - reference[t] for t in tracks]
    mean = float(np.mean(differences)) if differences else float("nan")
    return mean, bootstrap_ci(differences), len(tracks)


def verdict(ci95: tuple[float, float], margin: float = MARGIN_POINTS) -> str:
    """ "worse" when the whole interval lies below -margin points (flagged: not to be served),
    "no worse" when none of it does, "inconclusive" when it straddles -margin."""
    low, high = ci95
    if high < -margin:
        return "worse"
    if low >= -margin:
        return "no worse"
    return "inconclusive"


def recommended(files: Sequence[DrivenFile]) -> DrivenFile | None:
    """Of one model's driven exports, the smallest file whose interval does not lie wholly below
    -MARGIN_POINTS (the Keras model itself is never recommended: it is the reference); None when
    every export drives worse."""
    kept = [f for f in files if f.precision != "keras" and f.verdict != "worse"]
    return min(kept, key=lambda f: f.bytes, default=None)


def _by_track(drives: Sequence[DriveResult]) -> dict[str, float]:
    return {d.drive: float(d.autonomy_pct) for d in drives}


def precision_section(
    run: RunFolder,
    rows: Sequence[ReportRow],
    suite: Suite,
    jobs: int | None,
    runs: int,
    speed: float = TARGET_SPEED_MPH,
) -> list[DrivenFile]:
    """Each model's Keras file and its float32, float16 and int8 LiteRT files (the rows' exports)
    driven over `suite`: per model the Keras file first (the reference), then each export with its
    size, batch-1 latency on one core and on every core, autonomy, and its autonomy difference to
    the Keras model paired by track. The exports' suite files go to run.precision_drives. Empty
    when nothing was exported."""
    exported = [r for r in rows if r.tflite]
    files = {(r.model, p): run.tflite(r.model, p) for r in exported for p in r.tflite}
    if not files:
        return []
    names = [f"{model} {precision}" for model, precision in files]
    driven = suites.run(
        list(files.values()), suite, jobs, speed, out=run.precision_drives.root, names=names, progress=False
    )
    by_keras = drive_keras([run.model(r.model) for r in exported], suite, jobs, speed)

    table = []
    for row in exported:
        keras_file = run.model(row.model)
        drives = by_keras[keras_file]
        summary = suites.summarise(drives)
        reference = _by_track(drives)
        table.append(
            DrivenFile(
                model=row.model,
                precision="keras",
                file=keras_file.name,
                bytes=keras_file.stat().st_size,
                all_cores_ms=row.keras_latency.median_ms,
                one_core_ms=None,
                autonomy_by_track=reference,
                autonomy_mean=summary.autonomy_mean,
                autonomy_ci95=tuple(summary.autonomy_ci95),
                success_rate=summary.success_rate,
            )
        )
        for precision in row.tflite:
            path, name = files[row.model, precision], f"{row.model} {precision}"
            summary = driven.summary[name]
            autonomy = _by_track(driven.drives[name])
            mean, ci95, paired = paired_difference(autonomy, reference)
            table.append(
                DrivenFile(
                    model=row.model,
                    precision=precision,
                    file=path.name,
                    bytes=path.stat().st_size,
                    all_cores_ms=batch1_ms(path, runs),
                    one_core_ms=batch1_ms(path, runs, threads=1),
                    autonomy_by_track=autonomy,
                    autonomy_mean=summary.autonomy_mean,
                    autonomy_ci95=tuple(summary.autonomy_ci95),
                    success_rate=summary.success_rate,
                    difference_mean=mean,
                    difference_ci95=ci95,
                    paired_tracks=paired,
                    verdict=verdict(ci95),
                )
            )
    return table
