"""Drive the Udacity simulator (or driving.sim) with a trained model: the `drive.py` command line.

    python drive.py models/effnet.h5                 # then start the simulator in Autonomous Mode
    python drive.py models/effnet.tflite --speed 12 --record runs/lap1
    python drive.py models/effnet.h5 --view          # and watch it in a browser (docs/view.md)

See docs/drive.md. The settings are declared once in driving/drive_config.py; the driving is
driving/pilot.py, the transports driving/drive_server.py. This module parses, refuses what cannot
work in one line, then sets TensorFlow up and imports the stage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from driving import tfsetup
from driving.config import CSV_NAME, IMG_DIR
from driving.drive_config import GROUPS, DriveConfig
from driving.files import MODEL_SUFFIXES, OutputRefused, check_writable_folder
from driving.modelio import ModelFileError
from driving.options import add_options, from_args
from driving.view.server import ViewServer
from driving.view.sources import ServerView

NAME = "drive.py"  # how its one-line errors begin


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Serve a steering model to the Udacity simulator's autonomous mode over "
        "Socket.IO. Prints one status line per second.",
        epilog="example: python drive.py models/effnet.h5 --speed 9 --record runs/lap1",
    )
    add_options(parser, DriveConfig, groups={title: parser.add_argument_group(title) for title in GROUPS})
    return parser


def parse_args(argv: list[str] | None = None) -> DriveConfig:
    parser = build_parser()
    config = from_args(DriveConfig, parser.parse_args(argv))
    if not config.model.is_file():
        parser.error(f"{config.model}: no such model file")
    return config


def check_record_folder(folder: Path) -> Path:
    """Refuse, in one line, a --record folder that holds something drive.py did not write: a file,
    a model's name, a recording already (its rows would be mixed with this drive's), a folder with
    other files, or a folder inside a recording. A new folder, an empty one, or what a drive that
    recorded nothing left (an empty driving_log.csv and an empty IMG/) is taken."""
    option = f"--record {folder}"
    if folder.suffix.lower() in MODEL_SUFFIXES:
        raise OutputRefused(f"{option}: a model file's name; name a folder for the recording")
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise OutputRefused(f"{option}: is a file, not a folder")
    for parent in list(folder.absolute().parents)[:2]:  # a recording, or its IMG/
        if (parent / CSV_NAME).is_file():
            raise OutputRefused(f"{option}: inside the recording {parent}; name a folder outside it")
    if not folder.is_dir():
        return folder
    log, images = folder / CSV_NAME, folder / IMG_DIR
    if log.is_file() and log.stat().st_size > 0:
        raise OutputRefused(f"{option}: holds a recording already; name a new folder for this drive")
    left_by_an_empty_drive = {log, images} if images.is_dir() and not any(images.iterdir()) else {log}
    others = sorted(p.name for p in folder.iterdir() if p not in left_by_an_empty_drive)
    if others:
        raise OutputRefused(
            f"{option}: holds files drive.py did not write ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); name a new or empty folder"
        )
    return folder


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    record = config.serve.record
    try:
        if record is not None:  # refused or created before the model loads
            check_writable_folder(check_record_folder(record), "--record folder")
    except (OutputRefused, OSError) as e:
        print(f"{NAME}: {e}", file=sys.stderr)
        return 2
    try:
        return drive(config)
    except KeyboardInterrupt:  # stopped while still loading
        return 130


def drive(config: DriveConfig) -> int:
    """Load the model and serve it until Ctrl-C or SIGTERM; the exit status."""
    tfsetup.setup()  # TensorFlow quietly, after --help
    # The stage, imported after parsing: the runtime imports TensorFlow, which --help must not
    # wait for; the server and the Pilot bring Flask, eventlet and OpenCV; the card, pandas.
    from driving import card
    from driving.drive_server import DriveServer
    from driving.pilot import Pilot
    from driving.runtime import Predictor

    try:
        predictor = Predictor.load(config.model, backend=config.backend, threads=config.threads)
    except (ModelFileError, OSError) as e:
        print(f"{NAME}: {e}", file=sys.stderr)
        return 2
    summary = card.summary_line(config.model)
    if summary:  # what is being served, from the card beside the model
        logging.info("%s", summary)
    pilot = Pilot(predictor, config.pilot)
    view = None
    if config.view:  # a listener feeds the view from every reply; its pages are served on their own port
        view = ViewServer(port=config.view_port)
        try:
            view.start()
        except OSError as e:
            print(
                f"{NAME}: cannot serve the live view on port {config.view_port}: {e.strerror or e}",
                file=sys.stderr,
            )
            return 1
        logging.info("live view: %s (open it in a browser)", view.url)
    serve = config.serve_settings()
    server = DriveServer(pilot, serve, listeners=[ServerView(view.state, pilot)] if view else [])
    # SIGTERM stops as Ctrl-C does: the recording is closed cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.request_stop())
    try:
        server.serve()
    except OSError as e:  # port taken, address not available
        server.close()
        print(f"{NAME}: cannot listen on {serve.host}:{serve.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        if view is not None:
            view.stop(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
