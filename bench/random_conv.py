"""Random convolutions (train.py --random-conv): one filter per frame, two ways.

The reference gathers every frame's 3x3 patches (tf.image.extract_patches) and multiplies each
pixel's 27 values by its frame's kernel; driving.augment lays the batch side by side as channels
and runs one depthwise convolution. Both on the same float batch of crops, in one process, one
after the other, repeated; the figures are each way's milliseconds per batch (median and range
over the repeats) and the ratio of the medians.

    python bench/random_conv.py [--batch-size 32] [--repeats 7] [--calls 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 4096:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 4096, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--batch-size", type=positive, default=32, help="frames a batch (default: 32, the study's)"
    )
    p.add_argument("--repeats", type=positive, default=7, help="timed repeats of each way (default: 7)")
    p.add_argument("--calls", type=positive, default=10, help="batches a repeat (default: 10)")
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from driving.augment import RANDOM_CONV_SIZE, _convolve_each
    from driving.config import INPUT_SHAPE

    k = RANDOM_CONV_SIZE
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (args.batch_size, *INPUT_SHAPE)), tf.float32)
    kernels = tf.constant(rng.normal(0, (k * k * 3) ** -0.5, (args.batch_size, k, k, 3, 3)), tf.float32)

    def patches(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        taps = tf.image.extract_patches(x, [1, k, k, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
        return tf.einsum("bhwt,btc->bhwc", taps, tf.reshape(w, [tf.shape(w)[0], k * k * 3, 3]))

    ways = {
        "patches (reference)": tf.function(patches),
        "depthwise (driving.augment)": tf.function(_convolve_each),
    }
    np.testing.assert_allclose(
        ways["patches (reference)"](images, kernels), _convolve_each(images, kernels), atol=0.05
    )
    times = {}
    for name, fn in ways.items():
        fn(images, kernels)  # trace
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.calls):
                fn(images, kernels).numpy()
            runs.append((time.perf_counter() - start) / args.calls * 1000)
        times[name] = runs
    print(f"batch {args.batch_size} x {INPUT_SHAPE}, {args.repeats} repeats of {args.calls} batches")
    for name, runs in times.items():
        print(f"{name:30s} {statistics.median(runs):7.1f} ms a batch  [{min(runs):.1f}, {max(runs):.1f}]")
    ref, ours = (statistics.median(r) for r in times.values())
    print(f"ratio (reference / ours): {ref / ours:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
