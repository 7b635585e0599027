"""The workers of a multi-worker run: who they are, which one writes, and waiting for them with an end.

The cluster comes from --workers/--worker-index or from the standard TF_CONFIG, checked field by
field: a TF_CONFIG of the wrong shape is one ConfigError naming TF_CONFIG and the field. Nothing
here imports TensorFlow, so the command line checks it before TensorFlow loads.

Why a handshake of our own before TensorFlow's: MultiWorkerMirroredStrategy's construction blocks
in C++ until every worker has registered with the chief, holding the GIL (no Python thread can
run, not even a timer) and, once its coordination service is up, catching SIGTERM itself. A worker
that never starts would leave the others waiting without a word, deaf to Ctrl-C and `kill`. So each
worker first listens on its own address and greets every other one, in Python, with bounded socket
calls: a progress line every PROGRESS_S seconds, a one-line error at the deadline, signals honoured
at once. Greetings are answered by a thread of their own, so two workers greeting each other at
once never wait on each other. A worker goes on only when it has greeted every peer and been greeted
by every one: then all of them are about to start TensorFlow, on the ports they listened on. A peer
that greeted us and then answers not as a worker has gone on, so our greeting's answer was lost, not
refused. That start is watched too (`watchdog`): a worker that dies in between cannot leave the
others stuck for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from driving.config import ConfigError, RunConfig

JOBS = ("chief", "worker")  # the tasks a training run has (no parameter servers, no evaluator)
PROGRESS_S = 10.0  # a line this often while waiting for the other workers
GREETING = "driving.train"
IO_TIMEOUT_S = 2.0  # one connect, send or receive of the handshake
ANSWER_POLL_S = 0.2  # how soon the answering thread sees that the wait is over
ROUND_S = 0.5  # between two rounds of greetings


class WorkersMissing(TimeoutError):
    """Some workers did not answer before the deadline; the message names them, in one line."""


@dataclass(frozen=True)
class Cluster:
    """Every task's address by job, and which task this process is."""

    jobs: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def address(self) -> str:
        return self.jobs[self.task_type][self.task_index]

    @property
    def size(self) -> int:
        return sum(len(addresses) for addresses in self.jobs.values())

    @property
    def peers(self) -> list[str]:
        """The other tasks' addresses."""
        return [a for job in JOBS for a in self.jobs.get(job, []) if a != self.address]

    @property
    def is_chief(self) -> bool:
        """The chief writes the run's files: the `chief` task, or worker 0 when there is none."""
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index} of {self.size} ({self.address})"

    def tf_config(self) -> dict:
        """As TensorFlow reads it from the TF_CONFIG environment variable."""
        return {"cluster": self.jobs, "task": {"type": self.task_type, "index": self.task_index}}

    def token(self) -> str:
        """The same for every task of this cluster, another for any other: two jobs on the same
        ports never take each other for a peer."""
        return hashlib.sha256(json.dumps(self.jobs, sort_keys=True).encode()).hexdigest()[:16]


def _refuse(field: str, message: str) -> ConfigError:
    return ConfigError("TF_CONFIG", f"field '{field}' {message}")


