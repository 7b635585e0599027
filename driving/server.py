"""The Socket.IO transports around a Pilot: what the Udacity simulator (and modern clients) connect to.

One telemetry event in, one `steer` reply out, in lock-step: the simulator sends its next frame only
after the reply, so this server's latency is the loop's frame time. The driving itself (decode,
preprocess, predict, throttle, safe fallbacks) is the Pilot's (driving/pilot.py); this module
only moves messages. The facts it follows (../shared/udacity-simulator.md):

- The simulator's client never sends a namespace CONNECT (`40`). python-socketio 5 drops events
  from a client that is not in "/", so SimulatorCompatibleServer treats the first event of such a
  client as an implicit CONNECT. Modern clients that do send `40` are served unchanged.
- Every message a client sends is answered, or its connection is closed, so a simulator never
  waits for good: telemetry (readable or not, and events of other names) gets a `steer` or
  `manual`; an Engine.IO PING gets a PONG (the simulator pings and waits); anything the protocol
  has no answer for closes that connection, with one log line.
- Every telemetry gets exactly one reply, in order (handlers run in the connection's reader, not
  in background tasks, so the two chains the simulator starts cannot overtake each other).
- Slow or hostile HTTP clients cannot hold the server: requests must arrive within a timeout,
  bodies and messages are bounded, and an error in one connection never reaches another.

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
from dataclasses import dataclass
from pathlib import Path

import engineio
import numpy as np
import socketio
from flask import Flask, jsonify

from driving.config import ASYNC_MODES
from driving.data.writer import DriveRecorder
from driving.pilot import Command, Pilot, Session

log = logging.getLogger("driving.server")

# Whole messages (and request bodies) beyond this close that connection: the memory bound per
# client. A real frame message is 15-45 KB; the Pilot refuses images over 512 KB of base64 anyway.
MAX_MESSAGE_BYTES = 1024 * 1024
# A request (headers and body) must arrive within this, or its connection is dropped.
HTTP_TIMEOUT_S = 10.0
# Engine.IO sessions open at once; the simulator is one. Each costs a thread or two, and a polling
# session lives until its ping times out (45 s) unless it closes: a flood of handshakes is bounded.
MAX_SESSIONS = 256
# How often a WebSocket reader in threading mode looks whether its connection has closed.
RECEIVE_SLICE_S = 0.5

Listener = Callable[[str, Command], None]  # called with (client sid, command) after each reply


# --- Transport guards --------------------------------------------------------------------------------


def _readable_packet(message: str | bytes) -> bool:
    """Whether engineio can decode `message` without raising: it decodes outside any error handling
    (so an empty frame, a frame that is not a packet type, or JSON nested thousands deep would
    escape as a traceback)."""
    if isinstance(message, bytes):
        return True  # a binary frame: the Socket.IO layer closes the connection for it
    try:
        engineio.packet.Packet(encoded_packet=message)
    except (ValueError, TypeError, IndexError, RecursionError):
        return False
    return True


class _CheckedMessages:
    """A mixin for engineio's WebSocket wrappers: a message engineio cannot decode closes the
    connection, with one log line, instead of a traceback."""

    def wait(self):
        message = super().wait()
        if message is None:
            ws = getattr(self, "ws", None)  # simple-websocket's, in threading mode
            if ws is not None and ws.max_message_size and ws.incoming_message_len > ws.max_message_size:
                log.warning("connection closed: a message over the %d-byte limit", ws.max_message_size)
            return None
        if _readable_packet(message):
            return message
        log.warning("a WebSocket frame that is not an Engine.IO packet (%.40r); connection closed", message)
        self.close()
        return None


def _threading_websocket():
    """engineio's WebSocket for the threading mode, with a bound on messages (simple-websocket
    otherwise assembles any size, fragment by fragment) and handshake errors answered with 400."""
    import simple_websocket
    from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI

    class ReceivingWebSocket(SimpleWebSocketWSGI):
        def wait(self):
            # simple-websocket wakes its reader before it marks the connection closed (an oversize
            # message, a CLOSE), so a reader woken in between would wait for good: wait in slices
            # and look at the connection between them.
            while True:
                try:
                    message = self.ws.receive(timeout=RECEIVE_SLICE_S)
                except simple_websocket.ConnectionClosed:
                    return None
                if message is not None or not self.ws.connected:
                    return message

    class BoundedWebSocket(_CheckedMessages, ReceivingWebSocket):
        def __init__(self, handler, server, **kwargs):
            super().__init__(handler, server, max_message_size=MAX_MESSAGE_BYTES, **kwargs)

        def __call__(self, environ, start_response):
            try:
                return super().__call__(environ, start_response)
            except (ConnectionError, StopIteration):
                raise  # how werkzeug (or gunicorn) learns that the WebSocket has ended
            except Exception as e:  # wsproto's RemoteProtocolError on a bad handshake, and the like
                if hasattr(self, "ws"):  # it was a WebSocket: end it as engineio would
                    raise ConnectionError(str(e)) from None
                log.warning("a WebSocket handshake that cannot be served (%s)", type(e).__name__)
                start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Connection", "close")])
                return [b"bad WebSocket handshake"]

    return BoundedWebSocket


def _eventlet_websocket():
    import eventlet
    from engineio.async_drivers.eventlet import WebSocketWSGI

    class GreenSocket:
        """eventlet hands engineio its own WebSocket object, not the WSGI app as simple-websocket
        does: a wrapper around it lets the same checks apply."""

        def __init__(self, ws):
            self._ws = ws

        def __getattr__(self, name):
            return getattr(self._ws, name)

        def wait(self):
            return self._ws.wait()

    class CheckedGreenSocket(_CheckedMessages, GreenSocket):
        def wait(self):
            message = super().wait()
            # A green socket's recv returns without yielding while data is waiting, so a client
            # that never stops sending would keep the hub, and every other client, to itself.
            eventlet.sleep(0)
            return message

    class CheckedWebSocket(WebSocketWSGI):
        def __init__(self, handler, server):
            super().__init__(lambda ws: handler(CheckedGreenSocket(ws)), server)

    return CheckedWebSocket


def _fast_unmask(data, mask, length=None, offset=0) -> bytes:
    """eventlet's WebSocket unmasking, vectorised: eventlet XORs byte by byte in Python (about 2 us a
    byte here), so one large frame held its hub, and every other client, for seconds."""
    length = len(data) if length is None else length
    payload = np.frombuffer(bytes(data[:length]), np.uint8)
    key = np.roll(np.frombuffer(bytes(mask), np.uint8), -(offset % 4))
    return (payload ^ np.resize(key, length)).tobytes()


class _EngineIOServer(engineio.Server):
    """engineio's server with guarded WebSockets, and a disconnect that never waits: the stock one
    waits until a polling client collects the CLOSE packet, which holds the request thread forever
    when it never does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        websocket = _eventlet_websocket() if self.async_mode == "eventlet" else _threading_websocket()
        self._async = {**self._async, "websocket": websocket}  # a copy: the driver's dict is shared

    def disconnect(self, sid=None):
        sockets = [sid] if sid is not None else list(self.sockets)
        for one in sockets:
            socket_ = self.sockets.pop(one, None)
            if socket_ is not None:
                socket_.close(wait=False, reason=self.reason.SERVER_DISCONNECT)


