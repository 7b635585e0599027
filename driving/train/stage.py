"""Training: `run(config)` fits registered models on recordings and saves the best of each.

    python train.py --data data/track1 --model effnet --model base --epochs 10 --out models/

For each model NAME, under --out (every path is a method of driving/run.py's RunFolder):
    NAME.keras          best-by-validation model, with optimizer state (written first: an .h5 save
                        before it would drop the optimizer from it)
    NAME.h5             the same weights in the legacy .h5 format the original comparison used
    NAME.last.keras     the last epoch, with optimizer state: what --resume continues from, and
                        with --patience 0 (a fixed budget) the model to serve
    NAME.history.csv    one row per epoch: loss, mae, val_loss, val_mae, epoch_seconds (and .json)
    NAME.loss.png       training and validation loss per epoch
    NAME.drive.keras    with --drive-check-steps N: the best driver on --drive-check-suite, and
    NAME.drive.csv      one row per check (step, epoch, suite, autonomy, mean |cte|)
    logs/NAME/          TensorBoard logs (tensorboard --logdir models/logs)
and run.json (the RunConfig, the train.py command that remakes it, the package versions with the
lock's hash, and the results: how the run was made) and loss_overlay.png. Every model file carries
its preprocessing, its run and which checkpoint it is (driving/modelio.py) and is written
atomically, as is every other file (driving/files.py). A run holds its folder for its whole life
(RunFolder.hold): a second run into the same folder is refused, naming the first's PID.

Each model's initial weights and augmented batches come from a seed of its own, a function of
--seed and its name only (config.model_seed): `--model effnet --seed 3` gives the same effnet alone
or beside other models. The split depends on --seed alone. Training runs with TensorFlow's op
determinism on: the same seed, data and package versions give the same weights, bit for bit.

With --bn-refresh N, every BatchNormalization layer's moving statistics are re-estimated from N
clean batches of training frames before each validation and drive check (driving/train/batchnorm.py),
so val_loss, NAME.keras and NAME.drive.keras carry statistics of the frames the model is served.

The command line is driving/train/cli.py; the distribution strategies driving/train/distribute.py,
the multi-worker cluster driving/train/cluster.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

# Op determinism can be asked about and switched off again only through this module
# (tf.config.experimental has the switch on alone): a run must not leave it on for the process's
# later work.
from tensorflow.python.framework import config as tf_framework_config

from driving import card, models
from driving.config import ConfigError, RunConfig, model_seed
from driving.evaluation.registry import SUITES, Suite
from driving.files import RecordError, check_writable_folder, remove_stale_temps
from driving.modelio import ModelInfo, load_info, load_keras
from driving.pipeline import cache_split, frames_from_folders, steps_per_epoch, train_dataset, val_dataset
from driving.preprocess import FrameError, read_frame
from driving.run import RunFolder, TrainResult, read_record, write_record
from driving.train import batchnorm, callbacks
from driving.train.cluster import is_chief
from driving.train.distribute import make_strategy, setup_devices, shard
from driving.train.history import (
    LEARNT_NOTHING_SHARE,
    all_histories,
    learnt_nothing,
    plot_loss,
    plot_loss_overlay,
    read_history,
)
from driving.versions import package_versions


class TrainError(RuntimeError):
    """A run that cannot start or go on; the message says why in one line, and what to do."""


def _check_models(config: RunConfig) -> None:
    unknown = [m for m in config.models if m not in models.MODELS]
    if unknown:
        raise ConfigError("models", f"unknown model {unknown[0]!r}; choose from {', '.join(models.MODELS)}")


def _check_resume(config: RunConfig, folder: RunFolder) -> None:
    """--resume must find, for every model, the last checkpoint of this very run (its model, its
    preprocessing, its data and split) and its history, and a run.json with the same data, split
    and preprocessing: anything else would overwrite a good model with one trained from scratch,
    continue another architecture, or continue on other frames. Reads only."""
    for name in config.models:
        last = folder.last(name)
        if not last.is_file():
            raise TrainError(
                f"--resume: {last} is missing, so {name} cannot continue; train without --resume "
                f"to start {name} afresh (that replaces {folder.model(name)})"
            )
        _check_last(config, name, last)
        try:
            history = read_history(folder.root, name)
        except ValueError as e:
            raise TrainError(f"--resume: {e}") from None
        if not len(history) or "val_loss" not in history:
            raise TrainError(f"--resume: {folder.history(name)} is missing or empty")
    saved = folder.record
    if saved.is_file():
        try:
            before = RunConfig.from_dict(read_record(saved), str(saved))
        except RecordError as e:
            raise TrainError(f"--resume: {e}") from None
        except ConfigError as e:
            field = e.field.removeprefix(f"{saved}: ")
            raise TrainError(f"--resume: {saved}: field '{field}' {e.message}") from None
        except (TypeError, ValueError) as e:  # a value of a shape no field check foresaw
            raise TrainError(f"--resume: {saved} is unreadable ({e})") from None
        for what, old, new in (
            ("the split", before.split(), config.split()),
            ("the preprocessing", before.preprocessing, config.preprocessing),
        ):
            if old != new:
                raise TrainError(f"--resume: {what} differs from the run in {saved} ({old} vs {new})")


def _check_last(config: RunConfig, name: str, last: Path) -> None:
    """NAME.last.keras is a checkpoint of `name` made by this run's data, split and preprocessing,
    by its own record (read without loading the model)."""
    info = load_info(last)
    if info is None or not info.run:
        raise TrainError(
            f"--resume: {last} carries no record of the run that made it, so it cannot be checked "
            f"against this one; train without --resume to start {name} afresh"
        )
    split = {key: info.run.get(key) for key in config.split()}
    for what, old, new in (
        ("model", info.model, name),
        ("preprocessing", info.preprocessing.describe(), config.preprocessing.describe()),
        ("split", split, config.split()),
    ):
        if old != new:
            raise TrainError(
                f"--resume: {last} holds another {what} ({old}) than this run's ({new}); "
                f"train without --resume, or into another --out, to start {name} afresh"
            )


def _frame_size(frames) -> tuple[int, int] | None:
    """(height, width) of the first readable center image, or None."""
    for path in frames["center"].head(20):
        try:
            return read_frame(path).shape[:2]
        except FrameError:
            continue
    return None


def load_split(config: RunConfig):
    """The recordings, checked and split (by blocks of time, or --val-data's recordings), before
    anything is decoded: (train, val, summary)."""
    train, val, summary = frames_from_folders(
        config.data,
        config.val_fraction,
        config.seed,
        block_seconds=config.block_seconds,
        val_folders=config.val_data,
    )
    if len(val) == 0 or len(train) == 0:
        raise TrainError(
            f"the split left {len(train)} training and {len(val)} validation frames: record more, or "
            "change --val-fraction / --block-seconds"
        )
    geometry = config.preprocessing
    for rows, whose in ((train, "the recordings'"), (val, "the --val-data recordings'")):
        size = _frame_size(rows)
        if size is not None and size != (geometry.frame_height, geometry.frame_width):
            raise TrainError(
                f"{whose} frames are {size[1]}x{size[0]}, "
                f"not {geometry.frame_width}x{geometry.frame_height}: "
                f"pass --frame-size {size[0]}x{size[1]} with crop rows that fit (--crop-top, --crop-bottom)"
            )
    if config.batch_size > len(train):
        raise TrainError(f"--batch-size {config.batch_size} is more than the {len(train)} training frames")
    return train, val, summary


def decode(config: RunConfig, train, val, summary):
    """The frame cache of the split (each image decoded once): (cache, train, val), the rows with
    unusable images dropped and counted in `summary`."""
    cache, train, val = cache_split(
        train, val, config.augment, config.preprocessing, config.cache_dir, summary
    )
    print(summary)  # after decoding: broken images are counted in it
    if len(train) < config.batch_size or len(val) == 0:
        raise TrainError(
            f"after skipping unusable images, {len(train)} training and {len(val)} validation frames "
            f"are left (batch size {config.batch_size}): see the summary above"
        )
    return cache, train, val


def run(config: RunConfig, progress: bool = True) -> list[TrainResult]:
    """Train every model of `config`; write its files and OUT/run.json. Raises ConfigError,
    RecordingError, TrainError, ModelFileError or FolderInUse with one line for anything that
    cannot work, checked before the long work wherever possible, and before anything in the
    output folder changes."""
    config.validate()
    _check_models(config)
    chief = is_chief(config)  # a TF_CONFIG of the wrong shape is refused here, in one line
    folder = RunFolder(check_writable_folder(config.out, "--out folder"))
    config.data = [os.path.abspath(d) for d in config.data]  # run.json must find them from anywhere
    config.val_data = [os.path.abspath(d) for d in config.val_data]
    # One run per folder; in a multi-worker run the chief alone holds it (the others write nothing).
    with folder.hold() if chief else contextlib.nullcontext():
        if config.resume:
            _check_resume(config, folder)
        if chief:
            remove_stale_temps(folder.root)
        with deterministic_ops():
            return _run(config, folder, chief, progress)


@contextlib.contextmanager
def deterministic_ops() -> Iterator[None]:
    """TensorFlow's op determinism on for the block (the same seed, data and versions give the
    same weights, bit for bit), as it was afterwards. What it costs: docs/benchmarks.md."""
    before = tf_framework_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not before:
            tf_framework_config.disable_op_determinism()


def _run(config: RunConfig, folder: RunFolder, chief: bool, progress: bool) -> list[TrainResult]:
    train_rows, val_rows, summary = load_split(config)
    setup_devices(config.mixed_precision)
    strategy = make_strategy(config)  # before any TensorFlow op: a multi-worker one must be first
    cache, train_rows, val_rows = decode(config, train_rows, val_rows, summary)
    config.versions = package_versions()
    steps = config.steps_per_epoch or steps_per_epoch(train_rows, config.batch_size, config.augment)
    replicas = strategy.num_replicas_in_sync
    print(
        f"{len(train_rows)} training rows, {len(val_rows)} validation rows; {steps} steps per epoch "
        f"of {config.batch_size}; {replicas} replica(s)"
    )
    record = {**config.to_dict(), "command": config.command()}
    if chief:
        write_record(folder.record, record)

    val_ds = shard(val_dataset(val_rows, cache, config.batch_size), config)
    if replicas > 1:
        # Replicas must get equal shares of every batch: drop the last < `replicas` val frames.
        val_ds = (
            val_ds.unbatch()
            .batch(replicas, drop_remainder=True)
            .unbatch()
            .batch(config.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    bn_batches = _bn_refresh_batches(config, train_rows, cache)
    # What one constant steering angle scores on validation: the yardstick of "learnt nothing".
    steering_variance = float(val_rows["steering"].to_numpy(np.float64).var())
    results = []
    for name in config.models:
        seed = model_seed(config.seed, name)
        train_ds = train_dataset(
            train_rows, cache, config.batch_size, config.augment, config.preprocessing, seed
        )
        train_ds = shard(train_ds, config)
        results.append(
            train_model(
                name,
                config,
                train_ds,
                val_ds,
                steps,
                strategy,
                progress and chief,
                chief,
                bn_batches,
                steering_variance=steering_variance,
            )
        )
        if chief and results[-1].learnt_nothing:
            print(f"{name}: {learnt_nothing_warning(results[-1])}", file=sys.stderr)
        if chief:  # the model's card: what it is, what it learnt from, which checkpoint and why
            card.trained(config.out, name, config, results[-1], (train_rows, val_rows), steps)
        keras.backend.clear_session(free_memory=True)
        if chief:
            write_record(folder.record, {**record, "results": {r.name: asdict(r) for r in results}})
    if chief:
        plot_loss_overlay(all_histories(folder.root), folder.loss_overlay)
    return results


def _bn_refresh_batches(config: RunConfig, train_rows, cache):
    """--bn-refresh's clean batches (centre frames of training rows, as served), or None when off.
    One set for every model of the run: each refresh reads the same frames."""
    if not config.bn_refresh_batches:
        return None
    rows = batchnorm.refresh_rows(train_rows, config.bn_refresh_batches, config.batch_size, config.seed)
    print(
        f"--bn-refresh: BatchNorm statistics re-estimated from {len(rows) // config.batch_size} clean "
        f"batches of {config.batch_size} training frames before every validation and drive check "
        "(a model without BatchNorm skips it)"
    )
    return val_dataset(rows, cache, config.batch_size)


def train_model(
    name: str,
    config: RunConfig,
    train_ds,
    val_ds,
    steps: int,
    strategy,
    progress: bool,
    chief: bool = True,
    bn_batches=None,
    *,
    steering_variance: float | None = None,
) -> TrainResult:
    """Fit one registered model; its files land in config.out (see the module docstring).
    `bn_batches`: clean batches its BatchNorm statistics are refreshed from before every
    validation and drive check (--bn-refresh), or None. `steering_variance`: the validation
    frames' steering variance, to tell a run that learnt nothing (history.learnt_nothing)."""
    folder = RunFolder(config.out)
    history = read_history(folder.root, name) if config.resume else None
    info = ModelInfo(
        preprocessing=config.preprocessing,
        model=name,
        augment=config.augment.to_dict(),
        run={k: v for k, v in config.to_dict().items() if k != "resume"},
    )
    with strategy.scope():
        if history is not None:
            model, _ = load_keras(folder.last(name), compile=True)
            print(f"{name}: resuming after epoch {len(history)} from {folder.last(name)}")
        else:
            keras.utils.set_random_seed(model_seed(config.seed, name))
            model = models.build(name, input_shape=config.preprocessing.input_shape)
            models.compile_for_training(model, config.lr)
    history = history if history is not None else pd.DataFrame()
    initial_epoch = len(history)
    best = float(history["val_loss"].min()) if len(history) else math.inf

    divergence = callbacks.StopOnDivergence()
    checkpoints = callbacks.Checkpoints(folder, name, info, steps, best)
    # Every worker of a multi-worker run stops on the same signals (losses are all-reduced, so
    # they agree); only the chief writes.
    fit_callbacks = [callbacks.EpochTimer(), divergence]
    if config.patience:  # 0: a fixed budget, every epoch trains
        early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
        if len(history):  # carry the patience count across a resume
            early.best = best
            early.wait = len(history) - 1 - int(history["val_loss"].idxmin())
        fit_callbacks.append(early)
    if bn_batches is not None:
        fit_callbacks.append(callbacks.RefreshBatchNorm(bn_batches))
    if chief:
        fit_callbacks += [checkpoints, callbacks.HistoryLog(folder, name, history)]
        if config.drive_check_steps:
            fit_callbacks.append(
                _drive_check(
                    folder,
                    name,
                    info,
                    config.drive_check_steps,
                    initial_epoch * steps,
                    bn_batches,
                    suite=SUITES[config.drive_check_suite],
                )
            )
        if config.tensorboard:
            fit_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(folder.logs(name))))
    if progress:
        fit_callbacks.append(callbacks.TqdmProgress(name, config.epochs, steps))
    fitted = None
    if initial_epoch < config.epochs:
        fitted = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=fit_callbacks,
            verbose=0,
            shuffle=False,
        )
    if chief:
        history = read_history(folder.root, name)
    else:  # the chief writes the history file; a worker knows what it trained here
        history = pd.DataFrame(fitted.history if fitted is not None else {})
        history["epoch"] = range(initial_epoch, initial_epoch + len(history))
    if divergence.diverged:
        kept = f"kept {folder.model(name)}" if folder.model(name).is_file() else "no model saved"
        print(f"{name}: training diverged at {divergence.diverged}; stopped, {kept}", file=sys.stderr)
    finite = history[history["val_loss"].map(math.isfinite)] if len(history) else history
    if len(history) and chief:
        plot_loss(history, name, folder.loss_plot(name))
    best_row = finite.loc[finite["val_loss"].idxmin()] if len(finite) else None
    return TrainResult(
        name=name,
        params=model.count_params(),
        epochs=len(history),
        best_val_loss=float(best_row["val_loss"]) if best_row is not None else None,
        best_val_mae=float(best_row["val_mae"]) if best_row is not None else None,
        seconds_per_epoch=float(history["epoch_seconds"].median()) if "epoch_seconds" in history else None,
        stopped_early=len(history) < config.epochs and not divergence.diverged,
        diverged=divergence.diverged,
        val_steering_variance=steering_variance,
        learnt_nothing=learnt_nothing(history, steering_variance),
    )


