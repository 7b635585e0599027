"""The multi-worker handshake on 127.0.0.1, against peers written here that speak its protocol:
greetings crossing at the same moment, an answer lost on its way, a port that is not a worker's."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from driving.train import cluster
from driving.train.cluster import GREETING, Cluster
from tests.conftest import free_ports


def two_workers() -> tuple[Cluster, str]:
    """Worker 0 (the one under test) and the address of worker 1 (played by the test)."""
    me, peer = (f"127.0.0.1:{port}" for port in free_ports(2))
    return Cluster({"worker": [me, peer]}, "worker", 0), peer


class Peer:
    """Worker 1, by hand: listens on its address and answers each greeting as `answer(line)` says
    (None: hold the connection open without a word, as a busy worker would)."""

    def __init__(self, address: str, answer) -> None:
        host, port = cluster.host_port(address)
        self.server = socket.create_server((host, port))
        self.server.settimeout(0.1)
        self.answer = answer
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.server.accept()
            except TimeoutError:
                continue
            try:
                sock.settimeout(2)
                reply = self.answer(sock.recv(256).decode(errors="replace").strip())
                if reply is None:
                    self.held.append(sock)
                    continue
                sock.sendall(reply)
            except OSError:
                pass  # a greeter that gave up: it greets again
            sock.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.held:
            sock.close()
        self.server.close()


def greet(me: Cluster, sender: str, timeout: float) -> str:
    """Greet worker `me` as `sender`; its answer (empty when none came within `timeout`)."""
    host, port = cluster.host_port(me.address)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"{GREETING} {me.token()} {sender}\n".encode())
        try:
            return sock.recv(256).decode().strip()
        except TimeoutError:
            return ""


def waiting(me: Cluster, timeout: float) -> tuple[threading.Thread, dict]:
    """wait_for_peers(me) in a thread; the dict gets its exception, or None once it returns."""
    outcome: dict = {}

    def wait() -> None:
        try:
            cluster.wait_for_peers(me, timeout, say=lambda line: None)
            outcome["error"] = None
        except cluster.WorkersMissing as e:
            outcome["error"] = e

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_listening(address: str) -> None:
    host, port = cluster.host_port(address)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {address}")


def test_a_greeting_is_answered_while_the_worker_waits_on_its_own():
    """Both workers greet at once and each peer is slow to answer: the greeting to us must be
    answered at once all the same, or each side times out waiting for the other."""
    me, peer_address = two_workers()
    answered = threading.Event()

    def peer_answer(line: str) -> bytes | None:
        # Silent (busy greeting us) until we have answered its greeting; then a worker's answer.
        return f"{GREETING} {me.token()} {peer_address}\n".encode() if answered.is_set() else None

    peer = Peer(peer_address, peer_answer)
    try:
        thread, outcome = waiting(me, timeout=30)
        wait_until_listening(me.address)
        time.sleep(0.3)  # our first greeting is now held open by the silent peer
        assert greet(me, peer_address, timeout=1.0) == f"{GREETING} {me.token()} {me.address}"
        answered.set()
        thread.join(timeout=20)
        assert outcome == {"error": None}
    finally:
        peer.close()


def test_a_peer_that_greeted_and_went_on_is_not_waited_for():
    """Our greeting's answer was lost; the peer heard us and went on, and its port now answers as
    TensorFlow's server would, not as a worker."""
    me, peer_address = two_workers()
    peer = Peer(peer_address, lambda line: None)  # busy: our greetings get no answer
    try:
        thread, outcome = waiting(me, timeout=30)
        wait_until_listening(me.address)
        assert greet(me, peer_address, timeout=5.0).endswith(me.address)
    finally:
        peer.close()
    peer = Peer(peer_address, lambda line: b"\x00\x00\x12\x04 not a worker's answer")
    try:
        thread.join(timeout=20)
        assert outcome == {"error": None}
    finally:
        peer.close()


def test_a_port_that_answers_not_as_a_worker_is_waited_for_and_named():
    """A peer that never greeted us, at a port something else answers on: a wrong --workers list."""
    me, peer_address = two_workers()
    peer = Peer(peer_address, lambda line: b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        with pytest.raises(cluster.WorkersMissing) as missing:
            cluster.wait_for_peers(me, 2, say=lambda line: None)
    finally:
        peer.close()
    message = str(missing.value)
    assert f"{peer_address} ({cluster.NOT_A_WORKER})" in message and "\n" not in message


def test_three_workers_started_together_all_go_on():
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    workers = [Cluster({"worker": addresses}, "worker", i) for i in range(3)]
    runs = [waiting(worker, timeout=30) for worker in workers]
    for thread, outcome in runs:
        thread.join(timeout=40)
        assert outcome == {"error": None}


def test_the_answering_thread_ends_quietly_when_its_listener_was_closed_under_it():
    """A SIGTERM can end the wait (closing its listener) while the answering thread starts."""
    me, _ = two_workers()
    host, port = cluster.host_port(me.address)
    listener = socket.create_server((host, port))
    listener.close()
    cluster._answer(listener, me, set(), threading.Event())  # returns: no OSError, no traceback
