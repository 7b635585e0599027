"""The slimming report: what each trained model costs and how well it steers, measured here.

    python -m driving.report --models models/ [--export tflite]
    report = report.run(Path("models"))          # the same, as a library call

For every NAME.keras in the folder (written by train.py) it measures: total and trainable params;
.h5 size with and without optimizer state; .keras size; TFLite float32 / float16 / int8 sizes;
forward MACs per frame; CPU batch-1 latency (median, p99) of the Keras model (a compiled
tf.function, not model.predict) and of LiteRT (ai-edge-litert); validation MSE and MAE; training
seconds per epoch (from NAME.history.csv); each as a ratio to `base` when base is present. It
checks that every TFLite model agrees with Keras on validation frames within a stated tolerance.

Each model is scored on the validation split of the run that trained it, read from the record in
its file (or OUT/run.json), with its own preprocessing: never on frames it trained on. Models from
different runs are scored on their own splits, and the report says so. A model that cannot be
measured (a damaged file) is reported as such, and the others are measured.
Writes report.md, report.json and PNG charts into the folder; the .tflite files go there too.
Where each model looks (driving/saliency.py) is scored on frames of unseen tracks and drawn as
saliency.png (--saliency).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from driving import cli
from driving.config import RUN_JSON, ConfigError, Preprocessing, RunConfig
from driving.files import remove_stale_temps, save_figure, write_json, write_text
from driving.history import all_histories, plot_loss_overlay, read_history
from driving.measure import machine_description

# Largest |TFLite - Keras| steering difference accepted per export (steering spans [-1, 1]).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 0.1}
EXPORT_SUFFIXES = {"float32": ".tflite", "float16": ".float16.tflite", "int8": ".int8.tflite"}
CALIBRATION_FRAMES = 1500  # int8 ranges: 200 frames left effnet-slim at 0.10-0.22 max error, 1500 at 0.07


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
    from driving.modelio import load_info

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
    from driving.config import AugmentConfig
    from driving.pipeline import build_datasets, frames_from_folders

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


def load_tflite(path: Path, threads: int | None = None):
    """A .tflite file run as drive.py runs it (a Predictor): LiteRT on every core unless `threads`
    says otherwise, int8 input and output (de)quantised. `.run(x)` takes one preprocessed frame."""
    from driving.runtime import Predictor

    return Predictor.from_tflite(path.read_bytes(), name=path.name, num_threads=threads)


def measure(folder: Path, name: str, frames: tuple, export: bool, runs: int) -> dict:
    """Every figure of one model, scored on `frames` = (x_val, y_val, calibration)."""
    import keras

    from driving import models
    from driving.measure import file_sizes, keras_function, time_calls
    from driving.modelio import export_tflite, load_keras

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
        from driving.modelio import ModelInfo

        row["tflite"] = {}
        for kind, suffix in EXPORT_SUFFIXES.items():
            path = folder / f"{name}{suffix}"
            export_tflite(model, path, kind, info or ModelInfo(), calibration)
            lite = load_tflite(path)
            error = np.abs(np.array([lite.run(x_val[i : i + 1]) for i in range(len(x_val))]) - keras_pred)
            row["tflite"][kind] = {
                "file": path.name,
                "bytes": path.stat().st_size,
                "latency": time_calls(partial(lite.run, frame), runs),
                "max_abs_error": float(error.max()),
                "mean_abs_error": float(error.mean()),
                "p99_abs_error": float(np.percentile(error, 99)),
                "tolerance": TOLERANCE[kind],
                "within_tolerance": bool(error.max() <= TOLERANCE[kind]),
            }
    keras.backend.clear_session()
    return row


# --- ratios, findings, charts, markdown -----------------------------------------------------------


def flat_figures(row: dict) -> dict[str, float]:
    """The numeric figures of one model under flat names (used for ratios and charts)."""
    out = {
        k: float(row[k])
        for k in (
            "params",
            "trainable",
            "macs",
            "h5",
            "h5_no_optimizer",
            "keras",
            "val_mse",
            "val_mae",
            "seconds_per_epoch",
        )
        if k in row
    }
    out["keras_median_ms"] = row["keras_latency"]["median_ms"]
    out["keras_p99_ms"] = row["keras_latency"]["p99_ms"]
    for kind, t in row.get("tflite", {}).items():
        out[f"tflite_{kind}_bytes"] = float(t["bytes"])
        out[f"litert_{kind}_median_ms"] = t["latency"]["median_ms"]
        out[f"litert_{kind}_p99_ms"] = t["latency"]["p99_ms"]
    return out


def add_ratios(rows: list[dict]) -> None:
    """row["vs_base"][figure] = figure / base's figure, when a `base` model is in the report."""
    base = next((r for r in rows if r["model"] == "base"), None)
    if base is None:
        return
    base_figures = flat_figures(base)
    for row in rows:
        row["vs_base"] = {k: v / base_figures[k] for k, v in flat_figures(row).items() if base_figures.get(k)}


