"""Local contrast at a model's input: the package's one Keras layer of its own, imported before
any model file loads (driving.modelio), so that Keras in safe mode knows it by name.

LocalContrast sets each pixel against its neighbourhood. A road whose tone is near its roadside's, or
a frame in dim light, reaches the layers after it with the contrast of a clear one; what is lost
is the frame's overall colour and brightness. It has no weights: a model that starts with it keeps
its parameter count, and the same arithmetic runs in training, serving and every export.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops


def gaussian_taps(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian out to 3 sigma."""
    radius = int(np.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    taps = np.exp(-0.5 * (t / np.float32(sigma)) ** 2)
    return taps / taps.sum()


@functools.lru_cache(maxsize=32)
def mirrored_blur(size: int, sigma: float) -> np.ndarray:
    """The [size, size] matrix that blurs a line of `size` pixels with gaussian_taps(sigma), the
    line mirrored at both ends (reflect padding: the edge pixel not repeated) as far as the taps
    reach, mirrored again where they reach past the mirror. Row i holds output pixel i's weights."""
    if size < 2:
        raise ValueError(f"a line of {size} pixel(s) is too small to mirror")
    taps = gaussian_taps(sigma)
    radius = len(taps) // 2
    source = np.arange(size)[:, None] + np.arange(-radius, radius + 1)[None, :]
    period = 2 * (size - 1)  # mirrored without repeating the edge, a line repeats at this period
    source = np.mod(source, period)
    source = np.where(source >= size, period - source, source)
    matrix = np.zeros((size, size), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(size), len(taps)), source.ravel()), np.tile(taps, size))
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False  # cached: shared by every layer of this size
    return matrix


@keras.saving.register_keras_serializable(package="driving")
class LocalContrast(keras.layers.Layer):
    """(x - local mean) / max(local spread, floor) * gain, per pixel and colour channel.

    The neighbourhood is a Gaussian of `sigma` input pixels; the spread is one for all colour
    channels, so hues keep their proportions. `floor` (in the input's units: the package's inputs
    span 1.0) keeps flat regions, where the spread is only noise, from being blown up; `gain`
    brings unit spread down to about the raw input's. Both blurs run on a `pool` times smaller
    map, resized back bilinearly: at 128x128 that is 32x32, and the layer costs little beside
    the model (count_macs leaves it out, as it does pooling)."""

    def __init__(self, sigma: float = 16.0, floor: float = 0.02, gain: float = 0.25, pool: int = 4, **kwargs):
        # float32 under a mixed-precision policy too: a division by a small spread and its square
        # root are what low precision loses first (as in int8 files), and the layer has no weights
        # whose float16 copies would save time.
        super().__init__(**{"dtype": "float32", **kwargs})
        if not (sigma > 0 and floor > 0 and gain > 0 and pool >= 1):  # NaN fails too
            raise ValueError(
                f"LocalContrast needs sigma, floor and gain > 0 and pool >= 1, "
                f"not {sigma}, {floor}, {gain} and {pool}"
            )
        self.sigma, self.floor, self.gain, self.pool = float(sigma), float(floor), float(gain), int(pool)

    def _blur(self, x):
        height, width = x.shape[1], x.shape[2]
        small = ops.average_pool(x, self.pool, self.pool, padding="valid") if self.pool > 1 else x
        if small.shape[1] < 2 or small.shape[2] < 2:
            raise ValueError(f"a {small.shape[1]}x{small.shape[2]} map is too small to mirror")
        # Mirror padding and a separable Gaussian are one small matrix per axis: two matrix
        # products, which LiteRT runs twice as fast as a mirror pad and two depthwise convolutions.
        small = ops.einsum("ij,bjwc->biwc", mirrored_blur(small.shape[1], self.sigma / self.pool), small)
        small = ops.einsum("ij,bhjc->bhic", mirrored_blur(small.shape[2], self.sigma / self.pool), small)
        return ops.image.resize(small, (height, width), interpolation="bilinear")

    def call(self, x):
        detail = x - self._blur(x)
        spread = ops.sqrt(self._blur(ops.mean(detail * detail, axis=-1, keepdims=True)))
        return self.gain * detail / ops.maximum(spread, self.floor)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "sigma": self.sigma,
            "floor": self.floor,
            "gain": self.gain,
            "pool": self.pool,
        }
