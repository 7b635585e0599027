"""The single definition of how a camera frame becomes model input.

Training (driving.pipeline), serving (driving.runtime / drive.py) and the simulator all call these
functions, so train and serve cannot drift apart. Frames are RGB uint8, 160x320x3, everywhere.

Colour order: OpenCV decodes and encodes BGR. Every cv2 call that touches pixels from or to a file
lives in this module and converts explicitly; nowhere else in the package calls cv2.imread,
cv2.imdecode, cv2.imwrite or cv2.imencode.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from driving.config import CROP_BOTTOM, CROP_TOP, FRAME_HEIGHT, FRAME_WIDTH, INPUT_HEIGHT, INPUT_WIDTH

# Model input is x * SCALE + OFFSET for x in [0, 255]: [-0.5, 0.5].
SCALE = np.float32(1.0 / 255.0)
OFFSET = np.float32(-0.5)


class FrameError(ValueError):
    """A frame that cannot be decoded or has the wrong shape."""


def decode_jpeg(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """JPEG bytes -> RGB uint8 array. Raises FrameError naming `source` if unreadable."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise FrameError(f"{source}: not a readable JPEG ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # cv2 decodes BGR


def read_frame(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8. Truncated JPEGs are rejected, not half-decoded."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FrameError(f"{path}: cannot read ({e.strerror})") from None
    # libjpeg fills a truncated file with grey and only warns; a JPEG must end with EOI (FF D9).
    if data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise FrameError(f"{path}: truncated JPEG (no end-of-image marker)")
    return decode_jpeg(data, str(path))


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 -> JPEG bytes."""
    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),  # cv2 encodes BGR
        [cv2.IMWRITE_JPEG_QUALITY, quality],
    )
    if not ok:
        raise FrameError("JPEG encoding failed")
    return buf.tobytes()


def check_frame(rgb: np.ndarray, source: str = "frame") -> None:
    """Raise FrameError unless `rgb` is a 160x320x3 uint8 frame."""
    if rgb.dtype != np.uint8 or rgb.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3):
        raise FrameError(
            f"{source}: expected {FRAME_WIDTH}x{FRAME_HEIGHT} RGB uint8, got shape {rgb.shape} {rgb.dtype}"
        )


def crop_resize(rgb: np.ndarray) -> np.ndarray:
    """160x320x3 uint8 frame -> 128x128x3 uint8: rows 80:140, resized. Also works on a batch."""
    if rgb.ndim == 4:
        return np.stack([crop_resize(f) for f in rgb])
    roi = rgb[CROP_TOP:CROP_BOTTOM]
    return cv2.resize(roi, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)


def scale(x):
    """uint8-range values (already float) -> [-0.5, 0.5]. Pure arithmetic, so the same function
    serves NumPy arrays here and float tensors inside the tf.data pipeline."""
    return x * SCALE + OFFSET


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """160x320x3 RGB uint8 frame (or a batch of them) -> float32 model input in [-0.5, 0.5]."""
    return scale(crop_resize(rgb).astype(np.float32))
