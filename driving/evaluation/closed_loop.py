"""Closed-loop driving: the headless simulator plays the Udacity simulator against a pilot.

    metrics, trace = drive(track, SocketLink(port=4567), DriveOptions(laps=2))  # a running drive.py
    metrics, trace = drive_model("models/effnet.h5", track)       # serves the model itself

Each frame: render the center camera, send it as telemetry, wait for `steer`, apply steering and
throttle to the car, advance physics. The telemetry goes over a Link:
- SocketLink: the simulator's exact client (driving/sim/client.py) over a real Socket.IO
  connection, to drive.py's server or any other: what passes here passes with the real simulator;
- DirectLink: the same telemetry payload handed to a Pilot in this process, and its reply read as
  the simulator reads it (STRING values, 4 decimals). The same drive, without the sockets: what
  the evaluation suites use, many drives in parallel processes.

By default physics advance a fixed 1/15 s per frame, whatever the pilot's speed, so a drive is
deterministic. With `realtime`, physics advance by the wall-clock time between two replies, as in
Unity, where the car keeps rolling under the last command while the server thinks: a slow server
drives blind longer.

When the car's centre leaves the road, that is an intervention: counted, and the car is put back on
the centre line where it left, facing along the road at the same speed, and the drive goes on. On a
two-lane road (driving/sim/kinds.py, the "two-lane" kind) the car keeps to the right lane: the
cross-track error is measured from the lane's centre, leaving the lane (the car's centre across
the centre line or the road edge) is the intervention, and the car is put back on the lane's centre.
The drive ends after `laps` laps, or when the car makes no progress for 30 simulated seconds
(stalled, or driving the wrong way), or at a time limit.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from driving.config import MAX_LAPS, SAMPLE_RATE_HZ
from driving.drive_config import ServeConfig
from driving.drive_server import DriveServer
from driving.evaluation.metrics import DriveMetrics, DriveTrace, metrics_of
from driving.pilot import Pilot, PilotConfig
from driving.preprocess import decode_jpeg, encode_jpeg
from driving.sim.client import ProtocolError, SimulatorClient, parse_steer, telemetry_packet
from driving.sim.conditions import Conditions
from driving.sim.kinds import WorldKind
from driving.sim.simulator import Simulator
from driving.sim.style import Style
from driving.sim.track import Track
from driving.video.writer import write_video

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
    conditions: Conditions = field(default_factory=Conditions)  # light, shadows, palette
    world: WorldKind | None = None  # cameras and steering scale; None: the track's own kind
    style: Style | None = None  # paints the world; None: the track's named style
    video: Path | None = None  # MP4 of the camera view with an overlay
    timeout: float = 10.0  # seconds to wait for one reply (model warm-up included)
    progress: bool = True  # tqdm bar
    model: str = ""  # name for the report
    fps: float | None = None  # at most this many frames per wall-clock second (to watch a drive)
    observers: list[DriveObserver] = field(default_factory=list)  # e.g. the live view

    def validate(self) -> DriveOptions:
        if not (math.isfinite(self.laps) and 0 < self.laps <= MAX_LAPS):
            raise ValueError(f"laps {self.laps}: must be above 0 and at most {MAX_LAPS:g}")
        if not (math.isfinite(self.frame_dt) and 0 < self.frame_dt <= 1):
            raise ValueError(f"frame_dt {self.frame_dt}: must be above 0 and at most 1 s")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds {self.max_seconds}: must be a positive number of seconds")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout {self.timeout}: must be a positive number of seconds")
        if self.fps is not None and not (math.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise ValueError(f"fps {self.fps}: must be above 0 and at most 1000 frames per second")
        if self.fps is not None and self.realtime:
            raise ValueError("fps limits fixed-step drives; a realtime drive already runs at the wall clock")
        return self


@dataclass
class DriveFrame:
    """One step of a closed-loop drive, as an observer sees it: the frame the pilot was sent, the
    command it answered, and where that left the car."""

    time_s: float  # simulated
    jpeg: bytes  # the camera frame sent as telemetry
    steering: float
    throttle: float
    x: float
    y: float
    heading: float
    cte: float  # signed cross-track error, metres (positive: right of the lane's centre)
    mph: float
    laps: float
    interventions: int
    intervened: bool  # this step ended off the road (off its lane), and the car was put back
    latency_ms: float | None  # telemetry sent -> reply (None for the connection's first reply)


class DriveObserver(Protocol):
    """Watches a drive (the live view, say). Called from the drive loop: must return quickly."""

    def start(self, track: Track, options: DriveOptions) -> None: ...

    def frame(self, frame: DriveFrame) -> None: ...

    def end(self, metrics: DriveMetrics | None) -> None: ...  # None: the drive failed


# --- links: how telemetry reaches the pilot -------------------------------------------------------


class Link(Protocol):
    def connect(self, jpeg: bytes) -> tuple[str, dict]: ...

    def send(self, steering: float, throttle: float, speed: float, jpeg: bytes) -> tuple[str, dict]: ...

    def close(self) -> None: ...


class SocketLink:
    """The simulator's own client over a real connection (two chains at start, string values)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4567, timeout: float = 10.0):
        self.client = SimulatorClient(host, port, timeout=timeout)

    def connect(self, jpeg: bytes) -> tuple[str, dict]:
        return self.client.connect(jpeg, speed=0.0)

    def send(self, steering: float, throttle: float, speed: float, jpeg: bytes) -> tuple[str, dict]:
        self.client.send_telemetry(steering, throttle, speed, jpeg)
        return self.client.receive_reply()

    def close(self) -> None:
        self.client.close()


