"""The slimming report's command line: `python -m driving.report --models models/`.

The settings are declared once in driving/report/config.py (ReportConfig). The arguments are parsed
before TensorFlow loads (--help is instant); then TensorFlow is set up and the stage
(driving/report/stage.py) imported and run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driving import tfsetup
from driving.options import ConfigError, add_options, flag_for, from_args
from driving.report.config import ReportConfig
from driving.run import RunFolder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.report",
        description="Compare the trained models in a folder (NAME.keras from train.py): params, file "
        "sizes, MACs, CPU latency (Keras and LiteRT), validation error, training time, each as a "
        "ratio to base. Each model is scored on its own run's validation split (from its file or "
        "run.json). Writes report.md, report.json and PNG charts there.",
        epilog="example: python -m driving.report --models models/ --export tflite",
    )
    add_options(parser, ReportConfig)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> ReportConfig:
    """The ReportConfig a command line means; a setting that cannot work ends it in one line."""
    parser = build_parser()
    try:
        return from_args(ReportConfig, parser.parse_args(argv)).validate()
    except ConfigError as e:
        parser.error(f"{flag_for(ReportConfig, e.field) or e.field}: {e.message}")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    tfsetup.setup()
    # After parsing and the setup: the stage loads TensorFlow (and the data reader pandas), which
    # --help must not wait for.
    from driving.data.reader import RecordingError
    from driving.report.stage import ReportError, run

    try:
        report = run(config)
    except (ReportError, RecordingError, OSError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    print("\n".join(report["findings"]))
    print(f"\nwrote {RunFolder(config.folder).report_md}, report.json and the charts")
    return 1 if report["not_measured"] else 0