def host_port(address: Any) -> tuple[str, int] | None:
    """("host", port) of a "HOST:PORT" string ("[::1]:5000" too), or None if it is not one."""
    if not isinstance(address, str):
        return None
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def parse_tf_config(data: Any) -> Cluster:
    """The cluster a TF_CONFIG (its text, or the parsed object) describes, checked field by field."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise ConfigError("TF_CONFIG", f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError("TF_CONFIG", f"must be a JSON object, got {type(data).__name__}")
    jobs = data.get("cluster")
    if not isinstance(jobs, dict) or not jobs:
        raise _refuse("cluster", 'must be an object of job: [HOST:PORT, ...], such as {"worker": [...]}')
    seen: set[str] = set()
    for job, addresses in jobs.items():
        if job not in JOBS:
            raise _refuse(
                f"cluster.{job}", f"is not a job train.py runs (it runs {' and '.join(JOBS)} tasks)"
            )
        if not isinstance(addresses, list) or not addresses:
            raise _refuse(f"cluster.{job}", "must be a non-empty list of HOST:PORT strings")
        for i, address in enumerate(addresses):
            if host_port(address) is None:
                raise _refuse(f"cluster.{job}[{i}]", f"must be a HOST:PORT string, got {address!r}")
            if address in seen:
                raise _refuse(f"cluster.{job}[{i}]", f"names {address} a second time")
            seen.add(address)
    if len(jobs.get("chief", [])) > 1:
        raise _refuse("cluster.chief", f"must name one task, not {len(jobs['chief'])}")
    task = data.get("task")
    if not isinstance(task, dict):
        raise _refuse("task", 'must be an object such as {"type": "worker", "index": 0}')
    kind = task.get("type")
    if kind not in jobs:
        raise _refuse("task.type", f"must be a job of 'cluster' ({', '.join(jobs)}), got {kind!r}")
    index = task.get("index", 0)
    last = len(jobs[kind]) - 1
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= last:
        raise _refuse("task.index", f"must be a whole number from 0 to {last}, got {index!r}")
    return Cluster(jobs={job: list(a) for job, a in jobs.items()}, task_type=kind, task_index=index)


def cluster_of(config: RunConfig) -> Cluster | None:
    """The multi-worker cluster of a run: from --workers/--worker-index, or TF_CONFIG; None for
    the other strategies."""
    if config.strategy != "multiworker":
        return None
    if config.workers:
        return Cluster(
            jobs={"worker": list(config.workers)}, task_type="worker", task_index=config.worker_index
        )
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError(
            "strategy", "multiworker needs TF_CONFIG or --workers HOST:PORT ... --worker-index I"
        )
    return parse_tf_config(text)


def is_chief(config: RunConfig) -> bool:
    """Whether this process writes the run's files: the only one, or in a multi-worker run the
    chief. The others train, and write nothing."""
    cluster = cluster_of(config)
    return cluster is None or cluster.is_chief


# --- waiting for the other workers --------------------------------------------------------------


def _listen(address: str) -> socket.socket:
    _, port = host_port(address)
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except OSError as e:
        raise OSError(
            f"cannot listen on {address}, this worker's address ({e.strerror or e}): is another "
            "process using that port?"
        ) from None


def _read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < 256:
        chunk = sock.recv(256 - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


NOT_A_WORKER = "answered, but not as a worker of this cluster (another --workers list or TF_CONFIG?)"


def _greet(peer: str, hello: str, expect: str) -> str | None:
    """Greet `peer`; None when it answered as a worker of this cluster, else why not."""
    host, port = host_port(peer)
    try:
        with socket.create_connection((host, port), timeout=IO_TIMEOUT_S) as sock:
            sock.sendall(f"{hello}\n".encode())
            answer = _read_line(sock)
    except TimeoutError:
        return "no answer"
    except OSError as e:
        return f"no answer: {e.strerror or e}"
    return None if answer == expect else NOT_A_WORKER


def _answer(listener: socket.socket, cluster: Cluster, heard: set[str], stop: threading.Event) -> None:
    """Answer greetings until `stop` is set, adding each peer that greets to `heard`. It runs in a
    thread of its own: two workers greeting each other at the same moment would otherwise each
    wait for the other to answer, time out, and answer greetings their senders had given up on."""
    prefix = f"{GREETING} {cluster.token()} "
    while not stop.is_set():
        try:
            listener.settimeout(ANSWER_POLL_S)
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            if listener.fileno() == -1:
                return  # a signal ended the wait, and closed the listener, as this thread started
            stop.wait(ANSWER_POLL_S)  # out of file descriptors, say: live on, to answer the next
            continue
        with sock:
            sock.settimeout(IO_TIMEOUT_S)
            try:
                line = _read_line(sock)
                sender = line.removeprefix(prefix)
                if line.startswith(prefix) and sender in cluster.peers:
                    sock.sendall(f"{prefix}{cluster.address}\n".encode())
                    heard.add(sender)
                    _read_line(sock)  # the greeter closes first: no TIME_WAIT left on our port
            except OSError:
                continue  # a half-done greeting: the peer greets again


def _say(line: str) -> None:
    print(line, flush=True)  # at once, even into a pipe: a launcher's log shows who is waiting


def wait_for_peers(cluster: Cluster, timeout: float, say: Callable[[str], None] = _say) -> None:
    """Return once every other worker of `cluster` has answered this one and greeted it; raise
    WorkersMissing (one line, naming them) after `timeout` seconds. Every wait is bounded, so
    Ctrl-C and SIGTERM handlers run at once."""
    peers = cluster.peers
    if not peers:
        return
    prefix = f"{GREETING} {cluster.token()}"
    start = time.monotonic()
    deadline, next_line = start + timeout, start + PROGRESS_S
    missing = {peer: "not tried yet" for peer in peers}  # those that have not answered us
    heard: set[str] = set()  # those that have greeted us (filled by the answering thread)
    say(f"{cluster.name}: waiting up to {timeout:g} s for the other workers: {', '.join(peers)}")
    stop = threading.Event()
    with _listen(cluster.address) as listener:
        answering = threading.Thread(target=_answer, args=(listener, cluster, heard, stop), daemon=True)
        try:
            answering.start()  # in the try: a SIGTERM may end the wait while it starts
            while True:
                for peer in list(missing):
                    why = _greet(peer, f"{prefix} {cluster.address}", f"{prefix} {peer}")
                    # A peer leaves only once it has heard us and we have heard it; after that
                    # its port is TensorFlow's. If our greeting's answer was lost in between, that
                    # port no longer answers as a worker: the peer has gone on, having heard us.
                    if why is None or (why == NOT_A_WORKER and peer in heard):
                        del missing[peer]
                    else:
                        missing[peer] = why
                unheard = set(peers) - heard
                now = time.monotonic()
                if not (missing or unheard):
                    break
                late = "; ".join(
                    f"{p} ({missing.get(p, 'has not greeted this worker')})"
                    for p in peers
                    if p in missing or p in unheard
                )
                if now >= deadline:
                    raise WorkersMissing(
                        f"{cluster.name}: no start within {timeout:g} s (--start-timeout) from "
                        f"{late}: start every worker, with the same --workers list or TF_CONFIG cluster"
                    )
                if now >= next_line:
                    say(f"{cluster.name}: still waiting for {late} ({now - start:.0f} of {timeout:g} s)")
                    next_line = now + PROGRESS_S
                time.sleep(min(ROUND_S, max(0.0, deadline - now)))
        finally:
            stop.set()
            if answering.is_alive():
                answering.join()
    say(f"{cluster.name}: every worker answered after {time.monotonic() - start:.1f} s")


# A process of its own, since the one it watches may hold the GIL in C++: it sleeps until its
# stdin closes (the watched block ended, or the parent died) or the deadline passes; then it says
# why in one line and ends the parent, the one signal that cannot be caught or swallowed.
WATCHDOG = """
import os, select, signal, sys
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGINT, signal.SIG_IGN)
if not select.select([sys.stdin], [], [], seconds)[0]:
    print(message, file=sys.stderr, flush=True)
    os.kill(parent, signal.SIGKILL)
"""


@contextlib.contextmanager
def watchdog(seconds: float, message: str) -> Iterator[None]:
    """End this process, saying `message`, if the block has not finished after `seconds`."""
    dog = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(seconds), message], stdin=subprocess.PIPE
    )
    try:
        yield
    finally:
        dog.stdin.close()  # end of file: the watchdog leaves quietly
        dog.wait()
