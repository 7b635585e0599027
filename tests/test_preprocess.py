import numpy as np
import pytest

from driving import preprocess as pp
from tests.conftest import road_frame


def test_preprocess_shape_range_dtype():
    x = pp.preprocess(road_frame(0.3))
    assert x.shape == (128, 128, 3) and x.dtype == np.float32
    assert x.min() >= -0.5 and x.max() <= 0.5


def test_jpeg_roundtrip_keeps_rgb_order():
    red = np.zeros((160, 320, 3), np.uint8)
    red[..., 0] = 255
    back = pp.decode_jpeg(pp.encode_jpeg(red))
    assert back[..., 0].mean() > 240 and back[..., 2].mean() < 15


def test_truncated_and_garbage_jpeg_rejected(tmp_path):
    data = pp.encode_jpeg(road_frame(0.0))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(pp.FrameError, match="cut.jpg"):
        pp.read_frame(cut)
    with pytest.raises(pp.FrameError):
        pp.decode_jpeg(b"not a jpeg")
