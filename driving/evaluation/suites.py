"""Evaluation suites: many worlds a model never saw, driven in parallel, summarised with
confidence intervals.

    python -m driving.evaluate models/effnet.h5 models/base.h5 --suite unseen [--jobs 2] [--out DIR]
    result = evaluate.run(["models/effnet.h5"], SUITES["quick"], jobs=2)

A suite is a named, versioned list of drives. Each drive is one lap of a procedurally generated
track (driving.sim.track.suite_track: every one has a hairpin and S-bends) in one of the three
styles, under conditions drawn from a seed (driving.sim.conditions: sun, shadows, palettes,
grain), with a road width drawn within the simulator's range. The track seeds come from ranges
kept apart by purpose, so no recording ever drives a suite's track:

    TRAINING_SEEDS    0 - 4999      suite-style tracks a recording may use
    VALIDATION_SEEDS  5000 - 9999   the held-out tracks that choose a drive-best checkpoint
    UNSEEN_SEEDS      10000 -       the `unseen` and `quick` suites

Every drive is deterministic (fixed 1/15 s step, the Pilot driven directly in-process, LiteRT on
one thread), so a suite gives the same figures whatever the number of parallel jobs.

Per model, per drive and in aggregate: success rate (drives with zero interventions), autonomy
mean with a 95% bootstrap confidence interval over the drives, interventions per km, mean
|cross-track error|, steering rate, latency. Written as JSON, a markdown table and a PNG.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from driving import cli

TRAINING_SEEDS = range(0, 5000)
VALIDATION_SEEDS = range(5000, 10000)
UNSEEN_SEEDS = range(10000, 20000)
STYLE_ORDER = ("lake", "jungle", "desert")
BOOTSTRAP_SAMPLES = 10_000


@dataclass(frozen=True)
class SuiteDrive:
    """One drive of a suite: a track, a look, a distance."""

    track_seed: int
    style: str
    conditions_seed: int
    laps: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.style}-{self.track_seed}"

    def track(self):
        return _suite_track(self.track_seed, self.style)

    def conditions(self):
        from driving.sim.conditions import Conditions

        return Conditions.draw(self.conditions_seed)


@cache
def _suite_track(seed: int, style: str):
    from driving.sim.track import suite_track

    return suite_track(seed, style)


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    drives: tuple[SuiteDrive, ...]
    description: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _drives(first_seed: int, count: int, laps: float) -> tuple[SuiteDrive, ...]:
    """`count` drives on consecutive track seeds, the styles taking turns; each world's conditions
    are drawn from a seed of their own (the track seed plus a million, so never a track seed)."""
    return tuple(
        SuiteDrive(first_seed + i, STYLE_ORDER[i % 3], 1_000_000 + first_seed + i, laps) for i in range(count)
    )


SUITES = {
    "unseen": Suite(
        "unseen",
        1,
        _drives(UNSEEN_SEEDS.start, 24, 1.0),
        "24 tracks never recorded, 8 per style, each with a hairpin and S-bends, under drawn conditions",
    ),
    "quick": Suite(
        "quick",
        1,
        _drives(UNSEEN_SEEDS.start + 500, 6, 1.0),
        "6 unseen tracks, 2 per style: a demo- and CI-sized look at generalisation",
    ),
    "validation": Suite(
        "validation",
        1,
        _drives(VALIDATION_SEEDS.start, 3, 0.5),
        "3 held-out half laps, one per style: how train.py's drive check picks a checkpoint",
    ),
}


# --- driving the suite ----------------------------------------------------------------------------


@cache
def _pilot(model: str, speed: float):
    """One Pilot per model and process (TensorFlow and the model load once per worker)."""
    from driving.pilot import Pilot, PilotConfig
    from driving.runtime import Predictor

    return Pilot(Predictor.load(model, threads=1), PilotConfig(speed=speed))


def drive_one(model: str, drive: SuiteDrive, speed: float = 9.0, pilot=None) -> dict:
    """Drive one suite drive with `model` (or an in-memory `pilot`); the drive's metrics, with
    what was driven (track features, conditions)."""
    from driving.evaluation.closed_loop import DriveOptions, drive_pilot
    from driving.sim.track import track_features

    track = drive.track()
    options = DriveOptions(
        laps=drive.laps,
        seed=drive.conditions_seed,
        conditions=drive.conditions(),
        progress=False,
        model=Path(model).stem if model else "",
    )
    metrics, trace = drive_pilot(pilot or _pilot(model, speed), track, options, direct=True)
    row = metrics.to_dict()
    row.update(
        drive=drive.name,
        style=drive.style,
        track_seed=drive.track_seed,
        conditions_seed=drive.conditions_seed,
        width_m=track.width,
        features=track_features(track),
    )
    return row


def _task(args: tuple) -> dict:
    return drive_one(*args)


def drive_suite(
    models: Sequence[str | Path],
    suite: Suite,
    jobs: int | None = None,
    speed: float = 9.0,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """Every model on every drive of `suite`, `jobs` drives at a time in separate processes
    (default: one per core); {model path: [drive results in suite order]}. The results do not
    depend on `jobs`."""
    from tqdm import tqdm

    tasks = [(str(m), d, speed) for m in models for d in suite.drives]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    bar = tqdm(total=len(tasks), desc=f"suite {suite.label}", unit="drive", disable=not progress)
    if jobs == 1:
        rows = []
        for task in tasks:
            rows.append(_task(task))
            bar.update(1)
    else:
        import multiprocessing

        # spawn, not fork: a forked TensorFlow can deadlock. Each worker loads what it drives once.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = []
            for row in pool.map(_task, tasks, chunksize=1):
                rows.append(row)
                bar.update(1)
    bar.close()
    out: dict[str, list[dict]] = {str(m): [] for m in models}
    for (model, _, _), row in zip(tasks, rows, strict=True):
        out[model].append(row)
    return out


# --- the figures ----------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (resampling the drives
    with replacement, `samples` times, from a fixed seed: the same interval every time)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (samples, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarise(rows: list[dict]) -> dict:
    """The aggregate figures of one model's drives."""
    autonomy = [r["autonomy_pct"] for r in rows]
    km = sum(r["distance_m"] for r in rows) / 1000
    interventions = sum(r["interventions"] for r in rows)
    low, high = bootstrap_ci(autonomy)
    by_style = {}
    for style in STYLE_ORDER:
        mine = [r["autonomy_pct"] for r in rows if r["style"] == style]
        if mine:
            by_style[style] = float(np.mean(mine))
    return {
        "drives": len(rows),
        "success_rate": float(np.mean([r["interventions"] == 0 and r["completed"] for r in rows])),
        "autonomy_mean": float(np.mean(autonomy)),
        "autonomy_ci95": [low, high],
        "autonomy_min": float(np.min(autonomy)),
        "interventions": interventions,
        "km": km,
        "interventions_per_km": interventions / km if km else float("nan"),
        "mean_abs_cte_m": float(np.mean([r["mean_abs_cte_m"] for r in rows])),
        "steering_rate_rms": float(np.mean([r["steering_rate_rms"] for r in rows])),
        "latency_median_ms": float(np.median([r["latency_median_ms"] for r in rows])),
        "autonomy_by_style": by_style,
    }


