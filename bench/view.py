"""What the live view costs a drive: a fixed-step drive (the headless simulator, a DirectLink to
a Pilot on an untrained effnet served by LiteRT as drive.py serves it) with no view, with the view
and no page open, and with the view and one page reading its stream (another process, as a
browser is).

Two figures per drive, timed from its first frame to its last (world building and model warm-up
excluded): frames per wall second, what a user sees, and the drive process's CPU milliseconds per
frame (all its threads: the drive and the view's streams), which other jobs on a shared box
disturb less. The three modes run interleaved, `--repeats` times each: each figure is the median
with the spread (min-max) beside it, and the ratio to the no-view median. Also: the drive thread's
own cost per frame, ViewState.add().

    python bench/view.py [--frames 600] [--repeats 7] [--track lake]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime

from driving.config import DEFAULT_PREPROCESSING, SAMPLE_RATE_HZ
from driving.evaluation.closed_loop import DirectLink, DriveOptions, drive
from driving.models import build
from driving.pilot import Pilot
from driving.sim.track import get_track
from driving.view.server import ViewServer
from driving.view.sources import DriveView
from driving.view.state import Sample, ViewState

MODES = ("no view", "view, no page", "view, one page reading")


class Stopwatch:
    """A DriveObserver that notes the wall and CPU time of the first and the last frame."""

    def start(self, track, options) -> None:
        self.first = self.last = (0.0, 0.0)
        self.frames = 0

    def frame(self, frame) -> None:
        self.last = (time.perf_counter(), time.process_time())
        self.first = self.first if self.frames else self.last
        self.frames += 1

    def end(self, metrics) -> None:
        pass

    def figures(self) -> tuple[float, float]:
        """(frames per wall second, CPU ms per frame)."""
        (wall0, cpu0), (wall1, cpu1) = self.first, self.last
        return (self.frames - 1) / (wall1 - wall0), (cpu1 - cpu0) / (self.frames - 1) * 1e3


# One page, in its own process as a browser is: reads the stream to its end, prints what came.
PAGE = """
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
connection.request("GET", "/events")
stream, updates, size = connection.getresponse(), 0, 0
while line := stream.fp.readline():
    size += len(line)
    updates += line.startswith(b"event: update")
print(updates, size)
"""


def timed_drive(pilot: Pilot, track, frames: int, mode: str) -> tuple[float, float, tuple[int, int] | None]:
    """(frames per second, CPU ms per frame) of one drive in `mode`, and (updates, bytes) the
    page received."""
    watch = Stopwatch()
    options = DriveOptions(laps=1000, max_seconds=frames / SAMPLE_RATE_HZ, progress=False, observers=[watch])
    if mode == "no view":
        drive(track, DirectLink(pilot), options)
        return (*watch.figures(), None)
    view = ViewServer()
    view.start()
    options.observers.append(DriveView(view.state, DEFAULT_PREPROCESSING, "effnet"))
    page = None
    if mode == "view, one page reading":
        page = subprocess.Popen(
            [sys.executable, "-c", PAGE, str(view.port)], stdout=subprocess.PIPE, text=True
        )
        while view.clients == 0:  # the page is reading before the drive starts
            time.sleep(0.01)
    try:
        drive(track, DirectLink(pilot), options)
    finally:
        view.stop()
    received = None
    if page is not None:
        updates, size = page.communicate(timeout=30)[0].split()
        received = (int(updates), int(size))
    return (*watch.figures(), received)


def add_cost_us(samples: int = 20_000) -> float:
    """Microseconds the drive's thread spends in ViewState.add() per frame (no page)."""
    state = ViewState()
    state.begin("effnet", "bench", DEFAULT_PREPROCESSING, "simulated", "round trip", track=get_track("lake"))
    jpeg = bytes(20_000)
    t0 = time.perf_counter()
    for i in range(samples):
        state.add(Sample(i / 15, jpeg, 0.1, 0.2, 9.0, 2.0, x=i * 0.3, y=0.0, cte=0.5, laps=0.1))
    return (time.perf_counter() - t0) / samples * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--frames", type=int, default=600, help="frames per drive (default: 600, 40 simulated s)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="drives per mode (default: 7)")
    parser.add_argument("--track", default="lake")
    args = parser.parse_args()

    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    from driving.modelio import ModelInfo, to_tflite  # TensorFlow after the arguments: --help is instant
    from driving.runtime import Predictor

    content = to_tflite(build("effnet"))  # untrained: the cost of the view does not depend on weights
    pilot = Pilot(Predictor.from_tflite(content, name="effnet", info=ModelInfo()))
    track = get_track(args.track)
    timed_drive(pilot, track, 30, "no view")  # warm-up: first calls, caches
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    received: list[tuple[int, int]] = []
    for r in range(args.repeats):
        for mode in MODES:  # interleaved, so a burst of load hits every mode alike
            rate, cpu_ms, got = timed_drive(pilot, track, args.frames, mode)
            rates[mode].append(rate)
            cpu[mode].append(cpu_ms)
            received += [got] if got else []
        print(f"  repeat {r + 1}/{args.repeats}: " + ", ".join(f"{m} {rates[m][-1]:.0f}/s" for m in MODES))

    print(f"\n{args.frames}-frame fixed-step drives on {args.track}, {args.repeats} each:")
    for figure, values, fmt in (("frames/s", rates, "6.1f"), ("CPU ms/frame", cpu, "6.2f")):
        base = statistics.median(values["no view"])
        for mode in MODES:
            median = statistics.median(values[mode])
            low, high = min(values[mode]), max(values[mode])
            print(
                f"  {figure:12} {mode:24} median {median:{fmt}}  (min {low:{fmt}}, max {high:{fmt}})  "
                f"ratio to no view {median / base:.3f}"
            )
    if received:
        updates = statistics.median(u for u, _ in received)
        kib = statistics.median(b for _, b in received) / 1024
        print(f"  the page received a median {updates:.0f} updates, {kib:.0f} KiB, per drive")
    print(f"ViewState.add (the drive thread's part): {add_cost_us():.1f} us per frame")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
