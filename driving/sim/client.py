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
import json
import socket
import time

import simple_websocket


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


class SimulatorClient:
    """One simulator connection; every send_telemetry() is answered by one receive_reply()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4567, timeout: float = 5.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.url = f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket"
        self._ws: simple_websocket.Client | None = None
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
        lock-step; returns the second one."""
        try:
            self._ws = simple_websocket.Client.connect(self.url, receive_bytes=65536)
        except (OSError, simple_websocket.ConnectionError) as e:
            raise ConnectionError(f"cannot open {self.url}: {e}") from None
        # Send each small frame at once; the benchmark measures the server, not Nagle's algorithm.
        self._ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = telemetry_packet(steering, throttle, speed, image_jpeg)
        self._send(first)  # chain 1: on WebSocket open, before the OPEN packet may have arrived
        while not self.opened:
            self._handle(self._receive("Engine.IO OPEN packet"))
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
            except simple_websocket.ConnectionClosed:
                pass
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
        except (simple_websocket.ConnectionClosed, OSError) as e:
            raise ConnectionError(f"{self.url}: connection closed while sending ({e})") from None

    def _receive(self, what: str, deadline: float | None = None) -> str:
        wait = self.timeout if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            data = self._ws.receive(timeout=wait)
        except simple_websocket.ConnectionClosed as e:
            raise ConnectionError(
                f"{self.url}: connection closed while waiting for the {what} "
                f"({e.reason} {e.message or ''})".rstrip()
            ) from None
        if data is None:
            raise TimeoutError(
                f"{self.url}: no {what} within {self.timeout} s (a server that waits "
                "for a namespace CONNECT never answers the simulator)"
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
