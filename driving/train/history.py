"""Training histories and their plots: OUT/NAME.history.csv (one row per epoch), the same as JSON,
NAME.loss.png, and loss_overlay.png with every model of a folder.

The history is rewritten whole, atomically, after every epoch (driving/files.py): a full disk or
a kill leaves the previous epoch's file, never a truncated one. Read by train (to resume) and by
the report; neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt
import pandas as pd

from driving.files import save_figure, write_json, write_text
from driving.run import RunFolder


def read_history(out: Path, name: str) -> pd.DataFrame:
    """The history of model `name` in `out` (empty when it has not been trained there)."""
    path = RunFolder(out).history(name)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable history ({str(e).splitlines()[0]})") from None


# A run learnt nothing from its frames when its best validation MSE is at least this share of the
# validation steering's variance (the MSE of the best constant steering) and its training loss
# never fell below this share of its first epoch's. Seen (docs/evaluation.md, "A run that never
# learnt"): a run that sat at a constant for 8 epochs scored 1.21 times the variance with its
# training loss at 0.97 of its first epoch's; runs that learnt to drive, 0.22-0.75 of the variance.
# The training loss is asked too because a model with BatchNorm can score a high val MSE on stale
# statistics and still drive (val-best `effnet` runs of `robust`).
LEARNT_NOTHING_SHARE = 0.95


def learnt_nothing(history: pd.DataFrame, steering_variance: float | None) -> bool:
    """Whether the run of `history` (loss and val_loss per epoch) learnt nothing from its frames
    (LEARNT_NOTHING_SHARE). False where the variance or a finite val_loss is unknown; with one
    epoch, the validation MSE alone decides."""
    if not steering_variance or not len(history) or "val_loss" not in history:
        return False
    val = history["val_loss"].replace([float("inf"), float("-inf")], float("nan")).dropna()
    if not len(val) or val.min() < LEARNT_NOTHING_SHARE * steering_variance:
        return False
    loss = history["loss"] if "loss" in history else pd.Series(dtype=float)
    if len(loss) < 2:
        return True
    return bool(loss.iloc[1:].min() >= LEARNT_NOTHING_SHARE * loss.iloc[0])


def write_history(out: Path, name: str, history: pd.DataFrame) -> None:
    """NAME.history.csv and NAME.history.json, each written atomically."""
    folder = RunFolder(out)
    write_text(folder.history(name), history.to_csv(index=False))
    write_json(folder.history_json(name), history.to_dict(orient="list"))


def all_histories(out: Path) -> dict[str, pd.DataFrame]:
    """Every non-empty history in `out`, by model name."""
    suffix = RunFolder(out).history("").name  # what RunFolder adds to a model's name
    names = sorted(p.name.removesuffix(suffix) for p in Path(out).glob("*" + suffix))
    histories = {}
    for name in names:
        try:
            history = read_history(out, name)
        except ValueError:
            continue  # a damaged history is reported where it is needed, not in an overview
        if len(history) and {"epoch", "loss"} <= set(history.columns):
            histories[name] = history
    return histories


def plot_loss(history: pd.DataFrame, name: str, path: Path) -> Path:
    """Training and validation loss per epoch of one model."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = history["epoch"] + 1
    ax.plot(epochs, history["loss"], "o-", label="training (augmented)")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], "s-", label="validation")
    ax.set(title=f"{name}: loss per epoch", xlabel="epoch", ylabel="MSE loss", yscale="log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_loss_overlay(histories: dict[str, pd.DataFrame], path: Path) -> Path:
    """Validation loss (solid) and training loss (dotted) of every model on one chart."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, history) in enumerate(sorted(histories.items())):
        colour = f"C{i}"
        epochs = history["epoch"] + 1
        if "val_loss" in history:
            ax.plot(epochs, history["val_loss"], "-o", color=colour, label=f"{name} validation")
        ax.plot(epochs, history["loss"], ":", color=colour, alpha=0.7, label=f"{name} training")
    ax.set(title="Loss per epoch, all models", xlabel="epoch", ylabel="MSE loss", yscale="log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)
