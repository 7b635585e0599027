"""Input pipeline throughput: the classic per-image Python generator against driving.pipeline.

Both read the same recording (written here, in the simulator's format) with the same augmentations
switched on. The classic generator is how the original Udacity projects feed Keras: one process,
one image at a time, decode the JPEG, augment the full frame with OpenCV/NumPy, crop and resize.
driving.pipeline decodes every JPEG once into a uint8 cache and augments whole batches with
vectorised TensorFlow ops in parallel. Its rate is measured after the first epoch (which pays for
building the cache and tracing the graph).

    python bench/pipeline.py [--rows 1000] [--batch-size 128] [--seconds 8] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driving.config import CAMERAS, FRAME_HEIGHT, FRAME_WIDTH, INPUT_SHAPE, SAMPLE_RATE_HZ, AugmentConfig
from driving.data.reader import load_recordings
from driving.data.writer import RecordingWriter
from driving.preprocess import preprocess, read_frame

# --- A recording to read ------------------------------------------------------------------------


def synthetic_recording(folder: Path, rows: int, seed: int = 0) -> Path:
    """Road scenes with camera noise (JPEGs of realistic size); like a real recording, most rows
    drive straight (steering exactly 0)."""
    rng = np.random.default_rng(seed)
    h, w = FRAME_HEIGHT, FRAME_WIDTH
    background = np.empty((h, w, 3), np.uint8)
    background[: h // 2], background[h // 2 :] = (120, 170, 230), (70, 140, 60)  # sky, grass
    noise_up, noise_down = rng.integers(0, 11, (2, h, 2 * w, 3), dtype=np.uint8)
    depth = np.linspace(0, 1, h - h // 2)[:, None]  # 0 at the horizon, 1 at the bottom
    cols = np.arange(w)[None, :]

    def scene(offset: float) -> np.ndarray:
        img = background.copy()
        img[h // 2 :][np.abs(cols - (w / 2 + offset * w / 2 * depth)) < 20 + 120 * depth] = (90, 90, 95)
        s = int(rng.integers(0, w))  # camera noise, saturating like a sensor's
        return cv2.subtract(cv2.add(img, noise_up[:, s : s + w]), noise_down[:, s : s + w])

    t0 = datetime(2016, 12, 1, 13, 30, 48, 287000)
    with RecordingWriter(folder) as rec:
        for i in range(rows):
            steering = 0.0 if rng.random() < 0.6 else float(rng.uniform(-0.6, 0.6))
            rec.write(
                t0 + timedelta(seconds=i / SAMPLE_RATE_HZ),
                scene(steering),
                scene(np.clip(steering - 0.3, -1, 1)),
                scene(np.clip(steering + 0.3, -1, 1)),
                steering=steering,
                throttle=0.3,
                speed=20.0,
            )
    return folder


# --- The classic generator ----------------------------------------------------------------------


def classic_batches(
    paths: np.ndarray, steering: np.ndarray, batch_size: int, cfg: AugmentConfig, seed: int = 0
):
    """The per-image generator of the original projects (paths: [rows, 3] in CAMERAS order)."""
    rng = np.random.default_rng(seed)
    offsets = {"center": 0.0, "left": cfg.steering_correction, "right": -cfg.steering_correction}
    while True:
        images = np.empty((batch_size, *INPUT_SHAPE), np.float32)
        labels = np.empty(batch_size, np.float32)
        i = 0
        while i < batch_size:
            row = rng.integers(len(steering))
            angle = steering[row]
            if cfg.drop_straight and abs(angle) < cfg.straight_threshold and rng.random() > cfg.straight_keep:
                continue
            camera = rng.integers(3) if cfg.side_cameras else 0
            image = read_frame(paths[row, camera])  # cv2 decode + BGR -> RGB, once per use
            angle += offsets[CAMERAS[camera]]
            if cfg.flip and rng.random() < 0.5:
                image, angle = cv2.flip(image, 1), -angle
            if cfg.shift:
                px = rng.uniform(-cfg.shift_max_px, cfg.shift_max_px)
                angle += px * cfg.shift_steering_per_px
                image = cv2.warpAffine(
                    image, np.float32([[1, 0, px], [0, 1, 0]]), (FRAME_WIDTH, FRAME_HEIGHT)
                )
            if cfg.shadow:
                x_top, x_bottom = rng.uniform(0, FRAME_WIDTH, 2)
                ys, xs = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
                left = (xs - x_top) * FRAME_HEIGHT < (x_bottom - x_top) * ys
                shaded = left == (rng.random() < 0.5)
                hls = cv2.cvtColor(image, cv2.COLOR_RGB2HLS)
                hls[..., 1][shaded] = hls[..., 1][shaded] * rng.uniform(0.2, 0.5)
                image = cv2.cvtColor(hls, cv2.COLOR_HLS2RGB)
            if cfg.brightness:
                hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
                hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(*cfg.brightness_range), 0, 255)
                image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
            images[i], labels[i] = preprocess(image), np.clip(angle, -1, 1)
            i += 1
        yield images, labels


# --- Measuring ----------------------------------------------------------------------------------


def rate(batches, batch_size: int, seconds: float) -> float:
    """Images per second drawn from an iterator of batches, for at least `seconds`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        n += batch_size
    return n / (time.perf_counter() - start)


