"""Training-only random transforms, as vectorised TensorFlow ops on whole batches of cached crops.

The batch is the pipeline's uint8 crops (uint8 [B, H, W, 3], RGB); augment_batch returns
float32 values 0..255 for driving.preprocess.scale. Every transform draws its randomness from a
stateless seed (int [2]), so a training run is the same under a seed however many threads the
input pipeline uses. Steering is float32 [B]; positive steers right.

The reference values (AugmentConfig) are given in pixels of the camera frame (320 wide in the
simulator); the crop keeps the frame's full width, resized to the input width, so shifts are
converted with the run's Preprocessing (crop pixels per frame pixel).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from driving.config import CAMERAS, DEFAULT_PREPROCESSING, AugmentConfig, Preprocessing

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


def flip_and_shift(
    images: tf.Tensor,
    steering: tf.Tensor,
    seed: tf.Tensor,
    config: AugmentConfig,
    geometry: Preprocessing = DEFAULT_PREPROCESSING,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Shift each frame sideways by a whole number of crop pixels, then mirror half of them.

    Both only move whole columns, so a single gather does both (far cheaper than two passes).
    Content moved right means the road lies further right than the car expects: steer right,
    config.shift_steering_per_px per pixel of the camera frame. A mirrored road needs the
    opposite steering. Returns (images, steering, inside): inside is float32 [B, W], 0 for the
    columns shifted in from beyond the edge, which the caller paints black (as cv2.warpAffine does).
    """
    batch, width = tf.shape(images)[0], tf.shape(images)[2]
    shift_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    px = tf.zeros([batch], tf.int32)
    if config.shift:
        crop_px_per_frame_px = geometry.input_width / geometry.frame_width
        max_px = config.shift_max_px * crop_px_per_frame_px
        px = tf.cast(tf.round(tf.random.stateless_uniform([batch], shift_seed, -max_px, max_px)), tf.int32)
        steering = steering + tf.cast(px, tf.float32) * (config.shift_steering_per_px / crop_px_per_frame_px)
    flipped = tf.zeros([batch], tf.bool)
    if config.flip:
        flipped = tf.random.stateless_uniform([batch], flip_seed) < FLIP_PROBABILITY
        steering = tf.where(flipped, -steering, steering)
    # Output column c shows shifted column c (or W-1-c when mirrored), i.e. input column that - px.
    cols = tf.range(width)[None, :]
    source = tf.where(flipped[:, None], width - 1 - cols, cols) - px[:, None]  # [B, W]
    inside = tf.cast((source >= 0) & (source < width), tf.float32)
    images = tf.gather(images, tf.clip_by_value(source, 0, width - 1), axis=2, batch_dims=1)
    return images, steering, inside