def findings(rows: list[dict]) -> list[str]:
    """Plain sentences on where slimming pays and where it does not, from the measured numbers."""
    base = next((r for r in rows if r["model"] == "base"), None)
    if base is None:
        return ["No `base` model in this folder, so nothing is compared with it."]
    notes = []
    for row in rows:
        if row is base:
            continue
        f, b, name = flat_figures(row), flat_figures(base), row["model"]
        fewer_macs = b["macs"] / f["macs"]
        keras_speedup = b["keras_median_ms"] / f["keras_median_ms"]
        if keras_speedup < 1.1:
            verdict = "there the slimming does not pay"
        elif keras_speedup < 0.8 * fewer_macs:
            verdict = "faster, but far less than its MACs promise"
        else:
            verdict = "the speed-up keeps pace with the MACs"
        notes.append(
            f"**{name}** has {fewer_macs:.1f}x fewer MACs and {b['params'] / f['params']:.1f}x "
            f"fewer parameters than base; in Keras at batch 1 it runs {keras_speedup:.2f}x as "
            f"fast ({f['keras_median_ms']:.2f} ms vs {b['keras_median_ms']:.2f} ms): {verdict}."
        )
        if "litert_float32_median_ms" in f:
            lite_speedup = b["litert_float32_median_ms"] / f["litert_float32_median_ms"]
            notes.append(
                f"With LiteRT (float32) {name} runs in {f['litert_float32_median_ms']:.2f} ms "
                f"against {b['litert_float32_median_ms']:.2f} ms for base: {lite_speedup:.2f}x."
            )
        if "seconds_per_epoch" in f and "seconds_per_epoch" in b:
            train_ratio = f["seconds_per_epoch"] / b["seconds_per_epoch"]
            if train_ratio > 1:
                notes.append(
                    f"Training {name} took {train_ratio:.2f}x as long per epoch as base on "
                    f"this CPU (depthwise convolutions train slowly in TF): slimming does "
                    f"not pay for training time here."
                )
        if f["val_mse"] > 1.1 * b["val_mse"]:
            notes.append(
                f"{name}'s validation MSE is {f['val_mse'] / b['val_mse']:.2f}x base's "
                f"({f['val_mse']:.5f} vs {b['val_mse']:.5f}): it steers less accurately here."
            )
        if f["keras"] > f["h5_no_optimizer"] and f["keras"] / b["keras"] > f["params"] / b["params"] * 1.5:
            notes.append(
                f"{name}'s .keras file is {f['keras'] / b['keras']:.2f}x base's although it has "
                f"{f['params'] / b['params']:.2f}x the parameters: file overhead and optimizer "
                f"state do not shrink with the model."
            )
    return notes


