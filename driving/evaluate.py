"""Command line of the evaluation suites (the library: driving/evaluation/suites.py; the suites
themselves: driving/evaluation/registry.py; the settings: driving/evaluation/settings.py).

    python -m driving.evaluate models/effnet.h5 models/base.h5 --suite unseen [--jobs 2] [--out DIR]
    python -m driving.evaluate models/effnet.keras --suite looks --ablate-look 1010006
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driving import tfsetup
from driving.evaluation.registry import SUITES
from driving.evaluation.settings import EvalConfig
from driving.files import OutputRefused, check_output_file, check_writable_folder
from driving.modelio import ModelFileError, load_info
from driving.options import ConfigError, add_options, flag_for, from_args


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
    add_options(parser, EvalConfig)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    """The EvalConfig a command line means; a setting that cannot work ends it in one line."""
    parser = build_parser()
    try:
        return from_args(EvalConfig, parser.parse_args(argv)).validate()
    except ConfigError as e:
        parser.error(f"{flag_for(EvalConfig, e.field) or e.field}: {e.message}")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    outputs = [config.out / f"{output_stem(config)}{suffix}" for suffix in (".json", ".md", ".png")]
    try:
        for path in outputs:  # a recording's folder, or a file of another kind, is refused
            check_output_file(path, "--out", (path.suffix,))
        check_writable_folder(config.out, "--out folder")
        for model in config.models:
            load_info(model)  # a missing or damaged file is named before any drive starts
    except (ModelFileError, OutputRefused, OSError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    tfsetup.setup()
    from driving.evaluation import suites  # loads TensorFlow: once the arguments and files are good

    try:
        table = _ablate(config) if config.ablate_look is not None else _suite(config)
    except (ModelFileError, OSError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    except suites.DriveFailed as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 1
    print(table)
    print(f"wrote {outputs[0]}, .md and .png")
    return 0


def output_stem(config: EvalConfig) -> str:
    """The name, less its suffix, of the files the command writes into --out."""
    if config.ablate_look is not None:
        return f"ablation-look-{config.ablate_look}"  # as driving.evaluation.ablation.write names them
    return f"suite-{config.suite}"


def _suite(config: EvalConfig) -> str:
    """The suite driven and written; its table."""
    from driving.evaluation import suites

    return suites.markdown(suites.evaluate(config))


def _ablate(config: EvalConfig) -> str:
    """The look's drives, as drawn and with each part changed, written; the table."""
    from driving.evaluation import ablation

    result = ablation.ablate_look(
        config.models,
        SUITES[config.suite],
        config.ablate_look,
        config.jobs,
        config.speed,
        drive_timeout=config.drive_timeout,
    )
    ablation.write(result, config.out)
    return ablation.markdown(result)


if __name__ == "__main__":
    sys.exit(main())
