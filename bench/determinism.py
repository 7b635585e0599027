"""What TensorFlow's op determinism costs (train.py turns it on): training steps per second of a
model with it off and on, side by side, repeated.

Each measurement is a fresh process (the switch is process-wide, and kernels made before a switch
keep their ways) that trains as train.py does: the frame cache of a synthetic recording
(bench/pipeline.py's, 3 cameras a row), driving.pipeline's augmented batches feeding model.fit,
one epoch to trace and warm up, then --steps timed steps; then the same model on one fixed batch,
to tell the model's kernels from the input pipeline; and the pipeline alone (batches/s), which op
determinism may make run serially (TensorFlow's documentation warns of it), a cost that would show
on a GPU before it shows here. The modes alternate (off, on, off, on, ...) so that drift and the
machine's load fall on both alike; the summary gives the median and the best (least disturbed) of
each.

    python bench/determinism.py [--model effnet] [--repeats 3] [--steps 30] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIGURES = {  # what each measurement reports
    "fed": "train steps/s (pipeline-fed)",
    "fixed": "train steps/s (fixed batch)",
    "pipeline alone": "pipeline batches/s",
}


def measure(model_name: str, recording: str, deterministic: bool, steps: int, batch_size: int) -> dict:
    """Steps per second of one process (this one): fed by the pipeline, then on a fixed batch."""
    from driving import tfsetup

    tfsetup.setup()

    import keras
    import tensorflow as tf

    from driving import models
    from driving.config import AugmentConfig, Preprocessing
    from driving.data import load_recordings
    from driving.pipeline import cache_split, train_dataset

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    frames = load_recordings([recording]).frames
    augment, geometry = AugmentConfig(), Preprocessing()
    cache, rows, _ = cache_split(frames, frames.iloc[:0], augment, geometry)
    fed = train_dataset(rows, cache, batch_size, augment, geometry, seed=0)
    batches = iter(fed)
    for _ in range(10):  # traced and warm
        x, y = next(batches)
    start = time.perf_counter()
    for _ in range(3 * steps):
        next(batches)
    rates = {"pipeline alone": 3 * steps / (time.perf_counter() - start)}
    fixed = tf.data.Dataset.from_tensors((x, y)).repeat()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start  # the last epoch's

    keras.utils.set_random_seed(0)
    model = models.build(model_name, input_shape=geometry.input_shape)
    models.compile_for_training(model)
    for name, dataset in (("fed", fed), ("fixed", fixed)):
        timer = Timer()
        # Epoch 1 traces and warms up (the first call also builds the train function); epoch 2 is timed.
        model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer])
        rates[name] = steps / timer.seconds
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="effnet", help="registered model (default effnet)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per mode (default 3)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps each (default 30)")
    parser.add_argument("--batch-size", type=int, default=32, help="the CPU budget's batch (default 32)")
    parser.add_argument("--rows", type=int, default=600, help="rows of the synthetic recording (x3 images)")
    parser.add_argument("--one", choices=("off", "on"), help=argparse.SUPPRESS)  # a child's measurement
    parser.add_argument("--recording", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        rates = measure(args.model, args.recording, args.one == "on", args.steps, args.batch_size)
        print(json.dumps(rates))
        return

    from bench.pipeline import synthetic_recording

    print(
        f"{os.cpu_count()}-core {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {os.getloadavg()[0]:.1f}; {args.model}, batch {args.batch_size}, "
        f"{args.steps} timed steps per figure",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        recording = str(synthetic_recording(Path(tmp) / "rec", args.rows))
        for repeat in range(1, args.repeats + 1):
            for mode in ("off", "on"):
                child = [sys.executable, __file__, "--one", mode, "--recording", recording]
                child += [
                    "--model",
                    args.model,
                    "--steps",
                    str(args.steps),
                    "--batch-size",
                    str(args.batch_size),
                ]
                done = subprocess.run(child, capture_output=True, text=True, check=False, cwd=ROOT)
                if done.returncode != 0:
                    sys.exit(f"bench/determinism.py: the '{mode}' measurement failed:\n{done.stderr[-2000:]}")
                rates = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append((mode, rates))
                print(
                    f"run {repeat} determinism {mode:<3}  "
                    + "   ".join(f"{FIGURES[k]} {rates[k]:6.2f}" for k in FIGURES)
                    + f"   (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )

    print(f"\n{'determinism':<12} " + " ".join(f"{FIGURES[k]:>29}" for k in FIGURES))
    summary = {}
    for mode in ("off", "on"):
        for how, pick in (("median", statistics.median), ("best", max)):
            summary[mode, how] = {k: pick(r[k] for m, r in rows if m == mode) for k in FIGURES}
            print(f"{mode + ' ' + how:<12} " + " ".join(f"{summary[mode, how][k]:>29.2f}" for k in FIGURES))
    for how in ("median", "best"):
        on, off = summary["on", how], summary["off", how]
        print(f"on / off, {how}: " + ", ".join(f"{on[k] / off[k]:.3f} {FIGURES[k]}" for k in FIGURES))


if __name__ == "__main__":
    main()
