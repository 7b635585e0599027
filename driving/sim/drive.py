"""Closed-loop driving: the headless simulator plays the Udacity simulator against a drive.py server.

    metrics, trace = drive(get_track("lake"), port=4567, options=DriveOptions(laps=2))
    metrics, trace = evaluate("models/effnet.h5", "lake")   # starts the server itself

Each frame: render the center camera, send it as telemetry through SimulatorClient (the simulator's
exact client), wait for `steer`, apply steering and throttle to the car, advance physics. By default
physics advance a fixed 1/15 s per frame, whatever the server's speed, so a drive is deterministic.
With `realtime`, physics advance by the wall-clock time between two replies, as in Unity, where the
car keeps rolling under the last command while the server thinks: a slow server drives blind longer.

When the car's centre leaves the road, that is an intervention: counted, and the car is put back on
the centre line where it left, facing along the road at the same speed, and the drive goes on.
The drive ends after `laps` laps, or when the car makes no progress for 30 simulated seconds
(stalled, or driving the wrong way), or at a time limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from driving.config import SAMPLE_RATE_HZ
from driving.preprocess import decode_jpeg, encode_jpeg
from driving.sim.client import ProtocolError, SimulatorClient
from driving.sim.metrics import DriveMetrics, DriveTrace, summarise
from driving.sim.simulator import Simulator
from driving.sim.track import Track

STALL_WINDOW_S = 30.0  # no progress for this long ends the drive
STALL_MIN_PROGRESS_M = 5.0
MIN_SPEED_MPS = 1.0  # the default time limit assumes at least this average speed


@dataclass
class DriveOptions:
    laps: float = 2.0
    realtime: bool = False
    frame_dt: float = 1.0 / SAMPLE_RATE_HZ  # simulated seconds per frame when not realtime
    max_seconds: float | None = None  # simulated; default: laps at MIN_SPEED_MPS
    seed: int = 0  # world textures
    video: Path | None = None  # MP4 of the camera view with an overlay
    timeout: float = 10.0  # seconds to wait for one reply (model warm-up included)
    progress: bool = True  # tqdm bar
    model: str = ""  # name for the report


def _overlay(jpeg: bytes, steering: float, mph: float, cte: float) -> np.ndarray:
    """The camera frame with steering, speed and cross-track error written on it."""
    frame = decode_jpeg(jpeg, "video frame").copy()
    for row, text in ((16, f"steer {steering:+.3f}  {mph:4.1f} mph"), (34, f"off centre {cte:+.2f} m")):
        cv2.putText(frame, text, (6, row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(frame, text, (6, row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def drive(
    track: Track, host: str = "127.0.0.1", port: int = 4567, options: DriveOptions | None = None
) -> tuple[DriveMetrics, DriveTrace]:
    """Drive `options.laps` laps against the server at host:port; returns the metrics and the trace.
    Raises ConnectionError / TimeoutError if the server is not there or silent, and
    ProtocolError if it answers something the real simulator could not use (e.g. a number in
    `steer`, which stalls the real simulator for good)."""
    options = options or DriveOptions()
    sim = Simulator(track, seed=options.seed)
    sim.reset(s=0.0, offset=0.0, speed=0.0)
    trace = DriveTrace(track)
    max_seconds = options.max_seconds or options.laps * track.length / MIN_SPEED_MPS
    video_frames: list[bytes] = []
    elapsed, end_reason = 0.0, "laps done"
    stall_t, stall_progress = 0.0, 0.0
    bar = tqdm(
        total=round(options.laps, 2),
        unit="lap",
        disable=not options.progress,
        mininterval=0.5,
        desc=f"{options.model or 'drive'} on {track.name}",
        bar_format=("{desc}: {n:.2f}/{total} laps |{bar}| {elapsed} {postfix}"),
    )

    with SimulatorClient(host, port, timeout=options.timeout) as client:
        jpeg = encode_jpeg(sim.render("center"))
        kind, command = client.connect(jpeg, speed=0.0)
        last_reply = time.perf_counter()
        steering, throttle = 0.0, 0.0
        trace.add(0.0, sim.car.x, sim.car.y, sim.location.cte, sim.car.mph, 0.0, 0.0)
        while True:
            if kind != "steer":  # we always send a frame, so `manual` is a server fault
                raise ProtocolError(f"server answered {kind!r} to a telemetry frame with an image")
            if options.realtime:  # the car rolled on under the old command while the server thought
                now = time.perf_counter()
                dt, last_reply = now - last_reply, now
                sim.step(steering, throttle, dt=dt)
                steering, throttle = command["steering_angle"], command["throttle"]
            else:  # lock-step: the new command drives the next 1/15 s
                steering, throttle = command["steering_angle"], command["throttle"]
                dt = options.frame_dt
                sim.step(steering, throttle, dt=dt)
            elapsed += dt
            trace.add(elapsed, sim.car.x, sim.car.y, sim.location.cte, sim.car.mph, steering, throttle)
            if sim.off_road:
                trace.intervene(elapsed, sim.car.x, sim.car.y, sim.location.s)
                sim.reset(s=sim.location.s, offset=0.0, speed=sim.car.speed, keep_progress=True)
                sim.car.steering = steering
            if options.video is not None:
                video_frames.append(jpeg)
            if len(trace.x) % SAMPLE_RATE_HZ == 0:  # once per simulated second is plenty
                bar.set_postfix_str(
                    f"{sim.car.mph:4.1f} mph, {len(trace.interventions)} interventions", refresh=False
                )
                bar.update(round(max(sim.laps, 0.0), 2) - bar.n)

            if sim.laps >= options.laps:
                break
            if elapsed - stall_t >= STALL_WINDOW_S:
                if sim.progress - stall_progress < STALL_MIN_PROGRESS_M:
                    end_reason = (
                        f"stalled: under {STALL_MIN_PROGRESS_M:g} m of progress in {STALL_WINDOW_S:g} s"
                    )
                    break
                stall_t, stall_progress = elapsed, sim.progress
            if elapsed >= max_seconds:
                end_reason = f"time limit of {max_seconds:.0f} simulated s"
                break

            jpeg = encode_jpeg(sim.render("center"))
            sent = time.perf_counter()
            client.send_telemetry(steering, throttle, sim.car.mph, jpeg)
            kind, command = client.receive_reply()
            trace.add_latency(time.perf_counter() - sent)
    bar.update(round(max(sim.laps, 0.0), 2) - bar.n)
    bar.close()

    metrics = summarise(trace, options.laps, sim.laps, options.realtime, end_reason, options.model)
    if options.video is not None:
        from driving.video import write_video

        write_video(_video_frames(video_frames, trace), options.video)
    return metrics, trace


def _video_frames(jpegs: list[bytes], trace: DriveTrace) -> Iterator[np.ndarray]:
    # trace row i+1 holds the state right after the command answering frame i
    for i, jpeg in enumerate(jpegs):
        row = min(i + 1, len(trace.x) - 1)
        yield _overlay(jpeg, trace.steering[row], trace.mph[row], trace.cte[row])


def evaluate(
    model: str | Path,
    track: Track,
    options: DriveOptions | None = None,
    speed: float = 9.0,
    throttle: float | None = None,
) -> tuple[DriveMetrics, DriveTrace]:
    """Serve `model` with drive.py's server on a free loopback port, drive it, stop the server."""
    from driving.runtime import Predictor  # imports TensorFlow
    from driving.server import DriveConfig, DriveServer

    options = options or DriveOptions()
    if not options.model:
        options.model = Path(model).stem
    server = DriveServer(
        Predictor.load(model), DriveConfig(speed=speed, throttle=throttle, status_interval=0.0)
    )
    port = server.start("127.0.0.1", 0)
    try:
        return drive(track, "127.0.0.1", port, options)
    finally:
        server.stop()
