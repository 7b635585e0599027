"""The Udacity simulator's autonomous-mode client, spoken exactly (docs/simulator-protocol.md).

It is how the headless simulator, the benchmark and the tests drive a drive.py server, so that
what passes here passes with the real simulator:
- a raw WebSocket straight to ws://HOST:PORT/socket.io/?EIO=4&transport=websocket, no Origin
  header, no HTTP long-polling first;
- never a namespace CONNECT (`40`); a `40{...}` from the server is ignored;
- the first telemetry goes out on WebSocket open and again when the server's Engine.IO OPEN
  packet arrives: two chains, as the simulator starts them;
- an Engine.IO PING `2` of its own after connecting; server PINGs are answered with PONG `3`;
- telemetry values are strings with 4 decimals, manual driving is `null`;
- `steer` replies must carry STRING values: a number is an error here, because the simulator reads
  it as null and its loop stalls for good.

Every wait has an end: the TCP connect, the WebSocket upgrade reply and the Engine.IO OPEN packet
each within `connect_timeout` (CONNECT_TIMEOUT_S), every `steer` reply within `timeout`
(REPLY_TIMEOUT_S), and a send the server does not take within `timeout` too. Each ends in one
TimeoutError or ConnectionError line naming the address and what did not arrive. (The real
simulator waits for ever; a test client that hangs with it would hide the fault it should show.)

Lock-step use (the caller owns the physics):

    with SimulatorClient(port=4567) as sim:
        kind, command = sim.connect(first_jpeg, speed=0.0)   # absorbs the second chain's reply
        while driving:
            step physics with command["steering_angle"], command["throttle"]
            sim.send_telemetry(steering, throttle, speed, jpeg)
            kind, command = sim.receive_reply()
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import socket
import struct
import threading
import time

import simple_websocket
from simple_websocket.ws import Base as _WebSocketBase
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import ProtocolError as _WebSocketProtocolError

# How long the client waits; sim drive's --connect-timeout and --reply-timeout default to these.
CONNECT_TIMEOUT_S = 5.0  # each of: the TCP connect, the WebSocket upgrade reply, the Engine.IO OPEN
REPLY_TIMEOUT_S = 10.0  # one steer reply, the first included (a model's warm-up takes seconds)
MAX_MESSAGE_BYTES = 1 << 20  # a steer reply is under 100 bytes; a larger message is refused
RECEIVE_BYTES = 65536
PATH = "/socket.io/?EIO=4&transport=websocket"  # where the simulator connects (no polling first)


class ProtocolError(RuntimeError):
    """The server said something the real simulator could not act on."""


def telemetry_packet(steering: float, throttle: float, speed: float, image_jpeg: bytes | None) -> str:
    """A Socket.IO EVENT text frame as the simulator writes it; no image means manual (null)."""
    if image_jpeg is None:
        return '42["telemetry",null]'
    payload = {
        "steering_angle": f"{steering:.4f}",
        "throttle": f"{throttle:.4f}",
        "speed": f"{speed:.4f}",
        "image": base64.b64encode(image_jpeg).decode("ascii"),
    }
    return "42" + json.dumps(["telemetry", payload], separators=(",", ":"))


def _string_number(command: dict, key: str) -> float:
    value = command.get(key)
    if not isinstance(value, str):
        raise ProtocolError(
            f"steer field {key!r} is {json.dumps(value)}, not a string: the simulator "
            "reads it with float.Parse(x.str), gets null and stalls"
        )
    try:
        return float(value)
    except ValueError:
        raise ProtocolError(f"steer field {key!r} is {value!r}, not a number") from None


def parse_steer(command) -> dict[str, float]:
    """Check a `steer` payload the way the simulator reads it; return the two floats."""
    if not isinstance(command, dict):
        raise ProtocolError(f"steer payload is {json.dumps(command)}, not an object")
    return {key: _string_number(command, key) for key in ("steering_angle", "throttle")}


def _positive_seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ValueError(f"{name} must be a number of seconds above 0, got {value!r}")
    return float(value)


class _WebSocket(_WebSocketBase):
    """simple_websocket's client with its waits bounded. simple_websocket.Client.connect waits for
    the TCP connection and for the upgrade reply without end, and lets a reply that is not HTTP
    escape as wsproto's exception; here each ends within `timeout` seconds or at once, as a
    TimeoutError or ConnectionError line naming the address."""

    def __init__(self, host: str, port: int, path: str, timeout: float, send_timeout: float):
        self.host, self.path, self.timeout = host, path, timeout
        self.send_timeout = send_timeout
        self.address = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.address}: no TCP connection within {timeout:g} s") from None
        except OSError as e:
            raise ConnectionError(f"cannot open ws://{self.address}{path}: {e}") from None
        # Send each small frame at once; the benchmark measures the server, not Nagle's algorithm.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            super().__init__(
                sock,
                connection_type=ConnectionType.CLIENT,
                receive_bytes=RECEIVE_BYTES,
                max_message_size=MAX_MESSAGE_BYTES,
                # A daemon: a receiving thread never keeps the process alive after its work is done.
                thread_class=functools.partial(threading.Thread, daemon=True),
            )
        except BaseException:
            sock.close()
            raise

    def handshake(self) -> None:
        """Send the upgrade request and read the reply, all within `timeout` (a server that trickles
        its reply a byte at a time ends here too). Called by Base.__init__."""
        deadline = time.monotonic() + self.timeout
        self._socket_call(self.sock.sendall, self.ws.send(Request(host=self.host, target=self.path)))
        while not self.connected:
            self.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            data = self._socket_call(self.sock.recv, self.receive_bytes)
            if not data:
                raise ConnectionError(
                    f"{self.address}: closed the connection before the WebSocket upgrade reply"
                )
            self._read_upgrade_reply(data)
        self.sock.settimeout(None)  # the receiving thread blocks; receive() bounds each wait
        # Bound sends here, before the receiving thread starts: once it runs, it may close the
        # socket at any moment (a message too large), and an option set then would meet a closed one.
        self._limit_sends(self.send_timeout)
        self.connected = self._handle_events()  # frames that came with the reply
        if not self.connected:  # Base would raise a ConnectionError that says nothing
            raise ConnectionError(f"{self.address}: closed the WebSocket as soon as it accepted it")

    def _socket_call(self, call, *args):
        """`call(*args)` on the socket during the upgrade, its errors in one line naming the address."""
        try:
            return call(*args)
        except TimeoutError:
            raise TimeoutError(
                f"{self.address}: accepted the TCP connection but sent no WebSocket upgrade reply "
                f"within {self.timeout:g} s"
            ) from None
        except OSError as e:  # reset, say
            raise ConnectionError(
                f"{self.address}: connection lost during the WebSocket upgrade ({e})"
            ) from None

    def _read_upgrade_reply(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():  # stop at the reply: frames after it are the stream's
                if isinstance(event, RejectConnection):
                    raise ConnectionError(
                        f"{self.address}: refused the WebSocket upgrade (HTTP {event.status_code})"
                    )
                if isinstance(event, AcceptConnection):
                    self.connected = True
                    return
        except _WebSocketProtocolError as e:
            raise ConnectionError(
                f"{self.address}: answered the WebSocket upgrade with something that is not "
                f"an HTTP upgrade reply ({_one_line(str(e))})"
            ) from None

    def _handle_events(self) -> bool:
        keep_going = super()._handle_events()
        if not keep_going:  # Base wakes receive() before it marks the end (a message too large):
            self.connected = False  # mark it, and wake receive() again, or it waits out its timeout
            self.event.set()
        return keep_going

    def _limit_sends(self, seconds: float) -> None:
        """A send the server does not take fails after `seconds` (SO_SNDTIMEO); the receiving
        thread's reads are not touched."""
        whole = int(seconds)
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6))
        )

    def close(self, reason=None, message=None) -> None:
        try:
            super().close(reason=reason, message=message)
        finally:
            # shutdown() wakes the receiving thread's recv(), which close() alone would leave
            # waiting on a server that never closes its side.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()


