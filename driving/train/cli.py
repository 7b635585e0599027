"""The command line of training: `python train.py` (or `python -m driving.train`).

The parser is generated from RunConfig's declarations (driving/options.py); only `--no-augment` (a
preset that switches every augmentation off) and `--report` are its own. `command` is the way
back: the train.py command that makes a RunConfig, recorded in run.json. Nothing here imports
TensorFlow before the arguments are parsed: `--help` is instant.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from driving import tfsetup
from driving.config import (
    AUGMENT,
    BUDGET,
    HOW,
    PREP,
    SPLIT,
    TRAIN_PROG,
    AugmentConfig,
    ConfigError,
    RunConfig,
)
from driving.models import MODELS
from driving.options import add_options, flag_for, from_args
from driving.run import FolderInUse, RunFolder
from driving.train.cluster import cluster_of

PROG = TRAIN_PROG
GROUPS = (BUDGET, SPLIT, PREP, AUGMENT, HOW)  # the order of --help's sections


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train steering models on Udacity-simulator recordings. Each model's best-by-"
        "validation weights go to OUT/NAME.keras and OUT/NAME.h5, with history, loss plots and "
        "TensorBoard logs beside them, and OUT/run.json records how the run was made.",
        epilog="example: python train.py --data data/track1 --model effnet --model base --epochs 10",
    )
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    add_options(parser, RunConfig, groups)
    groups[AUGMENT].add_argument(
        "--no-augment", action="store_true", help="train on center frames as recorded: every switch above off"
    )
    model = next(a for a in parser._actions if a.dest == "models")
    model.choices = list(MODELS)  # the registry is known here, not where RunConfig is declared
    model.help += f"; one of {', '.join(MODELS)}"
    groups[HOW].add_argument(
        "--report", action="store_true", help="afterwards, write the slimming report (driving.report)"
    )
    return parser


def parse(
    argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> tuple[RunConfig, argparse.Namespace]:
    """The RunConfig a command line means, and the parsed arguments (for the CLI-only flags)."""
    args = (parser or build_parser()).parse_args(argv)
    config = from_args(RunConfig, args)
    if args.no_augment:
        config.augment = replace(config.augment, **{s: False for s in AugmentConfig.SWITCHES})
    return config, args


def _option(error: ConfigError) -> str:
    return f"{flag_for(RunConfig, error.field) or error.field}: {error.message}"


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    config, args = parse(argv, parser)
    try:
        # Every nonsense option, and a TF_CONFIG of the wrong shape, refused before TensorFlow loads.
        config.validate()
        if config.strategy == "multiworker":
            cluster_of(config)
    except ConfigError as e:
        parser.error(_option(e))
    tfsetup.setup()
    # Imported after parsing and tfsetup.setup(): the stage imports TensorFlow at its top, and
    # driving.data pandas and OpenCV, none of which `--help` needs.
    from driving.data.reader import RecordingError
    from driving.modelio import ModelFileError
    from driving.train import stage

    # SIGTERM (a scheduler, `kill`) ends a run as Ctrl-C does: at once, in one line, with every
    # file already saved complete.
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        results = stage.run(config)
    except ConfigError as e:
        parser.error(_option(e))
    except (RecordingError, stage.TrainError, ModelFileError, FolderInUse, OSError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as e:
        why = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"train.py: {why}; the files saved so far are complete (see OUT/run.json)", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, before)
    print("\n" + stage.summary_table(results))
    print(f"\nmodels, histories and plots in {config.out}/ (loss_overlay.png compares them; run.json: how)")
    folder = RunFolder(config.out)
    for r in results:
        served = folder.served(r.name, config)
        if served is not None:  # which file drive.py should get; NAME.card.md says why
            print(f"serve {r.name}: {served}")
    if args.report:
        # The report stage, loaded only when --report asks for it.
        from driving.report import stage as report

        report.run(Path(config.out))
    return 1 if any(r.diverged for r in results) else 0
