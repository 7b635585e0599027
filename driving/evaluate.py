"""Command line of the evaluation suites (the library: driving/evaluation/suites.py; the suites
themselves: driving/evaluation/registry.py).

    python -m driving.evaluate models/effnet.h5 models/base.h5 --suite unseen [--jobs 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from driving import cli, tfsetup
from driving.evaluation.registry import SUITES
from driving.files import check_writable_folder
from driving.modelio import ModelFileError, load_info


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
    args = build_parser().parse_args(argv)
    try:
        check_writable_folder(args.out, "--out folder")
        for model in args.models:
            load_info(model)  # a missing or damaged file is named before any drive starts
    except (ModelFileError, OSError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    tfsetup.setup()
    from driving.evaluation import suites  # loads TensorFlow: once the arguments and files are good

    try:
        result = suites.run(args.models, SUITES[args.suite], args.jobs, args.speed, args.out)
    except ModelFileError as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    print(suites.markdown(result))
    print(f"wrote {args.out / ('suite-' + args.suite)}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
