"""The main job, `make demo`: record -> train -> compare -> drive unseen worlds, and one summary table.

    python -m driving.demo            # budget sized for a 2-core CPU (under 25 minutes)
    python -m driving.demo --full     # the original budget: 21 epochs x 128 steps x batch 128 (GPU)

1. record the training data of the study's default recipe with the headless simulator (reused when
   present): expert laps of the built-in tracks and of suite-style training tracks, painted in
   every style and light (driving.evaluation.registry.RECIPES);
2. train base, effnet, the slim variant and PilotNet (the field's yardstick), one seed each, with
   the recipe's settings: train.run;
3. write the slimming report (sizes, MACs, latency, validation error, saliency): report.run;
4. drive every model over the `quick` suite: 6 tracks it never saw, 2 per style, under drawn
   light and palettes, at 9 mph: suites.run (in parallel processes);
5. print one table and write it to OUT/summary.md (with the date and the machine).

One run is one training seed per model: the intervals it prints are over the suite's drives, not
over seeds. How much a figure moves from seed to seed is the seed study's job (driving.study,
docs/evaluation.md). Every stage is the library function its own command line calls, chained here
in one process (the suite's drives in worker processes), so TensorFlow loads once here.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from driving import cli
from driving.config import BUDGETS, Budget

MODELS = ("base", "effnet", "effnet-slim", "pilotnet")
DEFAULT_RECIPE = "robust"


CPU_BUDGET, FULL_BUDGET = BUDGETS["cpu"], BUDGETS["full"]


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    data: Path = Path("data/demo")
    recipe: str = DEFAULT_RECIPE
    models: tuple[str, ...] = MODELS
    budget: Budget = CPU_BUDGET
    full: bool = False
    suite: str = "quick"
    speed: float = 9.0
    seed: int = 0
    jobs: int | None = None


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def summary_table(report: dict, suite: dict) -> str:
    """One row per model: what it costs (the slimming report) and how it drives (the suite)."""
    rows = {r["model"]: r for r in report["models"]}
    head = (
        "| model | params | .h5 KB | MACs/frame | Keras ms | LiteRT ms | val MSE | "
        "drives without intervention | autonomy mean [95% CI] | lake | jungle | desert |"
    )
    lines = [head, "|" + "---|" * 12]
    for name, s in suite["summary"].items():
        r = rows.get(name)
        lite = (r or {}).get("tflite", {}).get("float32", {}).get("latency", {}).get("median_ms")
        cost = (
            [
                f"{r['params']:,}",
                f"{r['h5'] / 1024:,.0f}",
                f"{r['macs'] / 1e6:,.1f} M",
                f"{r['keras_latency']['median_ms']:.2f}",
                f"{lite:.2f}" if lite is not None else "-",
                f"{r['val_mse']:.4f}",
            ]
            if r
            else ["-"] * 6
        )
        low, high = s["autonomy_ci95"]
        style = s["autonomy_by_style"]
        drive = [
            f"{round(s['success_rate'] * s['drives'])} of {s['drives']}",
            f"{s['autonomy_mean']:.1f}% [{low:.1f}, {high:.1f}]",
            *(f"{style.get(k, float('nan')):.1f}%" for k in ("lake", "jungle", "desert")),
        ]
        lines.append("| " + " | ".join([f"`{name}`", *cost, *drive]) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()}-core {cpu} ({platform.system()}), Python {platform.python_version()}"


def run(config: DemoConfig) -> str:
    """The whole demo; returns the summary (also written to OUT/summary.md)."""
    from driving.evaluation import suites
    from driving.evaluation.registry import RECIPES, SUITES
    from driving.evaluation.seeds import recordings, run_config
    from driving.files import check_writable_folder, write_text
    from driving.report import stage as report
    from driving.train import stage as train

    check_writable_folder(config.out, "--out folder")
    check_writable_folder(config.data, "--data folder")
    recipe, budget, models_dir = RECIPES[config.recipe], config.budget, config.out / "models"
    suite = SUITES[config.suite]
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step_done(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        print(f"--- {name}: {timings[name] / 60:.1f} min", flush=True)

    t0 = time.perf_counter()
    banner(f"1/5 record the {recipe.name} recipe's training data: {recipe.description}")
    folders = recordings(recipe, config.data)
    step_done("record", t0)

    t0 = time.perf_counter()
    size = f"{budget.epochs} epochs x {budget.steps} steps x batch {budget.batch}"
    banner(f"2/5 train {', '.join(config.models)}: {size}, seed {config.seed}")
    train.run(
        run_config(recipe, config.models, config.seed, budget, folders, models_dir, config.out / "cache")
    )
    step_done("train", t0)

    t0 = time.perf_counter()
    banner("3/5 slimming report")
    slimming = report.run(models_dir)
    step_done("report", t0)

    t0 = time.perf_counter()
    banner(f"4/5 drive every model over the {suite.label} suite at {config.speed:g} mph: {suite.description}")
    # The checkpoint a user would serve: the best validation driver where the recipe checks
    # driving (validation loss picks poorly in short training: docs/evaluation.md), else the best
    # by validation loss.
    served = [
        models_dir
        / (f"{name}.drive.keras" if (models_dir / f"{name}.drive.keras").is_file() else f"{name}.h5")
        for name in config.models
    ]
    driven = suites.run(
        served, suite, config.jobs, config.speed, config.out / "drives", names=list(config.models)
    )
    step_done("drive", t0)

    banner("5/5 summary")
    total = time.perf_counter() - started
    steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in timings.items())
    text = (
        f"# Demo summary\n\n{date.today().isoformat()}, {machine()}; recipe `{recipe.name}`; "
        f"{'full' if config.full else 'CPU'} budget {size}, seed {config.seed} (one training run "
        f"per model); drives: the {suite.label} suite ({len(suite.drives)} unseen tracks) at "
        f"{config.speed:g} mph, fixed 1/15 s physics step. Total {total / 60:.1f} min ({steps} min).\n\n"
        f"{summary_table(slimming, driven)}\n\n"
        f"Driven: {', '.join(p.name for p in served)} (the params, sizes, latency and val MSE "
        f"columns are the report's, of NAME.keras). "
        f"The interval is a bootstrap over the suite's {len(suite.drives)} drives of this one "
        f"training run; another seed can land elsewhere (the seed study measures that: "
        f"docs/evaluation.md). Autonomy: (1 - interventions x 6 s / elapsed s) x 100. Latency: "
        f"batch-1 CPU median from the slimming report ({models_dir / 'report.md'}). Per drive: "
        f"{config.out / 'drives' / ('suite-' + suite.name + '.md')}.\n"
    )
    write_text(config.out / "summary.md", text)
    return text


def build_parser() -> argparse.ArgumentParser:
    from driving.evaluation.registry import RECIPES, SUITES

    d = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m driving.demo",
        description="Record training data with the headless simulator, train base / effnet / the "
        "slim variant / PilotNet, write the slimming report, drive every model over a suite of "
        "worlds it never saw, and print one summary table.",
        epilog="example: python -m driving.demo --out runs/demo   (make demo; make demo GPU=1 adds --full)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"the original training budget: {FULL_BUDGET.epochs} epochs x "
        f"{FULL_BUDGET.steps} steps x batch {FULL_BUDGET.batch} (for a GPU)",
    )
    parser.add_argument("--out", type=Path, default=d.out, help="models, report, drives, summary.md")
    parser.add_argument("--data", type=Path, default=d.data, help="recordings (reused when present)")
    parser.add_argument(
        "--recipe", choices=list(RECIPES), default=d.recipe, help="training data and settings"
    )
    parser.add_argument("--models", nargs="+", default=list(d.models), help="models to train and compare")
    parser.add_argument("--epochs", type=cli.integer(1, 10_000), help="override the budget's epochs")
    parser.add_argument("--steps", type=cli.positive_int, help="override the budget's steps per epoch")
    parser.add_argument("--batch-size", type=cli.integer(1, 8192), help="override the budget's batch size")
    parser.add_argument("--suite", choices=list(SUITES), default=d.suite, help="the unseen worlds to drive")
    parser.add_argument("--speed", type=cli.number(0, 30, low_open=True), default=d.speed, help="mph")
    parser.add_argument("--seed", type=cli.seed, default=d.seed)
    parser.add_argument(
        "--jobs", type=cli.integer(1, 256), default=None, help="parallel drives (default: cores)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from driving.models import MODELS as REGISTRY

    for name in args.models:
        if name not in REGISTRY:
            parser.error(f"--models {name}: unknown model; choose from {', '.join(REGISTRY)}")
    budget = FULL_BUDGET if args.full else CPU_BUDGET
    budget = Budget(args.epochs or budget.epochs, args.steps or budget.steps, args.batch_size or budget.batch)
    config = DemoConfig(
        out=args.out,
        data=args.data,
        recipe=args.recipe,
        models=tuple(dict.fromkeys(args.models)),
        budget=budget,
        full=args.full,
        suite=args.suite,
        speed=args.speed,
        seed=args.seed,
        jobs=args.jobs,
    )
    from driving.data.reader import RecordingError
    from driving.modelio import ModelFileError
    from driving.report.stage import ReportError
    from driving.train.stage import TrainError

    try:
        text = run(config)
    except (RecordingError, TrainError, ReportError, ModelFileError, OSError, ValueError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(text)
    print(f"wrote {config.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
