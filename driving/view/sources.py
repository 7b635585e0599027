"""Where the live view's data comes from: the headless simulator's drive loop, or drive.py's server.

    options.observers.append(DriveView(view.state, preprocessing))      # python -m driving.sim
    DriveServer(pilot, config, listeners=[ServerView(view.state, pilot)])  # drive.py

Both only build a Sample from what the drive already has and hand it to ViewState.add(), which
returns at once: no encoding, no network, no waiting on the drive's thread.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import TYPE_CHECKING

from driving.config import DEFAULT_PREPROCESSING, Preprocessing
from driving.view.state import Sample, ViewState

if TYPE_CHECKING:
    from driving.evaluation.closed_loop import DriveFrame, DriveOptions
    from driving.evaluation.metrics import DriveMetrics
    from driving.pilot import Command, Pilot
    from driving.sim.track import Track


class DriveView:
    """A DriveObserver (driving/evaluation/closed_loop.py) that feeds the view: frames, pose, map."""

    def __init__(self, state: ViewState, preprocessing: Preprocessing, model: str = ""):
        self.state = state
        self.preprocessing = preprocessing
        self.model = model

    def start(self, track: Track, options: DriveOptions) -> None:
        self.state.begin(
            model=options.model or self.model,
            source=f"headless simulator, {track.name}" + (", realtime" if options.realtime else ""),
            preprocessing=self.preprocessing,
            clock="simulated",
            latency="round trip",
            track=track,
        )

    def frame(self, frame: DriveFrame) -> None:
        self.state.add(
            Sample(
                time_s=frame.time_s,
                frame=frame.jpeg,
                steering=frame.steering,
                throttle=frame.throttle,
                mph=frame.mph,
                latency_ms=frame.latency_ms,
                x=frame.x,
                y=frame.y,
                cte=frame.cte,
                laps=frame.laps,
                interventions=frame.interventions,
                intervened=frame.intervened,
            )
        )

    def end(self, metrics: DriveMetrics | None) -> None:
        self.state.finish(metrics.to_dict() if metrics is not None else {"end_reason": "the drive failed"})


class ServerView:
    """A drive server listener (driving/drive_server.py) that feeds the view from drive.py: the frame
    the simulator sent, the command, the speed; no map (the real simulator sends no geometry)."""

    def __init__(self, state: ViewState, pilot: Pilot):
        self.state = state
        self.t0: float | None = None
        state.begin(
            model=pilot.name,
            source="drive.py",
            preprocessing=pilot.predictor.preprocessing,
            clock="wall",
            latency="pilot",  # the server's own time per frame: the simulator's round trip is not seen here
        )

    def __call__(self, sid: str, command: Command) -> None:
        if command.telemetry is None:  # manual driving, or the safe reply to a bad message
            return
        now = time.perf_counter()
        self.t0 = now if self.t0 is None else self.t0
        self.state.add(
            Sample(
                time_s=now - self.t0,
                frame=command.telemetry.frame,  # RGB: JPEG-encoded by the pages' streams, not here
                steering=command.steering,
                throttle=command.throttle,
                mph=command.telemetry.speed,
                latency_ms=command.seconds * 1e3,
            )
        )


def served_model(host: str, port: int, timeout: float = 2.0) -> tuple[str, Preprocessing]:
    """The model a running drive.py serves and its preprocessing, from its status page; ("", the
    defaults) where it does not say."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with direct.open(f"http://{host}:{port}/", timeout=timeout) as reply:
            status = json.loads(reply.read(4096))
        return str(status.get("model", "")), Preprocessing.from_dict(status.get("preprocessing") or {})
    except (OSError, ValueError, AttributeError):
        return "", DEFAULT_PREPROCESSING
