"""What a saliency map costs per camera frame, per model: VisualBackProp against SmoothGrad in one
run, with the model's own batch-1 forward pass for scale, what checking a map costs (the
faithfulness check, per frame of the report's 18), and what the slimming report's saliency
section costs to set up (rendering its scoring frames). Untrained weights: the cost does not
depend on them.

    python bench/saliency.py [--models base effnet effnet-slim pilotnet] [--runs 50]

A frame's cost is the whole path the overlays take: preprocess, the method at batch 1, the map
placed back on the frame (driving.saliency.methods.frame_saliency).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["base", "effnet", "effnet-slim", "pilotnet"])
    parser.add_argument("--runs", type=int, default=50, help="timed frames per figure (SmoothGrad: a fifth)")
    args = parser.parse_args()
    from driving import tfsetup

    tfsetup.setup()

    from driving import models
    from driving.config import DEFAULT_PREPROCESSING
    from driving.preprocess import preprocess
    from driving.report.measure import keras_function, machine_description, time_calls
    from driving.saliency import faithfulness
    from driving.saliency.frames import probe_frames
    from driving.saliency.methods import METHODS, frame_saliency, input_saliency

    start = time.perf_counter()
    probes = probe_frames()
    print(f"{machine_description()}")
    print(f"report's scoring frames: {len(probes)} rendered in {time.perf_counter() - start:.1f} s")
    frame = probes[0].frame[None]
    x = preprocess(frame, DEFAULT_PREPROCESSING)
    print(
        f"\n{'model':<12} {'forward ms':>10} {'vbp ms':>8} {'smoothgrad ms':>14} "
        f"{'smoothgrad/vbp':>15} {'vbp/forward':>12} {'check ms':>9}"
    )
    frames = np.stack([p.frame for p in probes])
    for name in args.models:
        model = models.build(name)
        forward = time_calls(partial(keras_function(model), x), args.runs)["median_ms"]
        ms = {}
        for method, runs in (("vbp", args.runs), ("smoothgrad", max(1, args.runs // 5))):
            made = METHODS[method](model)
            call = partial(frame_saliency, made, frame, DEFAULT_PREPROCESSING)
            ms[method] = time_calls(call, runs, warmup=2)["median_ms"]
        inputs, maps = input_saliency(METHODS["vbp"](model), frames, DEFAULT_PREPROCESSING)
        check = partial(faithfulness.check, model, inputs, maps)
        check_ms = time_calls(check, 1, warmup=1)["median_ms"] / len(frames)
        print(
            f"{name:<12} {forward:>10.2f} {ms['vbp']:>8.2f} {ms['smoothgrad']:>14.1f} "
            f"{ms['smoothgrad'] / ms['vbp']:>14.1f}x {ms['vbp'] / forward:>11.1f}x {check_ms:>9.1f}"
        )


if __name__ == "__main__":
    main()
