"""The Socket.IO transports around a Pilot: what the Udacity simulator (and modern clients) connect to.

One telemetry event in, one `steer` reply out, in lock-step: the simulator sends its next frame only
after the reply, so this server's latency is the loop's frame time (docs/simulator-protocol.md). The
driving itself (decode, preprocess, predict, throttle, safe fallbacks) is the Pilot's
(driving/pilot.py); what the Socket.IO stack needs to serve the simulator and to survive hostile
clients is driving/socketio_compat.py; this module only moves messages:

- Every message a client sends is answered: telemetry (readable or not, and events of other names)
  gets a `steer` or `manual` from the Pilot.
- Every telemetry gets exactly one reply, in order (handlers run in the connection's reader, not
  in background tasks, so the two chains the simulator starts cannot overtake each other).
- Listeners (the recorder, the status line, the live view) see each reply after it is sent.

Threading mode with TCP_NODELAY on the listening socket is the default: measured 3-4x faster than
eventlet (Nagle's algorithm otherwise holds the reply to the second chain). `async_mode="eventlet"`
is kept for the classic stack.
"""

from __future__ import annotations

import logging
import socket
import threading
import warnings
from collections import deque
from collections.abc import Callable

import numpy as np
import socketio
from flask import Flask, jsonify
from werkzeug.serving import make_server

from driving.data.writer import DriveRecorder
from driving.drive_config import ServeConfig
from driving.pilot import Command, Pilot, Session
from driving.socketio_compat import (
    MAX_MESSAGE_BYTES,
    RequestGuard,
    SimulatorCompatibleServer,
    request_handler,
    transport_logger,
    use_fast_eventlet_unmask,
)

with warnings.catch_warnings():  # eventlet announces its deprecation on import; only one stack uses it
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.wsgi

# The serving layer's one log (driving/socketio_compat.py writes to it too), so that its lines are
# filtered together by name.
log = logging.getLogger("driving.server")

Listener = Callable[[str, Command], None]  # called with (client sid, command) after each reply


# --- Status --------------------------------------------------------------------------------------


class Stats:
    """Frames answered since the last status line, with the pilot's time per frame."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=10_000)
        self.bad = 0
        self.steering = 0.0
        self.speed = 0.0
        self.total = 0

    def __call__(self, sid: str, command: Command) -> None:
        """A server listener: count one reply."""
        if command.problem is not None:
            with self._lock:
                self.bad += 1
        elif command.telemetry is not None:
            self.add(command.seconds, command.steering, command.telemetry.speed)

    def add(self, seconds: float, steering: float, speed: float) -> None:
        with self._lock:
            self._latencies.append(seconds)
            self.steering, self.speed = steering, speed
            self.total += 1

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


class DriveServer:
    """Serves a Pilot to the simulator: `DriveServer(pilot).serve()`. Tests and benchmarks use
    start() / stop() to run it in the background on a free port. Listeners (the recorder, the
    status line; anything with the Listener signature) see every reply after it is sent."""

    def __init__(self, pilot: Pilot, config: ServeConfig | None = None, listeners: list[Listener] = ()):
        self.pilot = pilot
        self.config = config = (config or ServeConfig()).validate()
        if config.async_mode == "eventlet":
            use_fast_eventlet_unmask()
        self.sio = SimulatorCompatibleServer(
            async_mode=config.async_mode,
            async_handlers=False,
            logger=False,
            engineio_logger=transport_logger(),
            max_http_buffer_size=MAX_MESSAGE_BYTES,
        )
        self.sio.on_unreadable_event = self._on_unreadable_event
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)
        self.app = Flask(__name__)
        self.app.add_url_rule("/", "status", self._status_page)
        self.app.wsgi_app = RequestGuard(socketio.WSGIApp(self.sio, self.app.wsgi_app), self.sio.eio)
        self.stats = Stats()
        self.recorder = DriveRecorder(config.record) if config.record else None
        self.listeners: list[Listener] = [self.stats, *listeners]
        if self.recorder is not None:
            self.listeners.append(self._record)
        self.sessions: dict[str, Session] = {}
        self._sessions_lock = threading.Lock()
        self._http = None  # werkzeug's server (threading mode)
        self._thread = None
        self._listener = None
        self._running = False
        self.port = 0

    # -- events --

    def _session(self, sid: str) -> Session:
        with self._sessions_lock:
            if sid not in self.sessions:
                self.sessions[sid] = self.pilot.new_session()
            return self.sessions[sid]

    def _on_connect(self, sid, environ, auth=None):
        log.info("client %s connected from %s", sid, environ.get("REMOTE_ADDR", "?"))
        self._session(sid)

    def _on_disconnect(self, sid, reason=None):
        log.info("client %s disconnected (%s)", sid, reason)
        with self._sessions_lock:
            self.sessions.pop(sid, None)

    def _reply(self, sid: str, command: Command) -> None:
        if command.problem is not None:  # logged first: the line is there when the client reads on
            log.warning(
                "client %s: %s; answered steering %.4f, throttle 0", sid, command.problem, command.steering
            )
        self.sio.emit(command.event, command.payload(), to=sid)
        for listener in self.listeners:
            try:
                listener(sid, command)
            except Exception:  # a listener's fault must not stop the drive
                log.exception("listener %r failed", listener)

    def _on_unreadable_event(self, sid: str, problem: str) -> None:
        self._reply(sid, self.pilot.fallback(self._session(sid), problem))

    def _on_event(self, event: str, sid: str, *args) -> None:
        """Every event: `telemetry` is driven; any other name is a client that does not speak
        the simulator's protocol, answered with the safe command so it never waits."""
        session = self._session(sid)
        if event == "telemetry":
            self._reply(sid, self.pilot.drive(args[0] if args else None, session))
        else:
            self._reply(
                sid, self.pilot.fallback(session, f"unknown event {event[:40]!r} (expected 'telemetry')")
            )

    def _record(self, sid: str, command: Command) -> None:
        if command.telemetry is not None:  # a driven frame: not manual, not a fallback
            t = command.telemetry
            self.recorder.record(t.frame, command.steering, command.throttle, t.speed)

    def _status_page(self):
        return jsonify(
            model=self.pilot.name,
            backend=self.pilot.predictor.backend,
            async_mode=self.config.async_mode,
            clients=len(self.sessions),
            frames=self.stats.total,
            preprocessing=self.pilot.predictor.preprocessing.to_dict(),
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
            self._listener = eventlet.listen((host, port))
            self._listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sio.start_background_task(
                eventlet.wsgi.server,
                self._listener,
                self.app,
                log_output=False,
                socket_timeout=self.config.http_timeout,
            )
        else:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per HTTP request
            handler = request_handler(self.config.http_timeout)
            self._http = make_server(host, port, self.app, threaded=True, request_handler=handler)
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
            self.pilot.name,
            self.pilot.predictor.backend,
            host,
            self.port,
            self.config.async_mode,
        )
        return self.port

    def serve(self, host: str | None = None, port: int | None = None) -> None:
        """Serve until Ctrl-C or request_stop(), on the config's host and port unless given."""
        self.start(self.config.host if host is None else host, self.config.port if port is None else port)
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
            self.recorder.close()
            log.info("recorded %d frames to %s", self.recorder.rows, self.recorder.folder)
            self.recorder = None