def memory_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1000, help="samples in the recording (x3 images)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=8.0, help="how long to time each side")
    parser.add_argument("--cache-dir", help="put the pipeline's cache on disk here (default: RAM)")
    args = parser.parse_args()
    from driving import tfsetup

    tfsetup.setup()

    from driving.pipeline import build_datasets, steps_per_epoch

    cfg = AugmentConfig()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        frames = load_recordings([synthetic_recording(Path(tmp) / "rec", args.rows)]).frames
        print(f"recording: {len(frames)} rows x 3 cameras, written in {time.perf_counter() - t:.1f} s")

        # The pipeline first, so its peak memory is not mixed up with the classic generator's.
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (the peak) to the current RSS
        rss_before = memory_kib("VmRSS")
        t = time.perf_counter()
        train, _ = build_datasets(frames, frames.iloc[:0], args.batch_size, cfg, cache_dir=args.cache_dir)
        cached = len(frames) * len(CAMERAS)
        cache_peak_per_frame = (memory_kib("VmHWM") - rss_before) / cached
        batches = iter(train)
        for _ in range(steps_per_epoch(frames, args.batch_size, cfg)):
            next(batches)
        first_epoch = time.perf_counter() - t
        peak_per_frame = (memory_kib("VmHWM") - rss_before) / cached
        fast = rate(batches, args.batch_size, args.seconds)

        paths = frames[list(CAMERAS)].to_numpy()
        classic = rate(
            classic_batches(paths, frames["steering"].to_numpy(), args.batch_size, cfg),
            args.batch_size,
            args.seconds,
        )

    print(f"first epoch of the pipeline (decode {cached} images once, trace): {first_epoch:.1f} s")
    print(f"{'classic per-image generator':32s} {classic:9,.0f} images/s")
    print(
        f"{'driving.pipeline (after epoch 1)':32s} {fast:9,.0f} images/s   "
        f"{fast / classic:.1f}x the classic generator (target >= 4x)"
    )
    where = "on disk, memory-mapped" if args.cache_dir else "in RAM"
    print(
        f"peak memory per cached frame ({where}): {cache_peak_per_frame:.1f} KiB building the "
        f"cache, {peak_per_frame:.1f} KiB after the first epoch (prefetch buffers and TensorFlow's "
        f"own memory included); the uint8 crop itself is {np.prod(INPUT_SHAPE) / 1024:.1f} KiB"
    )


if __name__ == "__main__":
    main()
