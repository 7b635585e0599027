"""The tf.data input pipeline: decode each JPEG once into a uint8 cache, then augment whole batches.

    cache   every image the split needs, decoded once (driving.preprocess.read_frame), cropped and
            resized (crop_resize) to uint8 [N, 128, 128, 3]: 48 KiB a frame. In memory (a CPU
            tf.Variable), or as an .npy file under cache_dir (memory-mapped, reused by later runs
            on the same files).
    train   infinite: each epoch re-draws which near-straight rows to keep, shuffles, then per
            batch picks cameras, gathers crops and augments them with vectorised ops in parallel.
    val     finite: center camera, no augmentation, in order.

Both yield (x float32 [B, 128, 128, 3] in [-0.5, 0.5], y float32 [B]); x goes through
driving.preprocess.scale, the same function that serves the model, so training equals serving.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from driving import augment as aug
from driving.config import CAMERAS, CROP_BOTTOM, CROP_TOP, INPUT_SHAPE, AugmentConfig
from driving.data import LoadSummary, drop_broken_images, load_recordings, split_by_time
from driving.preprocess import FrameError, crop_resize, read_frame, scale

AUTOTUNE = tf.data.AUTOTUNE
Gather = Callable[[tf.Tensor], tf.Tensor]  # cache slots [B] -> uint8 crops [B, 128, 128, 3]


# --- The frame cache ----------------------------------------------------------------------------

CHUNK = 256  # frames decoded between two writes into the cache


def _decode_crop(path: str) -> tuple[np.ndarray | None, str | None]:
    try:
        return crop_resize(read_frame(path)), None
    except FrameError as e:
        return None, str(e)


def _cache_key(paths: Sequence[str]) -> str:
    """Names a disk cache by what it holds: the preprocessing and every file's path, size, mtime."""
    h = hashlib.sha1(json.dumps([CROP_TOP, CROP_BOTTOM, INPUT_SHAPE]).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _fill(
    write: Callable[[int, np.ndarray], None], paths: Sequence[str], workers: int | None
) -> dict[str, str]:
    """Decode `paths` in parallel, a chunk at a time (so at most a chunk of decoded frames waits
    in memory), handing each chunk of crops to write(first_index, crops). Returns the images that
    could not be decoded; their slots stay black."""
    broken = {}
    crops = np.zeros((CHUNK, *INPUT_SHAPE), np.uint8)
    with (
        ThreadPoolExecutor(workers or os.cpu_count()) as pool,  # cv2 works without the GIL
        tqdm(total=len(paths), unit="img", desc="caching frames", leave=False, disable=None) as progress,
    ):
        for start in range(0, len(paths), CHUNK):
            part = paths[start : start + CHUNK]
            for i, (crop, why) in enumerate(pool.map(_decode_crop, part)):
                crops[i] = 0 if crop is None else crop
                if why is not None:
                    broken[part[i]] = why
            write(start, crops[: len(part)])
            progress.update(len(part))
    return broken


def _memory_cache(paths: Sequence[str], workers: int | None) -> tuple[tf.Variable, dict[str, str]]:
    # A variable filled chunk by chunk: converting a finished NumPy array would hold the cache
    # in memory two to three times over while TensorFlow copies it. On the CPU, where tf.data runs.
    with tf.device("/CPU:0"):
        cache = tf.Variable(tf.zeros((len(paths), *INPUT_SHAPE), tf.uint8), trainable=False)

    def write(start: int, chunk: np.ndarray) -> None:
        cache.scatter_update(tf.IndexedSlices(chunk, tf.range(start, start + len(chunk))))

    return cache, _fill(write, paths, workers)


def _write_rows(cache: np.ndarray, start: int, chunk: np.ndarray) -> None:
    cache[start : start + len(chunk)] = chunk


def _disk_cache(
    paths: Sequence[str], cache_dir: Path, workers: int | None
) -> tuple[np.ndarray, dict[str, str]]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    npy = cache_dir / f"frames-{_cache_key(paths)}.npy"
    broken_json = npy.with_suffix(".broken.json")
    if npy.exists() and broken_json.exists():
        return np.load(npy, mmap_mode="r"), json.loads(broken_json.read_text())
    tmp = npy.with_name("." + npy.name + ".tmp")
    cache = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *INPUT_SHAPE))
    broken = _fill(partial(_write_rows, cache), paths, workers)
    cache.flush()
    del cache
    tmp_json = broken_json.with_name("." + broken_json.name + ".tmp")
    tmp_json.write_text(json.dumps(broken))
    os.replace(tmp_json, broken_json)
    os.replace(tmp, npy)  # last: a half-written cache is never taken for a finished one
    return np.load(npy, mmap_mode="r"), broken


def build_cache(
    paths: Sequence[str], cache_dir: str | Path | None = None, workers: int | None = None
) -> tuple[tf.Variable | np.ndarray, dict[str, str]]:
    """Decode, crop and resize each image once into uint8 [len(paths), 128, 128, 3]; also returns
    the images that could not be decoded (path -> why; their slots are black).

    In memory the cache is a CPU tf.Variable. With `cache_dir` it is an .npy file there, memory-
    mapped, so recordings larger than RAM work; a later call on the same unchanged files reuses it.
    """
    paths = list(paths)
    if cache_dir is None:
        return _memory_cache(paths, workers)
    return _disk_cache(paths, Path(cache_dir), workers)


