"""What the LocalContrast input layer costs at serving (batch-1 median latency, untrained weights).

1. The layer alone, two ways. The reference mirror-pads the pooled map and runs two depthwise
   convolutions, one per axis; driving.contrast folds the mirror into one small matrix per axis
   and runs two matrix products. Same outputs (the largest difference is printed).
2. Each model beside its `-lcn` variant: Keras, LiteRT float32 (one thread and every core) and
   LiteRT int8 (every core; the layer's ops stay float between the int8 input and the int8 body;
   calibrated on random frames, which sets its ranges, not its speed).

Every pair is timed alternately within each repeat, so load on a shared box falls on both sides;
a figure is the median over repeats of each repeat's median, with the repeats' range.

    python bench/local_contrast.py [--models effnet pilotnet ...] [--runs 200] [--repeats 3]

Targets: the matrix way >= 1.5x faster than the reference on LiteRT (one thread), and effnet-lcn
within effnet's serving target, <= 2 ms on LiteRT float32 on every core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZE = 128  # the registered models' input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["effnet", "effnet-slim", "pilotnet", "base"])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per figure and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of every pair")
    args = parser.parse_args()
    if min(args.runs, args.repeats) < 1:
        parser.error("--runs and --repeats must be at least 1")
    from driving import tfsetup

    tfsetup.setup()
    import keras
    from keras import ops

    from driving import models
    from driving.contrast import LocalContrast, gaussian_taps
    from driving.modelio import ModelInfo, export_tflite
    from driving.report.export import load_tflite
    from driving.report.measure import keras_function, time_calls
    from driving.runtime import litert_threads

    class PadAndConvolve(LocalContrast):
        """The reference blur: mirror padding, then a depthwise convolution along each axis."""

        def _blur(self, x):
            height, width, channels = x.shape[1], x.shape[2], x.shape[3]
            small = ops.average_pool(x, self.pool, self.pool, padding="valid")
            taps = gaussian_taps(self.sigma / self.pool)
            radius = len(taps) // 2  # the pooled 32x32 map is wider than the taps reach
            small = ops.pad(small, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="reflect")
            down = np.tile(taps.reshape(-1, 1, 1, 1), (1, 1, channels, 1))
            across = np.tile(taps.reshape(1, -1, 1, 1), (1, 1, channels, 1))
            small = ops.depthwise_conv(ops.depthwise_conv(small, down, 1, "valid"), across, 1, "valid")
            return ops.image.resize(small, (height, width), interpolation="bilinear")

    rng = np.random.default_rng(0)
    frame = rng.uniform(-0.5, 0.5, (1, SIZE, SIZE, 3)).astype("float32")
    calibration = rng.uniform(-0.5, 0.5, (32, SIZE, SIZE, 3)).astype("float32")
    threads = litert_threads()
    every_core, one_thread = f"LiteRT f32 {threads}t", "LiteRT f32 1t"

    def callers(model, tmp: str, int8: bool) -> dict:
        calls = {"Keras": partial(keras_function(model), frame)}
        path = Path(tmp) / f"{model.name}.float32.tflite"
        export_tflite(model, path, "float32", ModelInfo(model=model.name))
        calls[one_thread] = partial(load_tflite(path, threads=1).run, frame)
        calls[every_core] = partial(load_tflite(path).run, frame)
        if int8:
            path = Path(tmp) / f"{model.name}.int8.tflite"
            export_tflite(model, path, "int8", ModelInfo(model=model.name), calibration)
            calls[f"LiteRT int8 {threads}t"] = partial(load_tflite(path).run, frame)
        return calls

    def alone(layer, name: str):
        return keras.Sequential([keras.Input((SIZE, SIZE, 3)), layer], name=name)

    reference, matrix = alone(PadAndConvolve(), "reference"), alone(LocalContrast(), "matrix")
    largest = float(np.abs(np.asarray(reference(frame)) - np.asarray(matrix(frame))).max())
    with tempfile.TemporaryDirectory() as tmp:
        pairs = {"layer": (callers(reference, tmp, False), callers(matrix, tmp, False))}
        for name in args.models:
            pairs[name] = (
                callers(models.build(name), tmp, True),
                callers(models.build(f"{name}-lcn"), tmp, True),
            )
        times: dict[tuple[str, str, int], list[float]] = {}
        for _ in range(args.repeats):
            for name, sides in pairs.items():
                for how in sides[0]:
                    for side, calls in enumerate(sides):
                        times.setdefault((name, how, side), []).append(
                            time_calls(calls[how], args.runs)["median_ms"]
                        )

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"

    def ratio(name: str, how: str) -> float:
        return statistics.median(times[(name, how, 1)]) / statistics.median(times[(name, how, 0)])

    print(f"batch-1 median ms [range over {args.repeats} repeats of {args.runs} calls]")
    print(f"\nthe layer alone ({SIZE}x{SIZE}x3; largest output difference {largest:.1e})")
    print(f"{'runtime':<16} {'reference ms':>18} {'matrix ms':>18} {'reference/matrix':>17}")
    for how in pairs["layer"][0]:
        plain, lcn = times[("layer", how, 0)], times[("layer", how, 1)]
        print(f"{how:<16} {cell(plain):>18} {cell(lcn):>18} {1 / ratio('layer', how):>16.2f}x")
    print(f"\n{'model':<12} {'runtime':<16} {'model ms':>18} {'-lcn ms':>18} {'-lcn/model':>11}")
    for name in args.models:
        for how in pairs[name][0]:
            plain, lcn = times[(name, how, 0)], times[(name, how, 1)]
            print(f"{name:<12} {how:<16} {cell(plain):>18} {cell(lcn):>18} {ratio(name, how):>10.2f}x")
    speedup = 1 / ratio("layer", one_thread)
    print(f"\ntarget: matrix >= 1.5x faster than the reference on {one_thread}: ", end="")
    print(f"{'met' if speedup >= 1.5 else 'NOT met'} ({speedup:.2f}x)")
    if "effnet" in args.models:
        ms = statistics.median(times[("effnet", every_core, 1)])
        print(f"target: effnet-lcn <= 2 ms on {every_core}: {'met' if ms <= 2 else 'NOT met'} ({ms:.2f} ms)")


if __name__ == "__main__":
    main()