class _RequestGuard:
    """WSGI middleware in front of Socket.IO: the checks engineio does not make, or makes after the
    harm. A polling POST must announce a valid length within MAX_MESSAGE_BYTES and deliver it, in
    UTF-8, within the socket timeout (it is read here, then handed on from memory); a new session
    is refused beyond MAX_SESSIONS; anything that still goes wrong becomes one log line and a
    closed connection, never a traceback."""

    def __init__(self, app, eio: engineio.Server):
        self.app, self.eio = app, eio

    @staticmethod
    def _refuse(start_response, status: str, why: str) -> list[bytes]:
        log.warning("HTTP request refused (%s): %s", status, why)
        start_response(status, [("Content-Type", "text/plain"), ("Connection", "close")])
        return [why.encode()]

    def __call__(self, environ, start_response):
        import io

        if environ.get("PATH_INFO", "").startswith("/socket.io"):
            open_sessions = sum(not s.closed for s in list(self.eio.sockets.values()))
            if "sid=" not in environ.get("QUERY_STRING", "") and open_sessions >= MAX_SESSIONS:
                return self._refuse(
                    start_response, "503 Service Unavailable", f"{MAX_SESSIONS} clients already"
                )
            if environ.get("REQUEST_METHOD") == "POST":
                text = environ.get("CONTENT_LENGTH") or "0"
                if not text.isdigit():
                    return self._refuse(start_response, "400 Bad Request", f"Content-Length {text[:20]!r}")
                length = int(text)
                if length > MAX_MESSAGE_BYTES:
                    return self._refuse(start_response, "413 Content Too Large", f"a body of {length} bytes")
                try:
                    body = environ["wsgi.input"].read(length) if length else b""
                except OSError as e:  # the socket timeout: a body announced and not sent
                    raise ConnectionError(f"request body not delivered ({e})") from None
                if len(body) != length:
                    return self._refuse(start_response, "400 Bad Request", "a body shorter than announced")
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    return self._refuse(start_response, "400 Bad Request", "a body that is not UTF-8")
                environ["wsgi.input"] = io.BytesIO(body)
        try:
            return self.app(environ, start_response)
        except (ConnectionError, StopIteration):
            raise  # how a WebSocket ends, and a connection dropped on purpose
        except Exception as e:
            log.warning("request failed (%s: %s); connection closed", type(e).__name__, str(e)[:100])
            raise ConnectionError(str(e)) from None


