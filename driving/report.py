"""The slimming report: what each trained model costs and how well it steers, measured here.

    python -m driving.report --models models/ --data data/track1 [--export tflite]

For every NAME.keras in --models (written by train.py) it measures: total and trainable params;
.h5 size with and without optimizer state; .keras size; TFLite float32 / float16 / int8 sizes;
forward MACs per frame; CPU batch-1 latency (median, p99) of the Keras model (a compiled
tf.function, not model.predict) and of LiteRT (ai-edge-litert); validation MSE and MAE; training
seconds per epoch (from NAME.history.csv); each as a ratio to `base` when base is present. It
checks that every TFLite model agrees with Keras on validation frames within a stated tolerance.
Writes report.md, report.json and PNG charts into --models; the .tflite files go there too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)

import h5py
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from driving import models
from driving.config import AugmentConfig
from driving.pipeline import build_datasets, frames_from_folders
from driving.runtime import Predictor, to_tflite
from driving.train import all_histories, plot_loss_overlay, read_history

# Largest |TFLite - Keras| steering difference accepted per export (steering spans [-1, 1]).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 0.1}
TFLITE_SUFFIX = {"float32": ".tflite", "float16": ".float16.tflite", "int8": ".int8.tflite"}


# --- data -----------------------------------------------------------------------------------------


def validation_frames(
    data: Sequence[str | Path],
    val_fraction: float = 0.2,
    seed: int = 0,
    limit: int = 512,
    block_seconds: float = 10.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_val, y_val, x_calibration): up to `limit` validation frames as the pipeline makes them,
    and up to 200 training frames (not augmented) to calibrate int8 quantisation."""
    train_df, val_df, _ = frames_from_folders(
        data, val_fraction=val_fraction, seed=seed, block_seconds=block_seconds
    )
    if len(val_df) == 0:
        raise SystemExit(f"{', '.join(map(str, data))}: no validation frames")
    train_ds, val_ds = build_datasets(train_df, val_df, batch_size=64, augment=AugmentConfig.off(), seed=seed)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in val_ds.take(-(-limit // 64))])
    calibration = np.concatenate([x.numpy() for x, _ in train_ds.take(-(-min(200, len(train_df)) // 64))])
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit], calibration[:200]


# --- latency --------------------------------------------------------------------------------------


def time_calls(call: Callable[[], object], runs: int, warmup: int = 10) -> dict[str, float]:
    """Median and p99 wall time of `call` in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "p99_ms": float(np.percentile(times, 99))}


def keras_function(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """A traced, inference-mode call: what serving uses, without model.predict's overhead."""
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: fn(tf.constant(x)).numpy()


def load_tflite(path: Path, threads: int | None = None) -> Predictor:
    """A .tflite file run as drive.py runs it: LiteRT on every core unless `threads` says
    otherwise, int8 input and output (de)quantised. `.run(x)` takes one preprocessed frame."""
    return Predictor.from_tflite(path.read_bytes(), name=path.name, num_threads=threads)


# --- TFLite export --------------------------------------------------------------------------------


def export_tflite(model: keras.Model, path: Path, kind: str, calibration: np.ndarray) -> None:
    """Write `model` as a TFLite flatbuffer (driving.runtime.to_tflite) to a temp file, then
    rename it: float32, float16 weights, or full-integer int8 calibrated on real frames."""
    data = to_tflite(model, kind, calibration)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- measuring one model --------------------------------------------------------------------------


def file_sizes(model: keras.Model, folder: Path, name: str) -> dict[str, int]:
    """Bytes of NAME.h5 / NAME.keras as train.py saved them, and of an .h5 without optimizer."""
    sizes = {"keras": (folder / f"{name}.keras").stat().st_size}
    h5 = folder / f"{name}.h5"
    if h5.is_file():
        sizes["h5"] = h5.stat().st_size
        with h5py.File(h5, "r") as f:
            sizes["h5_has_optimizer"] = int("optimizer_weights" in f)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / f"{name}.h5"
        models.save_atomic(model, bare, include_optimizer=False)
        sizes["h5_no_optimizer"] = bare.stat().st_size
    return sizes


def measure(
    folder: Path,
    name: str,
    x_val: np.ndarray,
    y_val: np.ndarray,
    calibration: np.ndarray,
    export: bool,
    runs: int,
) -> dict:
    model = models.load(folder / f"{name}.keras")
    total, trainable = models.count_params(model)
    row: dict = {"model": name, "params": total, "trainable": trainable, "macs": models.count_macs(model)}
    row.update(file_sizes(model, folder, name))

    predict = keras_function(model)
    keras_pred = np.concatenate([predict(x_val[i : i + 64]) for i in range(0, len(x_val), 64)]).reshape(-1)
    row["val_mse"] = float(np.mean((keras_pred - y_val) ** 2))
    row["val_mae"] = float(np.mean(np.abs(keras_pred - y_val)))
    row["val_frames"] = int(len(y_val))
    frame = x_val[:1]
    row["keras_latency"] = time_calls(lambda: predict(frame), runs)

    history = read_history(folder, name)
    if len(history) and "epoch_seconds" in history:
        row["seconds_per_epoch"] = float(history["epoch_seconds"].median())

    if export:
        row["tflite"] = {}
        for kind, suffix in TFLITE_SUFFIX.items():
            path = folder / f"{name}{suffix}"
            export_tflite(model, path, kind, calibration)
            lite = load_tflite(path)
            error = np.abs(np.array([lite.run(x_val[i : i + 1]) for i in range(len(x_val))]) - keras_pred)
            row["tflite"][kind] = {
                "file": path.name,
                "bytes": path.stat().st_size,
                "latency": time_calls(partial(lite.run, frame), runs),
                "max_abs_error": float(error.max()),
                "mean_abs_error": float(error.mean()),
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def markdown(rows: list[dict], notes: list[str], images: list[str], machine: str) -> str:
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
    lines += ["", "## Charts", ""] + [f"![{i}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}"


# --- command line ---------------------------------------------------------------------------------


def trained_models(folder: Path) -> list[str]:
    names = sorted(
        p.name[: -len(".keras")] for p in folder.glob("*.keras") if not p.name.endswith(".last.keras")
    )
    # base first, so every ratio reads against the first row.
    return sorted(names, key=lambda n: n != "base")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m driving.report",
        description="Compare the trained models in a folder (NAME.keras from train.py): params, file "
        "sizes, MACs, CPU latency (Keras and LiteRT), validation error, training time, "
        "each as a ratio to base. Writes report.md, report.json and PNG charts there.",
        epilog="example: python -m driving.report --models models/ --data data/track1 --export tflite",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of trained models")
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="recordings; their validation split is what the models are scored on",
    )
    parser.add_argument(
        "--export",
        choices=("tflite", "none"),
        default="tflite",
        help="export NAME.tflite, NAME.float16.tflite, NAME.int8.tflite and time them "
        "with LiteRT (default tflite)",
    )
    parser.add_argument("--val-fraction", type=float, default=0.2, help="as given to train.py")
    parser.add_argument("--seed", type=int, default=0, help="as given to train.py (same split)")
    parser.add_argument("--block-seconds", type=float, default=10.0, help="as given to train.py")
    parser.add_argument("--val-frames", type=int, default=512, help="validation frames to score (max)")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per latency figure")
    args = parser.parse_args(argv)

    names = trained_models(args.models)
    if not names:
        raise SystemExit(f"{args.models}: no trained models (NAME.keras) found; run train.py first")
    x_val, y_val, calibration = validation_frames(
        args.data, args.val_fraction, args.seed, args.val_frames, args.block_seconds
    )
    rows = [
        measure(args.models, name, x_val, y_val, calibration, args.export == "tflite", args.runs)
        for name in tqdm(names, desc="measuring", unit="model")
    ]
    add_ratios(rows)
    notes = findings(rows)
    images = charts(rows, args.models)
    machine = machine_description()
    report = {"machine": machine, "tolerance": TOLERANCE, "models": rows, "findings": notes}
    (args.models / "report.json").write_text(json.dumps(report, indent=1))
    (args.models / "report.md").write_text(markdown(rows, notes, images, machine))
    print("\n".join(notes))
    print(f"\nwrote {args.models / 'report.md'}, report.json and {len(images)} charts")
    return report


if __name__ == "__main__":
    main()
