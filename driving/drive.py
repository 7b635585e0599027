"""Drive the Udacity simulator (or driving.sim) with a trained model.

    python drive.py models/effnet.h5                 # then start the simulator in Autonomous Mode
    python drive.py models/effnet.tflite --speed 12 --record runs/lap1
    python drive.py models/effnet.h5 --view          # and watch it in a browser (docs/view.md)

See docs/drive.md. The driving is driving/pilot.py; the transports driving/drive_server.py.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from driving import cli, tfsetup
from driving.config import ASYNC_MODES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    speed, turn_slowdown = 9.0, 0.0  # the Pilot's defaults (driving.pilot.PilotConfig)
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
        "--port", type=cli.port, default=4567, help="port (default 4567, the simulator's; 0 picks a free one)"
    )
    parser.add_argument(
        "--speed",
        type=cli.number(0, 30),
        default=speed,
        help="target speed in mph for the PI throttle controller, 0 to 30 (default %(default)s)",
    )
    parser.add_argument(
        "--throttle",
        type=cli.number(-1, 1),
        default=None,
        help="fixed throttle in [-1, 1] instead of the speed controller",
    )
    parser.add_argument(
        "--turn-slowdown",
        type=cli.number(0, 10),
        default=turn_slowdown,
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
        type=cli.integer(1, 256),
        default=None,
        metavar="N",
        help="LiteRT interpreter threads (default: every core; fewer leaves room "
        "for a simulator rendering on the same machine)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-second status lines")
    parser.add_argument(
        "--view",
        action="store_true",
        help="serve a live view on 127.0.0.1: the frames, steering, throttle, speed, latency "
        "(the address is logged)",
    )
    parser.add_argument(
        "--view-port",
        type=cli.port,
        default=0,
        metavar="P",
        help="the live view's port (default 0: a free one)",
    )
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"{args.model}: no such model file")
    if args.record is not None and args.record.exists() and not args.record.is_dir():
        parser.error(f"--record {args.record}: is a file, not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    tfsetup.setup()  # TensorFlow quietly, after --help
    # The stage, imported after parsing: the runtime imports TensorFlow, which --help must not wait for.
    from driving.drive_server import DriveServer, ServeConfig
    from driving.files import check_writable_folder
    from driving.modelio import ModelFileError
    from driving.pilot import Pilot, PilotConfig
    from driving.runtime import Predictor  # imports TensorFlow: after --help

    try:
        if args.record is not None:
            check_writable_folder(args.record, "--record folder")
        predictor = Predictor.load(args.model, backend=args.backend, threads=args.threads)
    except (ModelFileError, OSError) as e:
        print(f"drive.py: {e}", file=sys.stderr)
        return 2
    settings = PilotConfig(speed=args.speed, throttle=args.throttle, turn_slowdown=args.turn_slowdown)
    pilot = Pilot(predictor, settings)
    status = 0.0 if args.quiet else 1.0
    config = ServeConfig(async_mode=args.async_mode, record=args.record, status_interval=status)
    view = None
    if args.view:  # a listener feeds the view from every reply; its pages are served on their own port
        from driving.view.server import ViewServer
        from driving.view.sources import ServerView

        view = ViewServer(port=args.view_port)
        try:
            view.start()
        except OSError as e:
            print(
                f"drive.py: cannot serve the live view on port {args.view_port}: {e.strerror or e}",
                file=sys.stderr,
            )
            return 1
        logging.info("live view: %s (open it in a browser)", view.url)
    server = DriveServer(pilot, config, listeners=[ServerView(view.state, pilot)] if view else [])
    # SIGTERM stops as Ctrl-C does: the recording is closed cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.request_stop())
    try:
        server.serve(args.host, args.port)
    except OSError as e:  # port taken, address not available
        server.close()
        print(f"drive.py: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        if view is not None:
            view.stop(linger=0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # stopped while still loading
        sys.exit(130)