class DirectLink:
    """A Pilot in this process, fed the very payload the simulator would send (its JSON: strings
    with 4 decimals, base64 image) and read back as the simulator reads the reply."""

    def __init__(self, pilot: Pilot):
        self.pilot = pilot
        self.session = pilot.new_session()

    def _ask(self, steering: float, throttle: float, speed: float, jpeg: bytes) -> tuple[str, dict]:
        payload = json.loads(telemetry_packet(steering, throttle, speed, jpeg)[2:])[1]
        command = self.pilot.drive(payload, self.session)
        if command.event == "manual":
            return "manual", {}
        return "steer", parse_steer(command.payload())

    def connect(self, jpeg: bytes) -> tuple[str, dict]:
        self._ask(0.0, 0.0, 0.0, jpeg)  # the simulator's two chains: the first reply is absorbed
        return self._ask(0.0, 0.0, 0.0, jpeg)

    def send(self, steering: float, throttle: float, speed: float, jpeg: bytes) -> tuple[str, dict]:
        return self._ask(steering, throttle, speed, jpeg)

    def close(self) -> None:
        pass


# --- the drive ------------------------------------------------------------------------------------


def _overlay(jpeg: bytes, steering: float, mph: float, cte: float) -> np.ndarray:
    """The camera frame with steering, speed and cross-track error written on it."""
    frame = decode_jpeg(jpeg, "video frame").copy()
    for row, text in ((16, f"steer {steering:+.3f}  {mph:4.1f} mph"), (34, f"off centre {cte:+.2f} m")):
        cv2.putText(frame, text, (6, row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(frame, text, (6, row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def drive(track: Track, link: Link, options: DriveOptions | None = None) -> tuple[DriveMetrics, DriveTrace]:
    """Drive `options.laps` laps of `track` against the pilot behind `link`; returns the metrics
    and the trace. Over a SocketLink it raises ConnectionError / TimeoutError if the server is not
    there or silent, and ProtocolError if it answers something the real simulator could not use
    (e.g. a number in `steer`, which stalls the real simulator for good)."""
    options = (options or DriveOptions()).validate()
    sim = Simulator(
        track, seed=options.seed, conditions=options.conditions, kind=options.world, style=options.style
    )
    sim.reset(s=0.0, offset=0.0, speed=0.0)  # on the lane's centre
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
        bar_format="{desc}: {n:.2f}/{total} laps |{bar}| {elapsed} {postfix}",
    )
    for observer in options.observers:
        observer.start(track, options)
    pace = 1.0 / options.fps if options.fps else 0.0
    next_frame = time.perf_counter()
    latency_ms: float | None = None
    try:
        jpeg = encode_jpeg(sim.render("center"))
        kind, command = link.connect(jpeg)
        last_reply = time.perf_counter()
        steering, throttle = 0.0, 0.0
        trace.add(0.0, sim.car.x, sim.car.y, sim.lane_cte, sim.car.mph, 0.0, 0.0)
        while True:
            if kind != "steer":  # we always send a frame, so `manual` is a pilot fault
                raise ProtocolError(f"server answered {kind!r} to a telemetry frame with an image")
            if options.realtime:  # the car rolled on under the old command while the server thought
                now = time.perf_counter()
                dt, last_reply = now - last_reply, now
                sim.step(steering, throttle, dt=dt)
                steering, throttle = command["steering_angle"], command["throttle"]
            else:  # lock-step: the new command drives the next frame_dt
                steering, throttle = command["steering_angle"], command["throttle"]
                dt = options.frame_dt
                sim.step(steering, throttle, dt=dt)
            elapsed += dt
            trace.add(elapsed, sim.car.x, sim.car.y, sim.lane_cte, sim.car.mph, steering, throttle)
            off_lane = sim.off_lane
            if options.observers:
                seen = DriveFrame(
                    elapsed, jpeg, steering, throttle, sim.car.x, sim.car.y, sim.car.heading,
                    sim.lane_cte, sim.car.mph, sim.laps, len(trace.interventions) + off_lane,
                    off_lane, latency_ms,
                )  # fmt: skip
                for observer in options.observers:
                    observer.frame(seen)
            if off_lane:
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

            if pace:  # watching: hold the frame rate down (the drive itself is unchanged)
                next_frame += pace
                time.sleep(max(0.0, next_frame - time.perf_counter()))
            jpeg = encode_jpeg(sim.render("center"))
            sent = time.perf_counter()
            kind, command = link.send(steering, throttle, sim.car.mph, jpeg)
            trace.add_latency(time.perf_counter() - sent)
            latency_ms = trace.latency_s[-1] * 1e3
    except BaseException:
        for observer in options.observers:
            observer.end(None)
        raise
    finally:
        link.close()
        bar.update(round(max(sim.laps, 0.0), 2) - bar.n)
        bar.close()

    metrics = metrics_of(trace, options.laps, sim.laps, options.realtime, end_reason, options.model)
    for observer in options.observers:
        observer.end(metrics)
    if options.video is not None:
        write_video(_video_frames(video_frames, trace), options.video)
    return metrics, trace


def _video_frames(jpegs: list[bytes], trace: DriveTrace) -> Iterator[np.ndarray]:
    # trace row i+1 holds the state right after the command answering frame i
    for i, jpeg in enumerate(jpegs):
        row = min(i + 1, len(trace.x) - 1)
        yield _overlay(jpeg, trace.steering[row], trace.mph[row], trace.cte[row])


def drive_model(
    model: str | Path,
    track: Track,
    options: DriveOptions | None = None,
    pilot_config: PilotConfig | None = None,
    direct: bool = False,
    threads: int | None = None,
) -> tuple[DriveMetrics, DriveTrace]:
    """Drive `model` around `track`: through drive.py's server on a free loopback port (default),
    or `direct`ly in this process. Raises driving.modelio.ModelFileError for an unusable file."""
    # TensorFlow only for a drive that loads a model: a drive over a socket (python -m driving.sim
    # drive, the live view's benchmark) runs without it.
    from driving.runtime import Predictor

    options = (options or DriveOptions()).validate()
    if not options.model:
        options.model = Path(model).stem
    pilot = Pilot(Predictor.load(model, threads=threads), pilot_config)
    return drive_pilot(pilot, track, options, direct)


def drive_pilot(
    pilot: Pilot, track: Track, options: DriveOptions, direct: bool = False
) -> tuple[DriveMetrics, DriveTrace]:
    """Drive `pilot` around `track`, directly or through a real server on a free loopback port."""
    if direct:
        return drive(track, DirectLink(pilot), options)
    server = DriveServer(pilot, ServeConfig(status_interval=0.0))
    port = server.start("127.0.0.1", 0)
    try:
        return drive(track, SocketLink("127.0.0.1", port, options.timeout), options)
    finally:
        server.stop()
