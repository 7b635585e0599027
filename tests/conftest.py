"""Shared test fixtures: real recordings on disk, made by the project itself."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from driving import tfsetup
from driving.config import FRAME_HEIGHT, FRAME_WIDTH, SAMPLE_RATE_HZ
from driving.data.writer import RecordingWriter

tfsetup.setup()  # TensorFlow quietly, once, before any test module imports it


def road_frame(offset: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A simple 320x160 RGB scene: sky on top, grey road below whose centre sits `offset`
    (-1..1, right positive) of a half-width to the side. A car that sees the road to its right
    must steer right, so the steering to learn is proportional to `offset`."""
    h, w = FRAME_HEIGHT, FRAME_WIDTH
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2] = (120, 170, 230)  # sky
    img[h // 2 :] = (70, 140, 60)  # grass
    rows = np.arange(h // 2, h)
    t = (rows - h // 2) / (h // 2)  # 0 at horizon, 1 at bottom
    centre = w / 2 + offset * (w / 2) * t
    half = 20 + 120 * t
    cols = np.arange(w)[None, :]
    road = np.abs(cols - centre[:, None]) < half[:, None]
    img[h // 2 :][road] = (90, 90, 95)
    if rng is not None:
        img = np.clip(img.astype(np.int16) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    return img


def side_frame(offset: float, rng: np.random.Generator, shift: float) -> np.ndarray:
    return road_frame(np.clip(offset + shift, -1, 1), rng)


def write_recording(folder: Path, n: int = 60, seed: int = 0, sides: bool = True) -> Path:
    """Write an n-sample recording in the simulator's exact format; steering = 0.5 * offset."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2016, 12, 1, 13, 30, 48, 287000)
    with RecordingWriter(folder) as rec:
        for i in range(n):
            offset = float(np.sin(i / 7.0 + seed))
            frame = road_frame(offset, rng)
            side = partial(side_frame, offset, rng) if sides else (lambda d: None)
            rec.write(
                t0 + timedelta(seconds=i / SAMPLE_RATE_HZ),
                frame,
                side(-0.3),
                side(0.3),
                steering=0.5 * offset,
                throttle=0.3,
                brake=0.0,
                speed=9.0,
            )
    return folder


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 just now (all held at once while picked)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_until(condition, timeout: float) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass (what another thread will do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "rec")
