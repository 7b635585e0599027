"""The drive server against a client that behaves exactly like the simulator's, a modern
socketio.Client, and every bad input the issue names. Real servers on 127.0.0.1, real JPEGs."""

from __future__ import annotations

import base64
import contextlib
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
import tomllib
import urllib.request
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import socketio

from driving.config import TARGET_SPEED_MPH
from driving.data.reader import load_recordings
from driving.drive import parse_args
from driving.drive_server import DriveServer, ServeConfig, Stats
from driving.pilot import MAX_IMAGE_CHARS, Pilot, PilotConfig, SpeedController
from driving.preprocess import encode_jpeg
from driving.runtime import Predictor
from driving.sim.client import ProtocolError, SimulatorClient, parse_steer
from driving.socketio_compat import INTERNALS, MAX_MESSAGE_BYTES
from tests.conftest import road_frame, wait_until
from tests.test_runtime import tiny_model

ROOT = Path(__file__).resolve().parent.parent
FRAMES = [road_frame(offset, np.random.default_rng(i)) for i, offset in enumerate((-0.7, 0.0, 0.5, 0.9))]
JPEGS = [encode_jpeg(f) for f in FRAMES]


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_keras(tiny_model())


@pytest.fixture(scope="module")
def expected(predictor):
    """The steering string each test frame must get: the decoded JPEG through the predictor."""
    from driving.preprocess import decode_jpeg

    return [float(f"{predictor(decode_jpeg(j)):.4f}") for j in JPEGS]


@pytest.fixture(scope="module")
def server(predictor):
    srv = DriveServer(Pilot(predictor, PilotConfig(speed=TARGET_SPEED_MPH)), ServeConfig(status_interval=0.2))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def sim(server):
    with SimulatorClient(port=server.port, timeout=10.0) as client:
        yield client


def b64(jpeg: bytes) -> str:
    return base64.b64encode(jpeg).decode()


def telemetry(image: str, speed="5.0000", **extra) -> str:
    payload = {"steering_angle": "0.0000", "throttle": "0.0000", "speed": speed, "image": image, **extra}
    return "42" + json.dumps(["telemetry", payload])


# --- the simulator's client ----------------------------------------------------------------------


def test_simulator_client_gets_string_steer_replies(sim, expected):
    kind, command = sim.connect(JPEGS[0], speed=0.0)
    assert kind == "steer" and command["steering_angle"] == expected[0]
    assert 0 < command["throttle"] <= 1  # standing still, 9 mph wanted: accelerate
    # the client never sent `40`; the server connected it implicitly and said so with a `40{sid}`
    assert any(p.startswith('40{"sid"') for p in sim.ignored)
    for jpeg, want in zip(JPEGS, expected):
        sim.send_telemetry(0.0, 0.3, 9.0, jpeg)
        kind, command = sim.receive_reply()
        assert kind == "steer" and command["steering_angle"] == want
        assert abs(command["throttle"]) < 0.1  # at 9 mph: little throttle (the integral's share)


