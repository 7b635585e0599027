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

from driving import tfsetup
from driving.evaluation.settings import StudyConfig, TableConfig
from driving.modelio import ModelFileError
from driving.options import add_options, from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.study",
        description="Studies that need many training runs. `seeds`: train each model with K seeds "
        "on the same recordings and drive every run over a suite of unseen worlds.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    seeds = sub.add_parser(
        "seeds",
        help="K training seeds per model, each driven over a suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(seeds, StudyConfig)
    table = sub.add_parser(
        "table",
        help="the table of every finished run under --out, without training",
        description="Write OUT/study.md, study.json and study.png from every finished run under OUT "
        "(OUT/RECIPE/MODEL/seed-N): for a study still running, stopped, or run in parts.",
    )
    add_options(table, TableConfig)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> StudyConfig | TableConfig:
    args = build_parser().parse_args(argv)
    return from_args(TableConfig if args.command == "table" else StudyConfig, args)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    if isinstance(config, TableConfig):
        return _table(config)
    tfsetup.setup()
    # What a study runs (training and drives, TensorFlow among them), once the arguments are good.
    from driving.data.reader import RecordingError
    from driving.evaluation.seeds import study
    from driving.evaluation.suites import DriveFailed
    from driving.train.stage import TrainError

    try:
        result = study(config)
    except (RecordingError, TrainError, ModelFileError, DriveFailed, OSError, ValueError) as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(result.table)
    print(f"\nwrote {config.out / 'study.md'}, study.json and study.png")
    return 0


def _table(config: TableConfig) -> int:
    # Reads finished runs and writes the table: matplotlib, no TensorFlow, only for this command.
    from driving.evaluation.registry import SUITES
    from driving.evaluation.seed_tables import finished_runs, write_tables

    suite = SUITES[config.suite]
    runs = finished_runs(config.out, suite) if config.out.is_dir() else []
    if not runs:
        print(f"study: no finished run under {config.out} drove the {suite.label} suite", file=sys.stderr)
        return 1
    try:
        result = write_tables(config.out, suite, runs)
    except OSError as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(result.table)
    print(f"\nwrote {config.out / 'study.md'}, study.json and study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
