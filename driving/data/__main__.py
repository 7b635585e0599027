"""Command line for recordings: check every row and image, and show what a training run would use.

    python -m driving.data summary --data data/track1 [--strict]

It prints the rows read, used and skipped by reason, and writes a steering histogram (PNG).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from driving.config import SAMPLE_RATE_HZ
from driving.data.reader import RecordingError, check_decodable, load_recordings


def save_steering_histogram(frames: pd.DataFrame, path: str | Path, bins: int = 51) -> None:
    """PNG histogram of the steering values (log scale: most rows of a real recording are 0)."""
    import matplotlib  # only once the recordings are read: --help and a failed check never load it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(frames["steering"], bins=bins, range=(-1, 1), color="#3465a4")
    ax.set(
        xlabel="steering (1 = 25 degrees, positive = right)",
        ylabel="frames",
        title=f"Steering over {len(frames)} frames",
        yscale="log",
    )
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name("." + path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driving.data",
        description="Inspect Udacity-simulator recordings (driving_log.csv + IMG/).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    summary_cmd = commands.add_parser(
        "summary",
        help="validate recordings; print rows read, used and skipped by reason",
        description="Read every recording, check each row and decode each image, then print the "
        "rows read, used and skipped by reason and write a steering histogram PNG.",
    )
    summary_cmd.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="recording folders (with driving_log.csv), or folders holding several anywhere below them",
    )
    summary_cmd.add_argument(
        "--strict", action="store_true", help="stop at the first bad row or image instead of skipping it"
    )
    summary_cmd.add_argument(
        "--hist",
        default="steering.png",
        metavar="PNG",
        help="where to write the steering histogram (default: %(default)s)",
    )
    summary_cmd.add_argument(
        "--no-decode", action="store_true", help="only check that the image files exist; do not decode them"
    )
    args = parser.parse_args(argv)

    try:
        recordings = load_recordings(args.data, strict=args.strict)
        frames = recordings.frames
        if not args.no_decode:
            frames = check_decodable(frames, recordings.summary, strict=args.strict)
    except RecordingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(recordings.summary)
    save_steering_histogram(frames, args.hist)
    straight = (frames["steering"].abs() < 0.01).mean() if len(frames) else 0.0
    seconds = len(frames) / SAMPLE_RATE_HZ
    duration = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
    print(
        f"\n{len(frames)} frames ({duration} of driving), {straight:.0%} with |steering| < 0.01; "
        f"steering histogram: {args.hist}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
