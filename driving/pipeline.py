"""The tf.data input pipeline: decode each JPEG once into a uint8 cache, then augment whole batches.

    cache   every image a split needs, decoded once (driving.preprocess.read_frame), checked to be
            of the run's frame size, cropped and resized (crop_resize) to uint8 [N, H, W, 3]
            (48 KiB a frame at 128x128). In memory (a CPU tf.Variable), or as an .npy file under
            cache_dir (memory-mapped, reused by later runs on the same files and geometry).
    train   infinite: each epoch re-draws which near-straight rows to keep, shuffles, then per
            batch picks cameras, gathers crops and augments them with vectorised ops in parallel.
    val     finite: center camera, no augmentation, in order.

Both yield (x float32 [B, H, W, 3] in [-0.5, 0.5], y float32 [B]); x goes through
driving.preprocess.scale, the same function that serves the model, so training equals serving.
One cache serves several models: each gets its own training stream from its own seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from driving import augment as aug
from driving.config import CAMERAS, DEFAULT_PREPROCESSING, AugmentConfig, Preprocessing
from driving.data.reader import (
    LoadSummary,
    RecordingError,
    drop_broken_images,
    find_recordings,
    load_recordings,
    split_by_recording,
    split_by_time,
)
from driving.files import atomic_path, remove_stale_temps, write_json
from driving.preprocess import FrameError, crop_resize, read_frame, scale

AUTOTUNE = tf.data.AUTOTUNE
Gather = Callable[[tf.Tensor], tf.Tensor]  # cache slots [B] -> uint8 crops [B, H, W, 3]
CHUNK = 256  # frames decoded between two writes into the cache


# --- The frame cache ----------------------------------------------------------------------------


@dataclass
class FrameCache:
    """Every image a split needs, decoded once: uint8 crops [N, H, W, 3] and where each file is."""

    images: tf.Variable | np.ndarray  # a CPU variable, or a memory-mapped .npy
    slot: dict[str, int]  # image path -> row of `images`
    broken: dict[str, str]  # image path -> why it could not be used (its row is black)

    def gather(self) -> Gather:
        """index tensor [B] -> uint8 crops. A memory-mapped cache is read in place, so it never
        has to fit in RAM."""
        images = self.images
        if isinstance(images, tf.Variable):
            return lambda index: tf.gather(images, index)
        shape = images.shape[1:]

        def read(index: tf.Tensor) -> tf.Tensor:
            crops = tf.numpy_function(
                lambda i: np.asarray(images[np.asarray(i)]), [index], tf.uint8, stateful=False
            )
            return tf.ensure_shape(crops, [None, *shape])

        return read


def _decode_crop(geometry: Preprocessing, path: str) -> tuple[np.ndarray | None, str | None]:
    try:
        frame = read_frame(path)
        if frame.shape != geometry.frame_shape:
            height, width = frame.shape[:2]
            raise FrameError(
                f"{path}: a {width}x{height} image; this run's frames are "
                f"{geometry.frame_width}x{geometry.frame_height} (its crop rows would be wrong)"
            )
        return crop_resize(frame, geometry), None
    except FrameError as e:
        return None, str(e)


def _cache_key(paths: Sequence[str], geometry: Preprocessing) -> str:
    """Names a disk cache by what it holds: the geometry and every file's path, size, mtime."""
    h = hashlib.sha1(json.dumps(geometry.to_dict(), sort_keys=True).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:16]


def _fill(
    write: Callable[[int, np.ndarray], None],
    paths: Sequence[str],
    geometry: Preprocessing,
    workers: int | None,
) -> dict[str, str]:
    """Decode `paths` in parallel, a chunk at a time (so at most a chunk of decoded frames waits
    in memory), handing each chunk of crops to write(first_index, crops). Returns the images that
    could not be used; their slots stay black."""
    broken = {}
    crops = np.zeros((CHUNK, *geometry.input_shape), np.uint8)
    decode = partial(_decode_crop, geometry)
    with (
        ThreadPoolExecutor(workers or os.cpu_count()) as pool,  # cv2 works without the GIL
        tqdm(total=len(paths), unit="img", desc="caching frames", leave=False, disable=None) as progress,
    ):
        for start in range(0, len(paths), CHUNK):
            part = paths[start : start + CHUNK]
            for i, (crop, why) in enumerate(pool.map(decode, part)):
                crops[i] = 0 if crop is None else crop
                if why is not None:
                    broken[part[i]] = why
            write(start, crops[: len(part)])
            progress.update(len(part))
    return broken


def _memory_cache(
    paths: Sequence[str], geometry: Preprocessing, workers: int | None
) -> tuple[tf.Variable, dict[str, str]]:
    # A variable filled chunk by chunk: converting a finished NumPy array would hold the cache
    # in memory two to three times over while TensorFlow copies it. On the CPU, where tf.data runs.
    with tf.device("/CPU:0"):
        cache = tf.Variable(tf.zeros((len(paths), *geometry.input_shape), tf.uint8), trainable=False)

    def write(start: int, chunk: np.ndarray) -> None:
        cache.scatter_update(tf.IndexedSlices(chunk, tf.range(start, start + len(chunk))))

    return cache, _fill(write, paths, geometry, workers)


