"""The tf.data pipeline and its augmentations, on real recordings written by the tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from driving import augment as aug
from driving import pipeline
from driving.config import FRAME_HEIGHT, FRAME_WIDTH, INPUT_SHAPE, AugmentConfig
from driving.data import reader
from driving.data.writer import RecordingWriter
from driving.preprocess import preprocess, read_frame
from tests.conftest import road_frame, write_recording

OFF = AugmentConfig.off()


def take(dataset: tf.data.Dataset, batches: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(batches)]


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Path:
    return write_recording(tmp_path_factory.mktemp("pipeline") / "rec", n=30)


@pytest.fixture(scope="module")
def frames(rec):
    return reader.load_recordings([rec]).frames


def test_batches_have_the_promised_shapes_types_and_ranges(frames):
    train, val = pipeline.build_datasets(frames.iloc[:20], frames.iloc[20:], batch_size=8)
    for x, y in take(train, 4):
        assert x.shape == (8, *INPUT_SHAPE) and x.dtype == np.float32
        assert y.shape == (8,) and y.dtype == np.float32
        assert x.min() >= -0.5 and x.max() <= 0.5 and np.all(np.abs(y) <= 1)
    sizes = [len(y) for _, y in take(val, 100)]
    assert sizes == [8, 2]  # finite: every validation row once


def test_training_input_equals_serving_input_on_the_same_frame(frames):
    train, val = pipeline.build_datasets(frames.iloc[:10], frames.iloc[10:], batch_size=7, augment=OFF)
    served = np.stack([preprocess(read_frame(p)) for p in frames["center"].iloc[10:]])
    x_val = np.concatenate([x for x, _ in take(val, 100)])
    y_val = np.concatenate([y for _, y in take(val, 100)])
    np.testing.assert_allclose(x_val, served, atol=1e-6)
    np.testing.assert_allclose(y_val, frames["steering"].iloc[10:], atol=1e-6)
    by_steering = {
        round(s, 5): preprocess(read_frame(p))
        for s, p in zip(frames["steering"].iloc[:10], frames["center"].iloc[:10])
    }
    for x, y in take(train, 3):  # steering values are distinct, so they name the row
        for image, steering in zip(x, y):
            np.testing.assert_allclose(image, by_steering[round(float(steering), 5)], atol=1e-6)


def solid(rgb: tuple[int, int, int]) -> np.ndarray:
    frame = np.empty((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    frame[:] = rgb
    return frame


def test_a_left_camera_frame_steers_more_to_the_right(tmp_path):
    colours = {"center": (128, 128, 128), "left": (220, 30, 30), "right": (30, 30, 220)}
    with RecordingWriter(tmp_path / "rec") as rec:
        for i in range(12):
            rec.write(
                datetime(2016, 12, 1) + timedelta(seconds=i / 15),
                *(solid(c) for c in colours.values()),
                steering=0.1,
            )
    frames = reader.load_recordings([tmp_path / "rec"]).frames
    cameras_only = replace(OFF, side_cameras=True, steering_correction=0.25)
    train, _ = pipeline.build_datasets(frames, frames.iloc[:0], batch_size=12, augment=cameras_only)
    expected = {"center": 0.1, "left": 0.35, "right": -0.15}
    seen = set()
    for x, y in take(train, 4):
        red, blue = x[:, 64, 64, 0], x[:, 64, 64, 2]
        camera = np.where(red > blue + 0.3, "left", np.where(blue > red + 0.3, "right", "center"))
        for c, steering in zip(camera, y):
            assert steering == pytest.approx(expected[c], abs=1e-6), c
            seen.add(str(c))
    assert seen == {"center", "left", "right"}


def test_flip_mirrors_the_frame_and_negates_steering():
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (64, 8, 16, 3), np.uint8))
    steering = tf.linspace(-0.9, 0.9, 64)
    out, y, inside = aug.flip_and_shift(images, steering, tf.constant([1, 2]), replace(OFF, flip=True))
    flipped = y.numpy() != steering.numpy()
    assert 16 < flipped.sum() < 48 and np.all(inside.numpy() == 1)  # about half, no border
    np.testing.assert_allclose(y.numpy()[flipped], -steering.numpy()[flipped], atol=1e-7)
    np.testing.assert_array_equal(out.numpy()[flipped], images.numpy()[flipped][:, :, ::-1])
    np.testing.assert_array_equal(out.numpy()[~flipped], images.numpy()[~flipped])


def test_shift_moves_the_frame_and_corrects_steering_by_the_pixels_moved():
    images = np.zeros((64, 4, 128, 3), np.uint8)
    images[:, :, 60] = 255  # a bright line at column 60
    cfg = replace(OFF, shift=True, shift_max_px=40.0, shift_steering_per_px=0.004)
    out, y, inside = aug.flip_and_shift(tf.constant(images), tf.zeros(64), tf.constant([3, 4]), cfg)
    moved = out.numpy()[:, 0, :, 0].argmax(axis=1) - 60  # crop pixels, right positive
    assert moved.min() < -5 and moved.max() > 5 and np.abs(moved).max() <= 16  # 40 * 128/320
    # one crop pixel is 320/128 frame pixels: right (+) steers right (+)
    np.testing.assert_allclose(y, moved * 0.004 * 320 / 128, atol=1e-6)
    gap = 1 - inside.numpy()  # columns shifted in from outside are black
    assert np.all(gap.sum(axis=1) == np.abs(moved))


def test_brightness_and_shadow_only_darken_by_their_reference_factors():
    images = tf.fill([32, 16, 16, 3], 200)
    images = tf.cast(images, tf.uint8)
    bright, _ = aug.augment_batch(
        images, tf.zeros(32), tf.constant([5, 6]), replace(OFF, brightness=True, brightness_range=(0.1, 1.0))
    )
    ratio = bright.numpy() / 200.0
    assert np.allclose(ratio, ratio[:, :1, :1, :1], atol=1e-6)  # one factor per frame
    assert ratio.min() >= 0.1 and ratio.max() <= 1.0 and ratio.std() > 0.1
    shaded, _ = aug.augment_batch(images, tf.zeros(32), tf.constant([5, 6]), replace(OFF, shadow=True))
    shadowed = 0
    for frame in shaded.numpy()[..., 0] / 200.0:
        dark = frame[frame < 1]
        if dark.size:  # one darkness per frame, within the reference range; the rest untouched
            shadowed += 1
            assert dark.min() >= 0.2 and dark.max() <= 0.5 and np.ptp(dark) < 1e-6
            assert np.all(frame[frame >= 1] == 1)
    assert shadowed > 16


def test_colour_changes_each_frame_keeps_the_range_and_leaves_the_other_draws_alone():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (16, 32, 32, 3)), tf.uint8)
    seed = tf.constant([5, 6])
    plain, _ = aug.augment_batch(images, tf.zeros(16), seed, replace(OFF, colour=False))
    coloured, _ = aug.augment_batch(images, tf.zeros(16), seed, replace(OFF, colour=True))
    plain, coloured = plain.numpy(), coloured.numpy()
    np.testing.assert_array_equal(plain, images.numpy().astype(np.float32))  # off: untouched
    assert coloured.min() >= 0 and coloured.max() <= 255
    changed = np.abs(coloured - plain).mean(axis=(1, 2, 3))
    assert (changed > 1).all() and np.std(changed) > 0.5  # every frame, each its own way
    # Switching colour on does not change what the flips, shifts and light draw.
    full = replace(AugmentConfig(), side_cameras=False, drop_straight=False)
    a, ya = aug.augment_batch(images, tf.zeros(16), seed, replace(full, colour=False))
    b, yb = aug.augment_batch(images, tf.zeros(16), seed, replace(full, colour=True))
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_each_frame_is_convolved_with_its_own_kernel():
    rng = np.random.default_rng(1)
    images = tf.constant(rng.uniform(0, 255, (4, 9, 11, 3)), tf.float32)
    kernels = tf.constant(rng.normal(size=(4, 3, 3, 3, 3)), tf.float32)
    got = aug._convolve_each(images, kernels).numpy()
    for b in range(4):  # the reference: one ordinary convolution per frame
        want = tf.nn.conv2d(images[b : b + 1], kernels[b], 1, "SAME").numpy()[0]
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-2)


def test_random_convolutions_repaint_a_share_of_frames_and_keep_their_edges():
    # A road edge: the left half one colour, the right half another, a colour of its own per frame.
    rng = np.random.default_rng(2)
    frames = np.zeros((200, 16, 24, 3), np.uint8)
    frames[:, :, :12] = rng.integers(0, 256, (200, 1, 1, 3))
    frames[:, :, 12:] = rng.integers(0, 256, (200, 1, 1, 3))
    images, seed = tf.constant(frames), tf.constant([3, 4])
    config = replace(OFF, random_conv=True, random_conv_share=0.5)
    out, _ = aug.augment_batch(images, tf.zeros(200), seed, config)
    again, _ = aug.augment_batch(images, tf.zeros(200), seed, config)
    out = out.numpy()
    np.testing.assert_array_equal(out, again.numpy())  # stateless: the same seed, the same frames
    assert out.min() >= 0 and out.max() <= 255
    changed = (out != frames).any(axis=(1, 2, 3))
    assert 0.35 < changed.mean() < 0.65
    untouched = ~changed
    np.testing.assert_array_equal(out[untouched], frames[untouched].astype(np.float32))
    # Inside each half (away from the edge and the zero padding) a filtered frame is flat again:
    # the filter changed the colours, not where the edge is.
    inner = out[changed][:, 2:-2]
    for half in (inner[:, :, 2:10], inner[:, :, 14:22]):
        assert np.ptp(half, axis=(1, 2)).max() < 1e-2
    repainted = np.abs(inner[:, :, 2:10].mean(axis=(1, 2)) - frames[changed][:, 0, 0]).max(axis=1)
    assert np.median(repainted) > 10  # the colours did change
    # Off: untouched; on: it does not change what the other transforms draw.
    plain, _ = aug.augment_batch(images, tf.zeros(200), seed, OFF)
    np.testing.assert_array_equal(plain.numpy(), frames.astype(np.float32))
    full = replace(AugmentConfig(), side_cameras=False, drop_straight=False)
    _, ya = aug.augment_batch(images, tf.zeros(200), seed, full)
    _, yb = aug.augment_batch(images, tf.zeros(200), seed, replace(full, random_conv=True))
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_near_straight_rows_are_redrawn_each_epoch():
    steering = tf.constant(np.r_[np.zeros(5000), np.full(1000, 0.3)], tf.float32)
    first = aug.keep_mask(steering, tf.constant([0, 1]), 0.01, 0.2).numpy()
    second = aug.keep_mask(steering, tf.constant([0, 2]), 0.01, 0.2).numpy()
    assert first[5000:].all() and 0.17 < first[:5000].mean() < 0.23
    assert (first[:5000] != second[:5000]).mean() > 0.2


def test_dropping_straight_frames_in_the_pipeline(tmp_path):
    with RecordingWriter(tmp_path / "rec") as rec:
        for i in range(40):
            rec.write(
                datetime(2016, 12, 1) + timedelta(seconds=i / 15),
                road_frame(0.0),
                steering=0.0 if i % 2 else 0.4,
            )
    frames = reader.load_recordings([tmp_path / "rec"]).frames
    cfg = replace(OFF, drop_straight=True)
    train, _ = pipeline.build_datasets(frames, frames.iloc[:0], batch_size=10, augment=cfg)
    y = np.concatenate([y for _, y in take(train, 30)])
    assert 0.1 < (y == 0).mean() < 0.25  # 20 x 0.2 straight among 20 turning: 1/6 expected
    assert pipeline.steps_per_epoch(frames, 10, cfg) == 2  # (20 + 4) // 10


def test_same_seed_same_batches_other_seed_other_batches(frames):
    def first_batches(seed):
        train, _ = pipeline.build_datasets(frames, frames.iloc[:0], batch_size=8, seed=seed)
        return take(train, 3)

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][1], c[0][1])


def _truncate(frames, camera: str, row: int) -> Path:
    """Cut one image of `frames` short, as a crash mid-write leaves a JPEG; returns its path."""
    path = Path(frames[camera].iloc[row])
    path.write_bytes(path.read_bytes()[:300])
    return path


def test_a_broken_jpeg_is_dropped_and_counted_not_fatal(tmp_path):
    rec = write_recording(tmp_path / "rec", n=10)
    loaded = reader.load_recordings([rec])
    frames = loaded.frames
    _truncate(frames, "left", 3)
    with pytest.raises(reader.RecordingError, match=r"line 4: .*left_.*truncated JPEG"):
        pipeline.build_datasets(frames.iloc[:6], frames.iloc[6:], batch_size=4, strict=True)
    train, val = pipeline.build_datasets(
        frames.iloc[:6], frames.iloc[6:], batch_size=4, summary=loaded.summary
    )
    assert loaded.summary.skipped == {reader.BROKEN_IMAGE: 1} and loaded.summary.used == 9
    assert len(take(train, 2)) == 2
    # Without side cameras the broken left image is not needed, so nothing is dropped.
    train, _ = pipeline.build_datasets(frames.iloc[:6], frames.iloc[6:], batch_size=6, augment=OFF)
    assert sorted(np.round(take(train, 1)[0][1], 5)) == sorted(np.round(frames["steering"].iloc[:6], 5))


def test_disk_cache_gives_the_same_batches_and_is_reused(frames, tmp_path):
    memory, _ = pipeline.build_datasets(frames, frames.iloc[:0], batch_size=8, seed=5)
    disk, _ = pipeline.build_datasets(
        frames, frames.iloc[:0], batch_size=8, seed=5, cache_dir=tmp_path / "cache"
    )
    npy = list((tmp_path / "cache").glob("frames-*.npy"))
    assert len(npy) == 1 and not list((tmp_path / "cache").glob(".*tmp"))
    written = npy[0].stat().st_mtime_ns
    again, _ = pipeline.build_datasets(
        frames, frames.iloc[:0], batch_size=8, seed=5, cache_dir=tmp_path / "cache"
    )
    assert npy[0].stat().st_mtime_ns == written
    for (xm, ym), (xd, yd), (xa, _) in zip(take(memory, 2), take(disk, 2), take(again, 2)):
        np.testing.assert_array_equal(xm, xd)
        np.testing.assert_array_equal(xm, xa)
        np.testing.assert_array_equal(ym, yd)


def test_every_split_of_the_same_recordings_shares_one_disk_cache(tmp_path):
    rec = write_recording(tmp_path / "rec", n=12)
    frames = reader.load_recordings([rec]).frames
    cache = tmp_path / "cache"
    batches = []
    for val_rows in (slice(0, 3), slice(9, 12)):  # two seeds' splits: other rows held out
        val = frames.iloc[val_rows]
        train = frames.drop(val.index)
        built, _ = pipeline.build_datasets(train, val, batch_size=4, seed=1, cache_dir=cache)
        batches.append(take(built, 1)[0])
    assert len(list(cache.glob("frames-*.npy"))) == 1
    memory, _ = pipeline.build_datasets(train, val, batch_size=4, seed=1)
    np.testing.assert_array_equal(take(memory, 1)[0][0], batches[1][0])


def test_a_broken_side_image_of_a_validation_row_does_not_drop_it(tmp_path):
    rec = write_recording(tmp_path / "rec", n=10)
    loaded = reader.load_recordings([rec])
    frames = loaded.frames
    side = _truncate(frames, "left", 8)
    cache, train, val = pipeline.cache_split(
        frames.iloc[:6], frames.iloc[6:], summary=loaded.summary, strict=True
    )
    assert len(train) == 6 and len(val) == 4 and str(side) in cache.broken


def test_frames_from_folders_splits_by_time(tmp_path):
    write_recording(tmp_path / "r", n=45, sides=False)
    train, val, summary = pipeline.frames_from_folders([tmp_path / "r"], val_fraction=0.3, block_seconds=1.0)
    assert summary.used == 45 and len(train) + len(val) == 45
    assert len(val) == 15 and np.all(np.diff(val["row"]) == 1)