def _gather_fn(cache: tf.Variable | np.ndarray) -> Gather:
    """index tensor [B] -> uint8 crops [B, 128, 128, 3]. A memory-mapped cache is read in place,
    so it never has to fit in RAM."""
    if isinstance(cache, tf.Variable):
        return lambda index: tf.gather(cache, index)

    def read(index: tf.Tensor) -> tf.Tensor:
        crops = tf.numpy_function(
            lambda i: np.asarray(cache[np.asarray(i)]), [index], tf.uint8, stateful=False
        )
        return tf.ensure_shape(crops, [None, *INPUT_SHAPE])

    return read


# --- Datasets -----------------------------------------------------------------------------------


def _camera_slots(frames: pd.DataFrame, cameras: Sequence[str], slot: dict[str, int]) -> np.ndarray:
    """int32 [rows, len(cameras)]: each image's cache slot, -1 where the row has no such image."""
    return np.array([[slot.get(p, -1) if p else -1 for p in frames[c]] for c in cameras], np.int32).T


def steps_per_epoch(train: pd.DataFrame, batch_size: int, augment: AugmentConfig = AugmentConfig()) -> int:
    """Batches in one pass over the rows an epoch keeps on average (after dropping straight rows)."""
    rows = len(train)
    if augment.drop_straight:
        straight = int((train["steering"].abs() < augment.straight_threshold).sum())
        rows -= straight * (1.0 - augment.straight_keep)
    return max(1, int(rows // batch_size))


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
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Training and validation datasets from frame tables (driving.data.Recordings.frames).

    train: infinite, augmented; val: finite, center camera, not augmented. Both yield
    (x float32 [B, 128, 128, 3] in [-0.5, 0.5], y float32 [B]); the last val batch may be smaller.
    Rows with an image that cannot be decoded are dropped and counted in `summary` (RecordingError
    with `strict`). Same seed, same batches.
    """
    cameras = list(CAMERAS) if augment.side_cameras else ["center"]
    needed = list(dict.fromkeys([p for c in cameras for p in train[c] if p] + list(val["center"])))
    cache, broken = build_cache(needed, cache_dir, workers)
    train = drop_broken_images(train, broken, summary, strict)
    val = drop_broken_images(val, broken, summary, strict)
    if len(train) == 0:
        raise ValueError("no training frames left (see the load summary for why)")
    slot = {p: i for i, p in enumerate(needed)}
    gather = _gather_fn(cache)
    return (
        _train_dataset(train, cameras, slot, gather, batch_size, augment, seed),
        _val_dataset(val, slot, gather, batch_size),
    )


def _train_dataset(
    train: pd.DataFrame,
    cameras: list[str],
    slot: dict[str, int],
    gather: Gather,
    batch_size: int,
    augment: AugmentConfig,
    seed: int,
) -> tf.data.Dataset:
    slots = tf.constant(_camera_slots(train, cameras, slot))
    steering = tf.constant(train["steering"].to_numpy(np.float32))
    offsets = aug.camera_steering(augment.steering_correction)[: len(cameras)]
    epoch_seed, batch_seed = tf.constant([seed, 0], tf.int64), tf.constant([seed, 1], tf.int64)

    def epoch_rows(epoch: tf.Tensor) -> tf.data.Dataset:
        """This epoch's rows: near-straight ones re-drawn, then shuffled."""
        keep_seed, shuffle_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(epoch_seed, epoch), 2
            )
        )
        rows = tf.range(tf.shape(steering)[0])
        if augment.drop_straight:
            keep = aug.keep_mask(steering, keep_seed, augment.straight_threshold, augment.straight_keep)
            keep = keep | ~tf.reduce_any(keep)  # never an empty epoch
            rows = tf.boolean_mask(rows, keep)
        rows = tf.random.experimental.stateless_shuffle(rows, shuffle_seed)
        return tf.data.Dataset.from_tensor_slices(rows)

    def make_batch(batch: tf.Tensor, rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        camera_seed, pixel_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(batch_seed, batch), 2
            )
        )
        row_slots = tf.gather(slots, rows)
        camera = aug.choose_cameras(row_slots >= 0, camera_seed) if len(cameras) > 1 else tf.zeros_like(rows)
        y = tf.gather(steering, rows) + tf.gather(offsets, camera)
        crops = gather(tf.gather(row_slots, camera, batch_dims=1))
        images, y = aug.augment_batch(crops, y, pixel_seed, augment)
        return scale(images), tf.clip_by_value(y, -1.0, 1.0)

    return (
        tf.data.Dataset.counter()
        .flat_map(epoch_rows)
        .batch(batch_size, drop_remainder=True)
        .enumerate()
        .map(make_batch, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def _val_dataset(val: pd.DataFrame, slot: dict[str, int], gather: Gather, batch_size: int) -> tf.data.Dataset:
    slots = np.array([slot[p] for p in val["center"]], np.int64)
    steering = val["steering"].to_numpy(np.float32)

    def make_batch(index: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return scale(tf.cast(gather(index), tf.float32)), y

    return (
        tf.data.Dataset.from_tensor_slices((slots, steering))
        .batch(batch_size)
        .map(make_batch, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def frames_from_folders(
    folders: Sequence[str | Path],
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    block_seconds: float = 10.0,
) -> tuple[pd.DataFrame, pd.DataFrame, LoadSummary]:
    """Load recordings and split them by blocks of time: (train, val, summary)."""
    recordings = load_recordings(folders, strict=strict)
    train, val = split_by_time(recordings.frames, val_fraction, block_seconds, seed)
    return train, val, recordings.summary