def _drive_check(
    folder: RunFolder,
    name: str,
    info: ModelInfo,
    every: int,
    step: int,
    bn_batches=None,
    *,
    suite: Suite,
) -> callbacks.DriveCheck:
    """The DriveCheck callback on `suite`, carrying on from NAME.drive.csv when a run resumes (so
    a resumed run never replaces the drive-best checkpoint with a worse one). Only scores on the
    same suite are compared: a row without a suite (a file older than the column) was driven on
    `validation` v1."""
    check = callbacks.DriveCheck(folder, name, info, every, suite, step=step, bn_batches=bn_batches)
    log = folder.drive_log(name)
    if step and log.is_file() and folder.drive_best(name).is_file():
        try:
            rows = pd.read_csv(log).to_dict(orient="records")
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            rows = []
        check.rows = [r for r in rows if r.get("step", 0) <= step]
        kept = [r for r in check.rows if r.get("kept") is True and _suite_of(r) == suite.label]
        if kept:
            check.best = max((r["autonomy"], -r["mean_abs_cte_m"]) for r in kept)
    return check


def _suite_of(row: dict) -> str:
    """The label of the suite a NAME.drive.csv row was driven on; rows written before the column
    existed (absent, or empty beside newer rows) were driven on `validation`."""
    suite = row.get("suite")
    return suite if isinstance(suite, str) else SUITES["validation"].label


