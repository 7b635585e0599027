"""MNIST: the Baseline-vs-EffNet experiment behind EffNet slimming, reproduced.

Two models, trained with the original protocol (featurewise centring and std normalisation,
batch 1000, best checkpoint by validation accuracy), then compared on parameters, .h5 size,
forward MACs, time per epoch and test accuracy beside the published figures.

    python -m experiments.mnist --dry-run [--json]            # build both models, print parameter counts
    python -m experiments.mnist --epochs 20 --out runs/mnist  # the full experiment
    python -m experiments.mnist --data-dir data/mnist --subset 2000 --epochs 1   # a quick smoke run

Data: experiments.loaders (--data-dir, then data/mnist/ from `make mnist-data`, then Keras's cache).
Keras is imported inside the functions that build or train models, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from driving import cli
from driving.files import atomic_path, check_writable_folder, save_figure, write_json, write_text
from experiments.loaders import IMAGE_SHAPE, NUM_CLASSES, DataError, load_mnist

if TYPE_CHECKING:
    import keras

# The published figures this experiment reproduces (test accuracy after N epochs).
PUBLISHED = {
    "baseline": {"params": 147_658, "accuracy": {20: 0.9943}},
    "effnet": {"params": 68_090, "accuracy": {20: 0.9798, 50: 0.9832}},
}


@dataclass(frozen=True)
class Standardizer:
    """Featurewise centring and std normalisation, with statistics from the training images."""

    mean: float
    std: float

    @classmethod
    def fit(cls, images: np.ndarray) -> Standardizer:
        x = images.astype(np.float32)
        return cls(mean=float(x.mean()), std=float(x.std()) or 1.0)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) - self.mean) / self.std
        return x[..., None]  # (N, 28, 28) -> (N, 28, 28, 1)


# ---------------------------------------------------------------------------------------------
# Models: a registry of named builders, each with the learning rate its experiment used

MODELS: dict[str, Callable[[], keras.Model]] = {}
LEARNING_RATES: dict[str, float] = {}


def register(name: str, learning_rate: float) -> Callable:
    def add(builder: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
        MODELS[name] = builder
        LEARNING_RATES[name] = learning_rate
        return builder

    return add


def _classifier_head(x):
    from keras import layers

    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.25)(x)
    return layers.Dense(NUM_CLASSES, activation="softmax")(x)


@register("baseline", learning_rate=1e-3)  # Adam's default rate
def baseline() -> keras.Model:
    """Four conv+pool+dropout stages and a Dense 128 head: 147,658 trainable parameters."""
    from driving import tfsetup

    tfsetup.setup()

    import keras
    from keras import layers

    inputs = keras.Input(IMAGE_SHAPE)
    x = layers.Conv2D(32, 3, activation="relu")(inputs)  # valid: 28 -> 26
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.2)(x)
    for filters in (64, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.25)(x)
    return keras.Model(inputs, _classifier_head(x), name="baseline")


@register("effnet", learning_rate=1e-2)
def effnet() -> keras.Model:
    """Four of the steering models' EffNet blocks and the same head: 68,090 trainable parameters.
    The blocks use ReLU and Keras' default initialisers, as the published figures did."""
    from driving import tfsetup

    tfsetup.setup()

    import keras

    from driving.models import effnet_block

    inputs = keras.Input(IMAGE_SHAPE)
    x = inputs
    for ch_in, ch_out in ((16, 32), (32, 64), (32, 64), (64, 128)):
        x = effnet_block(x, ch_in, ch_out, activation="relu", he_init=False)
    return keras.Model(inputs, _classifier_head(x), name="effnet")


def build(name: str) -> keras.Model:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]()


# ---------------------------------------------------------------------------------------------
# Training with the original protocol


