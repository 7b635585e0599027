"""Train one or more registered models on recordings; save the best of each, with its history.

    python train.py --data data/track1 --model effnet --model base --epochs 10 --out models/

For each model NAME, under --out:
    NAME.keras          best-by-validation model, with optimizer state (written first: an .h5 save
                        before it would drop the optimizer from it)
    NAME.h5             the same weights in the legacy .h5 format the original comparison used,
                        also with optimizer state, saved the same way for every model
    NAME.last.keras     the last epoch, with optimizer state: what --resume continues from
    NAME.history.csv    one row per epoch: loss, mae, val_loss, val_mae, epoch_seconds
    NAME.history.json   the same, for machines
    NAME.loss.png       training and validation loss per epoch
    logs/NAME/          TensorBoard logs (tensorboard --logdir models/logs)
and loss_overlay.png with the validation loss of every model trained into --out so far.
Every model file is written atomically (driving.models.save_atomic).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import driving.quiet  # noqa: F401  (silences TensorFlow's start-up noise)

import keras
import matplotlib.pyplot as plt
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from driving import models
from driving.config import AugmentConfig
from driving.pipeline import build_datasets, frames_from_folders, steps_per_epoch

# --- devices --------------------------------------------------------------------------------------


def setup_devices(mixed_precision: bool = False) -> None:
    """GPU memory growth on (so a second process can share the GPU); optional mixed float16."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: too late to change, and harmless
            pass
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """'default': one device. 'mirrored': data-parallel over every GPU, or over every logical CPU
    device when there is no GPU (how it is tested on a CPU-only machine)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise ValueError(f"unknown strategy {name!r}: use 'default' or 'mirrored'")


# --- callbacks ------------------------------------------------------------------------------------


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time of the epoch, validation included) to the epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class TqdmProgress(keras.callbacks.Callback):
    """One progress bar per epoch over its training steps, showing the running loss."""

    def __init__(self, name: str, epochs: int, steps: int):
        super().__init__()
        self.name, self.epochs, self.steps = name, epochs, steps

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(
            total=self.steps,
            desc=f"{self.name} {epoch + 1}/{self.epochs}",
            unit="step",
            leave=True,
            dynamic_ncols=True,
        )

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix(
            {k: f"{float(logs[k]):.4f}" for k in ("loss", "val_loss", "val_mae") if k in logs}
        )
        self.bar.close()


class SaveCheckpoints(keras.callbacks.Callback):
    """Every epoch: NAME.last.keras (for --resume). When val_loss improves: NAME.keras, then
    NAME.h5. Saving .keras first matters: Keras' .h5 writer strips the optimizer entry from the
    model's compile config (driving.models.save_atomic also guards against that)."""

    def __init__(self, out: Path, name: str, best: float = math.inf):
        super().__init__()
        self.out, self.name, self.best = out, name, best

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float((logs or {}).get("val_loss", math.nan))
        if math.isfinite(val_loss) and val_loss < self.best:
            self.best = val_loss
            models.save_atomic(self.model, self.out / f"{self.name}.keras")
            models.save_atomic(self.model, self.out / f"{self.name}.h5")
        models.save_atomic(self.model, self.out / f"{self.name}.last.keras")


# --- history and plots ----------------------------------------------------------------------------


def read_history(out: Path, name: str) -> pd.DataFrame:
    """The history CSV of model `name` in `out` (empty when it has not been trained there)."""
    path = out / f"{name}.history.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