def learnt_nothing_warning(result: TrainResult) -> str:
    """One line saying that a run learnt nothing from its frames, with the figures that show it."""
    return (
        f"did not learn to steer: best val MSE {result.best_val_loss:.4f} against "
        f"{result.val_steering_variance:.4f} for one constant angle, and the training loss never fell "
        "below its first epoch's; train it again with another --seed, or a lower --lr"
    )


def summary_table(results: Sequence[TrainResult]) -> str:
    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    lines = [
        f"{'model':<12} {'params':>9} {'epochs':>7} {'best val MSE':>13} {'val MAE':>8} {'s/epoch':>8}  note"
    ]
    for r in results:
        notes = [f"diverged at {r.diverged}" if r.diverged else "stopped early" if r.stopped_early else ""]
        if r.learnt_nothing:
            share = f"{LEARNT_NOTHING_SHARE:g}"
            notes.append(f"did not learn (val MSE >= {share} x the steering's variance, training loss flat)")
        note = "; ".join(n for n in notes if n)
        lines.append(
            f"{r.name:<12} {r.params:>9,} {r.epochs:>7} {cell(r.best_val_loss, 13, 5)} "
            f"{cell(r.best_val_mae, 8, 4)} {cell(r.seconds_per_epoch, 8, 1)}  {note}"
        )
    return "\n".join(lines)