# --- Simulator compatibility ---------------------------------------------------------------------


class SimulatorCompatibleServer(socketio.Server):
    """socketio.Server that also serves clients which never join a namespace explicitly, and
    answers every message or closes the connection.

    This overrides internals of python-socketio 5.18 / python-engineio 4.15 (pinned exactly in
    pyproject.toml; tests/test_server.py and tests/test_server_hostile.py fail if an upgrade
    breaks it):
    - _handle_event: the first event of a client not yet in the namespace connects it first.
    - _handle_eio_message: a packet that cannot be decoded, or an event that is not a well-formed
      call, goes to `on_unreadable_event` (which answers it); packets with no answer close the
      connection.
    - _handle_eio_connect: the Engine.IO socket answers a client PING with a PONG, and closes the
      connection for Engine.IO packets a connected client has no business sending.
    - _engineio_server_class: guarded WebSockets and a disconnect that never waits.
    """

    def _engineio_server_class(self):
        return _EngineIOServer

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._attachments_to_drop: dict[str, int] = {}  # eio sid -> binary frames still to come

    def on_unreadable_event(self, sid: str, problem: str) -> None:
        """Called with the client's sid for an event that cannot be handled; must reply."""
        log.warning("client %s: %s", sid, problem)

    def _sid(self, eio_sid: str) -> str:
        """The client's sid in "/", connecting it implicitly, as the simulator expects."""
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None:
            self._handle_connect(eio_sid, "/", None)  # sends `40{...}`, which the simulator ignores
            sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        return sid

    def _close(self, eio_sid: str, why: str) -> None:
        log.warning("client %s: %s; connection closed", self.manager.sid_from_eio_sid(eio_sid, "/"), why)
        self.eio.disconnect(eio_sid)

    def _handle_event(self, eio_sid, namespace, id, data):
        self._sid(eio_sid)  # only "/" events get here (see _handle_eio_message)
        super()._handle_event(eio_sid, "/", id, data)

    def _handle_eio_message(self, eio_sid, data):
        if eio_sid not in self.environ:
            return None  # on the wire when the connection closed: no one to answer
        if isinstance(data, bytes):
            if self._attachments_to_drop.get(eio_sid, 0) > 0:  # of a binary event answered already
                self._attachments_to_drop[eio_sid] -= 1
                return None
            return self._close(eio_sid, "a binary frame, which is not part of the simulator's protocol")
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception as e:  # bad JSON, bad framing: ValueError, TypeError, IndexError...
            if data[:1] == "2":  # an event, even unreadable, is a telemetry waiting for its reply
                return self.on_unreadable_event(self._sid(eio_sid), f"unreadable event ({e}): {data[:40]!r}")
            return self._close(eio_sid, f"unreadable Socket.IO packet ({type(e).__name__}): {data[:40]!r}")
        kind = pkt.packet_type
        if kind in (socketio.packet.EVENT, socketio.packet.BINARY_EVENT) and (pkt.namespace or "/") != "/":
            self._handle_connect(eio_sid, pkt.namespace, None)  # answers CONNECT_ERROR...
            return self._close(eio_sid, f"an event for namespace {pkt.namespace[:40]!r}, not served here")
        if kind == socketio.packet.BINARY_EVENT:
            # Its image would come as binary attachments: answer now, as for any unreadable
            # telemetry, and drop the attachments when they arrive.
            self._attachments_to_drop[eio_sid] = (
                self._attachments_to_drop.get(eio_sid, 0) + pkt.attachment_count
            )
            problem = "a binary event: send the image as a base64 string, as the simulator does"
            return self.on_unreadable_event(self._sid(eio_sid), problem)
        if kind == socketio.packet.EVENT:
            named = isinstance(pkt.data, list) and pkt.data and isinstance(pkt.data[0], str)
            if not named or pkt.data[0] in self.reserved_events:
                problem = f"not a telemetry event: {data[:40]!r}"
                return self.on_unreadable_event(self._sid(eio_sid), problem)
            return self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        if kind in (socketio.packet.CONNECT, socketio.packet.DISCONNECT):
            return super()._handle_eio_message(eio_sid, data)  # answered `40{...}`, or leaving
        names = socketio.packet.packet_names
        name = names[kind] if 0 <= kind < len(names) else f"type-{kind}"
        self._close(eio_sid, f"a {name} packet, which has no answer here")

    def _handle_eio_disconnect(self, eio_sid, reason):
        self._attachments_to_drop.pop(eio_sid, None)
        super()._handle_eio_disconnect(eio_sid, reason)

    def _handle_eio_connect(self, eio_sid, environ):
        super()._handle_eio_connect(eio_sid, environ)
        eio_socket = self.eio._get_socket(eio_sid)
        receive = eio_socket.receive

        def receive_answering_pings(pkt):
            # python-engineio 4 ignores client PINGs (in EIO 4 the server pings); the simulator
            # pings anyway and waits for the PONG, so it gets one.
            kind = pkt.packet_type
            if kind == engineio.packet.PING:
                eio_socket.send(engineio.packet.Packet(engineio.packet.PONG, pkt.data))
            elif kind in (engineio.packet.PONG, engineio.packet.MESSAGE, engineio.packet.CLOSE):
                receive(pkt)  # engineio's own handling
            else:  # OPEN, UPGRADE or NOOP once connected, or no packet type at all: no answer exists
                self._close(
                    eio_sid, f"an Engine.IO packet of type {kind}, which a connected client does not send"
                )

        eio_socket.receive = receive_answering_pings


