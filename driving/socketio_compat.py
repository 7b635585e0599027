"""What the Socket.IO stack needs so that the Udacity simulator, and careless or hostile clients, are
served: every place this project reaches into python-socketio, python-engineio, simple-websocket,
eventlet or werkzeug beyond their public API. INTERNALS names each one beside the exact version it
was read and tested against; tests/test_server.py fails when an installed version differs, so an
upgrade is re-read here first (tests/test_server.py and tests/test_server_hostile.py then say
whether the behaviour still holds).

The facts it follows (docs/simulator-protocol.md):

- The simulator's client never sends a namespace CONNECT (`40`). python-socketio 5 drops events
  from a client that is not in "/", so SimulatorCompatibleServer treats the first event of such a
  client as an implicit CONNECT. Modern clients that do send `40` are served unchanged.
- Every message a client sends is answered, or its connection is closed, so a simulator never
  waits for good: telemetry (readable or not, and events of other names) goes to the server's
  handlers, which reply `steer` or `manual`; an Engine.IO PING gets a PONG (the simulator pings and
  waits); anything the protocol has no answer for closes that connection, with one log line.
- Slow or hostile HTTP clients cannot hold the server: requests must arrive within a timeout,
  bodies and messages are bounded, and an error in one connection never reaches another.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import NamedTuple

import engineio
import numpy as np
import simple_websocket
import socketio
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from werkzeug.serving import WSGIRequestHandler

with warnings.catch_warnings():  # eventlet announces its deprecation on import; only one stack uses it
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.websocket
    from engineio.async_drivers.eventlet import WebSocketWSGI as EventletWebSocketWSGI


class Internal(NamedTuple):
    package: str  # the distribution, as pip names it
    version: str  # the exact version this use was read and tested against
    name: str  # the internal, as the code below spells it
    use: str  # what this module does with it


# Every internal touched below. An upgrade of any of these packages: read each of its rows against
# the new source, move its version here (and the pins in pyproject.toml), run the server tests.
INTERNALS: tuple[Internal, ...] = (
    Internal("python-socketio", "5.18.1", "socketio.Server._engineio_server_class",
             "overridden: the Engine.IO server it builds is _EngineIOServer"),
    Internal("python-socketio", "5.18.1", "socketio.Server._handle_eio_message",
             "overridden: decodes the packet itself; unreadable events answered, unanswerable packets close"),
    Internal("python-socketio", "5.18.1", "socketio.Server._handle_event",
             "overridden: a client not yet in '/' is connected first (the implicit CONNECT)"),
    Internal("python-socketio", "5.18.1", "socketio.Server._handle_eio_connect",
             "extended: wraps the new Engine.IO socket's receive"),
    Internal("python-socketio", "5.18.1", "socketio.Server._handle_eio_disconnect",
             "extended: forgets the binary attachments still to drop"),
    Internal("python-socketio", "5.18.1", "socketio.Server._handle_connect",
             "called: connects a client to '/' that never sent `40`"),
    Internal("python-socketio", "5.18.1", "socketio.Server.environ",
             "read: whether an Engine.IO session is still open"),
    Internal("python-socketio", "5.18.1", "socketio.Server.manager.sid_from_eio_sid",
             "called: the client's sid in '/', or None before it is connected"),
    Internal("python-socketio", "5.18.1", "socketio.Server.packet_class, .reserved_events",
             "read: decodes packets and tells reserved event names as the server would"),
    Internal("python-socketio", "5.18.1", "socketio.packet: packet types, packet_names, attachment_count",
             "read: which packets have an answer; how many attachments a binary event announces"),
    Internal("python-engineio", "4.15.1", "engineio.Server._async",
             "copied with its 'websocket' replaced by the guarded WebSocket classes below"),
    Internal("python-engineio", "4.15.1", "engineio.Server.disconnect",
             "overridden: closes with wait=False (the stock one waits for a polling client forever)"),
    Internal("python-engineio", "4.15.1", "engineio.Server.sockets, engineio.socket.Socket.closed",
             "read: open sessions (the MAX_SESSIONS bound); popped on disconnect"),
    Internal("python-engineio", "4.15.1", "engineio.Server._get_socket",
             "called: the Engine.IO socket of a new connection"),
    Internal("python-engineio", "4.15.1", "engineio.socket.Socket.receive",
             "replaced per socket: a client PING gets a PONG; stray packet types close"),
    Internal("python-engineio", "4.15.1", "engineio.socket.Socket.close(wait=, reason=), Server.reason",
             "called: a disconnect that never waits"),
    Internal("python-engineio", "4.15.1", "engineio.packet.Packet(encoded_packet=...)",
             "called: decodes a WebSocket frame ahead, because engineio decodes it outside any handler"),
    Internal("python-engineio", "4.15.1", "engineio.async_drivers._websocket_wsgi.SimpleWebSocketWSGI",
             "subclassed: bounded messages, receive in slices, a bad handshake answered 400"),
    Internal("python-engineio", "4.15.1", "engineio.async_drivers.eventlet.WebSocketWSGI",
             "subclassed: eventlet's WebSocket wrapped so the same frame checks apply"),
    Internal("python-engineio", "4.15.1", "engineio.socket: log '%s: Unexpected error', error 'too large'",
             "matched by text: a connection closed for a reason becomes one warning line"),
    Internal("simple-websocket", "1.1.0", "simple_websocket.Server.receive(timeout=), .connected",
             "called: the reader is woken before the connection is marked closed, so it waits in slices"),
    Internal("simple-websocket", "1.1.0", "simple_websocket.Server.max_message_size, .incoming_message_len",
             "read: whether a connection ended on an oversize message"),
    Internal("eventlet", "0.41.3", "eventlet.websocket.RFC6455WebSocket._apply_mask",
             "replaced: a vectorised XOR (the same bytes) instead of a Python loop per byte"),
    Internal("eventlet", "0.41.3", "eventlet.websocket.RFC6455WebSocket.wait",
             "wrapped: returns without yielding while data waits, so each message yields the hub"),
    Internal("werkzeug", "3.1.9", "werkzeug.serving.WSGIRequestHandler.run_wsgi",
             "extended: a connection ends with its WebSocket, not read on as HTTP"),
    Internal("werkzeug", "3.1.9", "werkzeug.serving.WSGIRequestHandler.connection_dropped",
             "overridden: a dropped connection is closed, not read again for a next request"),
    Internal("werkzeug", "3.1.9", "werkzeug.serving.WSGIRequestHandler.handle, .log_error",
             "wrapped, overridden: a socket error or timed-out request is one line in our log"),
)  # fmt: skip

# The serving layer's one log (driving/drive_server.py writes to it too), so that its lines are
# filtered together by name.
log = logging.getLogger("driving.server")

# Whole messages (and request bodies) beyond this close that connection: the memory bound per
# client. A real frame message is 15-45 KB; the Pilot refuses images over 512 KB of base64 anyway.
MAX_MESSAGE_BYTES = 1024 * 1024
# Engine.IO sessions open at once; the simulator is one. Each costs a thread or two, and a polling
# session lives until its ping times out (45 s) unless it closes: a flood of handshakes is bounded.
MAX_SESSIONS = 256
# How often a WebSocket reader in threading mode looks whether its connection has closed.
RECEIVE_SLICE_S = 0.5


# --- Guarded WebSockets ------------------------------------------------------------------------------


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


class _ReceivingWebSocket(SimpleWebSocketWSGI):
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


class _BoundedWebSocket(_CheckedMessages, _ReceivingWebSocket):
    """engineio's WebSocket for the threading mode, with a bound on messages (simple-websocket
    otherwise assembles any size, fragment by fragment) and handshake errors answered with 400."""

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


class _GreenSocket:
    """eventlet hands engineio its own WebSocket object, not the WSGI app as simple-websocket
    does: a wrapper around it lets the same checks apply."""

    def __init__(self, ws):
        self._ws = ws

    def __getattr__(self, name):
        return getattr(self._ws, name)

    def wait(self):
        return self._ws.wait()


class _CheckedGreenSocket(_CheckedMessages, _GreenSocket):
    def wait(self):
        message = super().wait()
        # A green socket's recv returns without yielding while data is waiting, so a client
        # that never stops sending would keep the hub, and every other client, to itself.
        eventlet.sleep(0)
        return message


class _CheckedEventletWebSocket(EventletWebSocketWSGI):
    """engineio's WebSocket for the eventlet mode, its messages checked."""

    def __init__(self, handler, server):
        super().__init__(lambda ws: handler(_CheckedGreenSocket(ws)), server)


