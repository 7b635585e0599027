"""The simulator's client against servers that never finish: every wait ends, in one line naming
the address and what did not arrive. Real sockets on 127.0.0.1 and, for `sim drive`, real processes.

Each hostile server is a listener whose connections each run one behaviour in a thread until the
test ends (the fixture stops them all). No timings are asserted: a command that did not end would
be killed by the subprocess bound and fail the test, while the hostile server would have held it for
ever.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from driving.sim.__main__ import build_parser
from driving.sim.client import MAX_MESSAGE_BYTES, SimulatorClient

ROOT = Path(__file__).resolve().parents[1]
OPEN = '0{"sid":"hostile","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
JPEG = b"\xff\xd8\xff" + bytes(1000)  # what is sent does not matter: these servers never drive


class Hostile:
    """A TCP listener on 127.0.0.1; each connection runs `behaviour(conn, stop)` in a thread."""

    def __init__(self, behaviour: Callable[[socket.socket, threading.Event], None], backlog: int = 8):
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.server.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"ws://{self.address}/socket.io/?EIO=4&transport=websocket"
        self.behaviour, self.conns = behaviour, []
        self.server.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn, self.stop)
        except OSError:
            pass  # the client went away: what these servers wait for

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    made: list[Hostile] = []

    def make(behaviour, **kw) -> Hostile:
        made.append(Hostile(behaviour, **kw))
        return made[-1]

    yield make
    for server in made:
        server.close()


# --- behaviours ---------------------------------------------------------------------------------
def hold(conn: socket.socket, stop: threading.Event) -> None:
    """Read and drop whatever comes, answer nothing, until the test ends or the client leaves."""
    conn.settimeout(0.1)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


def upgrade_reply(conn: socket.socket) -> tuple[WSConnection, bytes]:
    """Read the client's upgrade request; return the server's side and its (unsent) 101 reply."""
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        ws.receive_data(conn.recv(65536))
        if any(isinstance(event, Request) for event in ws.events()):
            return ws, ws.send(AcceptConnection())


def upgrade(conn: socket.socket) -> WSConnection:
    ws, reply = upgrade_reply(conn)
    conn.sendall(reply)
    return ws


def silent(conn, stop):  # accepts TCP, never answers the WebSocket upgrade
    hold(conn, stop)


def trickle(conn, stop):  # a valid upgrade reply, one byte every 0.2 s: some 30 s in all
    _, reply = upgrade_reply(conn)
    for i in range(len(reply)):
        if stop.wait(0.2):
            return
        conn.sendall(reply[i : i + 1])
    hold(conn, stop)


def no_open(conn, stop):  # upgrades, then never sends the Engine.IO OPEN packet
    upgrade(conn)
    hold(conn, stop)


def no_reply(conn, stop):  # the whole handshake, then never a reply to telemetry
    conn.sendall(upgrade(conn).send(TextMessage(OPEN)))
    hold(conn, stop)


def chatter(conn, stop):  # the handshake, then PINGs and other events for ever, never a steer
    ws = upgrade(conn)
    conn.sendall(ws.send(TextMessage(OPEN)))
    conn.settimeout(0.05)
    while not stop.is_set():
        conn.sendall(ws.send(TextMessage("2")) + ws.send(TextMessage('42["news",{}]')))
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            pass


def garbage(conn, stop):  # not HTTP at all
    upgrade_reply(conn)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    hold(conn, stop)


def not_found(conn, stop):  # HTTP, but no upgrade
    upgrade_reply(conn)
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    hold(conn, stop)


def hang_up(conn, stop):  # closes at once
    conn.close()


def accept_and_close(conn, stop):  # the 101 reply and a close frame in one write
    ws, reply = upgrade_reply(conn)
    conn.sendall(reply + ws.send(CloseConnection(code=1000)))
    hold(conn, stop)


def huge(conn, stop):  # the handshake, then one message larger than any reply may be
    ws = upgrade(conn)
    conn.sendall(ws.send(TextMessage(OPEN)) + ws.send(TextMessage("4" + "x" * (MAX_MESSAGE_BYTES + 1))))
    hold(conn, stop)


def deaf(conn, stop):  # the handshake, then never reads again: what the client sends piles up
    conn.sendall(upgrade(conn).send(TextMessage(OPEN)))
    stop.wait(60)


# --- sim drive, as a process ------------------------------------------------------------------------
def sim_drive(port: int) -> subprocess.CompletedProcess:
    argv = ["drive", "--port", str(port), "--laps", "0.01", "--connect-timeout", "1", "--reply-timeout", "1"]
    return subprocess.run(
        [sys.executable, "-m", "driving.sim", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line on stderr (the rest is the progress bar); no traceback."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.mark.parametrize(
    "behaviour, what",
    [
        (silent, "{address}: accepted the TCP connection but sent no WebSocket upgrade reply within 1 s"),
        (trickle, "{address}: accepted the TCP connection but sent no WebSocket upgrade reply within 1 s"),
        (no_open, "{url}: no Engine.IO OPEN packet within 1 s"),
        (no_reply, "{url}: no steer reply within 1 s (a server that waits for a namespace CONNECT"),
        (chatter, "{url}: no steer reply within 1 s"),  # chatter does not restart the wait
    ],
)
def test_sim_drive_ends_when_a_server_never_finishes(hostile, behaviour, what):
    server = hostile(behaviour)
    line = error_line(sim_drive(server.port))
    assert line.startswith("error: " + what.format(address=server.address, url=server.url)), line


def test_sim_drive_ends_when_the_tcp_connection_is_never_accepted(hostile):
    """A listener whose accept queue is full: the kernel drops the SYN, the connect hangs."""
    server = hostile(silent, backlog=0)
    server.stop.set()  # accept nothing more
    time.sleep(0.3)  # let the accepting thread see it
    filled = []
    for _ in range(10):  # bounded: fill the queue until a connect hangs
        probe = socket.socket()
        probe.settimeout(0.5)
        filled.append(probe)
        try:
            probe.connect(("127.0.0.1", server.port))
        except TimeoutError:
            break
    else:
        pytest.skip("this kernel accepts every connection: no way to make a connect hang here")
    try:
        line = error_line(sim_drive(server.port))
    finally:
        for probe in filled:
            probe.close()
    assert line == f"error: {server.address}: no TCP connection within 1 s"


# --- the client itself ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "behaviour, error, message",
    [
        (garbage, ConnectionError, "{address}: answered the WebSocket upgrade with something that is not an"),
        (not_found, ConnectionError, r"{address}: refused the WebSocket upgrade \(HTTP 404\)"),
        (hang_up, ConnectionError, "{address}: (closed the connection|connection lost)"),
        (huge, ConnectionError, "{url}: sent a message of more than 1,048,576 bytes; the connection"),
        # (the close frame usually comes in the reply's read; when it does not, the stream sees it)
        (
            accept_and_close,
            ConnectionError,
            "({address}: closed the WebSocket as soon as it accepted it"
            "|{url}: connection closed while (sending|waiting for the Engine.IO OPEN packet))",
        ),
    ],
)
def test_servers_that_answer_nonsense_end_in_one_line(hostile, behaviour, error, message):
    server = hostile(behaviour)
    with pytest.raises(error) as err, SimulatorClient(port=server.port, timeout=1, connect_timeout=1) as sim:
        sim.connect(JPEG)
    pattern = message.format(address=server.address, url=server.url).replace("?", r"\?")
    assert re.match(pattern, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


def test_a_message_too_large_ends_every_connection_the_same_way(hostile):
    # The receiving thread closes the socket on a message too large while connect() goes on: once
    # in about six connections, connect() used to meet the closed socket and raise a bare OSError.
    server = hostile(huge)
    for _ in range(40):
        client = SimulatorClient(port=server.port, timeout=1, connect_timeout=1)
        with pytest.raises(ConnectionError, match="sent a message of more than"), client as sim:
            sim.connect(JPEG)


def test_a_server_that_reads_nothing_ends_the_sends(hostile):
    """Once the server reads nothing more, the socket's buffers fill and a send would wait for
    ever; it ends after the reply timeout instead. Bounded: at most 400 MB are offered."""
    server = hostile(deaf)
    sim = SimulatorClient(port=server.port, timeout=1, connect_timeout=1)
    with pytest.raises(TimeoutError, match="no steer reply"):
        sim.connect(JPEG)  # the handshake completes; the server never replies
    image = bytes(1 << 20)
    with pytest.raises(TimeoutError, match=re.escape(f"{server.url}: the server took no data for 1 s")):
        for _ in range(400):
            sim.send_telemetry(0.0, 0.0, 0.0, image)
    sim.close()


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "5"])
def test_timeouts_must_be_positive_numbers(value):
    for name in ("timeout", "connect_timeout"):
        with pytest.raises(ValueError, match=name):
            SimulatorClient(**{name: value})


@pytest.mark.parametrize("option", ["--connect-timeout", "--reply-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9", "soon"])
def test_timeout_options_are_checked_by_argparse(capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["drive", option, value])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err.strip().splitlines()[-1]
    if option == "--reply-timeout":  # eval drives through a socket too
        with pytest.raises(SystemExit):
            build_parser().parse_args(["eval", "m.h5", option, value])