class _TransportLog(logging.Filter):
    """Passes only the transport events worth a line: warnings, errors and a connection closed
    for a reason (an oversize message, a broken frame). engineio logs those at INFO with the rest
    of its per-packet chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if (
            isinstance(record.msg, str)
            and record.msg.startswith("%s: Unexpected error")
            and len(record.args) == 2
        ):
            sid, error = record.args
            reason = (
                f"a message over the {MAX_MESSAGE_BYTES}-byte limit" if "too large" in str(error) else error
            )
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


@dataclass
class ServeConfig:
    async_mode: str = "threading"
    record: Path | None = None  # save every driven frame as a recording here
    status_interval: float = 1.0  # seconds between status lines; 0 for none
    http_timeout: float = HTTP_TIMEOUT_S

    def validate(self) -> ServeConfig:
        if self.async_mode not in ASYNC_MODES:
            raise ValueError(f"async_mode must be one of {ASYNC_MODES}, not {self.async_mode!r}")
        if not 0 <= self.status_interval <= 3600:
            raise ValueError(f"status_interval {self.status_interval}: must be 0 to 3600 s")
        return self


class DriveServer:
    """Serves a Pilot to the simulator: `DriveServer(pilot).serve()`. Tests and benchmarks use
    start() / stop() to run it in the background on a free port. Listeners (the recorder, the
    status line; anything with the Listener signature) see every reply after it is sent."""

    def __init__(self, pilot: Pilot, config: ServeConfig | None = None, listeners: list[Listener] = ()):
        self.pilot = pilot
        self.config = config = (config or ServeConfig()).validate()
        if config.async_mode == "eventlet":
            with warnings.catch_warnings():  # eventlet announces its deprecation on import
                warnings.simplefilter("ignore")
                import eventlet.websocket

            eventlet.websocket.RFC6455WebSocket._apply_mask = staticmethod(_fast_unmask)
        self.sio = SimulatorCompatibleServer(
            async_mode=config.async_mode,
            async_handlers=False,
            logger=False,
            engineio_logger=_transport_logger(),
            max_http_buffer_size=MAX_MESSAGE_BYTES,
        )
        self.sio.on_unreadable_event = self._on_unreadable_event
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)
        self.app = Flask(__name__)
        self.app.add_url_rule("/", "status", self._status_page)
        self.app.wsgi_app = _RequestGuard(socketio.WSGIApp(self.sio, self.app.wsgi_app), self.sio.eio)
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
            import eventlet
            import eventlet.wsgi

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
            from werkzeug.serving import WSGIRequestHandler, make_server

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per HTTP request

            class Handler(WSGIRequestHandler):
                timeout = self.config.http_timeout  # a half-sent request is dropped after this

                def run_wsgi(self):
                    if self.headers.get("Upgrade", "").lower() == "websocket":
                        # Once its WebSocket ends the connection is done: werkzeug would otherwise
                        # read the client's close frame as an HTTP request and answer it.
                        self.close_connection = True
                    super().run_wsgi()

            self._http = make_server(host, port, self.app, threaded=True, request_handler=Handler)
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
            self.recorder.close()
            log.info("recorded %d frames to %s", self.recorder.rows, self.recorder.folder)
            self.recorder = None