def plot_loss(history: pd.DataFrame, name: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = history["epoch"] + 1
    ax.plot(epochs, history["loss"], "o-", label="training (augmented)")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], "s-", label="validation")
    ax.set(title=f"{name}: loss per epoch", xlabel="epoch", ylabel="MSE loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_loss_overlay(histories: dict[str, pd.DataFrame], path: Path) -> None:
    """Validation loss (solid) and training loss (dotted) of every model on one chart."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, history) in enumerate(sorted(histories.items())):
        colour = f"C{i}"
        epochs = history["epoch"] + 1
        if "val_loss" in history:
            ax.plot(epochs, history["val_loss"], "-o", color=colour, label=f"{name} validation")
        ax.plot(epochs, history["loss"], ":", color=colour, alpha=0.7, label=f"{name} training")
    ax.set(title="Loss per epoch, all models", xlabel="epoch", ylabel="MSE loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def all_histories(out: Path) -> dict[str, pd.DataFrame]:
    names = [p.name[: -len(".history.csv")] for p in sorted(out.glob("*.history.csv"))]
    histories = {name: read_history(out, name) for name in names}
    return {name: h for name, h in histories.items() if len(h)}


# --- training -------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    name: str
    params: int
    epochs: int
    best_val_loss: float
    best_val_mae: float
    seconds_per_epoch: float
    stopped_early: bool


def train_model(
    name: str,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    out: Path,
    epochs: int,
    steps: int,
    lr: float = 1e-3,
    patience: int = 3,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    tensorboard: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Fit one registered model; its files land in `out` (see the module docstring)."""
    strategy = strategy or tf.distribute.get_strategy()
    history = read_history(out, name) if resume else pd.DataFrame()
    last = out / f"{name}.last.keras"
    with strategy.scope():
        if resume and last.is_file() and len(history):
            model = models.load(last, compile=True)
            print(f"{name}: resuming after epoch {len(history)} from {last}")
        else:
            history = pd.DataFrame()
            model = models.build(name)
            models.compile_for_training(model, lr)
    initial_epoch = len(history)
    best = float(history["val_loss"].min()) if len(history) else math.inf
    if not resume:
        (out / f"{name}.history.csv").unlink(missing_ok=True)

    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    if len(history):  # carry the patience count across a resume
        early.best = best
        early.wait = len(history) - 1 - int(history["val_loss"].idxmin())
    callbacks = [
        EpochTimer(),
        SaveCheckpoints(out, name, best),
        early,
        keras.callbacks.CSVLogger(str(out / f"{name}.history.csv"), append=resume),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs" / name)))
    if progress:
        callbacks.append(TqdmProgress(name, epochs, steps))
    if initial_epoch < epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=0,
            shuffle=False,
        )

    history = read_history(out, name)
    (out / f"{name}.history.json").write_text(json.dumps(history.to_dict(orient="list"), indent=1))
    plot_loss(history, name, out / f"{name}.loss.png")
    best_row = history.loc[history["val_loss"].idxmin()]
    return TrainResult(
        name=name,
        params=model.count_params(),
        epochs=len(history),
        best_val_loss=float(best_row["val_loss"]),
        best_val_mae=float(best_row["val_mae"]),
        seconds_per_epoch=float(history["epoch_seconds"].median()),
        stopped_early=len(history) < epochs,
    )


def summary_table(results: Sequence[TrainResult]) -> str:
    lines = [
        f"{'model':<12} {'params':>9} {'epochs':>7} {'best val MSE':>13} {'val MAE':>8} {'s/epoch':>8}  note"
    ]
    for r in results:
        note = "stopped early" if r.stopped_early else ""
        lines.append(
            f"{r.name:<12} {r.params:>9,} {r.epochs:>7} {r.best_val_loss:>13.5f} "
            f"{r.best_val_mae:>8.4f} {r.seconds_per_epoch:>8.1f}  {note}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python train.py",
        description="Train steering models on Udacity-simulator recordings. Each model's best-by-"
        "validation weights go to OUT/NAME.keras and OUT/NAME.h5, with history, loss "
        "plots and TensorBoard logs beside them.",
        epilog="example: python train.py --data data/track1 --model effnet --model base --epochs 10",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="recording folders (each with driving_log.csv and IMG/), or parents of them",
    )
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(models.MODELS),
        metavar="NAME",
        help=f"model to train, repeat for several (default effnet); one of {', '.join(models.MODELS)}",
    )
    parser.add_argument("--epochs", type=int, default=10, help="maximum epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=128, help="frames per batch (default 128)")
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        metavar="S",
        help="batches per epoch (default: one pass over the kept training rows)",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for split, augmentation, weights")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of time blocks held out for validation (default 0.2)",
    )
    parser.add_argument(
        "--block-seconds",
        type=float,
        default=10.0,
        help="the split holds out whole blocks of this many seconds (default 10)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="stop after this many epochs without a better val loss (default 3)",
    )
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="train on center frames as recorded (no side cameras, flips, shifts...)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep the decoded frame cache here (memory-mapped, reused by later runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default models/)")
    parser.add_argument(
        "--resume", action="store_true", help="continue each model from OUT/NAME.last.keras and its history"
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute with float32 weights and output (for GPUs)",
    )
    parser.add_argument(
        "--strategy",
        choices=("default", "mirrored"),
        default="default",
        help="'mirrored': data-parallel over every GPU (MirroredStrategy)",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logs")
    parser.add_argument(
        "--report",
        action="store_true",
        help="afterwards, write the slimming report (python -m driving.report)",
    )
    args = parser.parse_args(argv)
    args.model = list(dict.fromkeys(args.model or ["effnet"]))
    for flag in ("epochs", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        parser.error("--steps-per-epoch must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[TrainResult]:
    args = parse_args(argv)
    setup_devices(args.mixed_precision)
    strategy = make_strategy(args.strategy)
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    train_df, val_df, summary = frames_from_folders(
        args.data, val_fraction=args.val_fraction, seed=args.seed, block_seconds=args.block_seconds
    )
    print(summary)
    if len(val_df) == 0:
        raise SystemExit("no validation frames: record more, or raise --val-fraction")
    augment = AugmentConfig.off() if args.no_augment else AugmentConfig()
    train_ds, val_ds = build_datasets(
        train_df,
        val_df,
        batch_size=args.batch_size,
        augment=augment,
        seed=args.seed,
        cache_dir=args.cache_dir,
        summary=summary,
    )
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        # Replicas must get equal shares of every batch: drop the last < `replicas` val frames.
        val_ds = (
            val_ds.unbatch()
            .batch(replicas, drop_remainder=True)
            .unbatch()
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    steps = args.steps_per_epoch or steps_per_epoch(train_df, args.batch_size, augment)
    print(
        f"{len(train_df)} training rows, {len(val_df)} validation rows; {steps} steps per epoch "
        f"of {args.batch_size}; {replicas} replica(s)"
    )

    results = []
    for name in args.model:
        results.append(
            train_model(
                name,
                train_ds,
                val_ds,
                args.out,
                args.epochs,
                steps,
                args.lr,
                args.patience,
                args.resume,
                strategy,
                tensorboard=not args.no_tensorboard,
            )
        )
        keras.backend.clear_session(free_memory=True)
    plot_loss_overlay(all_histories(args.out), args.out / "loss_overlay.png")
    print("\n" + summary_table(results))
    print(f"\nmodels, histories and plots in {args.out}/ (loss_overlay.png compares them)")

    if args.report:
        from driving import report

        report.main(
            [
                "--models",
                str(args.out),
                "--data",
                *map(str, args.data),
                "--val-fraction",
                str(args.val_fraction),
                "--seed",
                str(args.seed),
                "--block-seconds",
                str(args.block_seconds),
            ]
        )
    return results


if __name__ == "__main__":
    main()
