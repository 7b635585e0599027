"""The slimming report as a stage: `run(config)` measures every trained model in a folder and
writes report.md, report.json and the charts there (what each figure is: driving/report/__init__.py).

    report = run(ReportConfig(Path("models")))      # or run(Path("models")) for the defaults

Each model is scored on the validation split of the run that trained it (`model_split`, from the
record in its file or OUT/run.json), with its own preprocessing. The figures come from measure.py
and export.py as ReportRows (driving/run.py), the words and pictures from render.py. Every file
name in the folder comes from RunFolder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from driving import card, models
from driving.config import TARGET_SPEED_MPH, AugmentConfig, ConfigError, Preprocessing, RunConfig
from driving.evaluation.registry import SUITES, Suite
from driving.evaluation.suites import BOOTSTRAP_SAMPLES
from driving.files import RecordError, remove_stale_temps, write_text
from driving.modelio import info_or_default, load_info, load_keras
from driving.pipeline import build_datasets, frames_from_folders
from driving.report import render
from driving.report.config import CALIBRATION_FRAMES, MARGIN_POINTS, ReportConfig
from driving.report.export import TOLERANCE, precision_section, recommended, tflite_exports
from driving.report.measure import file_sizes, keras_function, machine_description, time_calls
from driving.run import (
    SCHEMA,
    SCHEMA_KEY,
    DrivenFile,
    Latency,
    ReportRow,
    RunFolder,
    read_record,
    write_record,
)
from driving.saliency import draw, faithfulness
from driving.saliency.frames import Probe, probe_frames
from driving.saliency.methods import METHODS, input_saliency, score, to_frame
from driving.train.history import read_history
from driving.versions import differences_from_lock

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
    val_data: tuple[str, ...] = ()  # train.py --val-data: whole recordings validate instead

    def describe(self) -> str:
        held_out = (
            f"validated on {', '.join(self.val_data)}"
            if self.val_data
            else f"val fraction {self.val_fraction:g}, blocks of {self.block_seconds:g} s, seed {self.seed}"
        )
        return f"data {', '.join(self.data)}; {held_out}; {self.preprocessing.describe()}"


def read_run(out: RunFolder) -> RunConfig | None:
    """OUT/run.json, if there is a readable one."""
    path = out.record
    if not path.is_file():
        return None
    try:
        return RunConfig.from_dict(read_record(path), str(path))
    except (ValueError, ConfigError, RecordError) as e:
        print(f"report: ignoring {path}: {e}", file=sys.stderr)
        return None


def model_split(path: Path, run: RunConfig | None, config: ReportConfig) -> Split:
    """The split `path` was trained with: its own record, else run.json, else the config's
    (the command line's --data/--seed/..., for models saved before records existed)."""
    info = load_info(path)
    record = info.run if info is not None and info.run else (run.to_dict() if run else None)
    if record is not None:
        made = RunConfig.from_dict(record, str(path))
        if config.data and list(config.data) != made.data:
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
            tuple(made.val_data),
        )
    if not config.data:
        raise ReportError(f"{path}: no record of its training data; give --data (and the split it used)")
    return Split(
        tuple(map(str, config.data)),
        config.val_fraction,
        config.block_seconds,
        config.seed,
        info.preprocessing if info else Preprocessing(),
    )