def _write_rows(cache: np.ndarray, start: int, chunk: np.ndarray) -> None:
    cache[start : start + len(chunk)] = chunk


def _disk_cache(
    paths: Sequence[str], geometry: Preprocessing, cache_dir: Path, workers: int | None
) -> tuple[np.ndarray, dict[str, str]]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(cache_dir)
    npy = cache_dir / f"frames-{_cache_key(paths, geometry)}.npy"
    broken_json = npy.with_suffix(".broken.json")
    if npy.exists() and broken_json.exists():
        try:
            cache = np.load(npy, mmap_mode="r")
            if cache.shape == (len(paths), *geometry.input_shape):
                return cache, json.loads(broken_json.read_text())
        except (OSError, ValueError):
            pass  # unreadable: decoded again below, and replaced
    with atomic_path(npy) as tmp:
        cache = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *geometry.input_shape)
        )
        broken = _fill(partial(_write_rows, cache), paths, geometry, workers)
        cache.flush()
        del cache
        write_json(broken_json, broken)  # before the .npy is renamed: a finished cache has both
    return np.load(npy, mmap_mode="r"), broken


def build_cache(
    paths: Sequence[str],
    geometry: Preprocessing = DEFAULT_PREPROCESSING,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> FrameCache:
    """Decode, check, crop and resize each image once; images that cannot be used (unreadable,
    truncated, of another frame size) are listed in `broken` with the reason.

    In memory the cache is a CPU tf.Variable. With `cache_dir` it is an .npy file there, memory-
    mapped, so recordings larger than RAM work; a later call on the same unchanged files with the
    same geometry reuses it."""
    paths = list(dict.fromkeys(paths))
    if cache_dir is None:
        images, broken = _memory_cache(paths, geometry, workers)
    else:
        images, broken = _disk_cache(paths, geometry, Path(cache_dir), workers)
    return FrameCache(images, {p: i for i, p in enumerate(paths)}, broken)


def cameras_used(augment: AugmentConfig) -> list[str]:
    return list(CAMERAS) if augment.side_cameras else ["center"]


def images_needed(train: pd.DataFrame, val: pd.DataFrame, augment: AugmentConfig) -> list[str]:
    """Every image the split may read, sorted: the cameras in use of every row, training and
    validation alike. The list does not depend on which rows went to validation, so every split of
    the same recordings (each seed of a study) shares one disk cache instead of writing one of its
    own; validation reads only its centre images, so its side images cost a little decoding, once."""
    cameras = cameras_used(augment)
    rows = pd.concat([train[cameras], val[cameras]])
    return sorted({p for c in cameras for p in rows[c] if p})


def cache_split(
    train: pd.DataFrame,
    val: pd.DataFrame,
    augment: AugmentConfig = AugmentConfig(),
    geometry: Preprocessing = DEFAULT_PREPROCESSING,
    cache_dir: str | Path | None = None,
    summary: LoadSummary | None = None,
    strict: bool = False,
    workers: int | None = None,
) -> tuple[FrameCache, pd.DataFrame, pd.DataFrame]:
    """Build the cache of a split and drop the rows whose images could not be used, counting them
    in `summary` (RecordingError with `strict`): (cache, train, val)."""
    cache = build_cache(images_needed(train, val, augment), geometry, cache_dir, workers)
    train = drop_broken_images(train, cache.broken, summary, strict)
    centres = set(val["center"])  # a broken side image of a validation row is never read
    val = drop_broken_images(
        val, {p: why for p, why in cache.broken.items() if p in centres}, summary, strict
    )
    return cache, train, val


# --- Datasets -----------------------------------------------------------------------------------


def _camera_slots(frames: pd.DataFrame, cameras: Sequence[str], slot: dict[str, int]) -> np.ndarray:
    """int32 [rows, len(cameras)]: each image's cache slot, -1 where the row has no such image."""
    return np.array([[slot.get(p, -1) if p else -1 for p in frames[c]] for c in cameras], np.int32).T


def kept_rows(train: pd.DataFrame, augment: AugmentConfig = AugmentConfig()) -> float:
    """Rows an epoch keeps on average (near-straight rows are mostly dropped)."""
    rows = len(train)
    if augment.drop_straight:
        straight = int((train["steering"].abs() < augment.straight_threshold).sum())
        rows -= straight * (1.0 - augment.straight_keep)
    return rows


def steps_per_epoch(train: pd.DataFrame, batch_size: int, augment: AugmentConfig = AugmentConfig()) -> int:
    """Batches in one pass over the rows an epoch keeps on average."""
    return max(1, int(kept_rows(train, augment) // batch_size))


def _split_seed(seed: tf.Tensor, index: tf.Tensor) -> list[tf.Tensor]:
    """Two independent stateless seeds for item `index` of a stream seeded by `seed`."""
    folded = tf.random.experimental.stateless_fold_in(seed, index)
    return tf.unstack(tf.random.experimental.stateless_split(folded, 2))


def train_dataset(
    train: pd.DataFrame,
    cache: FrameCache,
    batch_size: int,
    augment: AugmentConfig = AugmentConfig(),
    geometry: Preprocessing = DEFAULT_PREPROCESSING,
    seed: int = 0,
) -> tf.data.Dataset:
    """Infinite, augmented (x, y) batches of `train`'s rows; the same seed gives the same batches."""
    if len(train) == 0:
        raise ValueError("no training frames left (see the load summary for why)")
    cameras = cameras_used(augment)
    slots = tf.constant(_camera_slots(train, cameras, cache.slot))
    steering = tf.constant(train["steering"].to_numpy(np.float32))
    offsets = aug.camera_steering(augment.steering_correction)[: len(cameras)]
    epoch_seed, batch_seed = tf.constant([seed, 0], tf.int64), tf.constant([seed, 1], tf.int64)
    gather = cache.gather()

    def epoch_rows(epoch: tf.Tensor) -> tf.data.Dataset:
        """This epoch's rows: near-straight ones re-drawn, then shuffled."""
        keep_seed, shuffle_seed = _split_seed(epoch_seed, epoch)
        rows = tf.range(tf.shape(steering)[0])
        if augment.drop_straight:
            keep = aug.keep_mask(steering, keep_seed, augment.straight_threshold, augment.straight_keep)
            keep = keep | ~tf.reduce_any(keep)  # never an empty epoch
            rows = tf.boolean_mask(rows, keep)
        rows = tf.random.experimental.stateless_shuffle(rows, shuffle_seed)
        return tf.data.Dataset.from_tensor_slices(rows)

    def make_batch(batch: tf.Tensor, rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        camera_seed, pixel_seed = _split_seed(batch_seed, batch)
        row_slots = tf.gather(slots, rows)
        camera = aug.choose_cameras(row_slots >= 0, camera_seed) if len(cameras) > 1 else tf.zeros_like(rows)
        y = tf.gather(steering, rows) + tf.gather(offsets, camera)
        crops = gather(tf.gather(row_slots, camera, batch_dims=1))
        images, y = aug.augment_batch(crops, y, pixel_seed, augment, geometry)
        return scale(images), tf.clip_by_value(y, -1.0, 1.0)

    return (
        tf.data.Dataset.counter()
        .flat_map(epoch_rows)
        .batch(batch_size, drop_remainder=True)
        .enumerate()
        .map(make_batch, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def val_dataset(val: pd.DataFrame, cache: FrameCache, batch_size: int) -> tf.data.Dataset:
    """Finite (x, y) batches of `val`'s center frames, in order, not augmented."""
    slots = np.array([cache.slot[p] for p in val["center"]], np.int64)
    steering = val["steering"].to_numpy(np.float32)
    gather = cache.gather()

    def make_batch(index: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return scale(tf.cast(gather(index), tf.float32)), y

    return (
        tf.data.Dataset.from_tensor_slices((slots, steering))
        .batch(batch_size)
        .map(make_batch, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def build_datasets(
    train: pd.DataFrame,
    val: pd.DataFrame,
    batch_size: int = 128,
    augment: AugmentConfig = AugmentConfig(),
    seed: int = 0,
    cache_dir: str | Path | None = None,
    summary: LoadSummary | None = None,
    strict: bool = False,
    workers: int | None = None,
    geometry: Preprocessing = DEFAULT_PREPROCESSING,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Training and validation datasets from frame tables (driving.data.reader.Recordings.frames), with
    their own cache: (train, val). See cache_split, train_dataset and val_dataset."""
    cache, train, val = cache_split(train, val, augment, geometry, cache_dir, summary, strict, workers)
    return (
        train_dataset(train, cache, batch_size, augment, geometry, seed),
        val_dataset(val, cache, batch_size),
    )


def frames_from_folders(
    folders: Sequence[str | Path],
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    block_seconds: float = 10.0,
    val_folders: Sequence[str | Path] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, LoadSummary]:
    """Load recordings and split them: (train, val, summary). By blocks of time; or, given
    `val_folders` (train.py --val-data), every row of `folders` trains and every row of
    `val_folders` validates. RecordingError, in one line, for a recording named on both sides or
    held-out recordings without a usable row."""
    if not val_folders:
        recordings = load_recordings(folders, strict=strict)
        train, val = split_by_time(recordings.frames, val_fraction, block_seconds, seed)
        return train, val, recordings.summary
    try:
        held_out = find_recordings(val_folders)
    except RecordingError as e:
        raise RecordingError(f"--val-data: {e}") from None
    training = find_recordings(folders)
    shared = [r for r in training if r in held_out]
    if shared:
        raise RecordingError(
            f"--val-data: {shared[0]} is a training recording too (--data); validate on others"
        )
    recordings = load_recordings([*training, *held_out], strict=strict)  # found once, above
    train, val = split_by_recording(recordings.frames, held_out)
    if len(val) == 0:
        raise RecordingError(
            f"--val-data {' '.join(map(str, val_folders))}: no usable rows\n{recordings.summary}"
        )
    return train, val, recordings.summary
