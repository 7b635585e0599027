"""Drive the Udacity simulator (or driving.sim) with a trained model.

    python drive.py models/effnet.h5                 # then start the simulator in Autonomous Mode
    python drive.py models/effnet.tflite --speed 12 --record runs/lap1

See docs/drive.md.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from driving.server import ASYNC_MODES, DriveConfig, DriveServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve a steering model to the Udacity simulator's autonomous mode over "
        "Socket.IO. Prints one status line per second.",
        epilog="example: python drive.py models/effnet.h5 --speed 9 --record runs/lap1",
    )
    parser.add_argument("model", type=Path, help="a model made by train.py: .h5, .keras or .tflite")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, where the simulator connects; "
        "0.0.0.0 opens it to the network on purpose)",
    )
    parser.add_argument(
        "--port", type=int, default=4567, help="port (default 4567, the simulator's; 0 picks a free one)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=9.0,
        help="target speed in mph for the PI throttle controller (default 9)",
    )
    parser.add_argument(
        "--throttle",
        type=float,
        default=None,
        help="fixed throttle in [-1, 1] instead of the speed controller",
    )
    parser.add_argument(
        "--turn-slowdown",
        type=float,
        default=0.0,
        metavar="K",
        help="lower the target speed in sharp turns: speed * (1 - K*|steering|), "
        "never below half (default 0: off; 0.5 is a good start)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="save every driven frame as a recording (IMG/ + driving_log.csv) in DIR",
    )
    parser.add_argument(
        "--async-mode",
        choices=ASYNC_MODES,
        default="threading",
        help="server stack (default threading: about 3x lower round trip than the "
        "classic eventlet, measured in docs/benchmarks.md)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "keras", "litert"),
        default="auto",
        help="how to run a .h5/.keras model: auto (default) converts it to LiteRT in "
        "memory, checked against Keras, falling back to Keras; keras runs it "
        "as saved; litert insists on the conversion",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="LiteRT interpreter threads (default: every core; fewer leaves room "
        "for a simulator rendering on the same machine)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-second status lines")
    args = parser.parse_args(argv)
    if args.throttle is not None and not -1.0 <= args.throttle <= 1.0:
        parser.error(f"--throttle {args.throttle}: must be within [-1, 1]")
    if args.speed < 0:
        parser.error(f"--speed {args.speed}: must not be negative")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: must be at least 1")
    if not args.model.is_file():
        parser.error(f"{args.model}: no such model file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from driving.runtime import ModelError, Predictor  # imports TensorFlow: after --help

    try:
        predictor = Predictor.load(args.model, backend=args.backend, threads=args.threads)
    except ModelError as e:
        print(f"drive.py: {e}", file=sys.stderr)
        return 2
    config = DriveConfig(
        speed=args.speed,
        throttle=args.throttle,
        turn_slowdown=args.turn_slowdown,
        record=args.record,
        async_mode=args.async_mode,
        status_interval=0.0 if args.quiet else 1.0,
    )
    server = DriveServer(predictor, config)
    # SIGTERM stops as Ctrl-C does: the recording is closed cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.request_stop())
    try:
        server.serve(args.host, args.port)
    except OSError as e:  # port taken, address not available
        server.close()
        print(f"drive.py: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # stopped while still loading
        sys.exit(130)
