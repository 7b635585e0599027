"""Batch-1 CPU latency of effnet vs base (Keras and LiteRT side by side, with ratios) and CPU
training throughput in images/s per model. Untrained weights: speed does not depend on them.
LiteRT is timed with one thread and with every core (what drive.py and the report use).

    python bench/models.py [--models effnet base ...] [--runs 300] [--train-steps 5]
Targets: effnet on LiteRT <= 2 ms median at batch 1, and >= 3x faster than base on LiteRT.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["effnet", "base", "effnet-slim", "pilotnet"])
    parser.add_argument("--runs", type=int, default=300, help="timed calls per latency figure")
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    args = parser.parse_args()
    from driving import tfsetup

    tfsetup.setup()

    from driving import models
    from driving.modelio import ModelInfo, export_tflite
    from driving.report.export import load_tflite
    from driving.report.measure import keras_function, time_calls
    from driving.runtime import litert_threads

    rng = np.random.default_rng(0)
    frame = rng.uniform(-0.5, 0.5, (1, 128, 128, 3)).astype("float32")
    x = rng.uniform(-0.5, 0.5, (args.batch_size, 128, 128, 3)).astype("float32")
    y = rng.uniform(-0.5, 0.5, (args.batch_size, 1)).astype("float32")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = models.build(name)
            predict = keras_function(model)
            path = Path(tmp) / f"{name}.tflite"
            export_tflite(model, path, "float32", ModelInfo(model=name))
            lite, lite_1 = load_tflite(path), load_tflite(path, threads=1)
            keras_ms = time_calls(partial(predict, frame), args.runs)["median_ms"]
            lite_1_ms = time_calls(partial(lite_1.run, frame), args.runs)["median_ms"]
            lite_ms = time_calls(partial(lite.run, frame), args.runs)["median_ms"]
            models.compile_for_training(model)
            model.train_on_batch(x, y)  # trace once, outside the timing
            start = time.perf_counter()
            for _ in range(args.train_steps):
                model.train_on_batch(x, y)
            images_per_s = args.train_steps * args.batch_size / (time.perf_counter() - start)
            results[name] = (keras_ms, lite_1_ms, lite_ms, images_per_s)

    threads = litert_threads()
    lite_n = f"LiteRT {threads}t ms"
    print(
        f"{'model':<12} {'Keras ms':>9} {'LiteRT 1t ms':>13} {lite_n:>13} {'Keras/LiteRT':>13} "
        f"{'train img/s':>12}"
    )
    for name, (keras_ms, lite_1_ms, lite_ms, ips) in results.items():
        print(
            f"{name:<12} {keras_ms:>9.2f} {lite_1_ms:>13.2f} {lite_ms:>13.2f} "
            f"{keras_ms / lite_ms:>12.1f}x {ips:>12.1f}"
        )
    if "effnet" in results and "base" in results:
        (ek, _, el, et), (bk, _, bl, bt) = results["effnet"], results["base"]
        print(
            f"\neffnet vs base: Keras {bk / ek:.2f}x faster, LiteRT {bl / el:.2f}x faster, "
            f"training {et / bt:.2f}x the images/s"
        )
        print(
            f"target effnet LiteRT ({threads} threads) <= 2 ms: "
            f"{'met' if el <= 2 else 'NOT met'} ({el:.2f} ms); "
            f">= 3x faster than base on LiteRT: {'met' if bl / el >= 3 else 'NOT met'} ({bl / el:.2f}x)"
        )


if __name__ == "__main__":
    main()
