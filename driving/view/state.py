"""What the live view keeps of a drive: bounded, written by the drive, read by every page.

The drive's thread calls add() once per frame: under one lock it appends to fixed-size rings and
swaps in the latest frame, then returns; nothing is encoded or sent on that thread. Each page's
stream (driving/view/server.py) asks read(cursor) for what is new since its own cursor: a page
that fell behind gets what is still in the rings, and what the rings dropped meanwhile is simply
never sent to it (it was never queued for anyone).

Memory is bounded whatever the frame rate or the drive's length: chart points of the last
WINDOW_S seconds (at most MAX_POINTS), the map's path every PATH_SPACING_M metres (the last
MAX_PATH_POINTS), the last MAX_MARKS interventions, one frame, and the track map once.
"""

from __future__ import annotations

import base64
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from driving.config import Preprocessing
from driving.preprocess import encode_jpeg

if TYPE_CHECKING:
    from driving.sim.track import Track

WINDOW_S = 20.0  # the charts show this many seconds of the drive's clock
MAX_POINTS = 2048  # and never keep more chart points than this, whatever the frame rate
PATH_SPACING_M = 0.5  # a map point every half metre driven (the track's own spacing)...
MAX_PATH_POINTS = 8000  # ...the last 4 km of them
MAX_MARKS = 1000  # interventions marked on the map
RATE_FRAMES = 64  # frames whose wall time and latency give the frames/s and latency figures
RATE_WINDOW_S = 2.0  # ...counted over at most this many wall seconds
MAX_MAP_POINTS = 2000  # the centre line sent to the page (tracks may hold 20,000 samples)


@dataclass
class Sample:
    """One driven frame, as a source (driving/view/sources.py) hands it to the view."""

    time_s: float  # the drive's clock: simulated (headless simulator) or wall (drive.py)
    frame: bytes | np.ndarray  # the JPEG the pilot was sent, or its RGB frame (encoded lazily)
    steering: float
    throttle: float
    mph: float
    latency_ms: float | None
    x: float | None = None  # pose and cross-track error: the headless simulator only
    y: float | None = None
    cte: float | None = None
    laps: float | None = None
    interventions: int = 0
    intervened: bool = False


@dataclass
class Cursor:
    """How far one page's stream has read."""

    drive: int = 0
    points: int = 0
    path: int = 0
    marks: int = 0
    frame: int = 0
    ended: bool = False

    def restart(self, drive: int) -> None:
        """Read a new drive from its beginning."""
        self.drive, self.points, self.path, self.marks, self.frame, self.ended = drive, 0, 0, 0, 0, False


class Ring:
    """The last `size` items appended, each numbered from 1; since(n) returns those after n."""

    def __init__(self, size: int):
        self._items: deque[tuple[int, object]] = deque(maxlen=size)
        self.count = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item) -> None:
        self.count += 1
        self._items.append((self.count, item))

    def last(self):
        return self._items[-1][1] if self._items else None

    def drop_while(self, old: Callable[[object], bool]) -> None:
        while self._items and old(self._items[0][1]):
            self._items.popleft()

    def since(self, number: int) -> list:
        new = []
        for n, item in reversed(self._items):  # newest first: touches only what is new
            if n <= number:
                break
            new.append(item)
        new.reverse()
        return new


def track_map(track: Track) -> dict:
    """A track's geometry for the page: centre line (at most MAX_MAP_POINTS), width, name."""
    stride = math.ceil(len(track.points) / MAX_MAP_POINTS)
    return {
        "name": track.name,
        "width": track.width,
        "centre": np.round(track.points[::stride], 2).tolist(),
    }


