"""The video command line: a recording's center frames as an MP4, optionally with where a model
looks blended in.

    python -m driving.video runs/lap1 --fps 15            # writes runs/lap1.mp4
    python -m driving.video runs/lap1 --out lap1.mp4 --overlay
    python -m driving.video runs/lap1 --saliency models/effnet.keras   # where the model looks

The writer (driving/video/writer.py) knows nothing of saliency: this command builds the overlay
and hands it in. TensorFlow loads only with --saliency, after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from driving import cli, tfsetup
from driving.config import SAMPLE_RATE_HZ
from driving.modelio import info_or_default, load_keras
from driving.video.writer import VideoError, recording_to_video


def saliency_painter(model_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """frame -> the frame with where the model at `model_path` looks blended in (VisualBackProp)."""
    tfsetup.setup()
    # Only with --saliency: the methods load TensorFlow, which a plain video and --help never need.
    from driving.saliency.draw import overlay
    from driving.saliency.methods import VisualBackProp, frame_saliency

    model, info = load_keras(model_path)
    geometry = info_or_default(info, str(model_path)).preprocessing
    method = VisualBackProp(model)
    return lambda rgb: overlay(rgb, frame_saliency(method, rgb[None], geometry)[0], geometry)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.video",
        description="Turn a recording's center-camera frames (in driving_log.csv order) into an MP4.",
        epilog="example: python -m driving.video runs/lap1 --fps 15   (writes runs/lap1.mp4)",
    )
    parser.add_argument("folder", type=Path, help="recording folder (driving_log.csv + IMG/)")
    parser.add_argument(
        "--fps",
        type=cli.number(low=0, low_open=True, high=1000),
        default=SAMPLE_RATE_HZ,
        help=f"frames per second (default {SAMPLE_RATE_HZ}, the simulator's sample rate)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output file (default: the folder's name + .mp4, beside it)"
    )
    parser.add_argument("--overlay", action="store_true", help="write steering and speed on each frame")
    parser.add_argument(
        "--saliency",
        type=Path,
        metavar="MODEL",
        help="blend where MODEL (.keras or .h5) looks into each frame (VisualBackProp, docs/saliency.md)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paint = saliency_painter(args.saliency) if args.saliency else None
        out, written, skipped = recording_to_video(args.folder, args.out, args.fps, args.overlay, paint=paint)
    except (VideoError, OSError, ValueError) as e:  # ValueError: RecordingError, ModelFileError, FrameError
        print(f"driving.video: {e}", file=sys.stderr)
        return 1
    note = f", {skipped} unreadable frames skipped" if skipped else ""
    print(f"{out}: {written} frames at {args.fps:g} fps ({written / args.fps:.1f} s){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
