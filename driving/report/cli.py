"""The slimming report's command line: `python -m driving.report --models models/`.

The arguments are parsed before TensorFlow loads (--help is instant); then TensorFlow is set up
and the stage (driving/report/stage.py) imported and run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from driving import cli, tfsetup
from driving.report.measure import CALIBRATION_FRAMES, SALIENCY_METHODS
from driving.saliency import METHOD_NAMES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.report",
        description="Compare the trained models in a folder (NAME.keras from train.py): params, file "
        "sizes, MACs, CPU latency (Keras and LiteRT), validation error, training time, each as a "
        "ratio to base. Each model is scored on its own run's validation split (from its file or "
        "run.json). Writes report.md, report.json and PNG charts there.",
        epilog="example: python -m driving.report --models models/ --export tflite",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of trained models")
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="recordings, only for models that carry no record of their training data (older files)",
    )
    parser.add_argument(
        "--export",
        choices=("tflite", "none"),
        default="tflite",
        help="export NAME.tflite, NAME.float16.tflite, NAME.int8.tflite and time them with LiteRT "
        "(default tflite)",
    )
    old = parser.add_argument_group("the split of models without a record (older files)")
    old.add_argument("--val-fraction", type=cli.number(0, 1, low_open=True, high_open=True), default=0.2)
    old.add_argument("--seed", type=cli.seed, default=0)
    old.add_argument("--block-seconds", type=cli.number(low=0, low_open=True), default=10.0)
    parser.add_argument(
        "--val-frames", type=cli.positive_int, default=512, help="validation frames to score (max)"
    )
    parser.add_argument("--runs", type=cli.positive_int, default=200, help="timed calls per latency figure")
    parser.add_argument(
        "--calibration-frames",
        type=cli.positive_int,
        default=CALIBRATION_FRAMES,
        help=f"training frames that calibrate the int8 export (default {CALIBRATION_FRAMES})",
    )
    parser.add_argument(
        "--saliency",
        nargs="+",
        choices=(*METHOD_NAMES, "none"),
        default=list(SALIENCY_METHODS),
        metavar="METHOD",
        help="where each model looks, scored on frames of unseen tracks and drawn as saliency.png: "
        f"vbp, smoothgrad, or none (default {' '.join(SALIENCY_METHODS)})",
    )
    parser.add_argument(
        "--drive-precisions",
        metavar="SUITE",
        choices=("quick", "unseen"),
        default=None,
        help="drive every exported LiteRT file (float32, float16, int8) over this suite and tabulate "
        "size, one-core latency and autonomy (off by default: minutes per model)",
    )
    parser.add_argument(
        "--jobs", type=cli.integer(1, 256), default=None, help="parallel drives (default: cores)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "none" in args.saliency and len(args.saliency) > 1:
        parser.error("--saliency: none cannot be combined with a method")
    saliency = [m for m in args.saliency if m != "none"]
    if args.drive_precisions and args.export == "none":
        parser.error("--drive-precisions drives the exported files: it needs --export tflite")
    tfsetup.setup()
    # After parsing and the setup: the stage loads TensorFlow (and the data reader pandas), which
    # --help must not wait for.
    from driving.data.reader import RecordingError
    from driving.report.stage import ReportError, run

    fallback = {"val_fraction": args.val_fraction, "seed": args.seed, "block_seconds": args.block_seconds}
    try:
        report = run(
            args.models,
            args.data,
            args.export == "tflite",
            args.runs,
            args.val_frames,
            fallback,
            saliency=saliency,
            drive_precisions=args.drive_precisions,
            jobs=args.jobs,
            calibration_frames=args.calibration_frames,
        )
    except (ReportError, RecordingError, OSError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    print("\n".join(report["findings"]))
    print(f"\nwrote {args.models / 'report.md'}, report.json and the charts")
    return 1 if report["not_measured"] else 0