def brightness(batch: tf.Tensor, seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Per-frame light factor U(low, high), float32 [B, 1, 1]. For factors <= 1 scaling RGB equals
    scaling HSV's V channel (what the classic projects do), without the colour-space round trip."""
    return tf.random.stateless_uniform([batch, 1, 1], seed, low, high)


def shadow(batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per-pixel light factor, float32 [B, H, W]: the part of each frame on one side of a random
    line from the top edge to the bottom edge keeps only SHADOW_DARKNESS of its light, like the
    shadow of a tree or a pole across the road."""
    top_seed, bottom_seed, side_seed, dark_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    w = tf.cast(width, tf.float32)
    x_top = tf.random.stateless_uniform([batch, 1], top_seed, 0.0, w)
    x_bottom = tf.random.stateless_uniform([batch, 1], bottom_seed, 0.0, w)
    left_side = tf.random.stateless_uniform([batch, 1, 1], side_seed) < 0.5
    darkness = tf.random.stateless_uniform([batch, 1, 1], dark_seed, *SHADOW_DARKNESS)
    rows = tf.cast(tf.range(height), tf.float32)[None, :] / tf.cast(height - 1, tf.float32)
    line_x = x_top + (x_bottom - x_top) * rows  # [B, H]: where the line crosses each row
    cols = tf.cast(tf.range(width), tf.float32)
    left_of_line = cols[None, None, :] < line_x[:, :, None]  # [B, H, W]
    return tf.where(tf.equal(left_of_line, left_side), darkness, 1.0)


# RGB <-> YIQ: hue turns the I/Q plane around the luma axis Y (the NTSC matrix). NumPy constants:
# a TensorFlow op at import time would start TensorFlow's runtime before a multi-worker strategy
# could configure it.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def colour(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Per-frame colour changes of float 0..255 frames: a hue rotation, a saturation change, a gain
    per channel (the colour of the light) and a contrast change, drawn within the config's ranges.
    Another world's palette, or another time of day, looks like this to the camera; without them
    a model learns the colours of the tracks it was recorded on (docs/evaluation.md)."""
    batch = tf.shape(images)[0]
    hue_seed, sat_seed, gain_seed, con_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    angle = tf.random.stateless_uniform([batch], hue_seed, -1.0, 1.0) * (config.hue_deg * 3.14159265 / 180)
    saturation = tf.random.stateless_uniform([batch], sat_seed, *config.saturation_range)
    cos, sin, one, zero = (
        tf.cos(angle) * saturation,
        tf.sin(angle) * saturation,
        tf.ones([batch]),
        tf.zeros([batch]),
    )
    turn = tf.reshape(tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1), [batch, 3, 3])
    mix = tf.einsum("ij,bjk,kl->bil", _YIQ_TO_RGB, turn, _RGB_TO_YIQ)  # [B, 3, 3] in RGB
    gain = 1.0 + tf.random.stateless_uniform([batch, 3], gain_seed, -config.channel_gain, config.channel_gain)
    mix = mix * gain[:, :, None]
    out = tf.einsum("bhwc,bdc->bhwd", images, mix)
    contrast = tf.random.stateless_uniform([batch, 1, 1, 1], con_seed, *config.contrast_range)
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value(mean + contrast * (out - mean), 0.0, 255.0)


RANDOM_CONV_SIZE = 3  # the filter's size in pixels, as in network randomisation (Lee et al., 2020)


def random_conv(images: tf.Tensor, seed: tf.Tensor, share: float) -> tf.Tensor:
    """Float 0..255 frames, `share` of them seen through a random filter: each chosen frame is
    convolved with a 3x3x3 -> 3 kernel of its own (weights N(0, 1/27)), the result is given the
    frame's own mean and spread, and mixed with the frame by a weight drawn from U(0, 1).

    A random filter keeps where edges are and changes what every surface looks like (colours,
    contrasts, textures, even inverted), which colour changes alone do not: a model trained on
    them must find the road by its shape (random convolutions: Lee et al., 2020; Xu et al., 2021).
    """
    batch = tf.shape(images)[0]
    kernel_seed, mix_seed, pick_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    taps = RANDOM_CONV_SIZE * RANDOM_CONV_SIZE * 3
    kernels = tf.random.stateless_normal([batch, taps, 3], kernel_seed, stddev=taps**-0.5)
    filtered = _convolve_each(images, tf.reshape(kernels, [batch, RANDOM_CONV_SIZE, RANDOM_CONV_SIZE, 3, 3]))
    mean, variance = tf.nn.moments(images, axes=[1, 2, 3], keepdims=True)
    f_mean, f_variance = tf.nn.moments(filtered, axes=[1, 2, 3], keepdims=True)
    filtered = mean + (filtered - f_mean) * tf.sqrt(variance / (f_variance + 1e-6))
    keep = tf.random.stateless_uniform([batch, 1, 1, 1], mix_seed)  # how much of the frame stays
    chosen = tf.random.stateless_uniform([batch, 1, 1, 1], pick_seed) < share
    mixed = keep * images + (1.0 - keep) * filtered
    return tf.where(chosen, tf.clip_by_value(mixed, 0.0, 255.0), images)


def _convolve_each(images: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
    """Frame b of [B, H, W, 3] convolved with kernels[b] ([k, k, 3 in, 3 out]), zero-padded to the
    same size. One depthwise convolution over the frames laid side by side as channels, whose
    per-channel outputs are then summed over the input colours: 6-8 times faster on this CPU than
    gathering 3x3 patches (bench/random_conv.py)."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    size = kernels.shape[1]
    side_by_side = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, batch * 3])
    filters = tf.reshape(tf.transpose(kernels, [1, 2, 0, 3, 4]), [size, size, batch * 3, 3])
    out = tf.nn.depthwise_conv2d(side_by_side, filters, [1, 1, 1, 1], "SAME")  # [1, H, W, B*3*3]
    out = tf.reduce_sum(tf.reshape(out, [height, width, batch, 3, 3]), axis=3)
    return tf.transpose(out, [2, 0, 1, 3])


def augment_batch(
    images: tf.Tensor,
    steering: tf.Tensor,
    seed: tf.Tensor,
    config: AugmentConfig,
    geometry: Preprocessing = DEFAULT_PREPROCESSING,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply the switched-on pixel transforms to a uint8 batch of crops -> float32 0..255.

    Moving columns happens on uint8 (a quarter of the bytes); all light changes (brightness,
    shadow, the black border of a shift) fold into one factor map, so the float batch is written
    once. Camera choice and straight-frame dropping act on rows: see driving.pipeline.
    """
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    move_seed, bright_seed, shadow_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    light = None
    if config.flip or config.shift:
        images, steering, inside = flip_and_shift(images, steering, move_seed, config, geometry)
        if config.shift:
            light = inside[:, None, :]
    if config.brightness:
        factor = brightness(batch, bright_seed, *config.brightness_range)
        light = factor if light is None else light * factor
    if config.shadow:
        factor = shadow(batch, height, width, shadow_seed)
        light = factor if light is None else light * factor
    images = tf.cast(images, tf.float32)
    if light is not None:
        images = images * light[..., None]
        if config.brightness and config.brightness_range[1] > 1.0:
            images = tf.minimum(images, 255.0)
    if config.colour:  # a stream of its own: switching it on leaves the others' draws unchanged
        images = colour(images, tf.random.experimental.stateless_fold_in(seed, 7), config)
    if config.random_conv:  # a stream of its own, like colour's
        images = random_conv(
            images, tf.random.experimental.stateless_fold_in(seed, 11), config.random_conv_share
        )
    return images, steering
