"""Seed studies: a driving claim is a distribution, so train each model with K seeds on the same
recordings and drive every one over a suite of unseen worlds.

    python -m driving.study seeds --models effnet effnet-slim base pilotnet --seeds 5 --budget cpu

For each recipe, model and seed it trains one run (driving.train.stage.run) and drives its checkpoints
over the suite (driving.evaluate): the one with the best validation loss (NAME.keras) and, when
the recipe checks driving during training, the best validation driver (NAME.drive.keras). It
writes one table (study.md, study.json) and one PNG with a point per seed. Finished runs are
reused: a run folder whose study.json matches the run's settings and the suite is not redone, so an
interrupted study resumes where it stopped.

A recipe is how the training data is made and used: which recordings (the headless simulator
records them on first use), with which settings. Each lever of docs/evaluation.md is one recipe,
measured side by side; the project's defaults are the recipe that measured best.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from driving import cli, tfsetup
from driving.config import BUDGETS
from driving.evaluation.registry import RECIPES, SUITES
from driving.modelio import ModelFileError
from driving.models import MODELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.study",
        description="Studies that need many training runs. `seeds`: train each model with K seeds "
        "on the same recordings and drive every run over a suite of unseen worlds.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "seeds",
        help="K training seeds per model, each driven over a suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=["effnet", "effnet-slim", "base", "pilotnet"]
    )
    p.add_argument("--seeds", type=cli.integer(1, 1000), default=5, help="seeds per model (default 5)")
    p.add_argument("--first-seed", type=cli.seed, default=0, help="seeds run from this one (default 0)")
    p.add_argument(
        "--recipes",
        nargs="+",
        choices=list(RECIPES),
        default=["demo"],
        help="; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()).replace("%", "%%"),
    )
    p.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="cpu",
        help="cpu: the demo's 2 x 180 x 32; full: the original 21 x 128 x 128",
    )
    p.add_argument("--suite", choices=list(SUITES), default="unseen", help="the suite every run drives")
    p.add_argument("--data", type=Path, default=Path("data/study"), help="where the recordings go")
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="runs, study.md/.json/.png")
    p.add_argument("--jobs", type=cli.integer(1, 256), default=None, help="parallel drives (default: cores)")
    t = sub.add_parser(
        "table",
        help="the table of every finished run under --out, without training",
        description="Write OUT/study.md, study.json and study.png from every finished run under OUT "
        "(OUT/RECIPE/MODEL/seed-N): for a study still running, stopped, or run in parts.",
    )
    t.add_argument("--out", type=Path, default=Path("runs/study"), help="the study's folder")
    t.add_argument("--suite", choices=list(SUITES), default="unseen", help="the suite the runs drove")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "table":
        return _table(args.out, args.suite)
    tfsetup.setup()
    # What a study runs (training and drives, TensorFlow among them), once the arguments are good.
    from driving.data.reader import RecordingError
    from driving.evaluation.seeds import seeds_study
    from driving.train.stage import TrainError

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    try:
        result = seeds_study(
            args.models, seeds, args.recipes, args.budget, args.suite, args.data, args.out, args.jobs
        )
    except (RecordingError, TrainError, ModelFileError, OSError, ValueError) as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(result["table"])
    print(f"\nwrote {args.out / 'study.md'}, study.json and study.png")
    return 0


def _table(out: Path, suite_name: str) -> int:
    # Reads finished runs and writes the table: matplotlib, no TensorFlow, only for this command.
    from driving.evaluation.seed_tables import finished_runs, write_tables

    suite = SUITES[suite_name]
    runs = finished_runs(out, suite) if out.is_dir() else []
    if not runs:
        print(f"study: no finished run under {out} drove the {suite.label} suite", file=sys.stderr)
        return 1
    try:
        result = write_tables(out, suite, runs)
    except OSError as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(result["table"])
    print(f"\nwrote {out / 'study.md'}, study.json and study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
