"""The main job, `make demo`: record -> train -> compare -> drive unseen worlds, and one summary table.

    python -m driving.demo            # budget sized for a 2-core CPU (under 25 minutes)
    python -m driving.demo --full     # the original budget: 21 epochs x 128 steps x batch 128 (GPU)

1. record the training data of the study's default recipe with the headless simulator (reused when
   present): expert laps of the built-in tracks and of suite-style training tracks, painted in
   every style and light (driving.evaluation.registry.RECIPES);
2. train base, effnet, the slim variant and PilotNet (the field's yardstick), one seed each, with
   the recipe's settings: train.run;
3. write the slimming report (sizes, MACs, latency, validation error, saliency): report.run;
4. drive every model over the `quick-looks` suite: 6 tracks it never saw, 2 per style, each once
   in its seen style and once in a new look no recording has, at 9 mph: suites.run (in parallel
   processes);
5. print one table, with the seen-vs-new-look gap, and write it to OUT/summary.md (with the date
   and the machine).

One run is one training seed per model: the intervals it prints are over the suite's drives, not
over seeds. How much a figure moves from seed to seed is the seed study's job (driving.study,
docs/evaluation.md). Every stage is the library function its own command line calls, chained here
in one process (the suite's drives in worker processes), so TensorFlow loads once here.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from driving import tfsetup
from driving.config import BUDGETS, MAX_BATCH_SIZE, TARGET_SPEED_MPH, Budget
from driving.evaluation.registry import RECIPES, SUITES
from driving.evaluation.settings import MAX_JOBS, MAX_SEED, MAX_SPEED_MPH, drive_timeout_option
from driving.files import check_writable_folder, write_text
from driving.models import MODELS as REGISTRY
from driving.options import add_options, check_bounds, from_args, option
from driving.run import RunFolder, SuiteResult, TrainResult, read_record

MODELS = ("base", "effnet", "effnet-slim", "pilotnet")
DEFAULT_RECIPE = "robust"


CPU_BUDGET, FULL_BUDGET = BUDGETS["cpu"], BUDGETS["full"]


@dataclass
class DemoConfig:
    """`python -m driving.demo`: what is recorded, trained and driven, and where it goes."""

    full: bool = option(
        False,
        "--full",
        f"the original training budget: {FULL_BUDGET.epochs} epochs x "
        f"{FULL_BUDGET.steps} steps x batch {FULL_BUDGET.batch} (for a GPU)",
    )
    out: Path = option(Path("runs/demo"), "--out", "models, report, drives, summary.md")
    data: Path = option(Path("data/demo"), "--data", "recordings, reused when present")
    recipe: str = option(DEFAULT_RECIPE, "--recipe", "training data and settings", choices=tuple(RECIPES))
    models: list[str] = option(lambda: list(MODELS), "--models", "models to train and compare", nargs="+")
    # The budget (CPU, or --full) with any of its three figures overridden.
    epochs: int | None = option(None, "--epochs", "override the budget's epochs", low=1, high=10_000)
    steps: int | None = option(None, "--steps", "override the budget's steps per epoch", low=1)
    batch_size: int | None = option(
        None, "--batch-size", "override the budget's batch size", low=1, high=MAX_BATCH_SIZE
    )
    suite: str = option(
        "quick-looks",
        "--suite",
        "the unseen worlds to drive (default %(default)s: 6 unseen shapes, each in a seen style and "
        "in a new look)",
        choices=tuple(SUITES),
    )
    speed: float = option(TARGET_SPEED_MPH, "--speed", "mph", low=0, low_open=True, high=MAX_SPEED_MPH)
    seed: int = option(0, "--seed", "the training seed", low=0, high=MAX_SEED)
    jobs: int | None = option(None, "--jobs", "parallel drives (default: cores)", low=1, high=MAX_JOBS)
    drive_timeout: float = drive_timeout_option()

    @property
    def budget(self) -> Budget:
        base = FULL_BUDGET if self.full else CPU_BUDGET
        return Budget(self.epochs or base.epochs, self.steps or base.steps, self.batch_size or base.batch)

    def validate(self) -> DemoConfig:
        check_bounds(self)
        self.models = list(dict.fromkeys(self.models))  # a model named twice is trained once
        return self


LOOKS_NOTE = (
    "Seen looks: the drives in the suite's named styles (which the recordings paint); new looks: "
    "the same track shapes in generated looks no recording has (driving.sim.looks). The gap is "
    "new - seen in points of autonomy, paired by shape, with its bootstrap interval.\n\n"
)


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _dig(row: Any, *keys: str) -> Any:
    """row[key][key]..., or None where a step is missing."""
    for key in keys:
        row = row.get(key) if isinstance(row, dict) else None
    return row


def _cell(value: Any, spec: str, scale: float = 1.0, unit: str = "") -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return f"{value if scale == 1 else value / scale:{spec}}{unit}" if ok else "-"


def _interval(mean: float | None, ci: tuple[float, float] | None, points: bool = False) -> str:
    """A mean with its 95% interval: autonomy in %, or a gap in signed points."""
    if mean is None:
        return "-"
    spec, unit = ("+.1f", "") if points else (".1f", "%")
    text = f"{mean:{spec}}{unit}"
    return f"{text} [{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else text


def summary_table(report_rows: list[dict], driven: SuiteResult) -> str:
    """One row per model: what it costs (the slimming report's rows, as its report.json holds them)
    and how it drives (the suite): autonomy per seen style the suite drives and, for a suite that
    drives its shapes in new looks too, seen-look and new-look autonomy and the gap new - seen.
    The report's rows are read as plain JSON, leniently: a figure it did not write shows "-"."""
    rows = {_dig(r, "model"): r for r in report_rows}
    summaries = driven.summary.values()
    styles = list(dict.fromkeys(k for s in summaries for k in s.autonomy_by_style))
    looks = any(s.new_look_drives for s in summaries)
    head = [
        "model", "params", ".h5 KB", "MACs/frame", "Keras ms", "LiteRT ms", "val MSE",
        "drives without intervention", "autonomy mean [95% CI]", *styles,
        *(("seen looks", "new looks", "gap new - seen, points") if looks else ()),
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in driven.summary.items():
        r = rows.get(name)
        cost = (
            [
                _cell(_dig(r, "params"), ",d"),
                _cell(_dig(r, "h5"), ",.0f", 1024),
                _cell(_dig(r, "macs"), ",.1f", 1e6, " M"),
                _cell(_dig(r, "keras_latency", "median_ms"), ".2f"),
                _cell(_dig(r, "tflite", "float32", "latency", "median_ms"), ".2f"),
                _cell(_dig(r, "val_mse"), ".4f"),
            ]
            if r
            else ["-"] * 6
        )
        drive = [
            f"{round(s.success_rate * s.drives)} of {s.drives}",
            _interval(s.autonomy_mean, s.autonomy_ci95),
            *(_cell(s.autonomy_by_style.get(k), ".1f", unit="%") for k in styles),
        ]
        if looks:
            drive += [
                _interval(s.seen_autonomy_mean, s.seen_autonomy_ci95),
                _interval(s.new_look_autonomy_mean, s.new_look_autonomy_ci95),
                _interval(s.look_gap, s.look_gap_ci95, points=True),
            ]
        lines.append("| " + " | ".join([f"`{name}`", *cost, *drive]) + " |")
    return "\n".join(lines)


def learnt_nothing_note(results: list[TrainResult], seed: int) -> str:
    """A paragraph naming the models whose training learnt nothing (TrainResult.learnt_nothing):
    their rows measure a constant steering angle, not the recipe. Empty when every model learnt."""
    idle = [r for r in results if r.learnt_nothing]
    if not idle:
        return ""
    named = "; ".join(
        f"`{r.name}` (best val MSE {r.best_val_loss:.4f} against {r.val_steering_variance:.4f} for one "
        "constant angle, its training loss flat)"
        for r in idle
    )
    return (
        f"**Did not learn to steer:** {named}. Such a row shows what seed {seed} did, not what the "
        f"recipe does: run the demo again with another --seed (docs/evaluation.md, a run that never "
        "learnt).\n\n"
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()}-core {cpu} ({platform.system()}), Python {platform.python_version()}"


def run(config: DemoConfig) -> str:
    """The whole demo; returns the summary (also written to OUT/summary.md)."""
    # Every stage, TensorFlow among them, only once a demo runs: this module is also the command
    # line, whose --help must stay instant.
    from driving.evaluation import suites
    from driving.evaluation.seeds import recordings, run_config
    from driving.report import stage as report
    from driving.train import stage as train

    check_writable_folder(config.out, "--out folder")
    check_writable_folder(config.data, "--data folder")
    config.validate()
    recipe, budget, models_dir = RECIPES[config.recipe], config.budget, RunFolder(config.out / "models")
    suite = SUITES[config.suite]
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step_done(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        print(f"--- {name}: {timings[name] / 60:.1f} min", flush=True)

    t0 = time.perf_counter()
    banner(f"1/5 record the {recipe.name} recipe's training data: {recipe.description}")
    folders, held_out = recordings(recipe, config.data)
    step_done("record", t0)

    t0 = time.perf_counter()
    size = budget.describe()
    banner(f"2/5 train {', '.join(config.models)}: {size}, seed {config.seed}")
    trained = train.run(
        run_config(
            recipe,
            config.models,
            config.seed,
            budget,
            folders,
            models_dir.root,
            config.out / "cache",
            val_folders=held_out,
        )
    )
    step_done("train", t0)

    t0 = time.perf_counter()
    banner("3/5 slimming report")
    report.run(models_dir.root)
    # Its rows as report.json holds them (plain JSON, read leniently: the report's own typed rows
    # are its business).
    slimming = read_record(models_dir.report_json).get("models") or []
    step_done("report", t0)

    t0 = time.perf_counter()
    banner(f"4/5 drive every model over the {suite.label} suite at {config.speed:g} mph: {suite.description}")
    # The checkpoint a user would serve: the best validation driver where the recipe checks
    # driving (validation loss picks poorly in short training: docs/evaluation.md), else the best
    # by validation loss.
    served = [
        models_dir.drive_best(name) if models_dir.drive_best(name).is_file() else models_dir.h5(name)
        for name in config.models
    ]
    driven = suites.run(
        served,
        suite,
        config.jobs,
        config.speed,
        config.out / "drives",
        names=list(config.models),
        drive_timeout=config.drive_timeout,
    )
    step_done("drive", t0)

    banner("5/5 summary")
    total = time.perf_counter() - started
    steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in timings.items())
    text = (
        f"# Demo summary\n\n{date.today().isoformat()}, {machine()}; recipe `{recipe.name}`; "
        f"{'full' if config.full else 'CPU'} budget {size}, seed {config.seed} (one training run "
        f"per model); drives: the {suite.label} suite ({len(suite.drives)} drives of unseen tracks) at "
        f"{config.speed:g} mph, fixed 1/15 s physics step. Total {total / 60:.1f} min ({steps} min).\n\n"
        f"{summary_table(slimming, driven)}\n\n"
        f"{learnt_nothing_note(trained, config.seed)}"
        f"{LOOKS_NOTE if any(s.new_look_drives for s in driven.summary.values()) else ''}"
        f"Driven: {', '.join(p.name for p in served)} (the params, sizes, latency and val MSE "
        f"columns are the report's, of NAME.keras). "
        f"The interval is a bootstrap over the suite's {len(suite.drives)} drives of this one "
        f"training run; another seed can land elsewhere (the seed study measures that: "
        f"docs/evaluation.md). Autonomy: (1 - interventions x 6 s / elapsed s) x 100. Latency: "
        f"batch-1 CPU median from the slimming report ({models_dir.report_md}). Per drive: "
        f"{RunFolder(config.out / 'drives').suite(suite.name, '.md')}.\n"
    )
    write_text(RunFolder(config.out).summary, text)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.demo",
        description="Record training data with the headless simulator, train base / effnet / the "
        "slim variant / PilotNet, write the slimming report, drive every model over a suite of "
        "worlds it never saw, and print one summary table.",
        epilog="example: python -m driving.demo --out runs/demo   (make demo; make demo GPU=1 adds --full)",
    )
    add_options(parser, DemoConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    config = from_args(DemoConfig, parser.parse_args(argv)).validate()
    for name in config.models:
        if name not in REGISTRY:
            parser.error(f"--models {name}: unknown model; choose from {', '.join(REGISTRY)}")
    tfsetup.setup()
    # What a demo runs, TensorFlow among it, once the arguments are good.
    from driving.data.reader import RecordingError
    from driving.evaluation.suites import DriveFailed
    from driving.modelio import ModelFileError
    from driving.report.stage import ReportError
    from driving.train.stage import TrainError

    try:
        text = run(config)
    except (RecordingError, TrainError, ReportError, ModelFileError, DriveFailed, OSError, ValueError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(text)
    print(f"wrote {RunFolder(config.out).summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
