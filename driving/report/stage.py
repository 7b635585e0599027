"""The slimming report as a stage: `run(folder)` measures every trained model in the folder and
writes report.md, report.json and the charts there (what each figure is: driving/report/__init__.py).

    report = run(Path("models"))

Each model is scored on the validation split of the run that trained it (`model_split`, from the
record in its file or OUT/run.json), with its own preprocessing. The figures come from measure.py
and export.py, the words and pictures from render.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from driving import models
from driving.config import RUN_JSON, AugmentConfig, ConfigError, Preprocessing, RunConfig
from driving.evaluation.registry import Suite
from driving.files import remove_stale_temps, write_json, write_text
from driving.modelio import info_or_default, load_info, load_keras
from driving.pipeline import build_datasets, frames_from_folders
from driving.report import render
from driving.report.export import TOLERANCE, precision_section, tflite_exports
from driving.report.measure import (
    CALIBRATION_FRAMES,
    SALIENCY_METHODS,
    file_sizes,
    keras_function,
    machine_description,
    time_calls,
)
from driving.saliency import draw
from driving.saliency.frames import Probe, probe_frames
from driving.saliency.methods import METHODS, frame_saliency, score
from driving.train.history import read_history

SALIENCY_COLUMNS = 6  # frames shown in the grid: the first of each drive of the quick suite


class ReportError(RuntimeError):
    """A report that cannot be made at all (no models, no data); the message says why."""


# --- which frames each model is scored on ---------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The validation split a model is scored on, and how its frames are preprocessed."""

    data: tuple[str, ...]
    val_fraction: float
    block_seconds: float
    seed: int
    preprocessing: Preprocessing

    def describe(self) -> str:
        return (
            f"data {', '.join(self.data)}; val fraction {self.val_fraction:g}, blocks of "
            f"{self.block_seconds:g} s, seed {self.seed}; {self.preprocessing.describe()}"
        )


def read_run(folder: Path) -> RunConfig | None:
    """OUT/run.json, if there is a readable one."""
    path = folder / RUN_JSON
    if not path.is_file():
        return None
    try:
        return RunConfig.from_dict(json.loads(path.read_text()), str(path))
    except (ValueError, ConfigError) as e:
        print(f"report: ignoring {path}: {e}", file=sys.stderr)
        return None


def model_split(path: Path, run: RunConfig | None, fallback: dict) -> Split:
    """The split `path` was trained with: its own record, else run.json, else `fallback` (the
    command line's --data/--seed/..., for models saved before records existed)."""
    info = load_info(path)
    record = info.run if info is not None and info.run else (run.to_dict() if run else None)
    if record is not None:
        made = RunConfig.from_dict(record, str(path))
        if fallback.get("data") and list(fallback["data"]) != made.data:
            print(
                f"report: {path.name} was trained on {', '.join(made.data)}; scoring it there",
                file=sys.stderr,
            )
        return Split(
            tuple(made.data),
            made.val_fraction,
            made.block_seconds,
            made.seed,
            info.preprocessing if info else made.preprocessing,
        )
    if not fallback.get("data"):
        raise ReportError(f"{path}: no record of its training data; give --data (and the split it used)")
    return Split(
        tuple(map(str, fallback["data"])),
        fallback["val_fraction"],
        fallback["block_seconds"],
        fallback["seed"],
        info.preprocessing if info else Preprocessing(),
    )


