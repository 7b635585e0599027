"""The recording browser: look through recordings in a web page and leave bad stretches out.

    browser = RecordingBrowser(["data/track1"])   # finds the recordings; loads each when asked
    browser.start(); print(browser.url)           # 127.0.0.1 only; port 0 picks a free one
    ...
    browser.stop()

The page (static/browse.*, with the live view's stylesheet for one look) shows one recording at a
time: its three camera frames at a cursor, steering, throttle and speed over the whole recording,
the steering histogram, and the problems of driving/data/problems.py on the timeline. A person
selects time ranges and excludes them; the choice is written to the recording's excluded.json
(driving/data/exclusions.py), which the loader honours.

Made for long recordings: a frame is one request for one image, answered from the file with
validation headers (ETag, cached for a day); the series travel once, as one little-endian float32
array [rows, 5] (time s, steering, throttle, speed mph, log line). Only images the recording lists
are served: a frame is asked for by its row and camera, never by a path.

The server is the standard library's, as the live view's (driving/view/server.py): bound to
127.0.0.1, answering only requests addressed to 127.0.0.1 or localhost (a rebound DNS name is
refused). Saving takes a JSON POST from the page's own origin: another site's form cannot post
JSON without asking first, which this server never allows.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from driving.config import CAMERAS
from driving.data import exclusions as excl
from driving.data.problems import KINDS, MAX_SPANS, Problem, ProblemThresholds, find_problems
from driving.data.reader import RecordingError, RecordingStats, find_recordings, load_recordings
from driving.files import RecordError, parse_json, read_regular_bytes
from driving.preprocess import MAX_IMAGE_BYTES

LOCAL_NAMES = ("127.0.0.1", "localhost")  # as the live view: the names a loopback request carries
STATIC = {  # path -> (package, file in its static/, content type)
    "/": ("driving.data", "browse.html", "text/html; charset=utf-8"),
    "/browse.js": ("driving.data", "browse.js", "text/javascript; charset=utf-8"),
    "/browse.css": ("driving.data", "browse.css", "text/css; charset=utf-8"),
    "/view.css": ("driving.view", "view.css", "text/css; charset=utf-8"),  # the live view's style
}
MAX_BODY = 4 * 1024 * 1024  # a POST of excluded spans: 100,000 spans fit
NO_STORE = {"Cache-Control": "no-store"}  # the page, the series, answers: always fresh
FRAME_CACHE = "private, max-age=86400"  # the page asks again after a day; the ETag answers 304
SERIES_COLUMNS = ("time", "steering", "throttle", "speed", "row")


@dataclass
class Loaded:
    """One recording as the page sees it: every usable row (nothing excluded), in log order."""

    folder: Path
    frames: pd.DataFrame = field(default_factory=pd.DataFrame)
    stats: RecordingStats = field(default_factory=RecordingStats)
    problems: list[Problem] = field(default_factory=list)
    excluded: list[tuple[int, int]] = field(default_factory=list)
    excluded_error: str | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _changed_ends(frames: pd.DataFrame, exclusions: excl.Exclusions) -> str | None:
    """Why the saved ranges no longer fit the log (an end that names another image), or None."""
    names = dict(zip(frames["row"], (Path(p).name for p in frames["center"])))
    for line, expected in exclusions.ends().items():
        if line in names and names[line] != expected:
            return f"line {line} names {names[line]}, not {expected} as when the ranges were saved"
    return None


class RecordingBrowser:
    """Serves the recordings found at `paths` (driving.data.reader.find_recordings) on 127.0.0.1."""

    def __init__(self, paths, thresholds: ProblemThresholds = ProblemThresholds(), port: int = 0):
        self.recordings = find_recordings(paths)
        self.thresholds = thresholds
        self.requested_port = port
        self.port = 0
        self._loaded: dict[int, Loaded] = {}
        self._loading = threading.Lock()
        self.files = {
            path: ((resources.files(package) / "static" / name).read_bytes(), kind)
            for path, (package, name, kind) in STATIC.items()
        }
        self._http: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- what the page asks for ---------------------------------------------------------------

    def load(self, index: int) -> Loaded:
        """Recording `index`, read on first use (one at a time: a page asks once, many pages share)."""
        with self._loading:
            if index not in self._loaded:
                self._loaded[index] = self._read(self.recordings[index])
            return self._loaded[index]

    def _read(self, folder: Path) -> Loaded:
        try:
            recordings = load_recordings([folder], exclusions=False)
        except RecordingError as e:
            return Loaded(folder, error=str(e))
        frames = recordings.frames.reset_index(drop=True)
        stats = recordings.summary.stats(str(folder))
        loaded = Loaded(folder, frames, stats, find_problems(frames, stats.lines, self.thresholds))
        try:
            exclusions = excl.read_exclusions(folder)
        except excl.ExclusionsError as e:
            loaded.excluded_error = str(e)
            return loaded
        if exclusions is not None:
            changed = _changed_ends(frames, exclusions)
            if changed:
                loaded.excluded_error = f"{folder / excl.EXCLUDED_NAME}: {changed}; the log changed"
            loaded.excluded = excl.to_spans(frames, exclusions)
        return loaded

    def recording_list(self) -> list[dict]:
        return [{"index": i, "name": r.name, "folder": str(r)} for i, r in enumerate(self.recordings)]

    def info(self, index: int) -> dict:
        """Everything about recording `index` but its series and frames."""
        loaded = self.load(index)
        base = {"index": index, "name": loaded.folder.name, "folder": str(loaded.folder)}
        if loaded.error:
            return {**base, "error": loaded.error}
        frames, stats = loaded.frames, loaded.stats
        spans, counts = [], {kind: {"spans": 0, "rows": 0} for kind in KINDS}
        for problem in loaded.problems:
            count = counts[problem.kind]
            if count["spans"] < MAX_SPANS:
                spans.append(problem.to_list())
            count["spans"] += 1
            count["rows"] += problem.rows
        return {
            **base,
            "rows": len(frames),
            "read": stats.read,
            "skipped": dict(stats.skipped),
            "duration_s": float(frames["time"].max()),
            "cameras": [c for c in CAMERAS if frames[c].astype(bool).any()],
            "columns": list(SERIES_COLUMNS),
            "problems": {"rules": self.thresholds.describe(), "spans": spans, "counts": counts},
            "excluded": loaded.excluded,
            "excluded_file": str(loaded.folder / excl.EXCLUDED_NAME),
            "excluded_error": loaded.excluded_error,
        }

    def series(self, index: int) -> bytes:
        frames = self.load(index).frames
        return (
            np.stack([frames[c].to_numpy(np.float32) for c in SERIES_COLUMNS], axis=1).astype("<f4").tobytes()
        )

    def image_path(self, index: int, row: int, camera: str) -> str | None:
        """The file of camera `camera` at row `row` of recording `index`: only images the
        recording lists, so no request can name another file."""
        if camera not in CAMERAS or not 0 <= index < len(self.recordings):
            return None
        frames = self.load(index).frames
        if not 0 <= row < len(frames):
            return None
        return frames[camera].iloc[row] or None

    def save_excluded(self, index: int, spans: list) -> dict:
        """Replace recording `index`'s excluded ranges by `spans` (index spans of its rows) and
        write its excluded.json. Raises ValueError with a line for the page."""
        loaded = self.load(index)
        if loaded.error:
            raise ValueError(loaded.error)
        if loaded.excluded_error:
            raise ValueError(f"not saved: {loaded.excluded_error}")
        ok = isinstance(spans, list) and len(spans) <= excl.MAX_RANGES
        ok = ok and all(isinstance(s, list) and len(s) == 2 and all(type(v) is int for v in s) for s in spans)
        if not ok:
            raise ValueError(f"spans must be a list of at most {excl.MAX_RANGES:,} [first, last] row pairs")
        with loaded.lock:
            exclusions = excl.from_spans(loaded.frames, spans)
            try:
                path = excl.write_exclusions(loaded.folder, exclusions)
            except (excl.ExclusionsError, OSError) as e:
                raise ValueError(f"not saved: {e}") from None
            loaded.excluded = excl.to_spans(loaded.frames, exclusions)
        rows = sum(b - a + 1 for a, b in loaded.excluded)
        return {"excluded": loaded.excluded, "excluded_rows": rows, "file": str(path)}

    # --- serving ------------------------------------------------------------------------------

    def start(self) -> int:
        """Listen on 127.0.0.1 and serve in a background thread; returns the port. Raises
        OSError if the port is taken."""
        self._http = _Server(("127.0.0.1", self.requested_port), _Handler)
        self._http.browser = self
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="recording-browser", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join(timeout=5)
            self._http = None


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 10 else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: scrubbing asks for many frames on few connections
    timeout = 30  # an idle or stalled connection is closed

    def _local(self) -> bool:
        if self.headers.get("Host", "").rsplit(":", 1)[0] in LOCAL_NAMES:
            return True
        self._send_text(HTTPStatus.FORBIDDEN, "the recording browser answers to 127.0.0.1 and localhost only")
        return False

    def _send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode() + b"\n", "text/plain; charset=utf-8", NO_STORE)

    def _send_json(self, data, status: int = HTTPStatus.OK) -> None:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json", NO_STORE)

    def do_GET(self) -> None:  # http.server calls it by this name
        if not self._local():
            return
        browser = self.server.browser
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        index = self._index(parts[2]) if len(parts) == 3 and parts[0] == "api" else None
        try:
            if path in browser.files:
                body, kind = browser.files[path]
                self._send(HTTPStatus.OK, body, kind, NO_STORE)
            elif path == "/api/recordings":
                self._send_json(browser.recording_list())
            elif parts[:2] == ["api", "recording"] and index is not None:
                self._send_json(browser.info(index))
            elif parts[:2] == ["api", "series"] and index is not None:
                self._send(HTTPStatus.OK, browser.series(index), "application/octet-stream", NO_STORE)
            elif len(parts) == 4 and parts[0] == "frame":
                self._frame(parts[1], parts[2], parts[3])
            else:
                self._send_text(HTTPStatus.NOT_FOUND, "not found")
        except OSError:
            self.close_connection = True  # the page went away mid-answer

    do_HEAD = do_GET

    def _index(self, text: str) -> int | None:
        index = _number(text)
        return index if index is not None and index < len(self.server.browser.recordings) else None

    def _frame(self, recording: str, row: str, camera: str) -> None:
        index, number = self._index(recording), _number(row)
        path = (
            None if index is None or number is None else self.server.browser.image_path(index, number, camera)
        )
        if path is None:
            self._send_text(HTTPStatus.NOT_FOUND, "no such frame in this recording")
            return
        try:
            info = os.stat(path)
            tag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
            if self.headers.get("If-None-Match") == tag:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("ETag", tag)
                self.send_header("Cache-Control", FRAME_CACHE)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = read_regular_bytes(path, MAX_IMAGE_BYTES, "camera frame")
        except OSError as e:
            self._send_text(HTTPStatus.NOT_FOUND, f"cannot read the frame: {e.strerror or e}")
            return
        kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        self._send(HTTPStatus.OK, data, kind, {"ETag": tag, "Cache-Control": FRAME_CACHE})

    def do_POST(self) -> None:  # http.server calls it by this name
        self.close_connection = True  # saves are rare: a refused body is never left unread
        if not self._local():
            return
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        index = self._index(parts[2]) if len(parts) == 3 and parts[:2] == ["api", "excluded"] else None
        origin = self.headers.get("Origin")
        port = self.server.browser.port
        length = _number(self.headers.get("Content-Length", ""))
        if index is None:
            self._send_text(HTTPStatus.NOT_FOUND, "not found")
        elif origin is not None and origin not in (f"http://{name}:{port}" for name in LOCAL_NAMES):
            self._send_text(HTTPStatus.FORBIDDEN, "saving is for the browser's own page only")
        elif self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._send_text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the spans as application/json")
        elif length is None or length > MAX_BODY:
            self._send_text(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_BODY:,} bytes, with Content-Length"
            )
        else:
            try:
                body = parse_json(self.rfile.read(length), "the request", max_depth=4)
                spans = body.get("spans") if isinstance(body, dict) else None
                answer = self.server.browser.save_excluded(index, spans)
            except (RecordError, ValueError) as e:
                self._send_json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
                return
            self._send_json(answer)

    def log_message(self, format: str, *args) -> None:  # no line per request on the terminal
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open connection never holds the process open
    browser: RecordingBrowser
