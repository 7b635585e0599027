"""The live view's web server: one page, its script and style, and a Server-Sent Events stream.

    view = ViewServer(port=0)          # 127.0.0.1 only; 0 picks a free port
    view.start(); print(view.url)
    ...  # a source (driving/view/sources.py) feeds view.state from the drive
    view.stop()

The stdlib's ThreadingHTTPServer, not the drive server's Socket.IO, serves the pages, even for
drive.py: the simulator's connection stays alone on its own port and server (its compatibility
shims, threads and limits untouched), and one implementation serves both the headless simulator
and drive.py. Each page's stream runs on its own thread: it waits for news on its own, sends at
most MAX_PUSH_HZ updates a second (what it could not send meanwhile is replaced by newer state, not
queued), and a page that stops reading is dropped after `send_timeout`. At most `max_clients`
streams at once, so many tabs cannot take the drive's CPU.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from driving.view.state import Cursor, ViewState

MAX_PUSH_HZ = 20.0  # updates a second per page: smooth to watch, cheap to make
KEEPALIVE_S = 5.0  # a comment line this often finds closed pages and keeps proxies open
# Requests must name the loopback host: a web page whose own host name was re-pointed at 127.0.0.1
# (DNS rebinding) is refused. An SSH tunnel (ssh -L P:127.0.0.1:P) arrives as localhost.
LOCAL_NAMES = ("127.0.0.1", "localhost")
STATIC = {  # path -> (file in driving/view/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/view.css": ("view.css", "text/css; charset=utf-8"),
}


def event_stream(state: ViewState, stop: threading.Event) -> Iterator[bytes]:
    """One page's Server-Sent Events: hello, then updates as the drive goes, then end."""
    cursor = Cursor()
    yield b"retry: 2000\n\n"  # the page reconnects after 2 s if the stream breaks
    while not stop.is_set():
        if not state.wait(cursor, KEEPALIVE_S):
            yield b": keep-alive\n\n"
            continue
        for name, data in state.read(cursor):
            yield f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        if cursor.ended or state.closed:
            return
        time.sleep(1.0 / MAX_PUSH_HZ)  # meanwhile the drive goes on; the next read catches up


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: the stream ends by closing

    def setup(self) -> None:
        self.timeout = self.server.view.send_timeout  # a stalled read or write drops the page
        super().setup()

    def do_GET(self) -> None:  # http.server calls it by this name
        view = self.server.view
        path = self.path.split("?", 1)[0]
        if self.headers.get("Host", "").rsplit(":", 1)[0] not in LOCAL_NAMES:
            self.send_error(403, "the live view answers to 127.0.0.1 and localhost only")
        elif path == "/events":
            self._events(view)
        elif path in STATIC:
            body, kind = view.files[path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def _events(self, view: ViewServer) -> None:
        if not view.enter():
            self.send_error(503, f"at most {view.max_clients} pages watch at once")
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            for chunk in event_stream(view.state, view.stopping):
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:  # the page went away, or stopped reading for send_timeout
            pass
        finally:
            view.leave()

    def log_message(self, format: str, *args) -> None:  # no line per request on the terminal
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stream never holds the process open
    view: ViewServer


class ViewServer:
    """Serves the live view of `state` (a fresh ViewState by default) on 127.0.0.1."""

    def __init__(
        self,
        port: int = 0,
        state: ViewState | None = None,
        max_clients: int = 8,
        send_timeout: float = 10.0,
    ):
        self.state = state or ViewState()
        self.requested_port = port
        self.max_clients = max_clients
        self.send_timeout = send_timeout
        self.stopping = threading.Event()
        self.files = {
            path: ((resources.files("driving.view") / "static" / name).read_bytes(), kind)
            for path, (name, kind) in STATIC.items()
        }
        self.clients = 0
        self._clients_lock = threading.Lock()
        self._http: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def enter(self) -> bool:
        """Count a new stream in, unless max_clients are streaming already."""
        with self._clients_lock:
            if self.clients >= self.max_clients:
                return False
            self.clients += 1
            return True

    def leave(self) -> None:
        with self._clients_lock:
            self.clients -= 1

    def start(self) -> int:
        """Listen on 127.0.0.1 and serve in a background thread; returns the port. Raises
        OSError if the port is taken."""
        self._http = _Server(("127.0.0.1", self.requested_port), _Handler)
        self._http.view = self
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="live-view", daemon=True)
        self._thread.start()
        return self.port

    def stop(self, linger: float = 1.0) -> None:
        """Give the streams up to `linger` seconds to send what is left (the drive's end), then
        end them and stop listening."""
        deadline = time.monotonic() + linger
        while self.clients and self.state.summary is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # streams leave once they have sent the end
        self.stopping.set()
        self.state.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join(timeout=5)
            self._http = None
