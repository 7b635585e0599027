"""The drive server against careless and hostile clients, over real sockets on 127.0.0.1.

The simulator waits forever for a reply (docs/simulator-protocol.md), so the rules are strict:

1. Every message on a Socket.IO connection gets an answer (`steer` with STRING values, or `manual`
   {}) or the connection is closed, within ANSWER_WITHIN seconds. The simulator's Engine.IO PING
   `2` gets a PONG `3` with the ping's data (as Engine.IO v3 servers answered, which the simulator
   was written against): it waits for one, and closing its connection instead would stop the car.
2. A half-sent HTTP request is dropped within DROP_WITHIN seconds, and 50 of them at once do not
   keep a simulator from connecting and driving.
3. A long-polling POST announcing 20 MB (or a negative length, or carrying a packet the server
   closes the session for) gets an answer or is closed within ANSWER_WITHIN seconds, whether or not
   the client ever polls.
4. Nothing a client sends stops the server or another client's session, prints a traceback, or
   costs the server more than MEMORY_PER_CONNECTION for that connection.
5. drive.py itself, as a process: clients that stall mid-request cost its log one line each (or
   none), never a traceback; a model file with a crafted record is refused in one line, exit 2.

An exchange is judged without waiting out the bound: after the hostile messages the client sends
PROBE, a telemetry the server answers in its own recognisable way (a frame no attack sends, at a
speed that brakes fully). Replies come in order, so what arrives before the probe's reply answers
the hostile messages, and a probe reply with nothing before it means they went unanswered.

The slow attacks (half-sent requests, bad POSTs, oversize WebSocket messages) start together, at the
end of the module, and are judged together once their deadlines have passed: what the server logs
when it drops them lands there, not in another test.
"""

from __future__ import annotations

import base64
import functools
import gc
import json
import logging
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
import socketio

from driving.preprocess import encode_jpeg
from driving.runtime import Predictor
from driving.sim.client import ProtocolError, SimulatorClient, parse_steer
from driving.socketio_compat import MAX_MESSAGE_BYTES
from tests.conftest import road_frame
from tests.test_runtime import tiny_model

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

MODES = ("threading", "eventlet")
ANSWER_WITHIN = 5.0  # seconds: every message answered or the connection closed
GRACE = 0.5  # seconds an exchange waits for an answer (or a close) before it sends the probe
DROP_WITHIN = 15.0  # seconds: a half-sent HTTP request dropped
MB = 2**20
NEAR_LIMIT = MAX_MESSAGE_BYTES - 64 * 1024  # a message that is just allowed
MEMORY_PER_CONNECTION = 64 * MB  # 64 times the server's 1 MiB message limit
WS_PATH = "/socket.io/?EIO=4&transport=websocket"
POLLING_PATH = "/socket.io/?EIO=4&transport=polling"


# --- the server under attack: the one place that knows how to build and start it -----------------