def bar_chart(
    rows: list[dict], series: dict[str, str], title: str, unit: str, path: Path, log: bool = False
) -> None:
    """Grouped bars: one group per model, one bar per figure in `series` (figure key -> label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    figures = [flat_figures(r) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) * max(1, len(series)) ** 0.5), 4.2))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series.items()):
        values = [f.get(key, np.nan) for f in figures]
        bars = ax.bar(np.arange(len(rows)) + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, rotation=90 if len(series) > 2 else 0, padding=2)
    ax.set_xticks(np.arange(len(rows)), names)
    ax.set(title=title, ylabel=unit)
    if log:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def charts(rows: list[dict], folder: Path) -> list[str]:
    files = {
        "params.png": ({"params": "total", "trainable": "trainable"}, "Parameters", "count", False),
        "macs.png": ({"macs": "MACs"}, "Forward multiply-accumulates per frame", "MACs", False),
        "sizes.png": (
            {
                "h5": ".h5 (with optimizer)",
                "h5_no_optimizer": ".h5 (weights only)",
                "keras": ".keras",
                "tflite_float32_bytes": "TFLite float32",
                "tflite_float16_bytes": "TFLite float16",
                "tflite_int8_bytes": "TFLite int8",
            },
            "Model file sizes",
            "bytes",
            True,
        ),
        "latency.png": (
            {
                "keras_median_ms": "Keras (median)",
                "litert_float32_median_ms": "LiteRT float32 (median)",
                "litert_int8_median_ms": "LiteRT int8 (median)",
            },
            "CPU latency at batch 1",
            "ms",
            False,
        ),
    }
    for file, (series, title, unit, log) in files.items():
        present = {k: v for k, v in series.items() if any(k in flat_figures(r) for r in rows)}
        bar_chart(rows, present, title, unit, folder / file, log)
    histories = all_histories(folder)
    if histories:
        plot_loss_overlay(histories, folder / "loss_overlay.png")
        files["loss_overlay.png"] = None
    return list(files)


def ratio(row: dict, key: str) -> str:
    value = row.get("vs_base", {}).get(key)
    return f" ({value:.2f}x)" if value is not None and row["model"] != "base" else ""


def markdown(
    rows: list[dict],
    notes: list[str],
    images: list[str],
    machine: str,
    splits: dict,
    failed: list[dict],
    saliency: dict | None = None,
) -> str:
    kib = lambda b: f"{b / 1024:,.0f} KiB"
    lines = [
        "# Slimming report",
        "",
        f"Measured on {machine}. Ratios in brackets are to `base` (below 1: smaller or faster).",
        "",
        "## Where slimming pays, and where it does not",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    lines += ["", "## What each model is scored on", ""]
    if len(set(splits.values())) > 1:
        lines += [
            "**These models come from different runs**: each is scored on the validation split of "
            "its own run, so their validation errors are measured on different frames.",
            "",
        ]
    lines += [f"- {name}: {split}" for name, split in splits.items()]
    if failed:
        lines += ["", "## Not measured", ""] + [f"- {r['model']}: {r['error']}" for r in failed]
    lines += [
        "",
        "## Size and work",
        "",
        "| model | params | trainable | MACs/frame | .h5 | .h5 weights only | .keras |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,}{ratio(r, 'params')} | {r['trainable']:,} | "
            f"{r['macs']:,}{ratio(r, 'macs')} | {kib(r['h5']) if 'h5' in r else '-'}{ratio(r, 'h5')} | "
            f"{kib(r['h5_no_optimizer'])}{ratio(r, 'h5_no_optimizer')} | "
            f"{kib(r['keras'])}{ratio(r, 'keras')} |"
        )
    with_opt = [r["model"] for r in rows if r.get("h5_has_optimizer")]
    lines += [
        "",
        f"The .h5 files train.py saved include optimizer state (Adam moments, about twice the "
        f"weights) for: {', '.join(with_opt) or 'none'}; the 'weights only' column is the same "
        "model saved without it. .keras files always include it.",
    ]
    lines += [
        "",
        "## Speed and accuracy",
        "",
        "| model | Keras median ms | Keras p99 ms | LiteRT f32 median ms | LiteRT f32 p99 ms | "
        "LiteRT int8 median ms | val MSE | val MAE | s/epoch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lite = r.get("tflite", {})
        f32, i8 = lite.get("float32", {}).get("latency", {}), lite.get("int8", {}).get("latency", {})
        epoch = (
            f"{r['seconds_per_epoch']:.1f}{ratio(r, 'seconds_per_epoch')}"
            if "seconds_per_epoch" in r
            else "-"
        )
        lines.append(
            f"| {r['model']} | {r['keras_latency']['median_ms']:.2f}{ratio(r, 'keras_median_ms')} | "
            f"{r['keras_latency']['p99_ms']:.2f} | "
            + (
                f"{f32['median_ms']:.2f}{ratio(r, 'litert_float32_median_ms')} | {f32['p99_ms']:.2f} | "
                if f32
                else "- | - | "
            )
            + (f"{i8['median_ms']:.2f}{ratio(r, 'litert_int8_median_ms')} | " if i8 else "- | ")
            + f"{r['val_mse']:.5f}{ratio(r, 'val_mse')} | {r['val_mae']:.4f} | {epoch} |"
        )
    if any("tflite" in r for r in rows):
        lines += [
            "",
            "## TFLite export",
            "",
            "Each export is compared with the Keras model on the validation frames "
            "(|TFLite - Keras| steering).",
            "",
            "| model | kind | file | size | max abs error | mean abs error | tolerance | ok |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            for kind, t in r.get("tflite", {}).items():
                lines.append(
                    f"| {r['model']} | {kind} | {t['file']} | {kib(t['bytes'])}"
                    f"{ratio(r, f'tflite_{kind}_bytes')} | {t['max_abs_error']:.2e} | "
                    f"{t['mean_abs_error']:.2e} | {t['tolerance']:g} | "
                    f"{'yes' if t['within_tolerance'] else '**NO**'} |"
                )
        lines += _export_misses(rows)
    if saliency:
        lines += saliency_markdown(saliency)
    lines += ["", "## Charts", ""] + [f"![{i}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def _export_misses(rows: list[dict]) -> list[str]:
    """A plain sentence for every export beyond its tolerance: which, by how much, why, what to do."""
    lines = []
    for r in rows:
        for kind, t in r.get("tflite", {}).items():
            if t["within_tolerance"]:
                continue
            p99 = t.get("p99_abs_error")
            spread = f"99% of frames within {p99:.3f}, " if p99 is not None else ""
            why = (
                "Full-integer quantisation gives every activation 8 bits over a range estimated from "
                "the calibration frames; a few validation frames fall outside it, and which ones moves "
                "with the calibration set (docs/models.md). Serve the float16 file (half the size), or "
                "drive the int8 one (--drive-precisions) to see whether the error matters on the road."
                if kind == "int8"
                else "The converter changed the model's arithmetic beyond rounding: report it as a bug."
            )
            lines.append(
                f"\n**{r['model']} {kind} misses its tolerance:** max |error| {t['max_abs_error']:.3f} "
                f"against {t['tolerance']:g} ({spread}mean {t['mean_abs_error']:.3f}). {why}"
            )
    return lines


# --- where each model looks (driving/saliency.py) ------------------------------------------------

# On by default because it costs little: VisualBackProp's section took 5 to 12 s here (mostly
# rendering its 18 frames) against the report's 110 s; SmoothGrad (32 passes forward and back
# per frame) adds 20 to 30 s for four models and is asked for by name (docs/saliency.md).
SALIENCY_METHODS = ("vbp",)
SALIENCY_GRID = "saliency.png"
SALIENCY_COLUMNS = 6  # frames shown in the grid: the first of each drive of the quick suite


def saliency_section(
    folder: Path, names: Sequence[str], methods: Sequence[str], probes: Sequence | None = None
) -> dict:
    """Where each model looks on the same seeded frames of unseen tracks (saliency.probe_frames,
    or `probes`): per model and method, the share of the saliency on road and road edge, the edge
    share, the off-road share and the chance level; and saliency.png, a grid of those frames with a
    row per model and method under a row of the frames' labels. A model that cannot be scored is
    listed with the reason, and the others are scored."""
    from driving import tfsetup

    tfsetup.setup()

    import keras

    from driving import saliency
    from driving.modelio import info_or_default, load_keras

    probes = saliency.probe_frames() if probes is None else list(probes)
    shown = list(range(0, len(probes), max(1, len(probes) // SALIENCY_COLUMNS)))[:SALIENCY_COLUMNS]
    frames = np.stack([p.frame for p in probes])
    grid = [[saliency.label_overlay(probes[i].frame, probes[i].labels) for i in shown]]
    row_labels = ["labels: road blue,\nedge yellow"]
    scores, failed = {}, {}
    for name in names:
        try:
            model, info = load_keras(folder / f"{name}.keras")
            geometry = info_or_default(info, name).preprocessing
            for method in methods:
                maps = saliency.frame_saliency(saliency.METHODS[method](model), frames, geometry)
                found = saliency.score(maps, probes, geometry)
                scores.setdefault(name, {})[method] = found
                grid.append([saliency.overlay(probes[i].frame, maps[i], geometry) for i in shown])
                row_labels.append(f"{name}, {method}\n{found['score']:.0%} road and edge")
        except Exception as e:  # one model that cannot be scored must not cost the others theirs
            failed[name] = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            print(f"report: {name} not scored for saliency: {failed[name]}", file=sys.stderr)
        keras.backend.clear_session()
    saliency.save_grid(grid, folder / SALIENCY_GRID, row_labels, [[probes[i].name for i in shown]])
    return {"frames": len(probes), "methods": list(methods), "scores": scores, "not_scored": failed}


def saliency_markdown(section: dict) -> list[str]:
    lines = [
        "",
        "## Where each model looks",
        "",
        f"Saliency on {section['frames']} frames of unseen tracks, the same for every model "
        "(docs/saliency.md): the share of each map's mass within the crop rows on road or road "
        "edge, on the edge alone and off the road; chance is the road-and-edge share of the crop's "
        "area, what a map that looks everywhere alike scores. One trained model is one sample.",
        "",
        "| model | method | road and edge | edge | off-road | chance |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, by_method in section["scores"].items():
        for method, s in by_method.items():
            lines.append(
                f"| {name} | {method} | {s['score']:.1%} | {s['edge']:.1%} | {s['off_road']:.1%} | "
                f"{s['chance']:.1%} |"
            )
    lines += [f"- {name}: not scored ({why})" for name, why in section["not_scored"].items()]
    return lines + ["", f"![where each model looks]({SALIENCY_GRID})"]


# --- every export, driven ---------------------------------------------------------------------------

PRECISION_CHART = "precision.png"


def precision_section(folder: Path, rows: list[dict], suite, jobs: int | None, runs: int) -> dict:
    """Each model's float32, float16 and int8 LiteRT files driven over a suite (driving.evaluation.suites):
    size, batch-1 latency on one core and on every core, and autonomy. What a small-car builder
    asks: the smallest file that still drives, and how fast it is on one core."""
    from functools import partial

    from driving.evaluation import suites
    from driving.evaluation.registry import SUITES
    from driving.measure import time_calls

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
    _precision_chart(table, folder / PRECISION_CHART, suite.label)
    return {"suite": suite.label, "drives": len(suite.drives), "rows": table}


def _precision_chart(table: list[dict], path: Path, suite_label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    markers = {"float32": "o", "float16": "s", "int8": "^"}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    models = list(dict.fromkeys(r["model"] for r in table))
    for row in table:
        colour = f"C{models.index(row['model'])}"
        low, high = row["autonomy_ci95"]
        y = row["autonomy_mean"]
        ax.errorbar(
            row["kib"],
            y,
            yerr=[[y - low], [high - y]],
            fmt=markers[row["precision"]],
            color=colour,
            capsize=3,
        )
        label = f"{row['one_core_ms']:.1f} ms"
        below = {"float32": 8, "float16": -4, "int8": -16}[row["precision"]]  # apart when points meet
        ax.annotate(label, (row["kib"], y), textcoords="offset points", xytext=(5, below), fontsize=7)
    for i, model in enumerate(models):
        ax.plot([], [], "o", color=f"C{i}", label=model)
    for kind, marker in markers.items():
        ax.plot([], [], marker, color="0.4", label=kind)
    ax.axhline(90, color="0.5", ls=":", lw=1)
    ax.set(xscale="log", xlabel="LiteRT file size, KiB (log)", ylabel="autonomy %, mean and 95% CI")
    low, high = ax.get_xlim()
    ticks = [t for t in (25, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(title=f"Which file still drives ({suite_label}); labels: batch-1 ms on one core", ylim=(-3, 103))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def precision_markdown(section: dict) -> list[str]:
    lines = [
        "",
        "## Every precision, driven",
        "",
        f"Each LiteRT file driven over the {section['suite']} suite ({section['drives']} unseen drives, "
        "fixed step, 9 mph); batch-1 latency median on one core and on every core.",
        "",
        "| model | precision | KiB | 1 core ms | all cores ms | autonomy mean [95% CI] | "
        "drives without intervention |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in section["rows"]:
        low, high = r["autonomy_ci95"]
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['kib']:,.0f} | {r['one_core_ms']:.2f} | "
            f"{r['all_cores_ms']:.2f} | "
            f"{r['autonomy_mean']:.1f}% [{low:.1f}, {high:.1f}] | {r['success_rate'] * 100:.0f}% |"
        )
    driving = [r for r in section["rows"] if r["autonomy_ci95"][0] >= 90]
    if driving:
        best = min(driving, key=lambda r: r["kib"])
        lines += ["", f"The smallest file whose whole interval is at or above 90%: {best['file']}, "
                      f"{best['kib']:,.0f} KiB, {best['one_core_ms']:.2f} ms on one core."]  # fmt: skip
    else:
        lines += ["", "No file's whole interval is at or above 90% autonomy here."]
    lines += ["", f"![{PRECISION_CHART}]({PRECISION_CHART})"]
    return lines


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
    drive_precisions=None,
    jobs: int | None = None,
    calibration_frames: int = CALIBRATION_FRAMES,
) -> dict:
    """Measure every trained model in `folder`; write report.md, report.json and the charts there.
    `data` and `split_fallback` only serve models that carry no record of their training run.
    `saliency` names the saliency methods whose scores and grid the report shows (none: off).
    `drive_precisions` names a suite (driving.evaluation.registry.SUITES) over which every exported LiteRT
    file is driven (off by default: it costs minutes). Raises ReportError when nothing can be
    reported."""
    from tqdm import tqdm

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
            rows.append(measure(folder, name, frames[split], export, runs))
            splits[name] = split.describe()
        except Exception as e:  # one bad model must not cost the others their report
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failed.append({"model": name, "error": first[:300]})
            print(f"report: {name} not measured: {first[:300]}", file=sys.stderr)
    if not rows:
        raise ReportError(f"{folder}: no model could be measured ({failed[0]['error']})")
    add_ratios(rows)
    notes = findings(rows)
    if len(set(splits.values())) > 1:
        notes.insert(
            0, "These models come from different runs: each is scored on its own run's validation split."
        )
    images = charts(rows, folder)
    where = saliency_section(folder, [r["model"] for r in rows], saliency) if saliency else None
    precisions = precision_section(folder, rows, drive_precisions, jobs, runs) if drive_precisions else None
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
    text = markdown(rows, notes, images, machine, splits, failed, where)
    if precisions:
        text += "\n".join(precision_markdown(precisions)) + "\n"
    write_text(folder / "report.md", text)
    return report


# --- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.report",
        description="Compare the trained models in a folder (NAME.keras from train.py): params, file "
        "sizes, MACs, CPU latency (Keras and LiteRT), validation error, training time, each as a "
        "ratio to base. Each model is scored on its own run's validation split (from its file or "
        "run.json). Writes report.md, report.json and PNG charts there.",
        epilog="example: python -m driving.report --models models/ --export tflite",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of trained models")
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="recordings, only for models that carry no record of their training data (older files)",
    )
    parser.add_argument(
        "--export",
        choices=("tflite", "none"),
        default="tflite",
        help="export NAME.tflite, NAME.float16.tflite, NAME.int8.tflite and time them with LiteRT "
        "(default tflite)",
    )
    old = parser.add_argument_group("the split of models without a record (older files)")
    old.add_argument("--val-fraction", type=cli.number(0, 1, low_open=True, high_open=True), default=0.2)
    old.add_argument("--seed", type=cli.seed, default=0)
    old.add_argument("--block-seconds", type=cli.number(low=0, low_open=True), default=10.0)
    parser.add_argument(
        "--val-frames", type=cli.positive_int, default=512, help="validation frames to score (max)"
    )
    parser.add_argument("--runs", type=cli.positive_int, default=200, help="timed calls per latency figure")
    parser.add_argument(
        "--calibration-frames",
        type=cli.positive_int,
        default=CALIBRATION_FRAMES,
        help=f"training frames that calibrate the int8 export (default {CALIBRATION_FRAMES})",
    )
    parser.add_argument(
        "--saliency",
        nargs="+",
        choices=("vbp", "smoothgrad", "none"),
        default=list(SALIENCY_METHODS),
        metavar="METHOD",
        help="where each model looks, scored on frames of unseen tracks and drawn as saliency.png: "
        f"vbp, smoothgrad, or none (default {' '.join(SALIENCY_METHODS)})",
    )
    parser.add_argument(
        "--drive-precisions",
        metavar="SUITE",
        choices=("quick", "unseen"),
        default=None,
        help="drive every exported LiteRT file (float32, float16, int8) over this suite and tabulate "
        "size, one-core latency and autonomy (off by default: minutes per model)",
    )
    parser.add_argument(
        "--jobs", type=cli.integer(1, 256), default=None, help="parallel drives (default: cores)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "none" in args.saliency and len(args.saliency) > 1:
        parser.error("--saliency: none cannot be combined with a method")
    saliency = [m for m in args.saliency if m != "none"]
    if args.drive_precisions and args.export == "none":
        parser.error("--drive-precisions drives the exported files: it needs --export tflite")
    from driving.data.reader import RecordingError

    fallback = {"val_fraction": args.val_fraction, "seed": args.seed, "block_seconds": args.block_seconds}
    try:
        report = run(
            args.models,
            args.data,
            args.export == "tflite",
            args.runs,
            args.val_frames,
            fallback,
            saliency=saliency,
            drive_precisions=args.drive_precisions,
            jobs=args.jobs,
            calibration_frames=args.calibration_frames,
        )
    except (ReportError, RecordingError, OSError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    print("\n".join(report["findings"]))
    print(f"\nwrote {args.models / 'report.md'}, report.json and the charts")
    return 1 if report["not_measured"] else 0


if __name__ == "__main__":
    sys.exit(main())