def save_h5(model: keras.Model, path: Path) -> None:
    """Save to .h5 atomically, without Keras' warning at every save that .h5 is legacy (it is
    kept on purpose: the published comparison is of .h5 sizes)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with atomic_path(path) as tmp:
            model.save(tmp)
    finally:
        absl.setLevel(level)


class BestEpoch:
    """Keep (and save to `path`) the weights of the epoch with the best validation accuracy, and
    time each epoch. Keras calls `begin` and `end` through a LambdaCallback (see train_one)."""

    def __init__(self, model: keras.Model, path: Path) -> None:
        self.model, self.path = model, path
        self.best_accuracy, self.best_epoch, self.best_weights = -1.0, -1, None
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def end(self, epoch: int, logs: dict) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)
        logs["epoch_seconds"] = self.epoch_seconds[-1]  # the History and CSV callbacks after it log it
        if logs.get("val_accuracy", -1.0) > self.best_accuracy:
            self.best_accuracy, self.best_epoch = logs["val_accuracy"], epoch + 1
            self.best_weights = self.model.get_weights()
            save_h5(self.model, self.path)


@dataclass
class RunResult:
    model: str
    params: int
    trainable_params: int
    macs: int
    h5_kb: float
    epochs: int  # epochs actually run (fewer than planned when interrupted)
    epochs_planned: int
    best_epoch: int
    best_val_accuracy: float
    test_accuracy: float
    seconds_per_epoch: float  # median over epochs, so the first epoch's graph tracing is excluded
    learning_rate: float
    history: dict


def train_one(
    name: str,
    data: dict[str, np.ndarray],
    out: Path,
    epochs: int,
    batch_size: int,
    val_split: float,
    seed: int,
    verbose: int = 2,
) -> RunResult:
    """Train one registered model; save NAME.h5 (best epoch) and NAME_history.csv under `out`.

    Ctrl-C (or SIGTERM) stops training early; the best epoch so far is still evaluated and saved,
    and the result says how many epochs ran."""
    from driving import tfsetup

    tfsetup.setup()

    import keras

    from driving.models import count_macs, count_params

    keras.utils.set_random_seed(seed)
    standardize = Standardizer.fit(data["x_train"])
    x, y = standardize(data["x_train"]), data["y_train"].astype(np.int64)
    x_test, y_test = standardize(data["x_test"]), data["y_test"].astype(np.int64)
    n_val = int(round(len(x) * val_split))
    if n_val:  # hold out the last images for checkpoint selection; the test set stays unseen
        x, x_val, y, y_val = x[:-n_val], x[-n_val:], y[:-n_val], y[-n_val:]
    else:  # the original's choice: select the checkpoint on the test set itself
        x_val, y_val = x_test, y_test

    model = build(name)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATES[name]),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    out.mkdir(parents=True, exist_ok=True)
    h5 = out / f"{name}.h5"
    best = BestEpoch(model, h5)
    history = keras.callbacks.History()
    callbacks = [
        keras.callbacks.LambdaCallback(on_epoch_begin=best.begin, on_epoch_end=best.end),
        history,
        keras.callbacks.CSVLogger(str(out / f"{name}_history.csv")),  # appended as epochs end
    ]
    try:
        model.fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(x_val, y_val),
            callbacks=callbacks,
            verbose=verbose,
        )
    except KeyboardInterrupt:
        if best.best_weights is None:
            raise
        print(f"\n{name}: interrupted after {len(best.epoch_seconds)} epochs; using the best so far")
    model.set_weights(best.best_weights)
    test_accuracy = float(
        model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0, return_dict=True)["accuracy"]
    )
    # Per-epoch lists; an interrupted epoch may have logged training metrics without validation.
    completed = len(best.epoch_seconds)
    curves = {k: [float(v) for v in vs][:completed] for k, vs in history.history.items()}
    return RunResult(
        model=name,
        params=int(model.count_params()),
        trainable_params=count_params(model)[1],
        macs=count_macs(model),
        h5_kb=round(h5.stat().st_size / 1024, 1),
        epochs=completed,
        epochs_planned=epochs,
        best_epoch=best.best_epoch,
        best_val_accuracy=float(best.best_accuracy),
        test_accuracy=test_accuracy,
        seconds_per_epoch=float(np.median(best.epoch_seconds)),
        learning_rate=LEARNING_RATES[name],
        history=curves,
    )


# ---------------------------------------------------------------------------------------------
# Results: plots, table, the headline ratio


def plot_accuracy(results: list[RunResult], out: Path) -> list[Path]:
    """One train/validation accuracy PNG per model and one overlay of validation accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for r in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        epochs = range(1, len(r.history["accuracy"]) + 1)
        ax.plot(epochs, r.history["accuracy"], label="train")
        ax.plot(epochs, r.history["val_accuracy"], label="validation")
        ax.set(
            title=f"MNIST {r.model}: test accuracy {r.test_accuracy:.4f}", xlabel="epoch", ylabel="accuracy"
        )
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(save_figure(fig, out / f"{r.model}_accuracy.png", bbox_inches="tight"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(
            range(1, len(r.history["val_accuracy"]) + 1),
            r.history["val_accuracy"],
            label=f"{r.model} ({r.trainable_params:,} params)",
        )
    ax.set(title="MNIST validation accuracy", xlabel="epoch", ylabel="accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(save_figure(fig, out / "accuracy.png", bbox_inches="tight"))
    return paths


def headline(results: list[RunResult]) -> str | None:
    """'EffNet reaches X% of the baseline's accuracy with Y% of its parameters', from our numbers."""
    by_name = {r.model: r for r in results}
    if not {"baseline", "effnet"} <= by_name.keys():
        return None
    base, eff = by_name["baseline"], by_name["effnet"]
    return (
        f"EffNet reaches {100 * eff.test_accuracy / base.test_accuracy:.2f}% of the baseline's "
        f"accuracy with {100 * eff.trainable_params / base.trainable_params:.2f}% of its "
        f"parameters and {100 * eff.macs / base.macs:.2f}% of its MACs "
        f"(published: 98.88% with 46.11%)."
    )


def _epochs_cell(r: RunResult) -> str:
    ran = f"{r.epochs} of {r.epochs_planned}" if r.epochs < r.epochs_planned else str(r.epochs)
    return f"{ran} (best {r.best_epoch})"


def results_table(results: list[RunResult]) -> str:
    """Markdown table of our figures beside the published ones."""
    rows = [
        "| model | trainable params | .h5 KB | MACs/image | s/epoch | epochs | test accuracy "
        "| published accuracy (planned epochs) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        published = PUBLISHED.get(r.model, {}).get("accuracy", {}).get(r.epochs_planned)
        rows.append(
            f"| {r.model} | {r.trainable_params:,} | {r.h5_kb:,.1f} | {r.macs:,} "
            f"| {r.seconds_per_epoch:.1f} | {_epochs_cell(r)} "
            f"| {r.test_accuracy:.4f} | {published if published is not None else '-'} |"
        )
    return "\n".join(rows)


def write_report(results: list[RunResult], out: Path, meta: dict) -> Path:
    """results.json, results.md and the accuracy plots under `out`; returns results.md's path."""
    plot_accuracy(results, out)
    sentence = headline(results)
    write_json(out / "results.json", {**meta, "headline": sentence, "results": [asdict(r) for r in results]})
    text = f"# MNIST: Baseline vs EffNet\n\n{results_table(results)}\n"
    if sentence:
        text += f"\n{sentence}\n"
    text += f"\nData: {meta['data']}; normalisation mean {meta['mean']:.3f}, std {meta['std']:.3f}.\n"
    return write_text(out / "results.md", text)


def combine(run_dirs: list[Path], out: Path) -> Path:
    """One report from the results.json files of several runs (one model each, say)."""
    results, metas = [], []
    for run in run_dirs:
        path = run / "results.json"
        if not path.is_file():
            raise DataError(f"{path}: not found (run `python -m experiments.mnist --out {run}` first)")
        try:
            meta = json.loads(path.read_text())
            results += [RunResult(**r) for r in meta.pop("results")]
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise DataError(f"{path}: not a results.json of this command ({err})") from err
        meta.pop("headline", None)
        metas.append(meta)
    return write_report(results, out, {**metas[0], "runs": [str(r) for r in run_dirs]})


# ---------------------------------------------------------------------------------------------
# Command line


def dry_run(as_json: bool) -> None:
    from driving.models import count_macs, count_params

    rows = []
    for name in MODELS:
        model = build(name)
        rows.append(
            {
                "model": name,
                "params": int(model.count_params()),
                "trainable_params": count_params(model)[1],
                "macs": count_macs(model),
                "learning_rate": LEARNING_RATES[name],
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':10} {'params':>10} {'trainable':>10} {'MACs/image':>12} {'lr':>7}")
    for r in rows:
        print(
            f"{r['model']:10} {r['params']:>10,} {r['trainable_params']:>10,} "
            f"{r['macs']:>12,} {r['learning_rate']:>7g}"
        )


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.mnist",
        description="Train the MNIST Baseline and EffNet models with the original protocol and "
        "compare them (params, .h5 size, MACs, time per epoch, test accuracy).",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only build the models and print their parameter counts and MACs",
    )
    parser.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
    parser.add_argument(
        "--model", action="append", choices=sorted(MODELS), help="model to train (repeatable; default: all)"
    )
    parser.add_argument(
        "--epochs",
        type=cli.positive_int,
        default=20,
        help="epochs per model (default 20; the longer EffNet run used 50)",
    )
    parser.add_argument(
        "--batch-size", type=cli.positive_int, default=1000, help="default 1000, the original's"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the IDX files (raw or .gz) or mnist.npz; default: data/mnist/, then Keras's cache",
    )
    parser.add_argument(
        "--subset",
        type=cli.positive_int,
        help="use only the first N training and N test images (quick runs and tests)",
    )
    parser.add_argument(
        "--val-split",
        type=cli.number(low=0, high=1, high_open=True),
        default=0.1,
        help="fraction of the training images held out to pick the best epoch (default 0.1); "
        "0 selects on the test set as the original did",
    )
    parser.add_argument("--seed", type=cli.seed, default=0)
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="no training: merge the results.json of earlier runs (for example "
        "one per model, run side by side) into one report under --out",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/mnist"),
        help="output folder for .h5 models, histories, plots and the results table",
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        dry_run(args.json)
        return 0

    try:  # in one line, before any long work: unreadable data, an unwritable --out
        if args.combine:
            print(combine(args.combine, args.out).read_text())
            return 0
        data, source = load_mnist(args.data_dir)
        check_writable_folder(args.out)
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.subset:
        data = {k: v[: args.subset] for k, v in data.items()}
    standardize = Standardizer.fit(data["x_train"])
    print(f"MNIST from {source}: {len(data['x_train'])} train, {len(data['x_test'])} test images")
    # SIGTERM stops a background run the way Ctrl-C does: the best epoch so far is still reported.
    signal.signal(signal.SIGTERM, _interrupt)
    results = []
    for name in args.model or list(MODELS):
        print(f"== {name}: {args.epochs} epochs, batch {args.batch_size}, Adam {LEARNING_RATES[name]:g}")
        results.append(
            train_one(
                name,
                data,
                args.out,
                args.epochs,
                args.batch_size,
                args.val_split,
                args.seed,
                verbose=1 if sys.stdout.isatty() else 2,
            )
        )
        if results[-1].epochs < args.epochs:
            break  # interrupted: report what ran
    meta = {
        "data": source,
        "train_images": int(len(data["x_train"])),
        "test_images": int(len(data["x_test"])),
        "val_split": args.val_split,
        "batch_size": args.batch_size,
        "seed": args.seed,
        **asdict(standardize),
    }
    report = write_report(results, args.out, meta)
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
