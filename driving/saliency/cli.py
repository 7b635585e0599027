"""The saliency command line: `python -m driving.saliency MODEL --track lake|--data DIR|--suite quick`.

The arguments are parsed before TensorFlow loads (--help is instant); then TensorFlow is set up and
the methods (driving/saliency/methods.py) imported and run on the frames asked for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from driving import cli, tfsetup
from driving.data.reader import RecordingError
from driving.evaluation.registry import SUITES
from driving.files import check_writable_folder, write_json
from driving.modelio import ModelFileError, info_or_default, load_info, load_keras
from driving.preprocess import FrameError
from driving.saliency import METHOD_NAMES
from driving.saliency.frames import PROBES_PER_DRIVE, probe_frames, recording_probes, track_probes
from driving.sim.track import TrackError

DEFAULT_FRAMES = 8  # from a recording or along a track
GRID_COLUMNS = 4  # images per row of grid.png


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.saliency",
        description="Show where a steering model looks: per-frame saliency (VisualBackProp or "
        "SmoothGrad) blended into the camera view, the model's crop outlined, written as PNGs and a "
        "grid. With --track each frame is also scored: the share of the saliency on road and road "
        "edge (docs/saliency.md).",
        epilog="examples: python -m driving.saliency models/effnet.keras --track lake;  "
        "python -m driving.saliency models/base.keras --data data/sim-lake --method smoothgrad",
    )
    parser.add_argument("model", type=Path, help="a .keras or .h5 model (a .tflite has no gradients to read)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, metavar="DIR", help="a recording: frames spread evenly through it"
    )
    source.add_argument(
        "--track",
        metavar="NAME",
        help="lake, jungle, desert, random or a .json track: frames along its centre line, scored",
    )
    source.add_argument(
        "--suite",
        choices=list(SUITES),
        help="the frames models are scored on (as in the slimming report): poses along each drive of "
        f"an evaluation suite, under its conditions; --frames counts per drive (default {PROBES_PER_DRIVE})",
    )
    parser.add_argument(
        "--frames",
        type=cli.integer(1, 1000),
        help=f"how many frames (default {DEFAULT_FRAMES}; per drive with --suite)",
    )
    parser.add_argument(
        "--method", choices=list(METHOD_NAMES), default="vbp", help="saliency method (default vbp)"
    )
    parser.add_argument("--seed", type=cli.seed, default=0, help="world seed for --track (default 0)")
    parser.add_argument(
        "--faithfulness",
        action="store_true",
        help="also check the maps: hide each frame's 10%% most salient input pixels, then the same "
        "mask moved elsewhere (8 seeded draws), and compare how far the steering moves; the method "
        "earns its place where the ratio's lower 95%% bound is above 1.5 (docs/saliency.md). "
        "Written to faithfulness.json in --out",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/saliency"), help="where the PNGs go (default runs/saliency)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tfsetup.setup()
    # After parsing and the setup: the methods load TensorFlow and draw matplotlib, which --help
    # must not wait for.
    from driving.saliency import faithfulness
    from driving.saliency.draw import overlay, save_grid, save_png
    from driving.saliency.methods import METHODS, input_saliency, mass_shares, road_score, score, to_frame

    try:
        check_writable_folder(args.out, "--out folder")
        load_info(args.model)  # a missing or damaged file is named before any work
        if args.data is not None:
            probes = recording_probes(args.data, args.frames or DEFAULT_FRAMES)
        elif args.track is not None:
            probes = track_probes(args.track, args.frames or DEFAULT_FRAMES, args.seed)
        else:
            probes = probe_frames(args.suite, args.frames or PROBES_PER_DRIVE)
        model, info = load_keras(args.model)
        geometry = info_or_default(info, str(args.model)).preprocessing
        x, on_input = input_saliency(
            METHODS[args.method](model), np.stack([p.frame for p in probes]), geometry
        )
        checked = faithfulness.check(model, x, on_input) if args.faithfulness else None
    except (ModelFileError, RecordingError, TrackError, FrameError, OSError, ValueError) as e:
        print(f"saliency: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    maps = to_frame(on_input, geometry)
    shown = [overlay(p.frame, m, geometry) for p, m in zip(probes, maps, strict=True)]
    for i, (probe, image) in enumerate(zip(probes, shown, strict=True)):
        path = save_png(image, args.out / f"frame-{i:03d}.png")
        scored = (
            ""
            if probe.labels is None
            else f": road and edge {road_score(mass_shares(maps[i], probe.labels, geometry)):.0%}"
        )
        print(f"{path} {probe.name}{scored}")
    rows = range(0, len(shown), GRID_COLUMNS)
    titles = [[p.name for p in probes[i : i + GRID_COLUMNS]] for i in rows]
    grid = save_grid([shown[i : i + GRID_COLUMNS] for i in rows], args.out / "grid.png", titles=titles)
    print(f"wrote {len(shown)} frames and {grid} ({args.method}, {args.model.name})")
    if probes[0].labels is not None:
        found = score(maps, probes, geometry)
        print(
            f"saliency on road and edge {found['score']:.1%} (edge alone {found['edge']:.1%}; "
            f"a map that looks everywhere alike: {found['chance']:.1%})"
        )
    if checked is not None:
        path = write_json(
            args.out / "faithfulness.json",
            {"model": str(args.model), "method": args.method, **checked.to_dict()},
        )
        moved, scattered = checked.moved, checked.scattered
        print(
            f"faithfulness ({args.method}, {checked.frames} frames): hiding the top {checked.share:.0%} "
            f"salient pixels moves the steering by {checked.salient:.4f}, the same mask moved elsewhere "
            f"by {moved.effect:.4f}, as many scattered pixels by {scattered.effect:.4f} "
            f"({checked.draws} draws each); against the moved mask {checked.describe()} (earns its "
            f"place above {faithfulness.EARNS_ITS_PLACE:g}); against scattered pixels "
            f"{scattered.ratio:.2f} [{scattered.low:.2f}, {scattered.high:.2f}]; {path}"
        )
    return 0
