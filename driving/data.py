"""Recordings in the Udacity simulator's format: `driving_log.csv` + `IMG/`.

Writing (RecordingWriter) is used by the headless simulator and by `drive.py --record`; reading,
validation, summary and the time-block split follow below.

The simulator writes each row as
    center,left,right,steering,throttle,brake,speed\n
with no header, absolute image paths, and numbers in C#'s default float format (up to 7
significant digits) in the recording machine's locale.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

from driving.config import CAMERAS, CSV_NAME, IMG_DIR
from driving.preprocess import encode_jpeg

COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")


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

    Images are written first (each to a temporary name, then renamed), the CSV row last, flushed
    at once: a crash loses at most the sample in flight and never leaves a row without images.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).absolute()
        self.img_dir = self.folder / IMG_DIR
        self.img_dir.mkdir(parents=True, exist_ok=True)
        self._csv = open(self.folder / CSV_NAME, "a", encoding="utf-8", newline="")
        self.rows = 0

    def _write_image(self, camera: str, rgb: np.ndarray, when: datetime) -> str:
        path = self.img_dir / f"{camera}_{stamp(when)}.jpg"
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(encode_jpeg(rgb))
        os.replace(tmp, path)
        return str(path)

    def write(self, when: datetime, center: np.ndarray, left: np.ndarray | None = None,
              right: np.ndarray | None = None, steering: float = 0.0, throttle: float = 0.0,
              brake: float = 0.0, speed: float = 0.0) -> None:
        """One sample. Missing side cameras (drive.py records only the center one) leave their
        path empty, as recordings with a center camera only do."""
        paths = [self._write_image(cam, img, when) if img is not None else ""
                 for cam, img in zip(CAMERAS, (center, left, right))]
        numbers = [csharp_float(v) for v in (steering, throttle, brake, speed)]
        self._csv.write(",".join(paths + numbers) + "\n")
        self._csv.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._csv.closed:
            self._csv.flush()
            os.fsync(self._csv.fileno())
            self._csv.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- Reading recordings -------------------------------------------------------------------------
# (loader, validation, summary, split: see issue "Foundation")