def test_raw_reply_values_are_strings_with_four_decimals(server):
    # Checked on the wire, below the client, because the real simulator stalls on anything else.
    import simple_websocket

    ws = simple_websocket.Client.connect(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
    try:
        ws.send(telemetry(b64(JPEGS[1])))
        packets = [ws.receive(timeout=10) for _ in range(3)]  # OPEN, `40{sid}`, the reply
    finally:
        ws.close()
    assert packets[0].startswith("0{") and packets[1].startswith('40{"sid"')
    assert re.fullmatch(
        r'42\["steer",\{"steering_angle":"-?\d\.\d{4}","throttle":"-?\d\.\d{4}"\}\]', packets[2]
    ), packets[2]


def test_two_chains_and_back_to_back_telemetry_are_answered_in_order(sim, expected):
    sim.connect(JPEGS[3])  # reads both chains' replies
    for jpeg in JPEGS:  # four in flight at once: each gets its own reply, in order
        sim.send_telemetry(0.0, 0.0, 9.0, jpeg)
    assert [sim.receive_reply()[1]["steering_angle"] for _ in JPEGS] == expected


@pytest.mark.parametrize("packet", ['42["telemetry",null]', '42["telemetry",{}]'])
def test_manual_telemetry_is_answered_with_manual(sim, packet):
    assert sim.connect(None) == ("manual", {})  # the simulator sends null while W or S is held
    sim.send_packet(packet)
    assert sim.receive_reply() == ("manual", {})


def test_pings_both_ways_are_answered(server, predictor):
    # A server that pings every 0.2 s: the client answers while it waits, and the connection lives.
    srv = DriveServer(Pilot(predictor), ServeConfig(status_interval=0))
    srv.sio.eio.ping_interval = 0.2
    srv.start()
    try:
        with SimulatorClient(port=srv.port, timeout=10.0) as client:
            client.connect(JPEGS[0])  # it also sent its own PING `2`, as the simulator does...
            for _ in range(3):
                time.sleep(0.3)
                client.send_telemetry(0.0, 0.0, 9.0, JPEGS[1])
                assert client.receive_reply()[0] == "steer"
            assert client.pings_answered >= 2
            assert "3" in client.ignored  # ...and got its PONG: the simulator's ping thread waits for it
    finally:
        srv.stop()


def test_client_fails_loudly_on_number_values():
    with pytest.raises(ProtocolError, match="not a string"):
        parse_steer({"steering_angle": 0.1, "throttle": "0.2000"})
    with pytest.raises(ProtocolError, match="not a string"):
        parse_steer({"steering_angle": "0.1000"})
    assert parse_steer({"steering_angle": "-0.0312", "throttle": "0.2000"}) == {
        "steering_angle": -0.0312,
        "throttle": 0.2,
    }


# --- modern clients ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_modern_socketio_client(server, expected, transport):
    replies: queue.Queue = queue.Queue()
    client = socketio.Client()
    client.on("steer", replies.put)
    client.on("manual", lambda data=None: replies.put(("manual", data)))
    client.connect(f"http://127.0.0.1:{server.port}", transports=[transport], wait_timeout=10)
    try:
        client.emit(
            "telemetry",
            {"steering_angle": "0.0000", "throttle": "0.0000", "speed": "3.0000", "image": b64(JPEGS[2])},
        )
        reply = replies.get(timeout=10)
        assert float(reply["steering_angle"]) == expected[2] and isinstance(reply["throttle"], str)
        client.emit("telemetry", None)
        assert replies.get(timeout=10) == ("manual", {})
    finally:
        client.disconnect()


# --- bad input: a safe command (last steering, throttle 0), one log line, and on it goes ----------


def wrong_size_jpeg() -> str:
    return b64(encode_jpeg(np.zeros((50, 100, 3), np.uint8)))


BAD = {
    "corrupt base64": (telemetry("not*base64!"), "not valid base64"),
    "truncated JPEG": (telemetry(b64(JPEGS[0][: len(JPEGS[0]) // 2])), "truncated JPEG"),
    "not a JPEG": (telemetry(b64(b"GIF89a" + bytes(100))), "not a readable JPEG"),
    "wrong image size": (telemetry(wrong_size_jpeg()), "expected a 320x160"),
    "missing image": ('42["telemetry",{"speed":"1.0"}]', "missing field 'image'"),
    "missing speed": (
        "42" + json.dumps(["telemetry", {"steering_angle": "0", "throttle": "0", "image": b64(JPEGS[0])}]),
        "missing field 'speed'",
    ),
    "non-numeric speed": (telemetry(b64(JPEGS[0]), speed="fast"), "'speed' is not a number"),
    "NaN speed": (telemetry(b64(JPEGS[0]), speed="NaN"), "'speed' is not finite"),
    "image not a string": (telemetry(12345), "'image' is int"),
    "payload a list": ('42["telemetry",[1,2]]', "payload is list"),
    "oversize image": (telemetry("A" * (MAX_IMAGE_CHARS + 4)), "exceeds the"),
    "unreadable JSON": ('42["telemetry",{"image":"abc"', "unreadable event"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_safe_command_and_one_log_line(sim, expected, caplog, case):
    packet, reason = BAD[case]
    sim.connect(JPEGS[0])
    with caplog.at_level(logging.WARNING, logger="driving.server"):
        sim.send_packet(packet)
        kind, command = sim.receive_reply()
    assert (kind, command) == ("steer", {"steering_angle": expected[0], "throttle": 0.0})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("driving.server")]
    assert len(lines) == 1 and reason in lines[0], lines
    assert "Traceback" not in caplog.text
    sim.send_telemetry(0.0, 0.0, 9.0, JPEGS[3])  # and the loop goes on
    assert sim.receive_reply()[1]["steering_angle"] == expected[3]


def test_oversize_message_closes_only_that_connection(server, sim, expected, caplog):
    sim.connect(JPEGS[0])
    with caplog.at_level(logging.WARNING, logger="driving.server"):
        sim.send_packet(telemetry("A" * MAX_MESSAGE_BYTES))
        with pytest.raises(ConnectionError):
            sim.receive_reply()
        logged = lambda: any(
            f"over the {MAX_MESSAGE_BYTES}-byte limit" in r.getMessage() for r in caplog.records
        )
        assert wait_until(logged, timeout=10)  # the server's thread notices the close after the client
    with SimulatorClient(port=server.port, timeout=10.0) as other:
        assert other.connect(JPEGS[1])[1]["steering_angle"] == expected[1]


def test_clients_that_vanish_mid_frame(server, expected):
    # 1. Half a WebSocket frame, then the socket closes.
    raw = SimulatorClient(port=server.port)
    raw.connect(JPEGS[0])
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 100_000) + os.urandom(4)  # text frame, masked
    sock = raw._ws.sock
    sock.sendall(header + os.urandom(1000))
    # The server may refuse the frame's length and close first; the client's receiving thread then
    # closes this socket itself, and shutting it down again is EBADF: either way, it is gone.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    # 2. A telemetry sent, and gone before the reply.
    gone = SimulatorClient(port=server.port)
    gone.connect(JPEGS[0])
    gone.send_telemetry(0.0, 0.0, 9.0, JPEGS[1])
    gone._ws.sock.close()
    time.sleep(0.3)
    with SimulatorClient(port=server.port, timeout=10.0) as sim:
        assert sim.connect(JPEGS[2])[1]["steering_angle"] == expected[2]


def test_several_clients_at_once(server, expected):
    errors: list[str] = []

    def drive(k: int) -> None:
        try:
            with SimulatorClient(port=server.port, timeout=20.0) as client:
                client.connect(JPEGS[k])
                for i in range(15):
                    j = (i + k) % len(JPEGS)
                    client.send_telemetry(0.0, 0.0, 9.0, JPEGS[j])
                    got = client.receive_reply()[1]["steering_angle"]
                    if got != expected[j]:
                        errors.append(f"client {k} frame {i}: {got} != {expected[j]}")
        except Exception as e:  # reported below, with the client's number
            errors.append(f"client {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def stalled_requests(port: int) -> dict[str, bytes]:
    """Requests that stop half way, each to be sent on its own connection and never finished."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling") as response:
        sid = json.loads(response.read()[1:])["sid"]
    host = f"Host: 127.0.0.1:{port}\r\n"
    return {
        "half a request line": b"GET /socket.io/?EIO=4&transport=pol",
        "headers never finished": f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n{host}".encode(),
        "a body announced and never sent": (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n{host}"
            "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n42"
        ).encode(),
        "nothing at all": b"",
    }


def test_stalled_requests_log_one_line_each_and_the_simulator_drives_on(predictor, expected, caplog, capfd):
    # werkzeug left a connection whose body read timed out open for a next request, and the read
    # of that one failed with a traceback on stderr per connection.
    srv = DriveServer(Pilot(predictor), ServeConfig(status_interval=0, http_timeout=1.0))
    srv.start()
    try:
        with caplog.at_level(logging.INFO, logger="driving.server"):
            stalled = {}
            for name, request in stalled_requests(srv.port).items():
                stalled[name] = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
                stalled[name].sendall(request)
            idle = socket.create_connection(("127.0.0.1", srv.port), timeout=15)  # keep-alive, then idle
            idle.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
            with SimulatorClient(port=srv.port, timeout=10.0) as sim:  # driving while they stall
                assert sim.connect(JPEGS[0])[1]["steering_angle"] == expected[0]
                for connection in [*stalled.values(), idle]:  # dropped by the server: read to the end
                    while connection.recv(1 << 16):
                        pass
                sim.send_telemetry(0.0, 0.0, TARGET_SPEED_MPH, JPEGS[1])  # and after they are gone
                assert sim.receive_reply()[1]["steering_angle"] == expected[1]
    finally:
        srv.stop()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (out + err)[-2000:]
    dropped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP client")]
    assert len(dropped) == len(stalled), dropped  # one line for each stalled one, none for the idle one
    assert not any(r.exc_info or "\n" in r.getMessage() for r in caplog.records)


# --- throttle, status, recording, binding, versions ----------------------------------------------


def test_speed_controller():
    pi = SpeedController(speed=TARGET_SPEED_MPH)
    assert pi.update(0.0) > 0.5  # far below: strong throttle
    assert SpeedController(speed=TARGET_SPEED_MPH).update(15.0) < 0  # too fast: brake
    assert pi.update(TARGET_SPEED_MPH) > 0  # at speed, the integral holds the throttle that got it there
    wound = SpeedController(speed=TARGET_SPEED_MPH)
    for _ in range(100_000):
        wound.update(0.0)  # stuck against a wall for an hour
    assert wound.update(30.0) < 0.5  # ...and it does not race off when freed
    turning = SpeedController(speed=20.0, turn_slowdown=1.0)
    assert turning.target(0.0) == 20.0 and turning.target(0.3) == pytest.approx(14.0)
    assert turning.target(1.0) == 10.0  # never below half


def test_fixed_throttle(predictor):
    srv = DriveServer(Pilot(predictor, PilotConfig(throttle=0.25)), ServeConfig(status_interval=0))
    srv.start()
    try:
        with SimulatorClient(port=srv.port, timeout=10.0) as client:
            assert client.connect(JPEGS[0])[1]["throttle"] == 0.25
    finally:
        srv.stop()


def test_status_line(server, caplog):
    stats = Stats()
    for ms in range(1, 101):
        stats.add(ms / 1000, steering=-0.25, speed=8.5)
    line = stats.line(interval=2.0)
    assert "50.0 frames/s" in line and "median 50.50 ms" in line and "p99 99.01 ms" in line
    assert "steering -0.2500" in line and "speed  8.50 mph" in line
    assert stats.line(1.0) is None  # nothing since: no line
    with (
        caplog.at_level(logging.INFO, logger="driving.server"),
        SimulatorClient(port=server.port, timeout=10.0) as client,
    ):
        client.connect(JPEGS[0])
        time.sleep(0.5)  # the fixture's server prints every 0.2 s
    assert any("frames/s" in r.getMessage() for r in caplog.records)


def test_record_loads_back_with_the_recordings_loader(predictor, tmp_path, expected):
    folder = tmp_path / "drive"
    srv = DriveServer(Pilot(predictor), ServeConfig(record=folder, status_interval=0))
    srv.start()
    try:
        with SimulatorClient(port=srv.port, timeout=10.0) as client:
            client.connect(JPEGS[0], speed=4.0)  # two chains: two frames recorded
            for jpeg in JPEGS:
                client.send_telemetry(0.0, 0.0, 7.5, jpeg)
                client.receive_reply()
            client.send_telemetry(0.0, 0.0, 0.0, None)  # manual: not recorded
            client.receive_reply()
            client.send_packet(BAD["truncated JPEG"][0])  # bad: not recorded
            client.receive_reply()
    finally:
        srv.stop()
    frames = load_recordings([folder], strict=True).frames
    assert len(frames) == 2 + len(JPEGS)
    assert list(frames["steering"]) == pytest.approx([expected[0]] * 2 + expected, abs=1e-4)
    assert list(frames["speed"]) == pytest.approx([4.0, 4.0] + [7.5] * len(JPEGS))
    assert (frames["left"] == "").all() and frames["center"].map(os.path.isfile).all()
    assert frames["center"].is_unique  # two chains within one millisecond still get two files


def test_binds_loopback_by_default(server):
    assert server._http.socket.getsockname()[0] == "127.0.0.1"
    config = parse_args([str(ROOT / "pyproject.toml")])  # any existing file will do for parsing
    assert config.serve.host == "127.0.0.1" and config.serve.port == 4567
    assert config.pilot.speed == TARGET_SPEED_MPH == 9.0
    assert config.pilot == PilotConfig() and config.serve == ServeConfig()
    assert config.threads is None  # LiteRT on every core
    with pytest.raises(SystemExit):
        parse_args([str(ROOT / "pyproject.toml"), "--threads", "0"])


def test_socketio_versions_are_the_pinned_ones():
    # The compatibility layer overrides python-socketio internals: an upgrade must be re-tested
    # (this file) and the pins moved together.
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in deps if d.startswith(("python-socketio==", "python-engineio==")))
    assert pins == {
        "python-socketio": version("python-socketio"),
        "python-engineio": version("python-engineio"),
    }


def test_every_patched_internal_was_checked_against_the_installed_version():
    # driving/socketio_compat.py names each internal it touches beside the version it was read
    # against: an upgrade of any of these packages must fail here until those rows are re-read.
    stale = sorted(
        f"{i.package} {version(i.package)} installed, {i.version} checked: {i.name}"
        for i in INTERNALS
        if version(i.package) != i.version
    )
    assert stale == []
    assert {i.package for i in INTERNALS} >= {
        "python-socketio",
        "python-engineio",
        "simple-websocket",
        "eventlet",
    }


# --- the command line, on eventlet ---------------------------------------------------------------


def test_drive_py_on_eventlet(tmp_path, expected):
    model_path = tmp_path / "tiny.h5"
    tiny_model().save(model_path)
    rec = tmp_path / "rec"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "drive.py"),
            str(model_path),
            "--port",
            "0",
            "--backend",
            "keras",
            "--async-mode",
            "eventlet",
            "--record",
            str(rec),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        port = None
        for line in proc.stdout:
            output.append(line)
            if match := re.search(r"on http://127\.0\.0\.1:(\d+) \(eventlet mode\)", line):
                port = int(match.group(1))
                break
        assert port, "".join(output)
        with SimulatorClient(port=port, timeout=20.0) as client:
            assert client.connect(JPEGS[1])[1]["steering_angle"] == expected[1]
            client.send_packet(BAD["corrupt base64"][0])
            assert client.receive_reply()[1] == {"steering_angle": expected[1], "throttle": 0.0}
    finally:
        proc.send_signal(signal.SIGTERM)  # stops like Ctrl-C (SIGINT may be ignored in CI shells)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        output.append(rest)
    text = "".join(output)
    assert proc.returncode == 0, text
    assert "not valid base64" in text and "Traceback" not in text
    assert len(load_recordings([rec], strict=True).frames) == 2


def test_drive_py_rejects_a_missing_model(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "drive.py"), str(tmp_path / "nope.h5")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "nope.h5: no such model file" in result.stderr


def test_status_page(server, predictor):
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as response:
        status = json.load(response)
    assert status["model"] == predictor.name and status["async_mode"] == "threading"
    assert status["frames"] == server.stats.total