def _fast_unmask(data, mask, length=None, offset=0) -> bytes:
    """eventlet's WebSocket unmasking, vectorised: eventlet XORs byte by byte in Python (about 2 us a
    byte here), so one large frame held its hub, and every other client, for seconds."""
    length = len(data) if length is None else length
    payload = np.frombuffer(bytes(data[:length]), np.uint8)
    key = np.roll(np.frombuffer(bytes(mask), np.uint8), -(offset % 4))
    return (payload ^ np.resize(key, length)).tobytes()


def use_fast_eventlet_unmask() -> None:
    """Replace eventlet's WebSocket unmasking, for every eventlet WebSocket in this process, with a
    vectorised one that gives the same bytes."""
    eventlet.websocket.RFC6455WebSocket._apply_mask = staticmethod(_fast_unmask)


class _EngineIOServer(engineio.Server):
    """engineio's server with guarded WebSockets, and a disconnect that never waits: the stock one
    waits until a polling client collects the CLOSE packet, which holds the request thread forever
    when it never does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        websocket = _CheckedEventletWebSocket if self.async_mode == "eventlet" else _BoundedWebSocket
        self._async = {**self._async, "websocket": websocket}  # a copy: the driver's dict is shared

    def disconnect(self, sid=None):
        sockets = [sid] if sid is not None else list(self.sockets)
        for one in sockets:
            socket_ = self.sockets.pop(one, None)
            if socket_ is not None:
                socket_.close(wait=False, reason=self.reason.SERVER_DISCONNECT)


# --- HTTP ----------------------------------------------------------------------------------------------


class RequestGuard:
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
                    client = f"{environ.get('REMOTE_ADDR', '?')}:{environ.get('REMOTE_PORT', '?')}"
                    log.warning(
                        "HTTP client %s: a body of %d bytes announced, not delivered (%s); connection closed",
                        client,
                        length,
                        e,
                    )
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


def request_handler(http_timeout: float) -> type[WSGIRequestHandler]:
    """werkzeug's request handler for the threading mode: a request (headers and body) must arrive
    within `http_timeout` seconds, a connection ends with its WebSocket, and a connection dropped
    for any reason is one line in the serving log (or none for an idle keep-alive), never a
    traceback."""

    class Handler(WSGIRequestHandler):
        timeout = http_timeout  # a half-sent request is dropped after this
        requests_served = 0  # on this connection: after one, a timeout is an idle keep-alive

        def run_wsgi(self):
            if self.headers.get("Upgrade", "").lower() == "websocket":
                # Once its WebSocket ends the connection is done: werkzeug would otherwise
                # read the client's close frame as an HTTP request and answer it.
                self.close_connection = True
            self.requests_served += 1
            super().run_wsgi()

        def connection_dropped(self, error, environ=None):
            # werkzeug leaves an HTTP/1.1 connection open after a drop and reads the next request
            # from it; once a read has timed out the socket refuses every later read, and
            # socketserver printed that refusal as a traceback per connection.
            self.close_connection = True

        def handle(self):
            try:
                super().handle()
            except OSError as e:  # any other socket failure mid-request: the connection is gone
                log.warning("HTTP client %s: %s; connection closed", self._client(), e)

        def log_error(self, format, *args):
            # http.server's error lines (a timed-out request, a malformed request line) go to the
            # serving log in one line, not to werkzeug's logger with its own format.
            if args and isinstance(args[-1], TimeoutError):
                if self.requests_served:  # a keep-alive connection left idle: nothing went wrong
                    log.debug(
                        "HTTP client %s: idle for %g s; connection closed", self._client(), self.timeout
                    )
                    return
                message = f"no complete request within {self.timeout:g} s"
            else:
                message = format % args
            log.warning("HTTP client %s: %s; connection closed", self._client(), message[:200])

        def _client(self) -> str:
            host, port = self.client_address[:2]
            return f"{host}:{port}"

    return Handler


# --- Simulator compatibility ---------------------------------------------------------------------------


class SimulatorCompatibleServer(socketio.Server):
    """socketio.Server that also serves clients which never join a namespace explicitly, and
    answers every message or closes the connection (INTERNALS lists what it overrides):
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


# --- Logging ---------------------------------------------------------------------------------------------


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


def transport_logger() -> logging.Logger:
    """The logger to hand engineio (`engineio_logger=`): its lines worth reading, as warnings."""
    logger = logging.getLogger("driving.server.transport")
    logger.setLevel(logging.INFO)
    if not any(isinstance(f, _TransportLog) for f in logger.filters):
        logger.addFilter(_TransportLog())
    return logger