def validation_frames(
    split: Split, limit: int = 512, calibration_frames: int = CALIBRATION_FRAMES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_val, y_val, x_calibration): up to `limit` validation frames as the pipeline makes them,
    and up to `calibration_frames` training frames (not augmented) to calibrate int8 quantisation."""
    train_df, val_df, _ = frames_from_folders(
        split.data, split.val_fraction, split.seed, block_seconds=split.block_seconds
    )
    if len(val_df) == 0:
        raise ReportError(f"{', '.join(split.data)}: no validation frames in this split")
    train_ds, val_ds = build_datasets(
        train_df,
        val_df,
        batch_size=64,
        augment=AugmentConfig.off(),
        seed=split.seed,
        geometry=split.preprocessing,
    )
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in val_ds.take(-(-limit // 64))])
    wanted = min(calibration_frames, len(train_df))
    calibration = np.concatenate([x.numpy() for x, _ in train_ds.take(-(-wanted // 64))])
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit], calibration[:calibration_frames]


# --- measuring one model --------------------------------------------------------------------------


def measure_model(folder: Path, name: str, frames: tuple, export: bool, runs: int) -> dict:
    """Every figure of one model, scored on `frames` = (x_val, y_val, calibration); with `export`,
    its LiteRT files too (export.tflite_exports)."""
    x_val, y_val, calibration = frames
    model, info = load_keras(folder / f"{name}.keras")
    total, trainable = models.count_params(model)
    row: dict = {"model": name, "params": total, "trainable": trainable, "macs": models.count_macs(model)}
    row.update(file_sizes(model, folder, name))

    predict = keras_function(model)
    keras_pred = np.concatenate([predict(x_val[i : i + 64]) for i in range(0, len(x_val), 64)]).reshape(-1)
    row["val_mse"] = float(np.mean((keras_pred - y_val) ** 2))
    row["val_mae"] = float(np.mean(np.abs(keras_pred - y_val)))
    row["val_frames"] = int(len(y_val))
    frame = x_val[:1]
    row["keras_latency"] = time_calls(partial(predict, frame), runs)

    history = read_history(folder, name)
    if len(history) and "epoch_seconds" in history:
        row["seconds_per_epoch"] = float(history["epoch_seconds"].median())

    if export:
        row["tflite"] = tflite_exports(model, info, folder, name, x_val, keras_pred, calibration, runs)
    keras.backend.clear_session()
    return row


# --- where each model looks (driving.saliency) ----------------------------------------------------


def saliency_section(
    folder: Path, names: Sequence[str], methods: Sequence[str], probes: Sequence[Probe] | None = None
) -> dict:
    """Where each model looks on the same seeded frames of unseen tracks (frames.probe_frames,
    or `probes`): per model and method, the share of the saliency on road and road edge, the edge
    share, the off-road share and the chance level; and saliency.png, a grid of those frames with a
    row per model and method under a row of the frames' labels. A model that cannot be scored is
    listed with the reason, and the others are scored."""
    probes = probe_frames() if probes is None else list(probes)
    shown = list(range(0, len(probes), max(1, len(probes) // SALIENCY_COLUMNS)))[:SALIENCY_COLUMNS]
    frames = np.stack([p.frame for p in probes])
    grid = [[draw.label_overlay(probes[i].frame, probes[i].labels) for i in shown]]
    row_labels = ["labels: road blue,\nedge yellow"]
    scores, failed = {}, {}
    for name in names:
        try:
            model, info = load_keras(folder / f"{name}.keras")
            geometry = info_or_default(info, name).preprocessing
            for method in methods:
                maps = frame_saliency(METHODS[method](model), frames, geometry)
                found = score(maps, probes, geometry)
                scores.setdefault(name, {})[method] = found
                grid.append([draw.overlay(probes[i].frame, maps[i], geometry) for i in shown])
                row_labels.append(f"{name}, {method}\n{found['score']:.0%} road and edge")
        except Exception as e:  # one model that cannot be scored must not cost the others theirs
            failed[name] = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            print(f"report: {name} not scored for saliency: {failed[name]}", file=sys.stderr)
        keras.backend.clear_session()
    draw.save_grid(grid, folder / render.SALIENCY_GRID, row_labels, [[probes[i].name for i in shown]])
    return {"frames": len(probes), "methods": list(methods), "scores": scores, "not_scored": failed}


# --- the stage ------------------------------------------------------------------------------------


def trained_models(folder: Path) -> list[str]:
    """NAME of every NAME.keras in `folder` (not the NAME.last.keras checkpoints), base first so
    every ratio reads against the first row."""
    names = sorted(p.name[: -len(".keras")] for p in folder.glob("*.keras") if p.name.count(".") == 1)
    return sorted(names, key=lambda n: n != "base")


def run(
    folder: Path,
    data: Sequence[str] | None = None,
    export: bool = True,
    runs: int = 200,
    val_frames: int = 512,
    split_fallback: dict | None = None,
    progress: bool = True,
    saliency: Sequence[str] = SALIENCY_METHODS,
    drive_precisions: Suite | str | None = None,
    jobs: int | None = None,
    calibration_frames: int = CALIBRATION_FRAMES,
) -> dict:
    """Measure every trained model in `folder`; write report.md, report.json and the charts there.
    `data` and `split_fallback` only serve models that carry no record of their training run.
    `saliency` names the saliency methods whose scores and grid the report shows (none: off).
    `drive_precisions` is a suite (or its name in driving.evaluation.registry.SUITES) over which every
    exported LiteRT file is driven (off by default: it costs minutes). Raises ReportError when
    nothing can be reported."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder")
    if runs < 1 or val_frames < 1 or calibration_frames < 1:
        raise ValueError("runs, val_frames and calibration_frames must be at least 1")
    remove_stale_temps(folder)
    names = trained_models(folder)
    if not names:
        raise ReportError(f"{folder}: no trained models (NAME.keras) found; run train.py first")
    fallback = {"data": list(data or []), "val_fraction": 0.2, "block_seconds": 10.0, "seed": 0}
    fallback.update(split_fallback or {})
    run_config = read_run(folder)

    rows, failed, splits, frames = [], [], {}, {}
    for name in tqdm(names, desc="measuring", unit="model", disable=not progress):
        try:
            split = model_split(folder / f"{name}.keras", run_config, fallback)
            if split not in frames:
                frames[split] = validation_frames(split, val_frames, calibration_frames)
            rows.append(measure_model(folder, name, frames[split], export, runs))
            splits[name] = split.describe()
        except Exception as e:  # one bad model must not cost the others their report
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failed.append({"model": name, "error": first[:300]})
            print(f"report: {name} not measured: {first[:300]}", file=sys.stderr)
    if not rows:
        raise ReportError(f"{folder}: no model could be measured ({failed[0]['error']})")
    render.add_ratios(rows)
    notes = render.findings(rows)
    if len(set(splits.values())) > 1:
        notes.insert(
            0, "These models come from different runs: each is scored on its own run's validation split."
        )
    images = render.charts(rows, folder)
    where = saliency_section(folder, [r["model"] for r in rows], saliency) if saliency else None
    precisions = precision_section(folder, rows, drive_precisions, jobs, runs) if drive_precisions else None
    if precisions:
        render.precision_chart(precisions["rows"], folder / render.PRECISION_CHART, precisions["suite"])
    machine = machine_description()
    report = {
        "machine": machine,
        "tolerance": TOLERANCE,
        "models": rows,
        "not_measured": failed,
        "scored_on": splits,
        "findings": notes,
        "saliency": where,
        "precisions": precisions,
    }
    write_json(folder / "report.json", report)
    text = render.markdown(rows, notes, images, machine, splits, failed, where)
    if precisions:
        text += "\n".join(render.precision_markdown(precisions)) + "\n"
    write_text(folder / "report.md", text)
    return report