def validation_frames(
    split: Split, limit: int = 512, calibration_frames: int = CALIBRATION_FRAMES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_val, y_val, x_calibration): up to `limit` validation frames as the pipeline makes them,
    and up to `calibration_frames` training frames (not augmented) to calibrate int8 quantisation."""
    train_df, val_df, _ = frames_from_folders(
        split.data,
        split.val_fraction,
        split.seed,
        block_seconds=split.block_seconds,
        val_folders=split.val_data,
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


def measure_model(out: RunFolder, name: str, frames: tuple, export: bool, runs: int) -> ReportRow:
    """Every figure of one model, scored on `frames` = (x_val, y_val, calibration); with `export`,
    its LiteRT files too (export.tflite_exports)."""
    x_val, y_val, calibration = frames
    model, info = load_keras(out.model(name))
    total, trainable = models.count_params(model)

    predict = keras_function(model)
    keras_pred = np.concatenate([predict(x_val[i : i + 64]) for i in range(0, len(x_val), 64)]).reshape(-1)
    history = read_history(out.root, name)
    has_epochs = len(history) and "epoch_seconds" in history
    row = ReportRow(
        model=name,
        params=total,
        trainable=trainable,
        macs=models.count_macs(model),
        **file_sizes(model, out, name),
        val_mse=float(np.mean((keras_pred - y_val) ** 2)),
        val_mae=float(np.mean(np.abs(keras_pred - y_val))),
        val_frames=int(len(y_val)),
        keras_latency=Latency(**time_calls(partial(predict, x_val[:1]), runs)),
        seconds_per_epoch=float(history["epoch_seconds"].median()) if has_epochs else None,
        tflite=tflite_exports(model, info, out, name, x_val, keras_pred, calibration, runs) if export else {},
    )
    keras.backend.clear_session()
    return row


# --- where each model looks (driving.saliency) ----------------------------------------------------


def saliency_section(
    folder: Path, names: Sequence[str], methods: Sequence[str], probes: Sequence[Probe] | None = None
) -> dict:
    """Where each model looks on the same seeded frames of unseen tracks (frames.probe_frames,
    or `probes`): per model and method, the share of the saliency on road and road edge, the edge
    share, the off-road share and the chance level, and whether hiding the most salient pixels
    moves the steering more than hiding the same mask elsewhere (faithfulness.check); and
    saliency.png, a grid of those frames with a row per model and method under a row of the
    frames' labels. A model that cannot be scored is listed with the reason, and the others are
    scored."""
    probes = probe_frames() if probes is None else list(probes)
    shown = list(range(0, len(probes), max(1, len(probes) // SALIENCY_COLUMNS)))[:SALIENCY_COLUMNS]
    frames = np.stack([p.frame for p in probes])
    grid = [[draw.label_overlay(probes[i].frame, probes[i].labels) for i in shown]]
    row_labels = ["labels: road blue,\nedge yellow"]
    scores, failed = {}, {}
    for name in names:
        try:
            model, info = load_keras(RunFolder(folder).model(name))
            geometry = info_or_default(info, name).preprocessing
            for method in methods:
                x, on_input = input_saliency(METHODS[method](model), frames, geometry)
                maps = to_frame(on_input, geometry)
                found = score(maps, probes, geometry)
                found["faithfulness"] = faithfulness.check(model, x, on_input).to_dict()
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


def trained_models(out: RunFolder) -> list[str]:
    """NAME of every trained model in the folder (RunFolder.models: not the checkpoints), base
    first so every ratio reads against the first row."""
    return sorted(out.models(), key=lambda n: n != "base")


def versions_sentence(differences: Sequence[str]) -> str | None:
    """One sentence naming every package whose version in run.json differs from
    requirements.lock (`differences`, from driving.versions.differences_from_lock), or None."""
    if not differences:
        return None
    return (
        f"This run's package versions (run.json) differ from requirements.lock: {', '.join(differences)}; "
        "the same seed and settings can give other figures on the lock's versions."
    )


def precision_record(files: Sequence[DrivenFile], suite: Suite, speed: float) -> dict:
    """The precision section as report.json holds it: the suite, how the intervals were made, every
    driven file, and per model the file the report recommends (None: every export drives worse)."""
    by_model: dict[str, list[DrivenFile]] = {}
    for f in files:
        by_model.setdefault(f.model, []).append(f)
    picks = {model: recommended(mine) for model, mine in by_model.items()}
    return {
        "suite": suite.label,
        "tracks": len(suite.drives),
        "speed_mph": speed,
        "margin_points": MARGIN_POINTS,
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "level": 0.95, "over": "tracks", "seed": 0},
        "rows": [f.to_dict() for f in files],
        "recommended": {model: pick.file if pick else None for model, pick in picks.items()},
    }


def run(config: ReportConfig | str | Path, progress: bool = True, suite: Suite | None = None) -> dict:
    """Measure every trained model in `config.folder`; write report.md, report.json and the charts
    there, and return what report.json holds. A folder alone means the default settings
    (`run(Path("models"))`). `config.data` and the split settings only serve models that carry no
    record of their training run. With `config.drive_precisions` (or a `suite` given here, which
    takes its place), the Keras model and every exported LiteRT file are driven over that suite
    (minutes per model). Raises ReportError when nothing can be reported, ConfigError for a
    setting out of range."""
    config = (config if isinstance(config, ReportConfig) else ReportConfig(Path(config))).validate()
    out = RunFolder(config.folder)
    if not out.root.is_dir():
        raise ReportError(f"{out.root}: no such folder")
    remove_stale_temps(out.root)
    names = trained_models(out)
    if not names:
        raise ReportError(f"{out.root}: no trained models (NAME.keras) found; run train.py first")
    run_config = read_run(out)
    if suite is None and config.drive_precisions:
        suite = SUITES[config.drive_precisions]

    rows: list[ReportRow] = []
    failed, splits, frames = [], {}, {}
    for name in tqdm(names, desc="measuring", unit="model", disable=not progress):
        try:
            split = model_split(out.model(name), run_config, config)
            if split not in frames:
                frames[split] = validation_frames(split, config.val_frames, config.calibration_frames)
            rows.append(measure_model(out, name, frames[split], config.exports, config.runs))
            splits[name] = split.describe()
        except Exception as e:  # one bad model must not cost the others their report
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failed.append({"model": name, "error": first[:300]})
            print(f"report: {name} not measured: {first[:300]}", file=sys.stderr)
    if not rows:
        raise ReportError(f"{out.root}: no model could be measured ({failed[0]['error']})")
    rows = render.add_ratios(rows)
    notes = render.findings(rows)
    if len(set(splits.values())) > 1:
        notes.insert(
            0, "These models come from different runs: each is scored on its own run's validation split."
        )
    # The same seed gives the same model only on the same versions: say so before any figure.
    off_lock = differences_from_lock(run_config.versions) if run_config else []
    if off_lock:
        notes.insert(0, versions_sentence(off_lock))
    images = render.charts(rows, out)
    saliency = config.saliency_methods
    where = saliency_section(out.root, [r.model for r in rows], saliency) if saliency else None
    speed = TARGET_SPEED_MPH
    driven = precision_section(out, rows, suite, config.jobs, config.runs, speed) if suite else []
    if driven:
        render.precision_chart(driven, out.chart("precision"), suite.label)
    machine = machine_description()
    report = {
        "machine": machine,
        "tolerance": TOLERANCE,
        "models": [r.to_dict() for r in rows],
        "not_measured": failed,
        "scored_on": splits,
        "findings": notes,
        "versions_differ_from_lock": off_lock,
        "saliency": where,
        "precisions": precision_record(driven, suite, speed) if driven else None,
    }
    write_record(out.report_json, report)
    # each model's card keeps what was measured, where it looks included
    card.add_report(out, rows, driven, suite, speed, saliency=where, grid=render.SALIENCY_GRID)
    text = render.markdown(rows, notes, images, machine, splits, failed, where)
    if driven:
        lines = render.precision_markdown(
            driven, suite.label, len(suite.drives), speed, out.chart("precision").name
        )
        text += "\n".join(lines) + "\n"
    write_text(out.report_md, text)
    return {SCHEMA_KEY: SCHEMA, **report}
