"""The report's words and pictures: ratios to base, the plain sentences on where slimming pays, the
bar charts, the precision chart and report.md's tables, all from the measured rows (ReportRow and
DrivenFile, driving/run.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from driving.files import save_figure
from driving.report.config import MARGIN_POINTS
from driving.report.export import recommended
from driving.run import DrivenFile, ReportRow, RunFolder
from driving.train.history import all_histories, plot_loss_overlay

SALIENCY_GRID = "saliency.png"


# --- ratios, findings, charts, markdown -----------------------------------------------------------


def flat_figures(row: ReportRow) -> dict[str, float]:
    """The numeric figures of one model under flat names (used for ratios and charts)."""
    named = ("params", "trainable", "macs", "h5", "h5_no_optimizer", "keras", "val_mse", "val_mae")
    out = {k: float(getattr(row, k)) for k in (*named, "seconds_per_epoch") if getattr(row, k) is not None}
    out["keras_median_ms"] = row.keras_latency.median_ms
    out["keras_p99_ms"] = row.keras_latency.p99_ms
    for kind, t in row.tflite.items():
        out[f"tflite_{kind}_bytes"] = float(t.bytes)
        out[f"litert_{kind}_median_ms"] = t.latency.median_ms
        out[f"litert_{kind}_p99_ms"] = t.latency.p99_ms
    return out


def add_ratios(rows: Sequence[ReportRow]) -> list[ReportRow]:
    """The rows with vs_base[figure] = figure / base's figure, when a `base` model is among them."""
    base = next((r for r in rows if r.model == "base"), None)
    if base is None:
        return list(rows)
    base_figures = flat_figures(base)
    return [
        dataclasses.replace(
            row, vs_base={k: v / base_figures[k] for k, v in flat_figures(row).items() if base_figures.get(k)}
        )
        for row in rows
    ]


def findings(rows: Sequence[ReportRow]) -> list[str]:
    """Plain sentences on where slimming pays and where it does not, from the measured numbers."""
    base = next((r for r in rows if r.model == "base"), None)
    if base is None:
        return ["No `base` model in this folder, so nothing is compared with it."]
    notes = []
    for row in rows:
        if row is base:
            continue
        f, b, name = flat_figures(row), flat_figures(base), row.model
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
    rows: Sequence[ReportRow], series: dict[str, str], title: str, unit: str, path: Path, log: bool = False
) -> None:
    """Grouped bars: one group per model, one bar per figure in `series` (figure key -> label)."""
    matplotlib.use("Agg")
    names = [r.model for r in rows]
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