def _one_line(text: str, limit: int = 120) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SimulatorClient:
    """One simulator connection; every send_telemetry() is answered by one receive_reply()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4567,
        timeout: float = REPLY_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ):
        self.host, self.port = host, port
        self.timeout = _positive_seconds(timeout, "timeout")  # for each steer reply
        self.connect_timeout = _positive_seconds(connect_timeout, "connect_timeout")
        self.url = f"ws://{host}:{port}{PATH}"
        self._ws: _WebSocket | None = None
        self.opened = False  # the server's Engine.IO OPEN packet has arrived
        self.ignored: list[str] = []  # packets the simulator would ignore (other events, `40`...)
        self.pings_answered = 0

    def connect(
        self,
        image_jpeg: bytes | None = None,
        steering: float = 0.0,
        throttle: float = 0.0,
        speed: float = 0.0,
    ) -> tuple[str, dict]:
        """Open the connection and send the first telemetry twice, as the simulator does (on open,
        and on the OPEN packet). Both replies are read here so that the caller then runs a plain
        lock-step; returns the second one. The handshake (TCP, WebSocket upgrade, Engine.IO OPEN)
        waits at most `connect_timeout` for each step, the replies `timeout` each."""
        try:
            self._ws = _WebSocket(self.host, self.port, PATH, self.connect_timeout, self.timeout)
        except simple_websocket.ConnectionError as e:
            raise ConnectionError(f"cannot open {self.url}: {e}") from None
        first = telemetry_packet(steering, throttle, speed, image_jpeg)
        self._send(first)  # chain 1: on WebSocket open, before the OPEN packet may have arrived
        deadline = time.monotonic() + self.connect_timeout
        while not self.opened:
            self._handle(self._receive("Engine.IO OPEN packet", deadline, self.connect_timeout))
        self._send(first)  # chain 2: on the OPEN packet
        self._send("2")  # its own Engine.IO PING; python-engineio 4 ignores it, as it should
        self.receive_reply()
        return self.receive_reply()

    def send_telemetry(
        self, steering: float, throttle: float, speed: float, image_jpeg: bytes | None
    ) -> None:
        """Send one telemetry event; image_jpeg None sends manual telemetry (null)."""
        self._send(telemetry_packet(steering, throttle, speed, image_jpeg))

    def send_packet(self, text: str) -> None:
        """Send a raw Engine.IO text frame (for testing servers against malformed input)."""
        self._send(text)

    def receive_reply(self) -> tuple[str, dict]:
        """The next `steer` ("steer", {"steering_angle": float, "throttle": float}) or `manual`
        ("manual", {}) event; answers server PINGs meanwhile. Raises ProtocolError on a reply the
        simulator could not use, TimeoutError after `timeout` seconds, ConnectionError if closed."""
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._handle(self._receive("steer reply", deadline))
            if reply is not None:
                return reply

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except (simple_websocket.ConnectionClosed, OSError, _WebSocketProtocolError):
                pass  # closed already, or a server that takes no more data: the socket is closed
            self._ws = None

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- wire --

    def _send(self, text: str) -> None:
        if self._ws is None:
            raise ConnectionError("not connected: call connect() first")
        try:
            self._ws.send(text)
        except (BlockingIOError, TimeoutError):  # SO_SNDTIMEO passed: the server reads nothing
            raise TimeoutError(f"{self.url}: the server took no data for {self.timeout:g} s") from None
        except (simple_websocket.ConnectionClosed, OSError, _WebSocketProtocolError) as e:
            # (a ProtocolError: the receiving thread has just begun to close the connection)
            self._check_size()
            reason = _one_line(str(e))
            raise ConnectionError(f"{self.url}: connection closed while sending ({reason})") from None

    def _check_size(self) -> None:
        """Say so if the connection was closed because the server sent too large a message."""
        if self._ws is not None and self._ws.incoming_message_len > MAX_MESSAGE_BYTES:
            raise ConnectionError(
                f"{self.url}: sent a message of more than {MAX_MESSAGE_BYTES:,} bytes; "
                "the connection was closed"
            ) from None

    def _receive(self, what: str, deadline: float | None = None, seconds: float | None = None) -> str:
        """The next text frame, waiting until `deadline` (default: `timeout` from now)."""
        seconds = self.timeout if seconds is None else seconds
        wait = seconds if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            data = self._ws.receive(timeout=wait)
        except simple_websocket.ConnectionClosed as e:
            self._check_size()
            raise ConnectionError(
                f"{self.url}: connection closed while waiting for the {what} "
                f"({e.reason} {e.message or ''})".rstrip()
            ) from None
        if data is None:
            hint = " (a server that waits for a namespace CONNECT never answers the simulator)"
            raise TimeoutError(
                f"{self.url}: no {what} within {seconds:g} s" + (hint * (what == "steer reply"))
            )
        if not isinstance(data, str):
            raise ProtocolError(f"binary frame of {len(data)} bytes; the simulator expects text")
        return data

    def _handle(self, packet: str) -> tuple[str, dict] | None:
        """Act on one Engine.IO packet; return a reply event, or None for anything else."""
        kind, body = packet[:1], packet[1:]
        if kind == "0":  # OPEN
            self.opened = True
        elif kind == "2":  # server PING
            self._send("3")
            self.pings_answered += 1
        elif kind == "1":  # CLOSE
            raise ConnectionError(f"{self.url}: the server closed the connection")
        elif kind == "4" and body.startswith("2"):  # Socket.IO EVENT in the default namespace
            return self._event(body[1:])
        elif kind == "4" and body.startswith("1"):  # namespace DISCONNECT
            raise ConnectionError(f"{self.url}: the server disconnected the client ({packet!r})")
        else:  # PONG, NOOP, `40{...}`, `44...`: the simulator's client ignores them
            self.ignored.append(packet[:80])
        return None

    def _event(self, body: str) -> tuple[str, dict] | None:
        try:
            event = json.loads(body)
        except json.JSONDecodeError as e:
            raise ProtocolError(f"unreadable event {body[:60]!r}: {e}") from None
        if not isinstance(event, list) or not event or not isinstance(event[0], str):
            raise ProtocolError(f"unreadable event {body[:60]!r}")
        name, args = event[0], event[1:]
        if name == "steer":
            return "steer", parse_steer(args[0] if args else None)
        if name == "manual":
            return "manual", {}
        self.ignored.append(body[:80])  # the simulator has handlers for steer and manual only
        return None
