"""The single definition of how a camera frame becomes model input.

Training (driving.pipeline), serving (driving.runtime / drive.py) and the simulator all call these
functions, so train and serve cannot drift apart. Frames are RGB uint8 everywhere. The geometry
(frame size, crop rows, input size) is a `Preprocessing` from driving.config: the one a model was
trained with travels inside its file, and the defaults fit the Udacity simulator's 320x160 frames.

Colour order: OpenCV decodes and encodes BGR. Every cv2 call that touches pixels from or to a file
lives in this module and converts explicitly; nowhere else in the package calls cv2.imread,
cv2.imdecode, cv2.imwrite or cv2.imencode.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from driving.config import DEFAULT_PREPROCESSING, Preprocessing

# Model input is x * SCALE + OFFSET for x in [0, 255]: [-0.5, 0.5].
SCALE = np.float32(1.0 / 255.0)
OFFSET = np.float32(-0.5)
# A camera frame is tens of kilobytes; a file far beyond this is not a frame, and reading it whole
# would only cost memory.
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_PIXELS = 4096 * 4096  # the same for pixels: an image beyond this is not decoded at all


class FrameError(ValueError):
    """A frame that cannot be decoded or has the wrong shape."""


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment: a walk over the segment headers,
    microseconds where opening the file with PIL costs a quarter of a millisecond."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            height, width = (
                int.from_bytes(data[i + 5 : i + 7], "big"),
                int.from_bytes(data[i + 7 : i + 9], "big"),
            )
            return width, height
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an encoded image's header claims, read without decoding it, or None when
    there is no readable header."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    from PIL import Image, UnidentifiedImageError  # other formats (PNG...): PIL reads only the header

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def decode_jpeg(data: bytes, source: str = "<bytes>", size: tuple[int, int] | None = None) -> np.ndarray:
    """JPEG bytes -> RGB uint8 array. Raises FrameError naming `source` if unreadable, and, before
    decoding anything, if the header claims another (width, height) than `size` or more than
    MAX_PIXELS: a few hundred bytes can claim gigapixels, and decoding would allocate them."""
    claimed = image_size(data)
    if claimed is not None:
        width, height = claimed
        if size is not None and claimed != size:
            raise FrameError(f"{source}: a {width}x{height} image, expected a {size[0]}x{size[1]} frame")
        if width * height > MAX_PIXELS:
            raise FrameError(f"{source}: a {width}x{height} image, too large for a camera frame")
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise FrameError(f"{source}: not a readable JPEG ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # cv2 decodes BGR


def read_frame(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8. Truncated JPEGs are rejected, not half-decoded."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise FrameError(f"{path}: {path.stat().st_size:,} bytes, too large for a camera frame")
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


def check_frame(
    rgb: np.ndarray, source: str = "frame", geometry: Preprocessing = DEFAULT_PREPROCESSING
) -> None:
    """Raise FrameError unless `rgb` is an RGB uint8 frame of the geometry's frame size: a frame
    of another size would be cropped at the wrong rows."""
    if rgb.dtype != np.uint8 or rgb.shape != geometry.frame_shape:
        height, width = rgb.shape[:2] if rgb.ndim >= 2 else (0, 0)
        raise FrameError(
            f"{source}: {width}x{height} {rgb.dtype} image of shape {rgb.shape}, expected a "
            f"{geometry.frame_width}x{geometry.frame_height} RGB uint8 frame"
        )


def crop_resize(rgb: np.ndarray, geometry: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """Frame (H x W x 3 uint8) -> model-sized uint8 crop: rows crop_top:crop_bottom, resized to
    the input size (INTER_AREA: averages, no aliasing when shrinking). Also works on a batch."""
    if rgb.ndim == 4:
        return np.stack([crop_resize(f, geometry) for f in rgb])
    roi = rgb[geometry.crop_top : geometry.crop_bottom]
    return cv2.resize(roi, (geometry.input_width, geometry.input_height), interpolation=cv2.INTER_AREA)


def scale(x):
    """uint8-range values (already float) -> [-0.5, 0.5]. Pure arithmetic, so the same function
    serves NumPy arrays here and float tensors inside the tf.data pipeline."""
    return x * SCALE + OFFSET


def preprocess(rgb: np.ndarray, geometry: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """RGB uint8 frame (or a batch of them) -> float32 model input in [-0.5, 0.5]."""
    return scale(crop_resize(rgb, geometry).astype(np.float32))
