"""The Keras callbacks of a training run: time, progress, history, checkpoints, divergence, the
BatchNorm refresh before validation, the drive check.

Each writes its files atomically (driving/files.py), so a kill or a full disk between two epochs
loses at most the epoch in flight; nothing already saved is ever truncated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import replace

import keras
import pandas as pd
from tqdm import tqdm

from driving.evaluation.registry import SUITES, Suite
from driving.evaluation.suites import drive_one
from driving.files import write_text
from driving.modelio import ModelInfo, save_keras, to_tflite
from driving.pilot import Pilot
from driving.run import Checkpoint, RunFolder
from driving.runtime import Predictor
from driving.train import batchnorm
from driving.train.history import write_history

HISTORY_COLUMNS = ("epoch", "loss", "mae", "val_loss", "val_mae", "epoch_seconds")


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


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training at the first non-finite loss (a learning rate too high, bad data): what was
    saved before stays, and `diverged` says when it happened."""

    def __init__(self):
        super().__init__()
        self.diverged: str | None = None

    def _check(self, where: str, logs) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.diverged is None:
            self.diverged = f"{where}: loss {loss}"
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check(f"step {batch + 1}", logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(f"epoch {epoch + 1}", logs)


class HistoryLog(keras.callbacks.Callback):
    """Appends each epoch to NAME.history.csv/.json, rewriting both atomically (Keras' CSVLogger
    appends in place: a full disk could leave the file truncated)."""

    def __init__(self, folder: RunFolder, name: str, history: pd.DataFrame):
        super().__init__()
        self.folder, self.name, self.history = folder, name, history

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:] if k in logs}}
        self.history = pd.concat([self.history, pd.DataFrame([row])], ignore_index=True)
        write_history(self.folder.root, self.name, self.history)


class Checkpoints(keras.callbacks.Callback):
    """Every epoch with a finite loss: NAME.last.keras (what --resume continues from). When the
    validation loss improves: NAME.keras, then NAME.h5. Saving .keras first matters: Keras' .h5
    writer strips the optimizer entry from the model's compile config (modelio guards it too).
    Every file carries `info`, the preprocessing and the run (driving/modelio.py), and which
    checkpoint it is (a driving.run.Checkpoint: kind, epoch, step, the metric that chose it)."""

    def __init__(
        self, folder: RunFolder, name: str, info: ModelInfo, steps_per_epoch: int, best: float = math.inf
    ):
        super().__init__()
        self.folder, self.name, self.info, self.best = folder, name, info, best
        self.steps_per_epoch = steps_per_epoch
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss, val_loss = float(logs.get("loss", math.nan)), float(logs.get("val_loss", math.nan))
        if not (math.isfinite(loss) and math.isfinite(val_loss)):
            return  # a diverged model is never saved, not even as the last one
        done = {"epoch": epoch + 1, "step": (epoch + 1) * self.steps_per_epoch}
        if val_loss < self.best:
            self.best, self.best_epoch = val_loss, epoch
            kept = Checkpoint(kind="val-best", metric="val_loss", value=val_loss, **done)
            best = replace(self.info, checkpoint=kept)
            save_keras(self.model, self.folder.model(self.name), best)
            save_keras(self.model, self.folder.h5(self.name), best)
        last = Checkpoint(kind="last", metric="val_loss", value=val_loss, **done)
        save_keras(self.model, self.folder.last(self.name), replace(self.info, checkpoint=last))


class RefreshBatchNorm(keras.callbacks.Callback):
    """Before every validation, re-estimate the BatchNorm layers' moving statistics from `batches`
    of clean frames (driving/train/batchnorm.py): Keras' fit runs its validation through evaluate
    with the fit's callbacks, so an epoch's val_loss, and the checkpoints saved on it, use the
    refreshed statistics."""

    def __init__(self, batches: Iterable):
        super().__init__()
        self.batches = batches

    def on_test_begin(self, logs=None):
        batchnorm.refresh(self.model, self.batches)


class DriveCheck(keras.callbacks.Callback):
    """Every `every` training steps, drive the model on a held-out validation suite (`suite`,
    default driving.evaluation.registry's `validation`; for the two-lane world, its
    `two-lane-validation`: maps no recording and no other suite uses) and keep the best driver as
    NAME.drive.keras: validation loss does not say who drives.

    The model is converted to LiteRT as drive.py would serve it and driven in this process
    (fixed step, deterministic). Score: mean autonomy over the drives, ties broken by the lower
    mean |cross-track error|. Each check is one row of NAME.drive.csv (step, epoch, the suite's
    label, scores, seconds it took). With `bn_batches` (clean frames, --bn-refresh), the BatchNorm
    statistics are refreshed from them before each check, so the model driven and kept carries
    them."""

    def __init__(
        self,
        folder: RunFolder,
        name: str,
        info: ModelInfo,
        every: int,
        suite: Suite | None = None,
        step: int = 0,
        bn_batches: Iterable | None = None,
    ):
        super().__init__()
        self.folder, self.name, self.info, self.every = folder, name, info, every
        self.bn_batches = bn_batches
        self.suite = suite or SUITES["validation"]
        self.step, self.epoch = step, 0
        self.best: tuple[float, float] | None = None
        self.rows: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 and math.isfinite(float((logs or {}).get("loss", math.nan))):
            self.check()

    def check(self) -> dict:
        start = time.perf_counter()
        if self.bn_batches is not None:
            batchnorm.refresh(self.model, self.bn_batches)
        info = self.info
        predictor = Predictor.from_tflite(
            to_tflite(self.model),
            name=f"{self.name}@{self.step}",
            num_threads=1,
            info=ModelInfo(preprocessing=info.preprocessing),
        )
        pilot = Pilot(predictor)
        drives = [drive_one("", d, pilot=pilot) for d in self.suite.drives]
        autonomy = sum(d.autonomy_pct for d in drives) / len(drives)
        cte = sum(d.mean_abs_cte_m for d in drives) / len(drives)
        row = {
            "step": self.step,
            "epoch": self.epoch,
            "suite": self.suite.label,
            "autonomy": autonomy,
            "mean_abs_cte_m": cte,
        }
        if self.best is None or (autonomy, -cte) > self.best:
            self.best = (autonomy, -cte)
            kept = Checkpoint(
                kind="drive-best", epoch=self.epoch + 1, step=self.step, metric="autonomy", value=autonomy
            )
            save_keras(self.model, self.folder.drive_best(self.name), replace(info, checkpoint=kept))
            row["kept"] = True
        row["seconds"] = time.perf_counter() - start
        self.rows.append(row)
        write_text(self.folder.drive_log(self.name), pd.DataFrame(self.rows).to_csv(index=False))
        return row
