"""Capture the live view of a short drive as a PNG (the picture in docs/view.md is made by this).

    python -m driving.view screenshot docs/img/live-view.png models/effnet.h5 [--track lake]

Drives MODEL in this process (the headless simulator with the Pilot directly, --fps frames per
wall second) with the live view on, watches it in headless Chromium (driving/view/browser.py),
and saves the page once the drive has ended and the page shows it.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from driving import cli
from driving.view import browser

MAX_SECONDS = 600.0


def screenshot(out: Path, model: Path, track_name: str, seconds: float, fps: float) -> Path:
    """Drive `model` for `seconds` of wall time with the view on, and save the page as `out`."""
    from driving.evaluation.closed_loop import DriveOptions, drive_pilot
    from driving.files import atomic_path
    from driving.pilot import Pilot
    from driving.runtime import Predictor  # imports TensorFlow
    from driving.sim.track import get_track
    from driving.view.server import ViewServer
    from driving.view.sources import DriveView

    track = get_track(track_name)
    predictor = Predictor.load(model)
    view = ViewServer()
    view.start()
    options = DriveOptions(
        laps=1.0,
        max_seconds=seconds * fps / 15,  # simulated: 15 frames per simulated second
        fps=fps,
        progress=False,
        model=model.stem,
        observers=[DriveView(view.state, predictor.preprocessing)],
    )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            drive_pilot(Pilot(predictor), track, options, direct=True)
        except BaseException as e:  # told in the main thread
            failed.append(e)

    drive = threading.Thread(target=run, name="drive", daemon=True)
    try:
        with browser.headless_chromium(1280, 820) as page:
            page.get(view.url)
            browser.wait_for(page, "return document.body.dataset.state === 'waiting'", 30)
            drive.start()
            drive.join(seconds + 60)
            if failed:
                raise failed[0]
            browser.wait_for(page, "return document.body.dataset.state === 'ended'", 30)
            with atomic_path(out) as tmp:
                page.save_screenshot(str(tmp))
    finally:
        view.stop(linger=0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driving.view", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "screenshot", help="drive MODEL briefly with the live view on and save the page as a PNG"
    )
    p.add_argument("out", type=Path, help="the PNG to write, e.g. docs/img/live-view.png")
    p.add_argument("model", type=Path, help="a model made by train.py: .h5, .keras or .tflite")
    p.add_argument(
        "--track", default="lake", help="lake | jungle | desert | random | FILE.json (default: lake)"
    )
    p.add_argument(
        "--seconds",
        type=cli.number(low=1, high=MAX_SECONDS),
        default=20.0,
        help=f"wall seconds of driving before the capture, 1 to {MAX_SECONDS:g} (default: 20)",
    )
    p.add_argument(
        "--fps",
        type=cli.number(low=1, high=1000),
        default=30.0,
        help="frames per wall second; 15 is the simulator's pace (default: 30)",
    )
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"{args.model}: no such model file")
    if args.out.suffix.lower() != ".png":
        parser.error(f"{args.out}: the screenshot is a PNG: name it .png")
    problem = browser.missing()
    if problem:
        print(f"error: cannot drive headless Chromium: {problem}", file=sys.stderr)
        return 2
    from driving.modelio import ModelFileError
    from driving.sim.track import TrackError

    try:
        print(f"screenshot: {screenshot(args.out, args.model, args.track, args.seconds, args.fps)}")
    except (ModelFileError, TrackError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
