"""Command line of the headless simulator.

    python -m driving.sim tracks
    python -m driving.sim record --track lake --laps 3 --out data/sim-lake [--seed N]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from driving.sim.expert import ExpertConfig
from driving.sim.track import BUILTIN, TrackError, builtin_track, get_track, save_track


def cmd_tracks(args: argparse.Namespace) -> int:
    print(f"{'track':8} {'length m':>9} {'width m':>8} {'min radius m':>13}  style")
    for name in BUILTIN:
        t = builtin_track(name)
        print(f"{name:8} {t.length:9.0f} {t.width:8.1f} {1 / np.abs(t.curvature).max():13.1f}  {t.style}")
    print("also: --track random --seed N, or --track FILE.json "
          '({"name": ..., "width": metres, "points": [[x, y], ...], "style": "lake|jungle|desert"})')
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from driving.sim.record import record  # the renderer is only needed here

    track = get_track(args.track, args.seed)
    if args.save_track:
        save_track(track, args.save_track)
    config = ExpertConfig(cruise_mph=args.speed, weave=not args.no_weave)
    result = record(track, args.out, laps=args.laps, seed=args.seed, config=config)
    print(f"{result.samples} samples ({result.seconds:.0f} simulated s, {result.laps:.2f} laps) -> {result.folder}")
    print(f"max |cross-track error| {result.max_abs_cte:.2f} m of {track.width / 2:.2f} m; "
          f"off-road samples: {result.off_road_samples}; top-down view: {result.topdown}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m driving.sim", description=(
        "Headless track simulator: record expert laps in the Udacity simulator's format."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tracks", help="list the built-in tracks")
    p.set_defaults(func=cmd_tracks)

    p = sub.add_parser("record", help="record expert laps: driving_log.csv + IMG/ + topdown.png",
                       description="Drive expert laps (with deliberate drifts and recoveries) and write "
                                   "a recording exactly as the Udacity simulator does.")
    p.add_argument("--track", default="lake",
                   help="lake | jungle | desert | random (with --seed) | path/to/track.json (default: lake)")
    p.add_argument("--laps", type=float, default=1.0, help="laps to drive (default: 1)")
    p.add_argument("--out", required=True, help="new recording folder, e.g. data/sim-lake")
    p.add_argument("--seed", type=int, default=0, help="seed for the expert, textures and random tracks")
    p.add_argument("--speed", type=float, default=ExpertConfig.cruise_mph,
                   help=f"expert cruise speed in mph, slower in bends (default: {ExpertConfig.cruise_mph:g})")
    p.add_argument("--no-weave", action="store_true", help="follow the centre line without drifts")
    p.add_argument("--save-track", metavar="FILE.json", help="also save the track's JSON (e.g. a random one)")
    p.set_defaults(func=cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TrackError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