class ViewState:
    """The latest state of one drive, shared by the drive's thread and the pages' streams."""

    def __init__(self):
        self._changed = threading.Condition()  # its lock guards everything below
        self.drive = 0  # which drive (begin() counts them); 0: none begun yet
        self.info: dict = {}
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.points, self.path, self.marks = Ring(MAX_POINTS), Ring(MAX_PATH_POINTS), Ring(MAX_MARKS)
        self.rates: deque[tuple[float, float | None]] = deque(maxlen=RATE_FRAMES)  # wall s, latency
        self.latest: Sample | None = None
        self.frames = 0
        self.summary: dict | None = None  # set when the drive ends
        self._jpeg: tuple[tuple[int, int], str] = ((0, 0), "")  # the latest frame's base64 JPEG
        self._put_back = False  # the last frame ended off the road

    # -- the drive's side: quick, never blocks on a page --

    def begin(
        self,
        model: str,
        source: str,
        preprocessing: Preprocessing,
        clock: str,
        latency: str,
        track: Track | None = None,
    ) -> None:
        """A new drive: forget the last one; pages are sent `info` (a "hello" event) first.
        `clock` and `latency` say what Sample.time_s and Sample.latency_ms measure."""
        info = {
            "model": model,
            "source": source,
            "clock": clock,
            "latency": latency,
            "window_s": WINDOW_S,
            "frame": {"width": preprocessing.frame_width, "height": preprocessing.frame_height},
            "crop": {"top": preprocessing.crop_top, "bottom": preprocessing.crop_bottom},
            "map": None if track is None else track_map(track),
        }
        with self._changed:
            self._reset()
            self.drive += 1
            self.info = info
            self._changed.notify_all()

    def add(self, sample: Sample) -> None:
        """One driven frame."""
        now = time.perf_counter()
        with self._changed:
            self.frames += 1
            self.latest = sample
            self.rates.append((now, sample.latency_ms))
            t = sample.time_s
            self.points.append((t, sample.steering, sample.throttle, sample.mph))
            self.points.drop_while(lambda point: point[0] < t - WINDOW_S)
            if sample.x is not None:
                self._add_path(sample)
            self._changed.notify_all()

    def _add_path(self, sample: Sample) -> None:
        """A map point (x, y, cte, gap) every PATH_SPACING_M metres; gap 1: the car was put back
        on the road here, not driven here from the last point."""
        x, y, last, gap = round(sample.x, 2), round(sample.y, 2), self.path.last(), self._put_back
        # The point where the car left the road, and the first after it was put back, always count.
        if gap or sample.intervened or last is None or math.hypot(x - last[0], y - last[1]) >= PATH_SPACING_M:
            self.path.append((x, y, round(sample.cte, 2), int(gap)))
        if sample.intervened:
            self.marks.append((x, y))
        self._put_back = sample.intervened

    def finish(self, summary: dict | None = None) -> None:
        """The drive ended; `summary` (its metrics) is shown on the pages."""
        with self._changed:
            self.summary = summary or {}
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every stream so it can end (the server is stopping)."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    # -- the pages' side: each stream on its own thread --

    def wait(self, cursor: Cursor, timeout: float) -> bool:
        """Wait until there is something `cursor` has not seen (or the view closes); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.closed or self._news(cursor), timeout)

    def _news(self, cursor: Cursor) -> bool:
        return (
            cursor.drive != self.drive
            or cursor.frame != self.frames
            or (self.summary is not None and not cursor.ended)
        )

    def read(self, cursor: Cursor) -> list[tuple[str, dict]]:
        """The events `cursor` has not seen, oldest first ("hello", "update", "end"); advances it."""
        events = []
        with self._changed:
            if cursor.drive != self.drive:
                events.append(("hello", self.info))
                cursor.restart(self.drive)
            if self.drive == 0:
                return events
            points = self.points.since(cursor.points)
            update = {"path": self.path.since(cursor.path), "marks": self.marks.since(cursor.marks)}
            cursor.points, cursor.path, cursor.marks = self.points.count, self.path.count, self.marks.count
            latest, frames, rates = self.latest, self.frames, list(self.rates)
            summary = self.summary
        # rounded here, on the page's thread, not in add(): a third of the bytes to send
        update["points"] = [
            (round(t, 3), round(s, 4), round(th, 4), round(mph, 2)) for t, s, th, mph in points
        ]
        if latest is not None and cursor.frame != frames:
            cursor.frame = frames
            update["frame"] = self._base64_jpeg((cursor.drive, frames), latest.frame)
            update["stats"] = _stats(latest, frames, rates)
            events.append(("update", update))
        if summary is not None and not cursor.ended:
            cursor.ended = True
            events.append(("end", summary))
        return events

    def _base64_jpeg(self, key: tuple[int, int], frame: bytes | np.ndarray) -> str:
        """Frame `key` (drive, number) as base64 JPEG, encoded once for all pages (by whichever
        asks first)."""
        cached_key, text = self._jpeg
        if cached_key == key:
            return text
        jpeg = frame if isinstance(frame, bytes) else encode_jpeg(frame, quality=80)
        text = base64.b64encode(jpeg).decode("ascii")
        self._jpeg = (key, text)  # a tuple swap: atomic, and a race only encodes twice
        return text


def _stats(latest: Sample, frames: int, rates: list[tuple[float, float | None]]) -> dict:
    """The figures beside the charts: frames/s and median latency over the last wall seconds."""
    recent = [(t, ms) for t, ms in rates if t >= rates[-1][0] - RATE_WINDOW_S]
    span = recent[-1][0] - recent[0][0]
    latencies = [ms for _, ms in recent if ms is not None]
    return {
        "time_s": round(latest.time_s, 2),
        "frames": frames,
        "fps": round((len(recent) - 1) / span, 1) if span > 0 else None,
        "latency_ms": round(statistics.median(latencies), 2) if latencies else None,
        "steering": round(latest.steering, 4),
        "throttle": round(latest.throttle, 4),
        "mph": round(latest.mph, 2),
        "laps": None if latest.laps is None else round(latest.laps, 3),
        "interventions": latest.interventions,
        "cte": None if latest.cte is None else round(latest.cte, 2),
    }