def serve(predictor: Predictor, async_mode: str = "threading", **options) -> tuple[int, Callable[[], None]]:
    """Start the real drive server on 127.0.0.1 and a free port; returns (port, stop)."""
    from driving.drive_server import DriveServer, ServeConfig
    from driving.pilot import Pilot

    server = DriveServer(Pilot(predictor), ServeConfig(async_mode=async_mode, status_interval=0, **options))
    if async_mode != "eventlet":
        return server.start(), server.stop
    app = server.app.wsgi_app

    def with_errors_to_logging(environ, start_response):
        environ["wsgi.errors"] = EventletErrors()
        return app(environ, start_response)

    server.app.wsgi_app = with_errors_to_logging
    # eventlet's hub runs in the thread that serves, as drive.py runs it in its main thread
    thread = threading.Thread(target=server.serve, args=("127.0.0.1", 0), name="eventlet-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.port:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the eventlet server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.request_stop()
        thread.join(timeout=10)

    return server.port, stop


class EventletErrors:
    """eventlet's wsgi.errors, as logging: eventlet writes there for good (its WebSockets print "socket
    shutdown error" on every close), and the sys.stderr of its start is closed by pytest later."""

    def write(self, text: str) -> None:
        level = logging.WARNING if "Traceback" in text else logging.INFO
        logging.getLogger("eventlet.wsgi.errors").log(level, "%s", text.rstrip())

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_keras(tiny_model())


@pytest.fixture(scope="module")
def servers(predictor):
    """{mode: port}: one server per mode for the whole module. Started here, before any test's own
    capture begins: eventlet keeps the sys.stderr of its start for good (its log stream)."""
    started = {mode: serve(predictor, async_mode=mode) for mode in MODES}
    yield {mode: port for mode, (port, _) in started.items()}
    for _, stop in started.values():
        stop()


# --- frames and packets ----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_file(rgb: np.ndarray, ext: str = ".jpg", *params: int) -> bytes:
    """An image file as cv2 writes it (rgb: H x W x 3 RGB, or H x W grey)."""
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    return cv2.imencode(ext, pixels, list(params))[1].tobytes()


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose header claims width x height: a few hundred bytes that libjpeg
    decodes into width * height * 3 bytes of grey."""
    jpeg = bytearray(image_file(np.zeros((16, 16, 3), np.uint8)))
    sof = jpeg.index(b"\xff\xc0")  # baseline start-of-frame: length(2) precision(1) height(2) width(2)
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


FRAMES = [road_frame(offset, np.random.default_rng(i)) for i, offset in enumerate((-0.6, 0.1, 0.8))]
JPEGS = [encode_jpeg(f) for f in FRAMES]
MISSING = object()  # a field left out of the telemetry


def telemetry(image=b64(JPEGS[0]), speed="5.0000", steering_angle="0.0000", throttle="0.0000") -> str:
    """A telemetry event as the simulator writes it; any field may be replaced, or left out."""
    payload = {"steering_angle": steering_angle, "throttle": throttle, "speed": speed, "image": image}
    payload = {key: value for key, value in payload.items() if value is not MISSING}
    return "42" + json.dumps(["telemetry", payload], separators=(",", ":"))


PROBE = telemetry(b64(JPEGS[2]), speed="100.0000")  # the one frame no attack sends, braking fully


class Frame(NamedTuple):
    """A WebSocket frame exactly as given, for what no library sends."""

    payload: bytes
    opcode: int = 1  # text
    fin: bool = True
    rsv: int = 0  # the three reserved bits, 0x70 of the first byte


def ws_frame(
    payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0, compress: bool = False
) -> bytes:
    """One masked client-to-server WebSocket frame (compress: permessage-deflate, RSV1)."""
    if compress:
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = (deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
        rsv |= 0x40
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += struct.pack("!BH", 0x80 | 126, n)
    else:
        head += struct.pack("!BQ", 0x80 | 127, n)
    mask = os.urandom(4)
    masked = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
    return head + mask + masked.tobytes()


def frame_of(message: str | bytes | Frame) -> bytes:
    if isinstance(message, Frame):
        return ws_frame(message.payload, message.opcode, message.fin, message.rsv)
    if isinstance(message, str):
        return ws_frame(message.encode())
    return ws_frame(message, opcode=2)


# --- a WebSocket client spoken by hand ---------------------------------------------------------------


class Closed(Exception):
    """The server closed the connection: a close frame, EOF, a reset, or bytes that are not WebSocket."""


class Wire:
    """One WebSocket connection the simulator's way (no Origin, no namespace CONNECT), spoken by hand
    so that a test can send anything. Answers the server's pings; reading raises Closed or
    TimeoutError."""

    def __init__(self, port: int, deflate: bool = False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        offer = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n" if deflate else ""
        )
        self.sock.sendall(
            f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {b64(os.urandom(16))}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
        )
        self.buffer = b""
        deadline = time.monotonic() + ANSWER_WITHIN
        while b"\r\n\r\n" not in self.buffer:
            self._receive(deadline)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"WebSocket handshake refused: {head[:80]!r}")
        self.deflate = b"permessage-deflate" in head.lower()  # the server accepted compression
        self._inflate = zlib.decompressobj(-15)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, message: str | bytes | Frame) -> None:
        self.send_bytes(frame_of(message))

    def send_bytes(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Closed(f"closed while sending ({e})") from None

    def packet(self, deadline: float) -> str | bytes:
        """The next Engine.IO packet (text, or bytes from a binary frame)."""
        while True:
            opcode, payload = self._frame(deadline)
            if opcode == 8:
                self._reply(ws_frame(payload[:2], opcode=8))
                raise Closed(f"close frame {payload[:2].hex()} {payload[2:60]!r}")
            if opcode == 9:
                self._reply(ws_frame(payload, opcode=10))
            elif opcode == 2:
                return payload
            elif opcode == 1 and payload == b"2":  # the server's Engine.IO PING, every 25 s
                self._reply(ws_frame(b"3"))
            elif opcode == 1 and payload == b"1":  # Engine.IO CLOSE: a close frame follows
                raise Closed("Engine.IO CLOSE")
            elif opcode == 1:
                return payload.decode("utf-8", "replace")

    def closed_within(self, seconds: float) -> bool:
        """Read until the server closes the connection; False if it has not after `seconds`."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.packet(deadline)
        except Closed:
            return True
        except TimeoutError:
            return False

    def drain(self, seconds: float = 3.0) -> None:
        """Read until the server closes TCP, at most `seconds`."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                if not self.sock.recv(1 << 16):
                    return
        except OSError:
            return

    def _reply(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the server is gone; reading says so next

    def _receive(self, deadline: float) -> None:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError as e:
            raise Closed(f"reset ({e})") from None
        if not data:
            raise Closed("EOF")
        self.buffer += data

    def _frame(self, deadline: float) -> tuple[int, bytes]:
        while (frame := self._parse()) is None:
            self._receive(deadline)
        return frame

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if data.startswith(b"HTTP/"):  # werkzeug's 500 when the handler raised; it logs, then closes
            self.drain()
            raise Closed(f"an HTTP response on the WebSocket: {data[:40]!r}")
        if len(data) < 2:
            return None
        length, start = data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            length, start = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, start = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < start + length:
            return None
        payload, self.buffer = data[start : start + length], data[start + length :]
        opcode, reserved = data[0] & 0x0F, data[0] & (0x30 if self.deflate else 0x70)
        if opcode not in (0, 1, 2, 8, 9, 10) or reserved:  # werkzeug writes error pages into the stream
            raise Closed(f"bytes that are not WebSocket: {data[:40]!r}")
        if data[0] & 0x40:
            try:
                payload = self._inflate.decompress(payload + b"\x00\x00\xff\xff")
            except zlib.error:
                raise Closed(f"bytes that are not WebSocket: {data[:40]!r}") from None
        return opcode, payload


EVENT = re.compile(r"42(/[^,\[]*,)?\d*(\[.*)", re.S)


def reply_event(packet: str | bytes) -> tuple[str, str, object] | None:
    """(namespace, name, payload) of a `steer` or `manual` event the simulator could act on."""
    if not isinstance(packet, str) or not (match := EVENT.fullmatch(packet)):
        return None
    try:
        event = json.loads(match.group(2))
    except ValueError:
        return None
    if not isinstance(event, list) or event[:1] not in (["steer"], ["manual"]):
        return None
    payload = event[1] if len(event) > 1 else None
    if event[0] == "steer":
        try:
            parse_steer(payload)  # STRING values, as the simulator reads them
        except ProtocolError:
            return None
    return (match.group(1) or "/").rstrip(","), event[0], payload


@dataclass
class Exchange:
    """What the server did with some messages followed by the PROBE telemetry."""

    answers: list = field(default_factory=list)  # steer/manual events before the probe's reply
    others: list = field(default_factory=list)  # every other packet: PONG, NOOP, `40{...}`, acks...
    probe_answered: bool = False
    closed: str | None = None  # how the server closed the connection, if it did

    def answered_or_closed(self, messages: int) -> bool:
        return self.closed is not None or (self.probe_answered and len(self.answers) >= messages)

    def responses(self) -> list:
        """The other packets that respond to something: not the Engine.IO OPEN, not a CONNECT."""
        return [p for p in self.others if not (isinstance(p, str) and p.startswith(("0{", "40")))]

    def add(self, packet: str | bytes, probe: dict | None = None) -> bool:
        """Note one packet from the server; True if it is the reply to PROBE."""
        event = reply_event(packet)
        if probe is not None and event == ("/", "steer", probe):
            self.probe_answered = True
        else:
            (self.answers if event else self.others).append(packet[:80])
        return self.probe_answered


@pytest.fixture(scope="module")
def probe_reply(servers):
    """mode -> the server's reply to PROBE on a fresh connection (the same on every connection)."""
    replies = {}

    def reply(mode: str) -> dict:
        if mode not in replies:
            with Wire(servers[mode]) as wire:
                wire.send(PROBE)
                deadline = time.monotonic() + ANSWER_WITHIN
                while (event := reply_event(wire.packet(deadline))) is None:
                    pass
            assert event[1] == "steer" and event[2]["throttle"] == "-1.0000", event
            replies[mode] = event[2]
        return replies[mode]

    return reply


def exchange(
    port: int, messages: list, probe: dict, first: bool = False, within: float = ANSWER_WITHIN
) -> Exchange:
    """Send `messages` on a fresh connection (after one ordinary frame and its reply unless
    `first`), then PROBE; collect what comes back until the probe's reply, a close, or `within`
    seconds. The probe goes out once the messages are answered, or after GRACE: a probe still on
    the wire when the server closes would be a second attack (see
    test_telemetry_on_the_wire_when_the_server_closes_prints_no_traceback)."""
    result = Exchange()
    with Wire(port) as wire:
        try:
            if not first:
                wire.send(telemetry())
                deadline = time.monotonic() + within
                while reply_event(wire.packet(deadline)) is None:
                    pass
            for message in messages:
                wire.send(message)
            deadline = time.monotonic() + GRACE
            try:  # until each message got something back (a reply, a PONG, a NOOP...), or GRACE
                while len(result.answers) + len(result.responses()) < len(messages):
                    result.add(wire.packet(deadline))
            except TimeoutError:
                pass
            wire.send(PROBE)
            deadline = time.monotonic() + within
            while not result.add(wire.packet(deadline), probe):
                pass
        except Closed as e:
            result.closed = str(e)
        except TimeoutError:
            pass
    return result


def logged_tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """The log records that carry a traceback, each as one line: logger, message, exception."""
    found = []
    for record in records:
        message = record.getMessage()
        if record.exc_info:
            error = record.exc_info[1]
            found.append(f"{record.name}: {message[:100]} ({type(error).__name__}: {str(error)[:100]})")
        elif "Traceback" in message:
            found.append(f"{record.name}: {message[:60]}... {last_line(message)}")
    return found


def tracebacks(caplog, capfd, *texts: str | bytes) -> list[str]:
    """Tracebacks in the captured log records, stdout/stderr, and any `texts` (a response body)."""
    out, err = capfd.readouterr()
    found = logged_tracebacks(caplog.records)
    for text in (out, err, *texts):
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        if "Traceback" in text:
            found.append(f"Traceback ... {last_line(text[text.index('Traceback') :])}")
    return found


def last_line(traceback: str) -> str:
    """The exception line of a formatted traceback."""
    lines = [line for line in traceback.splitlines() if re.match(r"\w+(\.\w+)*(Error|Exception)\b", line)]
    return lines[-1][:160] if lines else traceback.strip().splitlines()[-1][:160]


def drive(port: int, frames: list[bytes] = JPEGS, timeout: float = ANSWER_WITHIN) -> list[float] | str:
    """Drive like the simulator: the steering it gets for each frame, or what went wrong."""
    try:
        with SimulatorClient(port=port, timeout=timeout) as sim:
            steering = [sim.connect(frames[0])[1]["steering_angle"]]
            for jpeg in frames:
                sim.send_telemetry(0.0, 0.0, 9.0, jpeg)
                steering.append(sim.receive_reply()[1]["steering_angle"])
            return steering
    except (OSError, TimeoutError, ProtocolError) as e:  # ConnectionError is an OSError
        return f"{type(e).__name__}: {e}"


@pytest.fixture(scope="module")
def baseline(servers):
    """The steering a simulator gets for JPEGS from a server nobody attacks."""
    steering = drive(servers["threading"])
    assert isinstance(steering, list), steering
    return steering


def cases(table: dict, *modes: str) -> list:
    """pytest params: every case of `table`, in every mode given."""
    if not modes:
        return [pytest.param(name, id=name) for name in table]
    return [pytest.param(mode, name, id=f"{mode}-{name}") for mode in modes for name in table]


# --- 1: Socket.IO packets --------------------------------------------------------------------------

VALID = json.loads(telemetry()[2:])[1]
PLACEHOLDER = '["telemetry",{"_placeholder":true,"num":0}]'

SOCKETIO = {
    "an event with no payload": "42",
    "an event that is an empty list": "42[]",
    "an event that is a JSON string": '42"telemetry"',
    "an event that is an object": '42{"telemetry":{}}',
    "an event named by a number": "42[1]",
    "an event named null": "42[null]",
    "an event named by a list": '42[["telemetry"]]',
    "an event named by an object": "42[{}]",
    "an event of another name": '42["drive",{}]',
    "a steer event from the client": '42["steer",{"steering_angle":"0.0000","throttle":"1.0000"}]',
    "a connect event": '42["connect"]',
    "a connect event with a string": '42["connect","x"]',
    "a disconnect event": '42["disconnect"]',
    "telemetry with no argument": '42["telemetry"]',
    "telemetry with two arguments": "42" + json.dumps(["telemetry", VALID, "extra"]),
    "telemetry with two nulls": '42["telemetry",null,null]',
    "telemetry with an ack id": "421" + telemetry()[2:],
    "telemetry with a 99-digit ack id": "42" + "9" * 99 + telemetry()[2:],
    "telemetry with a 101-digit ack id": "42" + "9" * 101 + telemetry()[2:],
    "telemetry for another namespace": "42/x," + telemetry()[2:],
    "an event of deeply nested JSON": "42" + "[" * 100_000,
    "telemetry of deeply nested JSON": '42["telemetry",' + "[" * 100_000,
    "an event with a huge number": '42["telemetry",{"speed":1e999999}]',
    "an ack": "431[]",
    "an ack with no id": "43[]",
    "a CONNECT_ERROR from the client": "44",
    "a binary event with no attachment count": "45-",
    "a binary event whose attachment never comes": "451-" + PLACEHOLDER,
    "a binary event announcing ten billion attachments": "459999999999-" + PLACEHOLDER,
    "a binary ack whose attachment never comes": '461-1[{"_placeholder":true,"num":0}]',
    "a Socket.IO type 7": "47",
    "a Socket.IO type that is not a digit": "4hello",
}


@pytest.mark.parametrize("first", [False, True], ids=["mid-session", "first-packet"])
@pytest.mark.parametrize("case", cases(SOCKETIO))
def test_socketio_packet_is_answered_or_closed(servers, probe_reply, case, first):
    result = exchange(servers["threading"], [SOCKETIO[case]], probe_reply("threading"), first=first)
    assert result.answered_or_closed(1), result


@pytest.mark.parametrize("case", cases(SOCKETIO))
def test_socketio_packet_prints_no_traceback(servers, probe_reply, caplog, capfd, case):
    exchange(servers["threading"], [SOCKETIO[case]], probe_reply("threading"))
    assert tracebacks(caplog, capfd) == []


# --- 1: Engine.IO packets and WebSocket frames (the transports differ between the modes) -----------

ENGINEIO = {
    "an empty text frame": "",
    "an Engine.IO type that is not a digit": "x",
    "an Engine.IO OPEN from the client": "0",
    "an Engine.IO UPGRADE on a WebSocket session": "5",
    "an Engine.IO NOOP": "6",
    "an Engine.IO type 7": "7",
    "an Engine.IO MESSAGE with nothing in it": "4",
    "an Engine.IO MESSAGE of deeply nested JSON": "4" + "[" * 100_000,
    "an Engine.IO CLOSE": "1",
    "a binary frame": b"\x00\x01",
    "an empty binary frame": b"",
    "telemetry in a binary frame": telemetry().encode(),
    "a text frame that is not UTF-8": Frame(b'42["telemetry","\xff\xfe"]'),
    "a text frame with a reserved bit set": Frame(telemetry().encode(), rsv=0x20),
    "a frame of opcode 3": Frame(b"42[]", opcode=3),
    "a continuation frame with nothing to continue": Frame(telemetry().encode(), opcode=0),
}
WERKZEUG_500 = (
    "werkzeug logs 'Error on request' with a traceback ({}), raised by engineio.packet.Packet.decode "
    "outside the try in engineio.socket.Socket._websocket_handler; it then writes a 500 page into "
    "the WebSocket (eventlet closes the connection silently)"
)


@pytest.mark.parametrize("first", [False, True], ids=["mid-session", "first-packet"])
@pytest.mark.parametrize("mode, case", cases(ENGINEIO, *MODES))
def test_engineio_packet_is_answered_or_closed(servers, probe_reply, mode, case, first):
    result = exchange(servers[mode], [ENGINEIO[case]], probe_reply(mode), first=first)
    assert result.answered_or_closed(1), result


@pytest.mark.parametrize("mode, case", cases(ENGINEIO, *MODES))
def test_engineio_packet_prints_no_traceback(servers, probe_reply, caplog, capfd, mode, case):
    exchange(servers[mode], [ENGINEIO[case]], probe_reply(mode))
    assert tracebacks(caplog, capfd) == []


PINGS = {"PING": ("2", "3"), "PING with data": ("2probe", "3probe")}


@pytest.mark.parametrize("mode, case", cases(PINGS, *MODES))
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_client_ping_is_answered_with_pong(servers, probe_reply, mode, case, transport):
    # The simulator pings right after connecting and every 25 s, and waits for the PONG.
    ping, pong = PINGS[case]
    if transport == "websocket":
        result = exchange(servers[mode], [ping], probe_reply(mode), first=True)
    else:
        result = polling_exchange(servers[mode], [ping], probe_reply(mode))
    assert pong in result.others, result


@pytest.mark.parametrize("mode", MODES)
def test_telemetry_on_the_wire_when_the_server_closes_prints_no_traceback(servers, caplog, capfd, mode):
    # The simulator sends without looking: a frame can cross the server's close on the wire.
    with Wire(servers[mode]) as wire:
        wire.send(telemetry())
        deadline = time.monotonic() + ANSWER_WITHIN
        while reply_event(wire.packet(deadline)) is None:
            pass
        wire.send("1")  # Engine.IO CLOSE: the server closes the connection...
        wire.send(telemetry())  # ...with this frame already on its way
        wire.closed_within(ANSWER_WITHIN)
    deadline = time.monotonic() + 1.0  # the server reads that frame after the close
    while not logged_tracebacks(caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tracebacks(caplog, capfd) == []


# --- 1: telemetry with every field wrong --------------------------------------------------------

WRONG_NUMBERS = {
    "missing": MISSING,
    "null": None,
    "true": True,
    "a list": [],
    "an object": {},
    "empty": "",
    "a word": "fast",
    "NaN": "NaN",
    "inf": "inf",
    "-Infinity": "-Infinity",
    "1e999": "1e999",
    "hexadecimal": "0x1p3",
    "a decimal comma": "1,5",
    "a megabyte of digits": "9" * MB,
    "a NaN number": float("nan"),
    "an Infinity number": float("inf"),
    "a 101-digit integer": 10**101,
    "1e308 as a number": 1e308,
}
GOOD = JPEGS[0]
WRONG_IMAGES = {
    "missing": MISSING,
    "null": None,
    "true": True,
    "a number": 12345,
    "a list": [],
    "an object": {},
    "empty": "",
    "not base64": "not*base64!",
    "base64 in 76-column lines": base64.encodebytes(GOOD).decode(),
    "base64 with spaces": " ".join(re.findall(".{1,64}", b64(GOOD))),
    "base64 one character short": b64(GOOD)[:-1],
    "base64 with excess padding": b64(GOOD) + "==",
    "URL-safe base64": base64.urlsafe_b64encode(GOOD).decode(),
    "a data URI": "data:image/jpeg;base64," + b64(GOOD),
    "non-ASCII text": "é" * 100,
    "a truncated JPEG": b64(GOOD[: len(GOOD) // 2]),
    "a JPEG without its end marker": b64(GOOD[:-2]),
    "a grayscale JPEG": b64(image_file(cv2.cvtColor(FRAMES[0], cv2.COLOR_RGB2GRAY))),
    "a progressive JPEG": b64(image_file(FRAMES[0], ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    "a PNG": b64(image_file(FRAMES[0], ".png")),
    "a 100x50 JPEG": b64(image_file(cv2.resize(FRAMES[0], (100, 50)))),
    "a 640x320 JPEG": b64(image_file(cv2.resize(FRAMES[0], (640, 320)))),
    "a 1x1 JPEG": b64(image_file(FRAMES[0][:1, :1])),
    "GIF bytes": b64(b"GIF89a" + bytes(100)),
    "random bytes": b64(np.random.default_rng(0).bytes(1000)),
    "a JPEG header and random bytes": b64(GOOD[:200] + np.random.default_rng(1).bytes(5000) + b"\xff\xd9"),
    "just over the image limit": "A" * (512 * 1024 + 4),
    "three megabytes": "A" * (3 * MB),
}
WRONG_PAYLOADS = {
    "null (manual driving)": '42["telemetry",null]',
    "{} (manual driving)": '42["telemetry",{}]',
    "a list": '42["telemetry",[1,2]]',
    "a string": '42["telemetry","telemetry"]',
    "a number": '42["telemetry",7]',
    "true": '42["telemetry",true]',
    "an object of other fields": '42["telemetry",{"x":"1"}]',
}
BAD_TELEMETRY = {
    **{
        f"{key} {name}": telemetry(**{key: value})
        for key in VALID
        if key != "image"
        for name, value in WRONG_NUMBERS.items()
    },
    **{f"image {name}": telemetry(image=value) for name, value in WRONG_IMAGES.items()},
    **{f"payload {name}": packet for name, packet in WRONG_PAYLOADS.items()},
}


@pytest.mark.parametrize("case", cases(BAD_TELEMETRY))
def test_bad_telemetry_is_answered_or_closed(servers, probe_reply, case):
    result = exchange(servers["threading"], [BAD_TELEMETRY[case]], probe_reply("threading"))
    assert result.answered_or_closed(1), result


@pytest.mark.parametrize("case", cases(BAD_TELEMETRY))
def test_bad_telemetry_prints_no_traceback(servers, probe_reply, caplog, capfd, case):
    exchange(servers["threading"], [BAD_TELEMETRY[case]], probe_reply("threading"))
    assert tracebacks(caplog, capfd) == []


# --- 4: other clients, memory --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_simulator_keeps_driving_through_every_hostile_packet(servers, probe_reply, baseline, mode):
    # Messages of 64 KB and more are left to test_big_messages_do_not_starve_another_client.
    port, probe = servers[mode], probe_reply(mode)
    messages = [
        m for m in (*SOCKETIO.values(), *ENGINEIO.values(), *BAD_TELEMETRY.values()) if len(m) < 65536
    ]
    attackers = [
        threading.Thread(target=exchange, args=(port, [m], probe), kwargs={"within": 1.0}, daemon=True)
        for m in messages
    ]
    for attacker in attackers:
        attacker.start()
    drives = []
    while any(a.is_alive() for a in attackers) or not drives:
        drives.append(drive(port))
    for attacker in attackers:
        attacker.join(timeout=10)
    assert all(steering == baseline for steering in drives), drives


@pytest.mark.parametrize("mode", MODES)
def test_oversize_message_closes_only_that_connection(servers, baseline, mode):
    with Wire(servers[mode]) as wire:
        try:
            wire.send(telemetry("A" * (5 * MB)))
        except Closed:
            pass  # cut off while sending
        closed = wire.closed_within(ANSWER_WITHIN)
    assert (closed, drive(servers[mode])) == (True, baseline)


def peak_memory(attack: Callable[[], object]) -> int:
    """The most memory Python held (traced allocations, every thread) while `attack` ran."""
    gc.collect()
    tracemalloc.start()
    try:
        attack()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@functools.cache
def deflated_telemetry(size: int) -> bytes:
    """A telemetry message of `size` bytes as one permessage-deflate frame (128 MB: 130 KB)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunks = [deflate.compress(b'42["telemetry","')]
    chunks += [deflate.compress(b"A" * MB) for _ in range(size // MB)]
    payload = b"".join(chunks) + deflate.compress(b'"]') + deflate.flush(zlib.Z_SYNC_FLUSH)
    return ws_frame(payload[:-4], rsv=0x40)


def deflate_bomb(port: int) -> Callable[[], None]:
    """A 128 MB telemetry message compressed into one 130 KB WebSocket frame."""
    frame = deflated_telemetry(128 * MB)
    wire = Wire(port, deflate=True)

    def attack() -> None:
        with wire:
            if wire.deflate:  # a server that declines compression is not open to this
                wire.send_bytes(frame)
                wire.closed_within(ANSWER_WITHIN)

    return attack


def endless_attachments(port: int, probe: dict) -> Callable[[], None]:
    """A binary event announcing 100 attachments of 1 MB each, sent compressed where possible."""
    wire = Wire(port, deflate=True)
    placeholders = json.dumps(["telemetry", [{"_placeholder": True, "num": i} for i in range(100)]])
    attachment = ws_frame(bytes(MB), opcode=2, compress=wire.deflate)

    def attack() -> None:
        with wire:
            try:
                wire.send(telemetry())
                wire.send("45100-" + placeholders)
                for _ in range(100):
                    wire.send_bytes(attachment)
                wire.send(PROBE)
                deadline = time.monotonic() + ANSWER_WITHIN
                while reply_event(wire.packet(deadline)) != ("/", "steer", probe):
                    pass
            except (Closed, TimeoutError):
                pass

    return attack


MEMORY_ATTACKS = {  # name -> (modes, attack builder (port, probe) -> attack)
    "a 600-byte JPEG declaring 8000x8000 pixels": (
        ("threading",),
        lambda port, probe: lambda: exchange(port, [telemetry(b64(jpeg_declaring(8000, 8000)))], probe),
    ),
    "a telemetry just within the message limit": (
        MODES,
        lambda port, probe: lambda: exchange(port, [telemetry("A" * NEAR_LIMIT)], probe),
    ),
    "a compressed frame inflating to 128 MB": (MODES, lambda port, probe: deflate_bomb(port)),
    "a binary event with 100 attachments of 1 MB": (("threading",), endless_attachments),
}


@pytest.mark.parametrize(
    "mode, case",
    [p for p in cases(MEMORY_ATTACKS, *MODES) if p.values[0] in MEMORY_ATTACKS[p.values[1]][0]],
)
def test_memory_per_connection_is_bounded(servers, probe_reply, mode, case):
    attack = MEMORY_ATTACKS[case][1](servers[mode], probe_reply(mode))
    peak = peak_memory(attack)
    assert peak <= MEMORY_PER_CONNECTION, f"{peak / MB:.0f} MB"


@pytest.mark.parametrize("mode", MODES)
def test_big_messages_do_not_starve_another_client(servers, baseline, mode):
    # A driving simulator, then a client sending telemetry just within the limit as fast as
    # it can: every frame of the simulator is still answered within the bound.
    port, stop, flooding = servers[mode], threading.Event(), threading.Event()
    message = ws_frame(telemetry("A" * NEAR_LIMIT).encode())

    def flood() -> None:
        with Wire(port) as wire:
            wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # no backlog when it stops
            try:
                while not stop.is_set():
                    wire.send_bytes(message)
                    flooding.set()
            except Closed:
                pass

    steering = []
    with Wire(port) as sim:
        flooder = threading.Thread(target=flood, daemon=True)
        try:
            for i, jpeg in enumerate(JPEGS):
                sim.send(telemetry(b64(jpeg)))
                deadline = time.monotonic() + ANSWER_WITHIN
                while (event := reply_event(sim.packet(deadline))) is None:
                    pass
                steering.append(float(event[2]["steering_angle"]))
                if i == 0:  # connected and driving: now the flood
                    flooder.start()
                    flooding.wait(timeout=ANSWER_WITHIN)
        except (Closed, TimeoutError) as e:
            steering.append(f"{type(e).__name__}: {e}")
        finally:
            stop.set()
            if flooder.is_alive():
                flooder.join(timeout=30)
    assert steering == baseline[1:]


# --- 1 and 4 over HTTP: requests answered at once -------------------------------------------------


def http_request(port: int, method: str, path: str, headers: str = "", body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode() + body


def polling_session(port: int) -> str:
    """The sid of a new long-polling session (its handshake GET)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{POLLING_PATH}", timeout=ANSWER_WITHIN) as response:
        return json.loads(response.read()[1:])["sid"]


def polling_post(
    port: int, body: bytes, length: str | None = None, headers: str = "", sid: str | None = None
) -> bytes:
    """A long-polling POST (on a new session unless `sid`); `length` overrides the Content-Length."""
    length = str(len(body)) if length is None else length
    path = f"{POLLING_PATH}&sid={sid or polling_session(port)}"
    return http_request(
        port, "POST", path, f"Content-Type: text/plain\r\nContent-Length: {length}\r\n{headers}", body
    )


def upgrade(port: int, headers: str) -> bytes:
    return http_request(port, "GET", WS_PATH, "Upgrade: websocket\r\nConnection: Upgrade\r\n" + headers)


HTTP = {  # name -> request builder; every request says Connection: close
    "a WebSocket upgrade without a key": lambda port: upgrade(port, "Sec-WebSocket-Version: 13\r\n"),
    "a WebSocket upgrade of version 7": lambda port: upgrade(
        port, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n"
    ),
    "a polling POST whose body is not UTF-8": lambda port: polling_post(port, b"4\xff\xfe2"),
    "a polling POST of an event with no payload": lambda port: polling_post(port, b"42"),
    "a polling POST of a PING": lambda port: polling_post(port, b"2"),
    "a polling POST with Content-Length abc": lambda port: polling_post(port, b"", length="abc"),
    "a polling POST with a chunked body": lambda port: polling_post(
        port, b"2\r\n42\r\n0\r\n\r\n", length="", headers="Transfer-Encoding: chunked\r\n"
    ).replace(b"Content-Length: \r\n", b""),
    "a polling POST without a session": lambda port: http_request(
        port, "POST", POLLING_PATH, "Content-Length: 2\r\n", b"42"
    ),
    "a polling GET of an unknown session": lambda port: http_request(port, "GET", POLLING_PATH + "&sid=x"),
    "an Engine.IO 3 handshake": lambda port: http_request(
        port, "GET", POLLING_PATH.replace("EIO=4", "EIO=3")
    ),
    "an unknown method": lambda port: http_request(port, "DELETE", POLLING_PATH),
}
POST_NOT_UTF8 = (
    "engineio logs 'post request handler error' with a traceback: UnicodeDecodeError from "
    "body.decode('utf-8') in engineio.socket.Socket.handle_post_request (and answers 200 OK)"
)


def complete(response: bytes) -> bool:
    """Whether `response` holds a whole HTTP response (its Content-Length, or the last chunk)."""
    head, blank, body = response.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(blank) and (len(body) >= int(length[1]) if length else body.endswith(b"0\r\n\r\n"))


def http_body(response: bytes) -> bytes:
    """The body of an HTTP response, de-chunked if need be."""
    head, _, body = response.partition(b"\r\n\r\n")
    if not re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        return body
    chunks = b""
    while (size := body.split(b"\r\n", 1)[0]) and int(size, 16):
        start = len(size) + 2
        chunks, body = chunks + body[start : start + int(size, 16)], body[start + int(size, 16) + 2 :]
    return chunks


def http_exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """(response, answered): what the server sent until it closed, and whether it answered or closed
    within ANSWER_WITHIN. werkzeug closes the connection after it has logged what went wrong, so its
    responses are read to the end; eventlet may keep the connection: its stop at a whole response."""
    head, body = request.split(b"\r\n\r\n", 1)
    request = head + b"\r\nConnection: close\r\n\r\n" + body
    response = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + ANSWER_WITHIN
        try:
            while data := sock.recv(1 << 16):
                response += data
                if complete(response) and not re.search(rb"(?im)^server: werkzeug", response):
                    break
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            return response, bool(response)
        except OSError:
            pass
    return response, True


def polling_exchange(port: int, messages: list[str], probe: dict) -> Exchange:
    """`exchange` over long-polling: one POST of `messages` and PROBE on a new session, and GET polls
    until the probe's reply, a CLOSE, a refused poll, or ANSWER_WITHIN."""
    sid, result = polling_session(port), Exchange()
    body = "\x1e".join([*messages, PROBE]).encode()
    post = threading.Thread(target=http_exchange, args=(port, polling_post(port, body, sid=sid)), daemon=True)
    post.start()
    deadline = time.monotonic() + ANSWER_WITHIN
    while time.monotonic() < deadline and not result.probe_answered and result.closed is None:
        response, _ = http_exchange(port, http_request(port, "GET", f"{POLLING_PATH}&sid={sid}"))
        if response and not response.startswith(b"HTTP/1.1 200"):
            result.closed = f"poll answered {response[:40]!r}"
        for packet in filter(None, http_body(response).decode("utf-8", "replace").split("\x1e")):
            if packet == "1":  # Engine.IO CLOSE
                result.closed = "CLOSE packet"
            elif result.add(packet, probe):
                break
    post.join(timeout=GRACE)  # a POST left hanging is test_bad_polling_post_is_answered_or_closed's
    return result


POLLING = {  # Socket.IO and Engine.IO packets sent by long-polling (the same rules, another transport)
    "an event with no payload": "42",
    "an event named by a number": "42[1]",
    "an event of another name": '42["drive",{}]',
    "telemetry for another namespace": "42/x," + telemetry()[2:],
    "an ack": "431[]",
    "a binary event whose attachment never comes": "451-" + PLACEHOLDER,
    "a Socket.IO type 7": "47",
    "an Engine.IO NOOP": "6",
    "an Engine.IO UPGRADE": "5",
    "a binary message": "bAAE=",
    "manual telemetry": '42["telemetry",null]',
    "telemetry of a wrong-size image": telemetry(WRONG_IMAGES["a 100x50 JPEG"]),
}


@pytest.mark.parametrize("mode, case", cases(POLLING, *MODES))
def test_polling_packet_is_answered_or_closed(servers, probe_reply, mode, case):
    result = polling_exchange(servers[mode], [POLLING[case]], probe_reply(mode))
    assert result.answered_or_closed(1), result


@pytest.mark.parametrize("mode, case", cases(HTTP, *MODES))
def test_http_request_is_answered_or_closed(servers, mode, case):
    response, answered = http_exchange(servers[mode], HTTP[case](servers[mode]))
    assert answered, response[:200]


@pytest.mark.parametrize("mode, case", cases(HTTP, *MODES))
def test_http_request_prints_no_traceback(servers, caplog, capfd, mode, case):
    response, _ = http_exchange(servers[mode], HTTP[case](servers[mode]))
    assert tracebacks(caplog, capfd, response) == []


# --- 2, 3 and 4: slow attacks, started together by the first test below, judged after it ----------


HALF_SENT = {  # each a request the client never finishes
    "a connection that sends nothing": lambda port: b"",
    "a request line and nothing more": lambda port: b"GET / HTTP/1.1\r\n",
    "headers never finished": lambda port: http_request(port, "GET", POLLING_PATH)[:-2],
    "a WebSocket upgrade never finished": lambda port: http_request(
        port, "GET", WS_PATH, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    )[:-2],
    "a polling POST whose body never comes": lambda port: polling_post(port, b"42", length="1000"),
    "an idle connection after one request": lambda port: http_request(port, "GET", "/"),
}

BAD_POSTS = {  # long-polling POSTs on a valid session: (the request, bytes sent after it)
    "announcing 20 MB, sending none of it": lambda port: (polling_post(port, b"", length="20000000"), b""),
    "announcing 20 MB and sending it": lambda port: (
        polling_post(port, b"", length="20000000"),
        bytes(20 * 10**6),
    ),
    "with a negative Content-Length": lambda port: (polling_post(port, b"", length="-1"), b""),
    # no GET poll on these sessions: a server that waits for one to take its CLOSE never answers
    "of an ACK": lambda port: (polling_post(port, b"431[]"), b""),
    "of a binary message": lambda port: (polling_post(port, b"bAAE="), b""),
}


def frame_announcing(announced: int, sent: int) -> bytes:
    """The start of a text frame announcing `announced` bytes, with `sent` of them."""
    frame = ws_frame(b"A" * sent)  # 127 in the second byte: a 64-bit length follows
    return frame[:2] + struct.pack("!Q", announced) + frame[10:]


OVERSIZE = {  # WebSocket messages past the 1 MiB limit, never finished: (modes, frames to send)
    "one frame announcing 64 MB, 8 MB of it sent": (MODES, lambda: [frame_announcing(64 * MB, 8 * MB)]),
    # not on eventlet: it unmasks in Python at about 2 us a byte, and would block its hub for 16 s
    "8 MB in 1 MB fragments, never finished": (
        ("threading",),
        lambda: [ws_frame(b"A" * MB, opcode=1 if i == 0 else 0, fin=False) for i in range(8)],
    ),
}


class Held:
    """A connection a slow attack leaves open; a thread notes when the server answers and closes."""

    def __init__(self, port: int, request: bytes = b"", body: bytes = b"", frames: list[bytes] = ()):
        self.answered_at: float | None = None
        self.closed_at: float | None = None
        self.since: float | None = None  # when the attack's decisive bytes had gone out
        self.closed = threading.Event()
        self.released = False
        if frames:
            self.wire = Wire(port)
            self.sock = self.wire.sock
        else:
            self.wire, self.sock = None, socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
            self.sock.sendall(request)
            self.since = time.monotonic()
        self.sock.settimeout(None)
        threading.Thread(target=self._watch, daemon=True).start()
        if frames or body:
            threading.Thread(target=self._send, args=(frames or [body],), daemon=True).start()

    def _send(self, chunks: list[bytes]) -> None:
        try:
            for chunk in chunks:
                self.sock.sendall(chunk)
        except OSError:
            pass  # cut off: what the server should do
        if self.wire is not None:
            self.since = time.monotonic()

    def _watch(self) -> None:
        try:
            if self.wire is not None:
                while True:
                    self.wire.packet(time.monotonic() + 3600)
            while self.sock.recv(1 << 16):
                self.answered_at = self.answered_at or time.monotonic()
        except (Closed, OSError):
            pass
        if not self.released:
            self.closed_at = time.monotonic()
        self.closed.set()

    def closed_within(self, seconds: float) -> bool:
        return self._within(seconds, lambda: self.closed_at)

    def answered_within(self, seconds: float) -> bool:
        return self._within(seconds, lambda: self.answered_at or self.closed_at)

    def _within(self, seconds: float, when: Callable[[], float | None]) -> bool:
        while self.since is None and not self.closed.is_set():  # still sending
            time.sleep(0.05)
        since = self.since or time.monotonic()
        self.closed.wait(max(since + seconds - time.monotonic(), 0))
        if when() is None:
            time.sleep(max(since + seconds - time.monotonic(), 0))  # a response without a close
        moment = when()
        return moment is not None and moment - since <= seconds

    def __repr__(self) -> str:
        def at(moment: float | None) -> str:
            return "not yet" if moment is None or self.since is None else f"after {moment - self.since:.1f} s"

        return f"<answered {at(self.answered_at)}, closed {at(self.closed_at)}>"

    def release(self) -> None:
        self.released = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Records(logging.Handler):
    """Every log record from its installation on, whatever test is running."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def held(servers):
    """The slow attacks on both servers, started at once: {(mode, kind): [Held, ...]}. Fifty
    half-sent requests per server, cycling through HALF_SENT, plus each big POST and oversize message.
    What the server logs meanwhile is in held["log"]."""
    log = Records()
    logging.getLogger().addHandler(log)
    attacks: dict = {"log": log}
    for mode in MODES:
        port = servers[mode]
        for i in range(50):
            kind = list(HALF_SENT)[i % len(HALF_SENT)]
            attacks.setdefault((mode, kind), []).append(Held(port, HALF_SENT[kind](port)))
        for kind, post in BAD_POSTS.items():
            request, body = post(port)
            attacks[mode, kind] = [Held(port, request, body=body)]
        for kind, (modes, frames) in OVERSIZE.items():
            if mode in modes:
                attacks[mode, kind] = [Held(port, frames=frames())]
    yield attacks
    logging.getLogger().removeHandler(log)
    for key, connections in attacks.items():
        if key != "log":
            for connection in connections:
                connection.release()


@pytest.mark.parametrize("mode", MODES)
def test_simulator_drives_beside_50_half_sent_requests(servers, held, baseline, mode):
    assert drive(servers[mode]) == baseline


@pytest.mark.parametrize("mode, kind", cases(HALF_SENT, *MODES))
def test_half_sent_request_is_dropped(held, mode, kind):
    connections = held[mode, kind]
    still_open = [c for c in connections if not c.closed_within(DROP_WITHIN)]
    assert not still_open, f"{len(still_open)} of {len(connections)} still open after {DROP_WITHIN} s"


@pytest.mark.parametrize("mode, kind", cases(BAD_POSTS, *MODES))
def test_bad_polling_post_is_answered_or_closed(held, mode, kind):
    (connection,) = held[mode, kind]
    assert connection.answered_within(ANSWER_WITHIN), connection


@pytest.mark.parametrize(
    "mode, kind",
    [p for p in cases(OVERSIZE, *MODES) if p.values[0] in OVERSIZE[p.values[1]][0]],
)
def test_oversize_websocket_message_is_cut_off(held, mode, kind):
    (connection,) = held[mode, kind]
    assert connection.closed_within(ANSWER_WITHIN), connection


def test_slow_attacks_print_no_traceback(held):
    for key, connections in held.items():  # every deadline passed: whatever the server does, it did
        if key != "log":
            for connection in connections:
                connection.closed_within(DROP_WITHIN if key[1] in HALF_SENT else ANSWER_WITHIN)
    time.sleep(0.5)
    assert sorted(set(logged_tracebacks(held["log"].records))) == []


@pytest.mark.parametrize("mode", MODES)
def test_server_still_serves_after_every_attack(servers, baseline, mode):
    replies: queue.Queue = queue.Queue()
    modern = socketio.Client()
    modern.on("steer", replies.put)
    modern.connect(f"http://127.0.0.1:{servers[mode]}", transports=["polling"], wait_timeout=ANSWER_WITHIN)
    try:
        modern.emit("telemetry", VALID)
        reply = replies.get(timeout=ANSWER_WITHIN)
    finally:
        modern.disconnect()
    assert (drive(servers[mode]), isinstance(reply["steering_angle"], str)) == (baseline, True)


# --- 5. drive.py itself --------------------------------------------------------------------------


LOG_LINE = re.compile(r"\d\d:\d\d:\d\d ")  # drive.py's log format: every line starts with the time


class DrivePy:
    """`python drive.py MODEL --port 0 ...` as a process; its output collected line by line."""

    def __init__(self, model: Path, *args: str):
        command = [sys.executable, str(ROOT / "drive.py"), str(model), "--port", "0", *args]
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.port = 0
        for line in self.proc.stdout:
            self.lines.append(line)
            if match := re.search(r"on http://127\.0\.0\.1:(\d+) ", line):
                self.port = int(match.group(1))
                break
        assert self.port, "".join(self.lines)
        self.served_from = len(self.lines)
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def stop(self) -> str:
        """SIGTERM, as a service manager stops it; everything it printed while serving."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(timeout=10)
        return "".join(self.lines[self.served_from :])


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """The tiny model the module's servers run, as a .keras file (the same weights: the same steering)."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model().save(path)
    return path


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", MODES)
def test_drive_py_logs_a_stalled_client_in_one_line_and_drives_on(keras_file, baseline, mode):
    server = DrivePy(keras_file, "--backend", "keras", "--async-mode", mode, "--quiet")
    try:
        stalled = [Held(server.port, HALF_SENT[kind](server.port)) for kind in HALF_SENT for _ in range(3)]
        beside = drive(server.port)
        dropped = [c for c in stalled if c.closed_within(DROP_WITHIN)]
        after = drive(server.port)
    finally:
        output = server.stop()
        for connection in stalled:
            connection.release()
    assert (beside, after, len(dropped)) == (baseline, baseline, len(stalled)), output
    assert "Traceback" not in output, output
    assert all(LOG_LINE.match(line) for line in output.splitlines()), output  # log lines, no dumps
    assert len(re.findall(r"HTTP client 127\.0\.0\.1:\d+: ", output)) <= len(stalled), output


def with_record(model: Path, name: str, record: str) -> Path:
    """A copy of the .keras file `model` that carries `record` as its driving.json."""
    path = model.with_name(name)
    path.write_bytes(model.read_bytes())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("driving.json", record)
    return path


CRAFTED_RECORDS = {  # name -> (record, what the one line says)
    "a record inflating past 256 KiB": ('{"model": "' + " " * 400_000 + '"}', "inflates to 400,013 bytes"),
    "a record nested 20,000 deep": ("[" * 20_000 + "]" * 20_000, "nested more than 64 levels deep"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CRAFTED_RECORDS)
def test_drive_py_refuses_a_model_with_a_crafted_record_in_one_line(keras_file, case):
    record, says = CRAFTED_RECORDS[case]
    model = with_record(keras_file, "crafted.keras", record)
    assert model.stat().st_size < keras_file.stat().st_size + 4096  # small on disk; large inflated
    result = subprocess.run(
        [sys.executable, str(ROOT / "drive.py"), str(model), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert result.stderr.startswith(f"drive.py: {model}: ") and says in result.stderr, result.stderr