def charts(rows: Sequence[ReportRow], out: RunFolder) -> list[str]:
    """The bar charts of every figure the rows have, and the loss overlay where histories are,
    written into the run folder `out`; returns their file names."""
    charts = {
        "params": ({"params": "total", "trainable": "trainable"}, "Parameters", "count", False),
        "macs": ({"macs": "MACs"}, "Forward multiply-accumulates per frame", "MACs", False),
        "sizes": (
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
        "latency": (
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
    files = []
    for name, (series, title, unit, log) in charts.items():
        present = {k: v for k, v in series.items() if any(k in flat_figures(r) for r in rows)}
        bar_chart(rows, present, title, unit, out.chart(name), log)
        files.append(out.chart(name).name)
    histories = all_histories(out.root)
    if histories:
        plot_loss_overlay(histories, out.loss_overlay)
        files.append(out.loss_overlay.name)
    return files


def ratio(row: ReportRow, key: str) -> str:
    """A figure's ratio to base, as a table cell shows it: " (0.42x)", empty for base itself."""
    value = row.vs_base.get(key)
    return f" ({value:.2f}x)" if value is not None and row.model != "base" else ""


def markdown(
    rows: Sequence[ReportRow],
    notes: list[str],
    images: list[str],
    machine: str,
    splits: dict,
    failed: list[dict],
    saliency: dict | None = None,
) -> str:
    """report.md: the findings, what each model is scored on, and a table per kind of figure."""
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
            f"| {r.model} | {r.params:,}{ratio(r, 'params')} | {r.trainable:,} | "
            f"{r.macs:,}{ratio(r, 'macs')} | {kib(r.h5) if r.h5 is not None else '-'}{ratio(r, 'h5')} | "
            f"{kib(r.h5_no_optimizer)}{ratio(r, 'h5_no_optimizer')} | "
            f"{kib(r.keras)}{ratio(r, 'keras')} |"
        )
    with_opt = [r.model for r in rows if r.h5_has_optimizer]
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
        f32, i8 = r.tflite.get("float32"), r.tflite.get("int8")
        epoch = (
            f"{r.seconds_per_epoch:.1f}{ratio(r, 'seconds_per_epoch')}"
            if r.seconds_per_epoch is not None
            else "-"
        )
        lines.append(
            f"| {r.model} | {r.keras_latency.median_ms:.2f}{ratio(r, 'keras_median_ms')} | "
            f"{r.keras_latency.p99_ms:.2f} | "
            + (
                f"{f32.latency.median_ms:.2f}{ratio(r, 'litert_float32_median_ms')} | "
                f"{f32.latency.p99_ms:.2f} | "
                if f32
                else "- | - | "
            )
            + (f"{i8.latency.median_ms:.2f}{ratio(r, 'litert_int8_median_ms')} | " if i8 else "- | ")
            + f"{r.val_mse:.5f}{ratio(r, 'val_mse')} | {r.val_mae:.4f} | {epoch} |"
        )
    if any(r.tflite for r in rows):
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
            for kind, t in r.tflite.items():
                lines.append(
                    f"| {r.model} | {kind} | {t.file} | {kib(t.bytes)}"
                    f"{ratio(r, f'tflite_{kind}_bytes')} | {t.max_abs_error:.2e} | "
                    f"{t.mean_abs_error:.2e} | {t.tolerance:g} | "
                    f"{'yes' if t.within_tolerance else '**NO**'} |"
                )
        lines += _export_misses(rows)
    if saliency:
        lines += saliency_markdown(saliency)
    lines += ["", "## Charts", ""] + [f"![{i}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def _export_misses(rows: Sequence[ReportRow]) -> list[str]:
    """A plain sentence for every export beyond its tolerance: which, by how much, why, what to do."""
    lines = []
    for r in rows:
        for kind, t in r.tflite.items():
            if t.within_tolerance:
                continue
            spread = f"99% of frames within {t.p99_abs_error:.3f}, "
            why = (
                "Full-integer quantisation gives every activation 8 bits over a range estimated from "
                "the calibration frames; a few validation frames fall outside it, and which ones moves "
                "with the calibration set (docs/models.md). Serve the float16 file (half the size), or "
                "drive the int8 one (--drive-precisions) to see whether the error matters on the road."
                if kind == "int8"
                else "The converter changed the model's arithmetic beyond rounding: report it as a bug."
            )
            lines.append(
                f"\n**{r.model} {kind} misses its tolerance:** max |error| {t.max_abs_error:.3f} "
                f"against {t.tolerance:g} ({spread}mean {t.mean_abs_error:.3f}). {why}"
            )
    return lines


# --- where each model looks -----------------------------------------------------------------------


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
    return (
        lines + saliency_faithfulness_markdown(section) + ["", f"![where each model looks]({SALIENCY_GRID})"]
    )


def saliency_faithfulness_markdown(section: dict) -> list[str]:
    """The deletion check, a column per method: the ratio, its 95% interval and the verdict."""
    methods, scores = section["methods"], section["scores"]
    found = [
        s["faithfulness"] for by_method in scores.values() for s in by_method.values() if "faithfulness" in s
    ]
    if not found:
        return []  # a section saved before the check existed
    first = found[0]
    lines = [
        "",
        f"Do the maps show what the steering uses? Per frame, the {first['share']:.0%} of the model "
        "input's pixels the map ranks highest are hidden (filled with the frame's mean colour), "
        f"and the same mask moved to a random place ({first['draws']} draws); the cell is the mean "
        "|steering change| hiding the salient pixels over hiding them elsewhere, with its bootstrap "
        "95% interval over the frames. A method earns its place where the lower bound is above "
        f"{first['earns_above']:g} (docs/saliency.md).",
        "",
        "| model | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for name, by_method in scores.items():
        cells = [_faithfulness_cell(by_method.get(method, {}).get("faithfulness")) for method in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _faithfulness_cell(checked: dict | None) -> str:
    if not checked:
        return ""
    if checked["verdict"] == "steering does not move":
        return checked["verdict"]
    moved = checked["moved"]
    return f"{moved['ratio']:.2f} [{moved['low']:.2f}, {moved['high']:.2f}] {checked['verdict']}"


# --- every export, driven ---------------------------------------------------------------------------


def precision_chart(files: Sequence[DrivenFile], path: Path, suite_label: str) -> Path:
    """Autonomy (mean and 95% CI) against file size, a point per model and LiteRT precision,
    labelled with its one-core latency (and "worse" where the export is flagged); each model's
    Keras autonomy is a dashed line in its colour."""
    matplotlib.use("Agg")
    markers = {"float32": "o", "float16": "s", "int8": "^"}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    models = list(dict.fromkeys(f.model for f in files))
    for f in files:
        colour = f"C{models.index(f.model)}"
        if f.precision == "keras":
            ax.axhline(f.autonomy_mean, color=colour, ls="--", lw=0.8)
            continue
        low, high = f.autonomy_ci95
        y = f.autonomy_mean
        ax.errorbar(f.kib, y, yerr=[[y - low], [high - y]], fmt=markers[f.precision], color=colour, capsize=3)
        label = f"{f.one_core_ms:.1f} ms" + (", worse" if f.verdict == "worse" else "")
        below = {"float32": 8, "float16": -4, "int8": -16}[f.precision]  # apart when points meet
        ax.annotate(label, (f.kib, y), textcoords="offset points", xytext=(5, below), fontsize=7)
    for i, model in enumerate(models):
        ax.plot([], [], "o", color=f"C{i}", label=model)
    for kind, marker in markers.items():
        ax.plot([], [], marker, color="0.4", label=kind)
    ax.plot([], [], "--", color="0.4", lw=0.8, label="its Keras model")
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


def _points(value: float) -> str:
    return f"{value:+.1f}"


def _difference(f: DrivenFile) -> str:
    """ "-0.4 [-1.2, +0.3]": the paired difference to the Keras model and its interval, in points."""
    if f.difference_mean is None or f.difference_ci95 is None:
        return "-"
    low, high = f.difference_ci95
    return f"{_points(f.difference_mean)} [{_points(low)}, {_points(high)}]"


def flagged(f: DrivenFile) -> str:
    """The plain sentence for an export that drives worse than its Keras model."""
    return (
        f"**{f.model} {f.precision} drives worse than its Keras model**: {_difference(f)} points of "
        f"autonomy over {f.paired_tracks} tracks paired by track, the whole interval below "
        f"{-MARGIN_POINTS:g} point. Do not serve {f.file}."
    )


def recommendation(model: str, files: Sequence[DrivenFile]) -> str:
    """One line per model: the file to flash, or why there is none."""
    pick = recommended(files)
    keras = next((f for f in files if f.precision == "keras"), None)
    if pick is None:
        fallback = f": serve {keras.file} with drive.py, or retrain" if keras else ""
        return f"- **{model}**: every export drives worse than its Keras model{fallback}."
    return (
        f"- **{model}**: flash {pick.file} ({pick.kib:,.0f} KiB, {pick.one_core_ms:.2f} ms on one "
        f"core): {pick.autonomy_mean:.1f}% autonomy over {pick.tracks} tracks, {_difference(pick)} points "
        f"from its Keras model over {pick.paired_tracks} paired tracks."
    )


def precision_markdown(
    files: Sequence[DrivenFile], suite_label: str, tracks: int, speed: float, chart: str
) -> list[str]:
    """The "which file do I flash" section: per model its Keras file (the reference) and each LiteRT
    export, with size, latency, autonomy and the paired difference to the Keras model; a sentence
    for every export flagged worse; one recommendation per model."""
    lines = [
        "",
        "## Which file do I flash: every precision, driven",
        "",
        f"The Keras model and each LiteRT file driven over the {suite_label} suite ({tracks} unseen "
        f"tracks, fixed step, {speed:g} mph); batch-1 latency median on one core and on every core "
        "(Keras: a traced tf.function on every core). *vs Keras* is the mean of the per-track "
        "autonomy differences to the Keras model, in points, with a 95% bootstrap interval over "
        f"the tracks. An export whose whole interval lies below {-MARGIN_POINTS:g} point "
        "drives worse (flagged, never recommended); one whose interval reaches below it is "
        "inconclusive. The recommendation is the smallest file not flagged. One trained model "
        "per row: the intervals are over tracks, not training seeds.",
        "",
        "| model | precision | file | KiB | 1 core ms | all cores ms | autonomy mean [95% CI] | tracks | "
        "without intervention | vs Keras, points [95% CI] | verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in files:
        low, high = f.autonomy_ci95
        one_core = f"{f.one_core_ms:.2f}" if f.one_core_ms is not None else "-"
        verdict = f"**{f.verdict}**" if f.verdict == "worse" else f.verdict
        lines.append(
            f"| {f.model} | {f.precision} | {f.file} | {f.kib:,.0f} | {one_core} | {f.all_cores_ms:.2f} | "
            f"{f.autonomy_mean:.1f}% [{low:.1f}, {high:.1f}] | {f.tracks} | {f.success_rate * 100:.0f}% | "
            f"{_difference(f)} | {verdict} |"
        )
    worse = [f for f in files if f.verdict == "worse"]
    if worse:
        lines += [""] + [flagged(f) for f in worse]
    by_model: dict[str, list[DrivenFile]] = {}
    for f in files:
        by_model.setdefault(f.model, []).append(f)
    lines += ["", "What to serve (the smallest file not flagged):", ""]
    lines += [recommendation(model, mine) for model, mine in by_model.items()]
    lines += ["", f"![{chart}]({chart})"]
    return lines
