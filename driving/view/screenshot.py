"""The live view of a short drive, saved as a PNG: what `python -m driving.view screenshot` runs.

Drives a model in this process (the headless simulator with the Pilot directly, `fps` frames per
wall second) with the live view on, watches it in headless Chromium (driving/view/browser.py), and
saves the page once the drive has ended and the page shows it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from driving.evaluation.closed_loop import DriveOptions, drive_pilot
from driving.files import atomic_path
from driving.pilot import Pilot
from driving.runtime import Predictor
from driving.sim.track import get_track
from driving.view import browser
from driving.view.server import ViewServer
from driving.view.sources import DriveView


def screenshot(out: Path, model: Path, track_name: str, seconds: float, fps: float) -> Path:
    """Drive `model` for `seconds` of wall time with the view on, and save the page as `out`."""
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
