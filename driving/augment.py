"""Training-only random transforms, as vectorised TensorFlow ops on whole batches of cached crops.

Every transform works on a batch of 128x128 crops (float32 [B, H, W, 3], values 0..255, RGB) and
draws its randomness from a stateless seed (int32 [2]), so a training run is the same under a seed
however many threads the input pipeline uses. Steering is float32 [B]; positive steers right.

The reference values (AugmentConfig) are given in pixels of the simulator's 320-wide frame; the
crop is 128 wide, so shifts are converted here (CROP_PX_PER_FRAME_PX).
"""

from __future__ import annotations

import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)
import tensorflow as tf

from driving.config import CAMERAS, FRAME_WIDTH, INPUT_WIDTH, AugmentConfig

CROP_PX_PER_FRAME_PX = INPUT_WIDTH / FRAME_WIDTH  # the crop keeps the full width, resized 320 -> 128
FLIP_PROBABILITY = 0.5
SHADOW_DARKNESS = (0.2, 0.5)  # a shadow keeps this fraction of the light (classic reference values)


def camera_steering(correction: float) -> tf.Tensor:
    """Steering to add for each camera, in CAMERAS order. The left camera sees the road as if the
    car had drifted left, so its frame must steer more to the right (+); the right camera, less."""
    offsets = {"center": 0.0, "left": correction, "right": -correction}
    return tf.constant([offsets[c] for c in CAMERAS], tf.float32)


def choose_cameras(available: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One camera index per row, uniform among that row's available cameras (bool [B, 3])."""
    logits = tf.where(available, 0.0, float("-inf"))
    return tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]


def keep_mask(steering: tf.Tensor, seed: tf.Tensor, threshold: float, keep: float) -> tf.Tensor:
    """Which rows to train on this epoch: every turning row, and a random `keep` fraction of the
    near-straight ones (|steering| < threshold), which otherwise dominate a recording."""
    lucky = tf.random.stateless_uniform(tf.shape(steering), seed) < keep
    return (tf.abs(steering) >= threshold) | lucky


def flip(images: tf.Tensor, steering: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror half the frames left-right; a mirrored road needs the opposite steering."""
    flipped = tf.random.stateless_uniform(tf.shape(steering), seed) < FLIP_PROBABILITY
    images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images, tf.where(flipped, -steering, steering)


def brightness(images: tf.Tensor, seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Scale each frame's brightness by U(low, high). For factors <= 1 scaling RGB equals scaling
    HSV's V channel (what the classic projects do), without the colour-space round trip."""
    factor = tf.random.stateless_uniform(tf.shape(images)[:1], seed, low, high)
    return tf.clip_by_value(images * factor[:, None, None, None], 0.0, 255.0)


def shadow(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Darken the part of each frame on one side of a random line from the top edge to the bottom
    edge, like the shadow of a tree or a pole across the road."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    top_seed, bottom_seed, side_seed, dark_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    w = tf.cast(width, tf.float32)
    x_top = tf.random.stateless_uniform([batch], top_seed, 0.0, w)
    x_bottom = tf.random.stateless_uniform([batch], bottom_seed, 0.0, w)
    left_side = tf.random.stateless_uniform([batch], side_seed) < 0.5
    darkness = tf.random.stateless_uniform([batch], dark_seed, *SHADOW_DARKNESS)
    rows = tf.cast(tf.range(height), tf.float32) / tf.cast(height - 1, tf.float32)
    line_x = x_top[:, None] + (x_bottom - x_top)[:, None] * rows[None, :]  # [B, H]
    cols = tf.cast(tf.range(width), tf.float32)
    left_of_line = cols[None, None, :] < line_x[:, :, None]  # [B, H, W]
    shaded = tf.equal(left_of_line, left_side[:, None, None])
    factor = tf.where(shaded, darkness[:, None, None], 1.0)
    return images * factor[..., None]


def shift(images: tf.Tensor, steering: tf.Tensor, seed: tf.Tensor, max_px: float,
          steering_per_px: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Move each frame sideways by a whole number of crop pixels in [-max_px, max_px], filling
    with black (as cv2.warpAffine does). Content moved right means the road lies further right
    than the car expects: steer right, `steering_per_px` per crop pixel."""
    width = tf.shape(images)[2]
    px = tf.round(tf.random.stateless_uniform(tf.shape(steering), seed, -max_px, max_px))
    source_col = tf.range(width)[None, :] - tf.cast(px, tf.int32)[:, None]  # [B, W]
    inside = (source_col >= 0) & (source_col < width)
    moved = tf.gather(images, tf.clip_by_value(source_col, 0, width - 1), axis=2, batch_dims=1)
    images = tf.where(inside[:, None, :, None], moved, 0.0)
    return images, steering + px * steering_per_px


def augment_batch(images: tf.Tensor, steering: tf.Tensor, seed: tf.Tensor,
                  config: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply the switched-on transforms to a uint8 or float batch of crops -> float32 0..255.
    (Camera choice and straight-frame dropping act on rows, not pixels: see driving.pipeline.)"""
    images = tf.cast(images, tf.float32)
    shift_seed, flip_seed, bright_seed, shadow_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    if config.shift:
        images, steering = shift(images, steering, shift_seed,
                                 config.shift_max_px * CROP_PX_PER_FRAME_PX,
                                 config.shift_steering_per_px / CROP_PX_PER_FRAME_PX)
    if config.flip:
        images, steering = flip(images, steering, flip_seed)
    if config.brightness:
        images = brightness(images, bright_seed, *config.brightness_range)
    if config.shadow:
        images = shadow(images, shadow_seed)
    return images, steering
