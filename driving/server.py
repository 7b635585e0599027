"""The Socket.IO server the Udacity simulator drives against (and that modern clients can use too).

One telemetry event in, one `steer` reply out, in lock-step: the simulator sends its next frame only
after the reply, so this server's latency is the loop's frame time. The facts this module follows
(../shared/udacity-simulator.md):

- The simulator's client never sends a namespace CONNECT (`40`). python-socketio 5 drops events
  from a client that is not in "/", so SimulatorCompatibleServer treats the first event of such a
  client as an implicit CONNECT. Modern clients that do send `40` are served unchanged.
- Replies carry STRING values ("%.4f"): the simulator parses them with float.Parse(x.str), and a
  JSON number arrives there as null, so its loop would stall for good.
- Manual telemetry (null or {}) is answered with `manual` {}.
- Every telemetry gets exactly one reply, in order (handlers run in the connection's reader, not in
  background tasks, so the two chains the simulator starts cannot overtake each other).
- A bad frame never stalls the loop: it is answered with a safe command (the client's last
  steering, throttle 0) and one log line.

Threading mode with TCP_NODELAY on the listening socket is the default: measured 3-4x faster than
eventlet (Nagle's algorithm otherwise holds the reply to the second chain). `async_mode="eventlet"`
is kept for the classic stack.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import socket
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import socketio
from flask import Flask, jsonify

from driving.data import RecordingWriter
from driving.preprocess import FrameError, check_frame, decode_jpeg

if TYPE_CHECKING:  # the runtime imports TensorFlow; drive.py --help should not wait for it
    from driving.runtime import Predictor

log = logging.getLogger("driving.server")

ASYNC_MODES = ("threading", "eventlet")
# A real frame is a 320x160 JPEG of 10-30 KB (base64: 14-40 KB). Larger images get a safe reply;
# whole messages beyond the transport limit close that connection (the memory bound per client).
MAX_IMAGE_CHARS = 512 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# --- Simulator compatibility ---------------------------------------------------------------------


class SimulatorCompatibleServer(socketio.Server):
    """socketio.Server that also serves clients which never join a namespace explicitly.

    This overrides two internals of python-socketio 5.18 (pinned exactly in pyproject.toml;
    tests/test_server.py fails if an upgrade breaks it):
    - _handle_event: the first event of a client not yet in the namespace connects it first.
    - _handle_eio_message: an undecodable packet goes to `on_unreadable_packet` instead of
      raising into engineio (which would print a traceback).
    """

    def on_unreadable_packet(self, sid: str | None, text: str, error: Exception) -> None:
        """Called with the client's sid (None if not in "/") for a packet that cannot be decoded."""
        log.warning("client %s: unreadable Socket.IO packet (%s): %.60r", sid, error, text)

    def _handle_event(self, eio_sid, namespace, id, data):
        namespace = namespace or "/"
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is None:
            self._handle_connect(eio_sid, namespace, None)  # sends `40{...}`, which the simulator ignores
        super()._handle_event(eio_sid, namespace, id, data)

    def _handle_eio_message(self, eio_sid, data):
        try:
            super()._handle_eio_message(eio_sid, data)
        except ValueError as e:  # bad JSON, bad packet framing
            text = data if isinstance(data, str) else "<binary>"
            if text[:1] == "2" and self.manager.sid_from_eio_sid(eio_sid, "/") is None:
                self._handle_connect(eio_sid, "/", None)  # an event, even unreadable, connects
            self.on_unreadable_packet(self.manager.sid_from_eio_sid(eio_sid, "/"), text, e)


