"""Writing recordings exactly as the Udacity simulator does: `driving_log.csv` + `IMG/`.

Used by the headless simulator (`python -m driving.sim record`) and by `drive.py --record`.
Reading them back is driving/data/reader.py. The simulator writes each row as
    center,left,right,steering,throttle,brake,speed\\n
with no header, absolute image paths, and numbers in C#'s default float format.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from driving.config import CAMERAS, CSV_NAME, IMG_DIR
from driving.files import remove_stale_temps, write_bytes
from driving.preprocess import encode_jpeg

log = logging.getLogger("driving.data.writer")


def stamp(t: datetime) -> str:
    """The simulator's file-name timestamp: yyyy_MM_dd_HH_mm_ss_fff."""
    return t.strftime("%Y_%m_%d_%H_%M_%S_") + f"{t.microsecond // 1000:03d}"


def csharp_float(x: float) -> str:
    """Format like C#'s float.ToString() in an invariant locale: 7 significant digits, no
    trailing zeros, 'E' exponent (0.25 -> '0.25', 0 -> '0', 30.190024 -> '30.19002')."""
    text = f"{float(np.float32(x)):.7g}".replace("e", "E")
    return "0" if text == "-0" else text


class RecordingWriter:
    """Append samples to a recording exactly as the simulator writes them.

    Images are written first (each atomically, driving/files.py), the CSV row last, in one write,
    flushed at once: a crash loses at most the sample in flight and never leaves a row without
    its images.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).absolute()
        self.img_dir = self.folder / IMG_DIR
        self.img_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.img_dir)  # what a killed writer left behind
        # Open for the writer's whole life: one row per sample, flushed at once (see close()).
        self._csv = open(self.folder / CSV_NAME, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self.rows = 0

    def _write_image(self, camera: str, rgb: np.ndarray, when: datetime) -> str:
        path = self.img_dir / f"{camera}_{stamp(when)}.jpg"
        write_bytes(path, encode_jpeg(rgb))
        return str(path)

    def write(
        self,
        when: datetime,
        center: np.ndarray,
        left: np.ndarray | None = None,
        right: np.ndarray | None = None,
        steering: float = 0.0,
        throttle: float = 0.0,
        brake: float = 0.0,
        speed: float = 0.0,
    ) -> None:
        """One sample. Missing side cameras (drive.py records only the center one) leave their
        path empty, as recordings with a center camera only do."""
        paths = [
            self._write_image(cam, img, when) if img is not None else ""
            for cam, img in zip(CAMERAS, (center, left, right))
        ]
        numbers = [csharp_float(v) for v in (steering, throttle, brake, speed)]
        self._csv.write(",".join(paths + numbers) + "\n")
        self._csv.flush()
        self.rows += 1

    @property
    def closed(self) -> bool:
        return self._csv.closed

    def close(self) -> None:
        """Flush the log to disk and close it (closed even when the flush fails: disk full)."""
        if self._csv.closed:
            return
        try:
            self._csv.flush()
            os.fsync(self._csv.fileno())
        finally:
            self._csv.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DriveRecorder:
    """Records the frames a server drove from, with the command it answered, from any thread.

    The simulator names files by the millisecond; two telemetry chains can be answered within one,
    so each sample gets a time at least 1 ms after the previous one. A failing disk stops the
    recording with one log line; the drive goes on."""

    def __init__(self, folder: str | Path):
        self.writer = RecordingWriter(folder)
        self._lock = threading.Lock()
        self._last = datetime.min

    @property
    def folder(self) -> Path:
        return self.writer.folder

    @property
    def rows(self) -> int:
        return self.writer.rows

    def record(self, frame: np.ndarray, steering: float, throttle: float, speed: float) -> None:
        with self._lock:
            if self.writer.closed:
                return
            now = max(datetime.now(), self._last + timedelta(milliseconds=1))
            self._last = now
            try:
                self.writer.write(
                    now,
                    frame,
                    steering=steering,
                    throttle=max(throttle, 0.0),
                    brake=max(-throttle, 0.0),
                    speed=speed,
                )
            except OSError as e:
                log.error("recording to %s failed (%s); recording stopped", self.folder, e.strerror or e)
                try:
                    self.writer.close()
                except OSError:
                    pass  # the disk that failed the write may fail the flush too

    def close(self) -> None:
        with self._lock:
            self.writer.close()
