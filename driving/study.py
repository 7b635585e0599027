"""Seed studies: a driving claim is a distribution, so train each model with K seeds on the same
recordings and drive every one over a suite of unseen worlds.

    python -m driving.study seeds --models effnet effnet-slim base pilotnet --seeds 5 --budget cpu

For each recipe, model and seed it trains one run (driving.train.stage.run) and drives its checkpoints
over the suite (driving.evaluate): the one with the best validation loss (NAME.keras) and, when
the recipe checks driving during training, the best validation driver (NAME.drive.keras). It
writes one table (study.md, study.json) and one PNG with a point per seed. Finished runs are
reused: a run folder whose record of the suite matches the run's settings is not redone, so an
interrupted study resumes where it stopped, and the same study over another suite (say
`--suite looks-holdout` after `--suite looks`) trains nothing again and keeps both suites' records.

A recipe is how the training data is made and used: which recordings (the headless simulator
records them on first use), with which settings. Each lever of docs/evaluation.md is one recipe,
measured side by side; the project's defaults are the recipe that measured best.

    python -m driving.study curve [--no-train]

The slimming curve (driving/evaluation/curve.py): the seed study of the slimming family, each model
measured (params, MACs, file sizes, one-core latency) and its autonomy drawn against them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driving import tfsetup
from driving.evaluation.settings import CurveConfig, StudyConfig, TableConfig
from driving.modelio import ModelFileError
from driving.options import add_options, from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.study",
        description="Studies that need many training runs. `seeds`: train each model with K seeds "
        "on the same recordings and drive every run over a suite of unseen worlds. `curve`: the same "
        "for the slimming family, each model set against its size, work and latency.",
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
    curve = sub.add_parser(
        "curve",
        help="the slimming curve: each model's seeds trained and driven, set against its size and speed",
        description="Train and drive each model's seeds as `seeds` does (finished runs under --out are "
        "reused), measure each model once (params, MACs, file sizes per precision, one-core latency) "
        "and write OUT/curve.md, curve.json and curve.png: mean autonomy against parameters, MACs and "
        "int8 file size, the Pareto front, the smallest model that drives (>= 90% in at least 80% "
        "of its seeds) and where driving breaks. --no-train redraws it from the finished runs.",
    )
    add_options(curve, CurveConfig)
    return parser


CONFIGS = {"seeds": StudyConfig, "table": TableConfig, "curve": CurveConfig}


def parse_args(argv: Sequence[str] | None = None) -> StudyConfig | TableConfig | CurveConfig:
    args = build_parser().parse_args(argv)
    return from_args(CONFIGS[args.command], args)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    if isinstance(config, TableConfig):
        return _table(config)
    if isinstance(config, CurveConfig):
        return _curve(config)
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


def _curve(config: CurveConfig) -> int:
    if not config.train and not config.out.is_dir():
        print(f"study: {config.out}: no such folder, so no finished run to draw", file=sys.stderr)
        return 1
    tfsetup.setup()
    # What the curve runs (training, drives, exports), once the arguments are good.
    from driving.data.reader import RecordingError
    from driving.evaluation.curve import CurveError, curve, markdown
    from driving.evaluation.suites import DriveFailed
    from driving.files import RecordError
    from driving.train.stage import TrainError

    try:
        table = curve(config)
    except (
        CurveError,
        RecordingError,
        RecordError,
        TrainError,
        ModelFileError,
        DriveFailed,
        OSError,
        ValueError,
    ) as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(markdown(table))
    print(f"wrote {config.out / 'curve.md'}, curve.json and curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