class _TransportLog(logging.Filter):
    """Passes only the transport events worth a line: warnings, errors and a connection closed
    for a reason (an oversize message, a broken frame). engineio logs those at INFO with the rest
    of its per-packet chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.msg.startswith("%s: Unexpected error"):
            sid, error = record.args
            reason = f"a message over the {MAX_MESSAGE_BYTES}-byte limit" if "too large" in error else error
            record.msg, record.args = "client %s: connection closed: %s", (sid, reason)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        return False


def _transport_logger() -> logging.Logger:
    logger = logging.getLogger("driving.server.transport")
    logger.setLevel(logging.INFO)
    if not any(isinstance(f, _TransportLog) for f in logger.filters):
        logger.addFilter(_TransportLog())
    return logger


# --- Telemetry -------------------------------------------------------------------------------------


class BadTelemetry(ValueError):
    """A telemetry event the server cannot drive from; the message says what was wrong."""


@dataclass
class Telemetry:
    frame: np.ndarray  # 160x320x3 RGB uint8
    steering: float
    throttle: float
    speed: float


def _number(payload: dict, key: str) -> float:
    if key not in payload:
        raise BadTelemetry(f"missing field {key!r}")
    value = payload[key]
    # The simulator sends strings ("0.0000"); modern clients may send numbers. Both are fine.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadTelemetry(f"field {key!r} is {type(value).__name__}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise BadTelemetry(f"field {key!r} is not a number: {value[:20]!r}") from None
    if not math.isfinite(number):
        raise BadTelemetry(f"field {key!r} is not finite: {value!r}")
    return number


def decode_image(text, max_chars: int = MAX_IMAGE_CHARS) -> np.ndarray:
    """The telemetry's base64 JPEG -> 160x320x3 RGB frame. Raises BadTelemetry saying why not."""
    if not isinstance(text, str):
        raise BadTelemetry(f"field 'image' is {type(text).__name__}, not a base64 string")
    if len(text) > max_chars:
        raise BadTelemetry(f"image of {len(text)} base64 characters exceeds the {max_chars} limit")
    try:
        jpeg = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadTelemetry(f"image is not valid base64 ({e})") from None
    # libjpeg decodes a truncated file as grey and only warns: require the end-of-image marker.
    if jpeg[:2] == b"\xff\xd8" and jpeg[-2:] != b"\xff\xd9":
        raise BadTelemetry(f"image is a truncated JPEG ({len(jpeg)} bytes, no end-of-image marker)")
    try:
        frame = decode_jpeg(jpeg, "image")
        check_frame(frame, "image")
    except FrameError as e:
        raise BadTelemetry(str(e)) from None
    return frame


def parse_telemetry(data, max_image_chars: int = MAX_IMAGE_CHARS) -> Telemetry | None:
    """The simulator's telemetry payload -> Telemetry, or None for manual driving (null or {})."""
    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise BadTelemetry(f"payload is {type(data).__name__}, not an object")
    if "image" not in data:
        raise BadTelemetry("missing field 'image'")
    return Telemetry(
        frame=decode_image(data["image"], max_image_chars),
        steering=_number(data, "steering_angle"),
        throttle=_number(data, "throttle"),
        speed=_number(data, "speed"),
    )


# --- Throttle ------------------------------------------------------------------------------------


@dataclass
class SpeedController:
    """PI controller from speed error to throttle, updated once per frame like the classic drive.py
    (kp 0.1, ki 0.002). Per frame rather than per second so a simulator stepped faster than real
    time gets the same throttle. The integral is clamped so a long stop cannot wind it up.

    turn_slowdown > 0 lowers the target in sharp turns: target = speed * (1 - k |steering|), at
    least half the set speed."""

    speed: float = 9.0
    kp: float = 0.1
    ki: float = 0.002
    turn_slowdown: float = 0.0
    integral: float = 0.0

    def target(self, steering: float) -> float:
        return self.speed * max(0.5, 1.0 - self.turn_slowdown * abs(steering))

    def update(self, speed: float, steering: float = 0.0) -> float:
        error = self.target(steering) - speed
        self.integral = min(max(self.integral + error, -1.0 / self.ki), 1.0 / self.ki)
        return min(max(self.kp * error + self.ki * self.integral, -1.0), 1.0)


# --- Status --------------------------------------------------------------------------------------