def markdown(result: dict) -> str:
    suite = result["suite"]
    lines = [
        f"# Suite {suite['name']} v{suite['version']}",
        "",
        f"{suite['description']}. {len(suite['drives'])} drives per model at {result['speed']:g} mph, "
        f"fixed 1/15 s step. Autonomy: (1 - interventions x 6 s / elapsed s) x 100; its 95% "
        "interval is a bootstrap over the drives.",
        "",
        "| model | success | autonomy mean [95% CI] | min | interventions/km | mean abs CTE m | "
        "steer rms/s | latency ms | lake | jungle | desert |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["summary"].items():
        low, high = s["autonomy_ci95"]
        styles = [f"{s['autonomy_by_style'].get(st, float('nan')):.1f}%" for st in STYLE_ORDER]
        lines.append(
            f"| {name} | {s['success_rate'] * 100:.0f}% | "
            f"{s['autonomy_mean']:.1f}% [{low:.1f}, {high:.1f}] | "
            f"{s['autonomy_min']:.1f}% | {s['interventions_per_km']:.2f} | {s['mean_abs_cte_m']:.2f} | "
            f"{s['steering_rate_rms']:.3f} | {s['latency_median_ms']:.1f} | " + " | ".join(styles) + " |"
        )
    lines += ["", "Per drive (interventions, autonomy):", ""]
    names = list(result["drives"])
    lines.append("| drive | width m | " + " | ".join(names) + " |")
    lines.append("|---|---:|" + "---:|" * len(names))
    for i in range(len(suite["drives"])):
        first = result["drives"][names[0]][i]
        cells = [
            f"{result['drives'][n][i]['interventions']}, {result['drives'][n][i]['autonomy_pct']:.0f}%"
            for n in names
        ]
        lines.append(f"| {first['drive']} | {first['width_m']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Per model: mean autonomy with its 95% interval, and one dot per drive (coloured by style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from driving.files import save_figure

    names = list(result["summary"])
    colours = {"lake": "tab:blue", "jungle": "tab:green", "desert": "tab:orange"}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(names) + 2), 4.5))
    jitter = np.random.default_rng(0)
    for i, name in enumerate(names):
        s = result["summary"][name]
        for row in result["drives"][name]:
            ax.plot(
                i + jitter.uniform(-0.25, 0.25),
                row["autonomy_pct"],
                "o",
                ms=4,
                alpha=0.6,
                color=colours.get(row["style"], "0.5"),
            )
        low, high = s["autonomy_ci95"]
        ax.errorbar(
            i,
            s["autonomy_mean"],
            yerr=[[s["autonomy_mean"] - low], [high - s["autonomy_mean"]]],
            fmt="D",
            color="black",
            ms=7,
            capsize=6,
            lw=2,
            zorder=5,
        )
    for style, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=f"{style} drives")
    ax.plot([], [], "D", color="black", label="mean, 95% CI")
    ax.axhline(90, color="0.6", ls=":", lw=1)
    ax.set_xticks(range(len(names)), names, rotation=15)
    suite = result["suite"]
    ax.set(
        ylabel="autonomy %",
        ylim=(-3, 103),
        title=f"{suite['name']} v{suite['version']}: {len(suite['drives'])} unseen drives per model",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def run(
    models: Sequence[str | Path],
    suite: Suite,
    jobs: int | None = None,
    speed: float = 9.0,
    out: Path | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Drive `suite` with every model; write suite-NAME.json/.md/.png into `out` when given.
    `names` label the models in tables (default: their file stems, made unique)."""
    from driving.files import write_json, write_text

    models = [str(m) for m in models]
    names = list(names or _labels(models))
    drives = drive_suite(models, suite, jobs, speed, progress)
    result = {
        "suite": {
            "name": suite.name,
            "version": suite.version,
            "description": suite.description,
            "drives": [vars(d) | {"name": d.name} for d in suite.drives],
        },
        "speed": speed,
        "models": dict(zip(names, models, strict=True)),
        "drives": {n: drives[m] for n, m in zip(names, models, strict=True)},
        "summary": {n: summarise(drives[m]) for n, m in zip(names, models, strict=True)},
    }
    if out is not None:
        stem = Path(out) / f"suite-{suite.name}"
        write_json(stem.with_suffix(".json"), result)
        write_text(stem.with_suffix(".md"), markdown(result))
        plot(result, stem.with_suffix(".png"))
    return result


def _labels(models: Sequence[str]) -> list[str]:
    """Unique names for tables: each file's stem, with folders added only where names clash (the
    same file given twice gets a number)."""
    paths = [Path(m).absolute() for m in models]
    depth = [0] * len(paths)
    label = lambda i: "/".join(
        [*paths[i].parent.parts[len(paths[i].parent.parts) - depth[i] :], paths[i].stem]
    )
    while True:
        labels = [label(i) for i in range(len(paths))]
        clashing = [i for i, text in enumerate(labels) if labels.count(text) > 1]
        if not clashing:
            return labels
        if all(depth[i] >= len(paths[i].parent.parts) for i in clashing):
            return [f"{paths[i].stem}#{i + 1}" if i in clashing else text for i, text in enumerate(labels)]
        for i in clashing:
            depth[i] += 1


# --- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.evaluate",
        description="Drive models over a named suite of worlds they never saw, in parallel, and "
        "report per drive and in aggregate: success rate, autonomy with a 95% confidence "
        "interval, interventions per km, cross-track error, steering rate, latency.",
        epilog="suites: "
        + "; ".join(f"{s.name} v{s.version}: {s.description}" for s in SUITES.values())
        + ".   example: python -m driving.evaluate models/effnet.h5 models/base.h5 --suite quick",
    )
    parser.add_argument("models", nargs="+", type=Path, help="model files (.h5, .keras, .tflite)")
    parser.add_argument("--suite", choices=list(SUITES), default="quick", help="which suite (default quick)")
    parser.add_argument(
        "--jobs",
        type=cli.integer(1, 256),
        default=None,
        help="drives at a time, each in its own process (default: one per core)",
    )
    parser.add_argument(
        "--speed", type=cli.number(0, 30, low_open=True), default=9.0, help="target speed in mph (default 9)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/evaluate"),
        help="where suite-NAME.json/.md/.png go (default runs/evaluate)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from driving.files import check_writable_folder
    from driving.modelio import ModelFileError, load_info

    try:
        check_writable_folder(args.out, "--out folder")
        for model in args.models:
            load_info(model)  # a missing or damaged file is named before any drive starts
    except (ModelFileError, OSError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    try:
        result = run(args.models, SUITES[args.suite], args.jobs, args.speed, args.out)
    except ModelFileError as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    print(markdown(result))
    print(f"wrote {args.out / ('suite-' + args.suite)}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