class Stats:
    """Frames answered since the last status line, with their server-side latency."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=10_000)
        self.bad = 0
        self.steering = 0.0
        self.speed = 0.0
        self.total = 0

    def add(self, seconds: float, steering: float, speed: float) -> None:
        with self._lock:
            self._latencies.append(seconds)
            self.steering, self.speed = steering, speed
            self.total += 1

    def add_bad(self) -> None:
        with self._lock:
            self.bad += 1

    def line(self, interval: float) -> str | None:
        """One status line for the last `interval` seconds, then reset; None if nothing happened."""
        with self._lock:
            lat, self._latencies = np.array(self._latencies) * 1e3, deque(maxlen=10_000)
            bad, self.bad = self.bad, 0
        if lat.size == 0 and not bad:
            return None
        text = (
            (
                f"{lat.size / interval:5.1f} frames/s  latency median {np.median(lat):5.2f} ms "
                f"p99 {np.percentile(lat, 99):5.2f} ms  steering {self.steering:+.4f}  "
                f"speed {self.speed:5.2f} mph"
            )
            if lat.size
            else "no frames driven"
        )
        return text + (f"  bad frames {bad}" if bad else "")


# --- The server ----------------------------------------------------------------------------------


@dataclass
class ClientState:
    controller: SpeedController
    steering: float = 0.0  # last steering sent: the safe command keeps it


@dataclass
class DriveConfig:
    speed: float = 9.0  # mph, the PI controller's target
    throttle: float | None = None  # fixed throttle instead of the controller
    turn_slowdown: float = 0.0
    record: Path | None = None
    async_mode: str = "threading"
    max_image_chars: int = MAX_IMAGE_CHARS
    status_interval: float = 1.0  # seconds between status lines; 0 for none


class DriveServer:
    """Serves a Predictor to the simulator: `DriveServer(predictor).serve()`; tests and benchmarks
    use start() / stop() to run it in a background thread on a free port."""

    def __init__(self, predictor: Predictor, config: DriveConfig | None = None):
        self.predictor = predictor
        self.config = config = config or DriveConfig()
        if config.async_mode not in ASYNC_MODES:
            raise ValueError(f"async_mode must be one of {ASYNC_MODES}, not {config.async_mode!r}")
        if config.async_mode == "eventlet":
            with warnings.catch_warnings():  # eventlet announces its deprecation on import
                warnings.simplefilter("ignore")
                import eventlet  # noqa: F401
        self.sio = SimulatorCompatibleServer(
            async_mode=config.async_mode,
            async_handlers=False,
            logger=False,
            engineio_logger=_transport_logger(),
            max_http_buffer_size=MAX_MESSAGE_BYTES,
        )
        self.sio.on_unreadable_packet = self._on_unreadable_packet
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("telemetry", self._on_telemetry)
        self.app = Flask(__name__)
        self.app.add_url_rule("/", "status", self._status_page)
        self.app.wsgi_app = socketio.WSGIApp(self.sio, self.app.wsgi_app)
        self.stats = Stats()
        self.clients: dict[str, ClientState] = {}
        self._clients_lock = threading.Lock()
        self.recorder = RecordingWriter(config.record) if config.record else None
        self._record_lock = threading.Lock()
        self._last_stamp = datetime.min
        self._http = None  # werkzeug's server (threading mode)
        self._thread = None
        self._listener = None
        self._running = False

    # -- events --

    def _client(self, sid: str) -> ClientState:
        with self._clients_lock:
            if sid not in self.clients:
                self.clients[sid] = ClientState(
                    SpeedController(self.config.speed, turn_slowdown=self.config.turn_slowdown)
                )
            return self.clients[sid]

    def _on_connect(self, sid, environ, auth=None):
        log.info("client %s connected from %s", sid, environ.get("REMOTE_ADDR", "?"))
        self._client(sid)

    def _on_disconnect(self, sid, reason=None):
        log.info("client %s disconnected (%s)", sid, reason)
        with self._clients_lock:
            self.clients.pop(sid, None)

    def _steer(self, sid: str, steering: float, throttle: float) -> None:
        # STRING values: the simulator reads them with float.Parse(x.str).
        steering, throttle = steering + 0.0, throttle + 0.0  # -0.0 would print as "-0.0000"
        self.sio.emit("steer", {"steering_angle": f"{steering:.4f}", "throttle": f"{throttle:.4f}"}, to=sid)

    def _safe(self, sid: str, reason: str) -> None:
        state = self._client(sid)
        self.stats.add_bad()
        log.warning("client %s: %s; answered steering %.4f, throttle 0", sid, reason, state.steering)
        self._steer(sid, state.steering, 0.0)

    def _on_unreadable_packet(self, sid: str | None, text: str, error: Exception) -> None:
        # Everything the simulator sends is a telemetry event waiting for its reply.
        if sid is not None and text[:1] == "2":
            self._safe(sid, f"unreadable event ({error}): {text[:40]!r}")
        else:
            log.warning("client %s: unreadable Socket.IO packet (%s): %.60r", sid, error, text)

    def _on_telemetry(self, sid, data=None):
        start = time.perf_counter()
        try:
            try:
                telemetry = parse_telemetry(data, self.config.max_image_chars)
            except BadTelemetry as e:
                return self._safe(sid, f"bad telemetry: {e}")
            if telemetry is None:
                self.sio.emit("manual", {}, to=sid)
                return
            state = self._client(sid)
            steering = self.predictor(telemetry.frame)
            if not math.isfinite(steering):
                return self._safe(sid, f"model returned {steering}")
            steering = min(max(steering, -1.0), 1.0)
            throttle = (
                self.config.throttle
                if self.config.throttle is not None
                else state.controller.update(telemetry.speed, steering)
            )
            state.steering = steering
            self._steer(sid, steering, throttle)
            self.stats.add(time.perf_counter() - start, steering, telemetry.speed)
            if self.recorder is not None:  # after the reply: the simulator is not kept waiting
                self._record(telemetry.frame, steering, throttle, telemetry.speed)
        except Exception as e:  # nothing a client sends may take the server down
            log.exception("client %s: error while driving", sid)
            self._safe(sid, f"internal error {type(e).__name__}")

    def _record(self, frame: np.ndarray, steering: float, throttle: float, speed: float) -> None:
        with self._record_lock:
            # File names carry milliseconds; two chains can answer within one, so keep them unique.
            now = max(datetime.now(), self._last_stamp + timedelta(milliseconds=1))
            self._last_stamp = now
            try:
                self.recorder.write(
                    now,
                    frame,
                    steering=steering,
                    throttle=max(throttle, 0.0),
                    brake=max(-throttle, 0.0),
                    speed=speed,
                )
            except OSError as e:
                log.error("recording to %s failed (%s); recording stopped", self.recorder.folder, e)
                self.recorder = None

    def _status_page(self):
        return jsonify(
            model=self.predictor.name,
            backend=self.predictor.backend,
            async_mode=self.config.async_mode,
            clients=len(self.clients),
            frames=self.stats.total,
        )

    def _status_loop(self) -> None:
        while self._running:
            self.sio.sleep(self.config.status_interval)
            line = self.stats.line(self.config.status_interval)
            if line:
                log.info(line)

    # -- serving --

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve in the background (a thread, or a green thread on eventlet); returns the
        bound port. The listening socket gets TCP_NODELAY, which accepted sockets inherit."""
        if self.config.async_mode == "eventlet":
            import eventlet
            import eventlet.wsgi

            self._listener = eventlet.listen((host, port))
            self._listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sio.start_background_task(eventlet.wsgi.server, self._listener, self.app, log_output=False)
        else:
            from werkzeug.serving import make_server

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per HTTP request
            self._http = make_server(host, port, self.app, threaded=True)
            self._listener = self._http.socket
            self._listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._thread = threading.Thread(target=self._http.serve_forever, name="drive-server", daemon=True)
            self._thread.start()
        self.port = self._listener.getsockname()[1]
        self._running = True
        if self.config.status_interval > 0:
            self.sio.start_background_task(self._status_loop)
        log.info(
            "serving %s (%s) on http://%s:%d (%s mode)",
            self.predictor.name,
            self.predictor.backend,
            host,
            self.port,
            self.config.async_mode,
        )
        return self.port

    def serve(self, host: str = "127.0.0.1", port: int = 4567) -> None:
        """Serve until Ctrl-C or request_stop()."""
        self.start(host, port)
        try:
            while self._running:
                self.sio.sleep(0.2)  # on eventlet this runs the hub
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Make serve() return; safe to call from a signal handler."""
        self._running = False

    def stop(self) -> None:
        self._running = False
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join(timeout=5)
            self._http = None
        elif self._listener is not None:
            self._listener.close()
        self._listener = None
        self.close()

    def close(self) -> None:
        """Close the recording (the server itself: stop())."""
        if self.recorder is not None:
            with self._record_lock:
                self.recorder.close()
            log.info("recorded %d frames to %s", self.recorder.rows, self.recorder.folder)
            self.recorder = None
