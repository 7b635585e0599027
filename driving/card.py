"""A model's card: what it is, what it learnt from, which checkpoint and why, and how it drives,
kept beside the model in its run folder.

    models/effnet.card.md      for people
    models/effnet.card.json    for programs: a schema-versioned record (driving/run.py)

Three stages write it, each its own sections: training makes the card when a model finishes
(`trained`: architecture, parameters, MACs, file sizes, preprocessing, the recordings with their
row counts and a content hash, the budget and seed, the checkpoints, validation error); the
evaluation suites add every suite a model of a run folder drove (`add_suite`); the slimming report
adds what it measured and the drives of every exported precision (`add_report`). An update reads
the card, changes its own sections and writes both files atomically under a lock on the folder,
so no stage ever loses another's figures; a card it cannot read is left alone, with one line on
stderr. drive.py prints `summary_line` when it starts serving.

One training run is one seed: every figure on a card comes from the one seed that trained it, and
says so. How much a figure moves between seeds is the seed study's job (driving.study).

A model trained before cards existed has none, and the suites and the report leave it without.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from driving import models
from driving.config import CSV_NAME, Preprocessing, RunConfig, model_seed
from driving.data.exclusions import EXCLUDED_NAME
from driving.data.reader import find_recordings
from driving.files import RecordError, write_text
from driving.modelio import load_info, load_keras
from driving.run import (
    PRECISIONS,
    Checkpoint,
    DrivenFile,
    ReportRow,
    RunFolder,
    TrainResult,
    check_nonnegative,
    read_record,
    record_from_dict,
    served_kind,
    write_record,
)

# What a checkpoint's prose label names, in model files written before the label was a record.
PROSE_KINDS = {"best validation loss": "val-best", "best validation drive": "drive-best", "last": "last"}
CHOSEN_BY = {"val-best": "val_loss", "drive-best": "autonomy"}


# --- the records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """One recording a model learnt from."""

    folder: str  # absolute
    rows: int  # rows of its driving_log.csv used, for training or validation
    sha256: str  # over driving_log.csv's bytes, then excluded.json's where there is one
    excluded: bool = False  # whether a person left ranges out (excluded.json)


@dataclass(frozen=True)
class TrainingData:
    """The recordings and the split: enough to say whether two models saw the same frames."""

    given: list[str]  # the folders named on the command line (--data)
    recordings: list[Recording]
    train_rows: int
    val_rows: int
    val_fraction: float
    block_seconds: float
    sha256: str  # over the recordings' hashes, in order: one figure for "the same data"
    validation: list[str] = field(default_factory=list)  # --val-data's folders: whole recordings validate

    @property
    def rows(self) -> int:
        return self.train_rows + self.val_rows


@dataclass(frozen=True)
class Budget:
    """How long the model trained."""

    epochs: int  # the most asked for
    epochs_run: int
    steps_per_epoch: int
    steps: int  # epochs run x steps per epoch
    batch_size: int
    lr: float
    stopped_early: bool = False
    diverged: str | None = None
    seconds_per_epoch: float | None = None


@dataclass(frozen=True)
class SuiteFigures:
    """One model file driven over one suite: autonomy with its 95% interval, and the seeds behind
    it (the one training run's, and the tracks' and conditions' of the suite)."""

    suite: str  # its name: "quick"
    version: int
    file: str  # the file driven, in the run folder
    checkpoint: str  # which checkpoint that file is: val-best, drive-best, last
    precision: str  # keras, or the LiteRT export's: float32, float16, int8
    tracks: int
    autonomy_mean: float
    autonomy_ci95: tuple[float, float]  # bootstrap over the tracks
    success_rate: float  # share of tracks driven without an intervention
    speed_mph: float
    training_seeds: list[int]  # one training run = one seed
    track_seeds: list[int]
    conditions_seeds: list[int]
    source: str = ""  # which stage drove it: evaluate, report

    @property
    def key(self) -> tuple[str, int, str, float]:
        """A new figure of the same file on the same suite at the same speed replaces the old."""
        return (self.suite, self.version, self.file, self.speed_mph)

    def describe(self) -> str:
        """'quick suite 97.5% [95.7, 99.2] over 6 tracks, 1 seed'"""
        low, high = self.autonomy_ci95
        seeds = len(self.training_seeds)
        return (
            f"{self.suite} suite {self.autonomy_mean:.1f}% [{low:.1f}, {high:.1f}] over "
            f"{self.tracks} tracks, {seeds} seed{'s' if seeds != 1 else ''}"
        )


@dataclass(frozen=True)
class SaliencyFigures:
    """One saliency method on one model, as the slimming report measured it."""

    frames: int
    road_and_edge: float  # share of the map on road and road edge
    chance: float  # that share for a map spread evenly
    ratio: float | None  # hiding the top 10% vs the same mask elsewhere (None: steering never moved)
    low: float | None
    high: float | None
    verdict: str
    earns_its_place: bool
    grid: str = ""  # the report's picture of the maps, relative to the run folder


@dataclass(frozen=True)
class ModelCard:
    """Everything known of one trained model, gathered by the stages that made and measured it."""

    name: str
    architecture: str  # registry name (driving.models)
    params: int
    trainable: int
    macs: int  # multiply-accumulates per frame, forward pass
    preprocessing: Preprocessing  # from the model file's record
    data: TrainingData
    budget: Budget
    seed: int  # the run's --seed: the one training seed behind every figure here
    model_seed: int  # this model's own seed, drawn from the run's seed and its name
    checkpoints: dict[str, Checkpoint]  # by kind: the files this run kept, and why
    val_mse: float | None  # the best validation loss (MSE) of training
    val_mae: float | None
    sizes: dict[str, int] = field(default_factory=dict)  # bytes: keras, h5, float32, float16, int8
    augment: dict[str, Any] | None = None
    suites: list[SuiteFigures] = field(default_factory=list)
    report: ReportRow | None = None  # what the slimming report measured
    versions: dict[str, str] = field(default_factory=dict)
    # Where the model looks, per saliency method (the report's figures): the share on road and edge,
    # and the faithfulness check's ratio, interval and verdict. Only a method that earns its place
    # (hiding its most salient pixels moves the steering clearly more than hiding the same mask
    # elsewhere) is shown as the model's.
    saliency: dict[str, SaliencyFigures] = field(default_factory=dict)
    # The validation frames' steering variance, what one constant angle scores (None: older cards),
    # and whether training learnt nothing from its frames (driving.train.history.learnt_nothing).
    val_steering_variance: float | None = None
    learnt_nothing: bool = False

    def check(self, source: str) -> None:
        for key in self.sizes:
            if key not in ("keras", "h5", *PRECISIONS):
                raise RecordError(f"{source}: field 'sizes' has an unknown file kind {key!r}")
        figures = {"val_mse": self.val_mse, "val_mae": self.val_mae}
        check_nonnegative(source, **figures, val_steering_variance=self.val_steering_variance)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> ModelCard:
        return record_from_dict(cls, data, source)

    def with_suite(self, figures: SuiteFigures) -> ModelCard:
        """The card with `figures` in place of any earlier figures of the same file and suite."""
        kept = [s for s in self.suites if s.key != figures.key]
        return replace(self, suites=[*kept, figures])

    def figures_for(self, file: str) -> list[SuiteFigures]:
        """The suite figures of model file `file`: its own, else those of the same weights in the
        other Keras format (NAME.keras and NAME.h5 are the same checkpoint)."""
        own = [s for s in self.suites if s.file == file]
        if own:
            return own
        here = RunFolder(".")
        twins = {here.model(self.name).name, here.h5(self.name).name}
        return [s for s in self.suites if file in twins and s.file in twins]

    def summary(self, file: str | None = None) -> str:
        """One line: 'effnet: 630,433 params, trained on 2 recordings (9,840 rows) seed 0, val MSE
        0.0111, quick suite 97.5% [95.7, 99.2] over 6 tracks, 1 seed'."""
        count = len(self.data.recordings)
        parts = [
            f"{self.name}: {self.params:,} params, trained on {count} recording{'s' if count != 1 else ''} "
            f"({self.data.rows:,} rows) seed {self.seed}"
        ]
        if self.val_mse is not None:
            parts.append(f"val MSE {self.val_mse:.4f}" + (" (did not learn)" if self.learnt_nothing else ""))
        parts += [s.describe() for s in self.figures_for(file or RunFolder(".").model(self.name).name)]
        return ", ".join(parts)


# --- reading and writing --------------------------------------------------------------------------


def _folder(out: str | Path | RunFolder) -> RunFolder:
    return out if isinstance(out, RunFolder) else RunFolder(out)


def read(out: str | Path | RunFolder, name: str) -> ModelCard:
    """The card of model `name`; RecordError naming the file and field for one that is missing or
    damaged."""
    path = _folder(out).card_json(name)
    return ModelCard.from_dict(read_record(path), str(path))


def write(out: str | Path | RunFolder, card: ModelCard, keep: dict | None = None) -> ModelCard:
    """Both files of `card`, atomically: the JSON first (the truth), then the markdown made from it.
    Keys of `keep` this version does not know (a newer version's sections) are written back."""
    folder = _folder(out)
    write_record(folder.card_json(card.name), {**(keep or {}), **card.to_dict()})
    write_text(folder.card_md(card.name), markdown(card))
    return card


@contextlib.contextmanager
def _held(folder: RunFolder) -> Iterator[None]:
    """One stage at a time reads, changes and writes the cards of a folder: an advisory lock on the
    folder itself (no file left behind), released by the OS however the process ends. An update
    takes milliseconds, so one lock for every card of the folder costs nothing."""
    fd = os.open(folder.root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def update(
    out: str | Path | RunFolder, name: str, change: Callable[[ModelCard], ModelCard]
) -> ModelCard | None:
    """Apply `change` to the card of `name` and write it; None (and one line on stderr for a damaged
    card) when there is no card to change. What the change leaves alone stays as it was."""
    folder = _folder(out)
    path = folder.card_json(name)
    if not path.is_file():
        return None
    with _held(folder):
        try:
            raw = read_record(path)
            card = ModelCard.from_dict(raw, str(path))
        except RecordError as e:
            print(f"card: left alone: {e}", file=sys.stderr)
            return None
        return write(folder, change(card), keep=raw)


def locate(model: str | Path) -> tuple[RunFolder, str, str, str] | None:
    """(run folder, model name, checkpoint kind, precision) of a model file with a card beside it,
    or None. NAME.keras and NAME.h5 are the val-best checkpoint, NAME.drive.keras the drive-best,
    NAME.last.keras the last; NAME.tflite, NAME.float16.tflite and NAME.int8.tflite the report's
    exports of the val-best one."""
    path = Path(model).absolute()
    folder = RunFolder(path.parent)
    names = [path.name[:i] for i, char in enumerate(path.name) if char == "." and i > 0]
    for name in names:
        if not folder.card_json(name).is_file():
            continue
        files = {
            folder.checkpoint(name, kind): (kind, "keras") for kind in ("val-best", "drive-best", "last")
        }
        files[folder.h5(name)] = ("val-best", "keras")
        files.update({folder.tflite(name, p): ("val-best", p) for p in PRECISIONS})
        if path in files:
            return (folder, name, *files[path])
    return None


def summary_line(model: str | Path) -> str | None:
    """The one-line summary of the card beside `model` (its figures for that very file), or None
    when it has none."""
    found = locate(model)
    if found is None:
        return None
    folder, name, _, _ = found
    try:
        return read(folder, name).summary(Path(model).name)
    except RecordError as e:
        return f"{name}: its card is unreadable ({e})"


# --- what training writes -------------------------------------------------------------------------


def recording_sha256(folder: str | Path) -> str:
    """sha256 over the bytes of the recording's driving_log.csv followed by its excluded.json's
    where there is one (`cat driving_log.csv excluded.json | sha256sum`): which rows, and which of
    them count, without reading a frame; cheap, and the same on every machine."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in (folder / CSV_NAME, folder / EXCLUDED_NAME):
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def training_data(config: RunConfig, train_rows, val_rows) -> TrainingData:
    """The recordings of `config.data` with the rows each gave to the split (`train_rows`,
    `val_rows`: the split's frames, a `recording` column naming the folder) and their hashes."""
    used: dict[str, int] = {}
    for frames in (train_rows, val_rows):
        for folder, count in frames["recording"].value_counts().items():
            used[str(folder)] = used.get(str(folder), 0) + int(count)
    recordings = [
        Recording(
            folder=str(folder),
            rows=used.get(str(folder), 0),
            sha256=recording_sha256(folder),
            excluded=(folder / EXCLUDED_NAME).is_file(),
        )
        for folder in find_recordings([*config.data, *config.val_data])
    ]
    return TrainingData(
        given=[str(d) for d in config.data],
        recordings=recordings,
        train_rows=len(train_rows),
        val_rows=len(val_rows),
        val_fraction=config.val_fraction,
        block_seconds=config.block_seconds,
        sha256=hashlib.sha256("".join(r.sha256 for r in recordings).encode()).hexdigest(),
        validation=[str(d) for d in config.val_data],
    )


def as_checkpoint(value: Checkpoint | str | None, steps_per_epoch: int | None = None) -> Checkpoint:
    """A model file's checkpoint record as a Checkpoint: the record itself, or one read from the
    prose label of a file written before the record was typed ('best validation loss, epoch 4',
    'best validation drive, step 240 (epoch 2)'). A step is worked out from the epoch where the
    checkpoint was saved at an epoch's end."""
    if isinstance(value, Checkpoint):
        made = value
    else:
        text = value or ""
        kind = next((k for prose, k in PROSE_KINDS.items() if text.startswith(prose)), "unknown")
        numbers = {w: re.search(rf"\b{w} (\d+)", text) for w in ("epoch", "step")}
        numbers = {w: int(m.group(1)) if m else None for w, m in numbers.items()}
        made = Checkpoint(kind=kind, metric=CHOSEN_BY.get(kind, ""), note=text, **numbers)
    if made.step is None and made.epoch is not None and steps_per_epoch and made.kind in ("val-best", "last"):
        made = replace(made, step=made.epoch * steps_per_epoch)
    return made


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def trained(
    out: str | Path | RunFolder,
    name: str,
    config: RunConfig,
    result: TrainResult,
    split: tuple[Any, Any],
    steps_per_epoch: int,
) -> ModelCard | None:
    """Write the card of model `name` just trained by `config` (`result`: its TrainResult; `split`:
    the (train, validation) frames it was fitted and scored on). A new card: the model is new, so
    no earlier suite figure or report row applies to it. None when the run kept no model (it
    diverged before its first good epoch)."""
    folder = _folder(out)
    path = folder.model(name)
    if not path.is_file():
        return None
    model, info = load_keras(path)
    total, trainable = models.count_params(model)
    records = {kind: load_info(file) for kind, file in folder.kept(name, config).items()}
    checkpoints = {
        kind: as_checkpoint(record.checkpoint if record else None, steps_per_epoch)
        for kind, record in records.items()
    }
    best = checkpoints.get("val-best")
    if best is not None and best.value is None:  # a prose label names no value: training's best is it
        checkpoints["val-best"] = replace(best, value=_finite(result.best_val_loss))
    sizes = {"keras": path.stat().st_size}
    if folder.h5(name).is_file():
        sizes["h5"] = folder.h5(name).stat().st_size
    card = ModelCard(
        name=name,
        architecture=(info.model if info else "") or name,
        params=total,
        trainable=trainable,
        macs=models.count_macs(model),
        preprocessing=info.preprocessing if info else config.preprocessing,
        augment=(info.augment if info else None) or config.augment.to_dict(),
        data=training_data(config, *split),
        budget=Budget(
            epochs=config.epochs,
            epochs_run=result.epochs,
            steps_per_epoch=steps_per_epoch,
            steps=result.epochs * steps_per_epoch,
            batch_size=config.batch_size,
            lr=config.lr,
            stopped_early=bool(result.stopped_early),
            diverged=result.diverged,
            seconds_per_epoch=_finite(result.seconds_per_epoch),
        ),
        seed=config.seed,
        model_seed=model_seed(config.seed, name),
        checkpoints=checkpoints,
        val_mse=_finite(result.best_val_loss),
        val_mae=_finite(result.best_val_mae),
        val_steering_variance=_finite(result.val_steering_variance),
        learnt_nothing=result.learnt_nothing,
        sizes=sizes,
        versions=dict(config.versions or {}),
    )
    with _held(folder):
        return write(folder, card)


# --- what the suites and the report add -----------------------------------------------------------


def _seeds(suite: dict, key: str) -> list[int]:
    return [int(d[key]) for d in suite.get("drives", []) if d.get(key) is not None]


def add_suite(result: Any) -> list[ModelCard]:
    """Add a suite's figures to the card of every model file it drove that has one (a
    `driving.evaluation.suites.run` result: the typed SuiteResult or its dict); the cards changed."""
    data = result.to_dict() if hasattr(result, "to_dict") else result
    suite, changed = data["suite"], []
    for label, model in data["models"].items():
        found = locate(model)
        if found is None:
            continue
        folder, name, kind, precision = found
        summary = data["summary"][label]

        def change(
            card: ModelCard, summary=summary, kind=kind, precision=precision, model=model
        ) -> ModelCard:
            low, high = summary["autonomy_ci95"]
            return card.with_suite(
                SuiteFigures(
                    suite=suite["name"],
                    version=int(suite["version"]),
                    file=Path(model).name,
                    checkpoint=kind,
                    precision=precision,
                    tracks=int(summary["drives"]),
                    autonomy_mean=float(summary["autonomy_mean"]),
                    autonomy_ci95=(float(low), float(high)),
                    success_rate=float(summary["success_rate"]),
                    speed_mph=float(data["speed"]),
                    training_seeds=[card.seed],
                    track_seeds=_seeds(suite, "track_seed"),
                    conditions_seeds=_seeds(suite, "conditions_seed"),
                    source="evaluate",
                )
            )

        card = update(folder, name, change)
        if card is not None:
            changed.append(card)
    return changed


def add_report(
    out: str | Path | RunFolder,
    rows: Sequence[ReportRow],
    driven: Sequence[DrivenFile] = (),
    suite: Any = None,
    speed: float | None = None,
    saliency: dict | None = None,
    grid: str = "",
) -> list[ModelCard]:
    """Add the slimming report's figures to each measured model's card: its ReportRow (the ratios
    to the base model stay in the report: they are not the model's), the LiteRT files' sizes,
    every file `driven` over `suite` (a driving.evaluation.registry.Suite) at `speed`, and where
    the model looks (`saliency`: the report's saliency section; `grid`: its picture)."""
    changed = []
    for row in rows:
        mine = [f for f in driven if f.model == row.model]
        looks = saliency_figures((saliency or {}).get("scores", {}).get(row.model, {}), grid)

        def change(card: ModelCard, row=row, mine=mine, looks=looks) -> ModelCard:
            sizes = {**card.sizes, "keras": row.keras, **{p: e.bytes for p, e in row.tflite.items()}}
            if row.h5 is not None:
                sizes["h5"] = row.h5
            card = replace(card, report=replace(row, vs_base={}), sizes=sizes)
            if looks:
                card = replace(card, saliency=looks)
            for f in mine:
                card = card.with_suite(
                    SuiteFigures(
                        suite=suite.name,
                        version=suite.version,
                        file=f.file,
                        checkpoint="val-best",  # the report drives NAME.keras and its exports
                        precision=f.precision,
                        tracks=f.tracks,
                        autonomy_mean=f.autonomy_mean,
                        autonomy_ci95=tuple(f.autonomy_ci95),
                        success_rate=f.success_rate,
                        speed_mph=float(speed),
                        training_seeds=[card.seed],
                        track_seeds=[d.track_seed for d in suite.drives],
                        conditions_seeds=[d.conditions_seed for d in suite.drives],
                        source="report",
                    )
                )
            return card

        card = update(out, row.model, change)
        if card is not None:
            changed.append(card)
    return changed


def saliency_figures(by_method: dict, grid: str = "") -> dict[str, SaliencyFigures]:
    """The report's saliency scores of one model ({method: score dict with its faithfulness}) as
    the card's figures."""
    figures = {}
    for method, found in by_method.items():
        check = found.get("faithfulness") or {}
        moved = check.get("moved") or {}
        finite = lambda v: v if isinstance(v, (int, float)) and math.isfinite(v) else None
        figures[method] = SaliencyFigures(
            frames=int(check.get("frames", len(found.get("per_frame", [])))),
            road_and_edge=float(found["score"]),
            chance=float(found["chance"]),
            ratio=finite(moved.get("ratio")),
            low=finite(moved.get("low")),
            high=finite(moved.get("high")),
            verdict=str(check.get("verdict", "not checked")),
            earns_its_place=bool(check.get("earns_its_place", False)),
            grid=grid,
        )
    return figures


# --- for people -----------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MiB"


def _or_dash(value: Any, form: str = "{}") -> str:
    return "-" if value is None else form.format(value)


SIZE_NAMES = {
    "keras": "{name}.keras (with optimizer)",
    "h5": "{name}.h5",
    "float32": "{name}.tflite (float32)",
    "float16": "{name}.float16.tflite",
    "int8": "{name}.int8.tflite",
}


def markdown(card: ModelCard) -> str:
    """The card for people: one section per question a user asks of a model."""
    d, b = card.data, card.budget
    lines = [
        f"# Model card: {card.name}",
        "",
        card.summary(),
        "",
        "## Model",
        "",
        f"- architecture: `{card.architecture}` (driving.models)",
        f"- parameters: {card.params:,} ({card.trainable:,} trainable)",
        f"- MACs per frame: {card.macs:,}",
        "",
        "| file | size |",
        "|---|---:|",
    ]
    lines += [
        f"| {SIZE_NAMES[kind].format(name=card.name)} | {_size(n)} |"
        for kind, n in sorted(card.sizes.items(), key=lambda item: list(SIZE_NAMES).index(item[0]))
    ]
    lines += [
        "",
        "## Preprocessing",
        "",
        f"{card.preprocessing.describe()}, scaled to [-0.5, 0.5], RGB (from the model file's record).",
    ]
    if card.augment:
        on = [k for k, v in card.augment.items() if v is True]  # the switches; the rest are their knobs
        lines += ["", f"Augmentation in training: {', '.join(on) if on else 'none'}."]
    held_out = (
        f"every row of {', '.join(d.validation)}"
        if d.validation
        else f"blocks of {d.block_seconds:g} s, {d.val_fraction:.0%} held out"
    )
    lines += [
        "",
        "## Training data",
        "",
        f"{len(d.recordings)} recording(s), {d.rows:,} rows: {d.train_rows:,} for training, {d.val_rows:,} "
        f"for validation ({held_out}). "
        f"Content hash (sha256 over each driving_log.csv and excluded.json): `{d.sha256[:16]}`.",
        "",
        "| recording | rows | excluded.json | sha256 |",
        "|---|---:|---|---|",
    ]
    lines += [
        f"| {r.folder} | {r.rows:,} | {'yes' if r.excluded else 'no'} | `{r.sha256[:16]}` |"
        for r in d.recordings
    ]
    stopped = (
        f"; diverged at {b.diverged}"
        if b.diverged
        else "; stopped early (no better validation loss)"
        if b.stopped_early
        else ""
    )
    lines += [
        "",
        "## Budget and seed",
        "",
        f"- epochs: {b.epochs_run} of {b.epochs}{stopped}",
        f"- steps: {b.steps:,} ({b.steps_per_epoch:,} per epoch), batch {b.batch_size}, "
        f"learning rate {b.lr:g}",
        f"- seconds per epoch: {_or_dash(b.seconds_per_epoch, '{:.1f}')}",
        f"- seed: {card.seed} (this model's own: {card.model_seed})",
        "",
        "One training run is one seed: every figure on this card comes from seed "
        f"{card.seed} alone. How much they move between seeds: python -m driving.study.",
        "",
        "## Checkpoints",
        "",
        "| checkpoint | file | epoch | step | chosen by | value |",
        "|---|---|---:|---:|---|---:|",
    ]
    folder = RunFolder(".")
    for kind, c in card.checkpoints.items():
        file = folder.checkpoint(card.name, kind).name if kind in ("val-best", "drive-best", "last") else "-"
        value = _or_dash(c.value, "{:.4g}")
        lines.append(
            f"| {kind} | {file} | {_or_dash(c.epoch)} | {_or_dash(c.step)} | {c.metric or '-'} | {value} |"
        )
    if card.checkpoints:
        kind = served_kind(card.checkpoints)
        why = {
            "drive-best": "it drove the validation suite best, and validation loss does not say who drives",
            "last": "the run trained a fixed budget (--patience 0), and its end is the model",
            "val-best": "the run had no drive check and no fixed budget, so validation loss chose it",
        }[kind]
        lines += ["", f"Serve {folder.checkpoint(card.name, kind).name}: {why}."]
    lines += [
        "",
        "## Validation",
        "",
        f"Best validation MSE in training {_or_dash(card.val_mse, '{:.5f}')}, "
        f"MAE {_or_dash(card.val_mae, '{:.4f}')} (steering units).",
    ]
    if card.val_steering_variance is not None:
        lines[-1] += (
            f" One constant steering angle would score {card.val_steering_variance:.5f} (the validation "
            "steering's variance)."
        )
    if card.learnt_nothing:
        lines += [
            "",
            "**This run did not learn to steer**: its best validation MSE is no better than one "
            "constant angle's, and its training loss never fell below its first epoch's. Train it "
            "again with another seed or a lower learning rate.",
        ]
    if card.report is not None:
        r = card.report
        lines += [
            "",
            f"The slimming report measured MSE {r.val_mse:.5f}, MAE {r.val_mae:.4f} on {r.val_frames:,} "
            f"validation frames, and {r.keras_latency.median_ms:.2f} ms a frame at batch 1 (Keras).",
        ]
        if r.tflite:
            lines += [
                "",
                "| export | size | max abs error vs Keras | within tolerance | ms a frame |",
                "|---|---:|---:|---|---:|",
            ]
            lines += [
                f"| {e.file} | {_size(e.bytes)} | {e.max_abs_error:.2g} | "
                f"{'yes' if e.within_tolerance else 'no'} | {e.latency.median_ms:.2f} |"
                for e in r.tflite.values()
            ]
    lines += ["", "## Driven", ""]
    if card.suites:
        lines += [
            "Autonomy: (1 - interventions x 6 s / elapsed s) x 100; its 95% interval is a bootstrap over "
            "the tracks, which says nothing of other training seeds.",
            "",
            "| suite | file | checkpoint | precision | tracks | autonomy [95% CI] | success | mph | "
            "training seed (one run each) | track seeds | from |",
            "|---|---|---|---|---:|---:|---:|---:|---|---|---|",
        ]
        for s in card.suites:
            low, high = s.autonomy_ci95
            tracks = ", ".join(map(str, s.track_seeds[:6])) + (", ..." if len(s.track_seeds) > 6 else "")
            lines.append(
                f"| {s.suite} v{s.version} | {s.file} | {s.checkpoint} | {s.precision} | {s.tracks} | "
                f"{s.autonomy_mean:.1f}% [{low:.1f}, {high:.1f}] | {s.success_rate:.0%} | "
                f"{s.speed_mph:g} | {', '.join(map(str, s.training_seeds))} | {tracks} | {s.source} |"
            )
    else:
        lines.append("Not driven on a suite yet: python -m driving.evaluate MODEL.")
    lines += _saliency_markdown(card)
    if card.versions:
        lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in card.versions.items())]
    return "\n".join(lines) + "\n"


def _saliency_markdown(card: ModelCard) -> list[str]:
    lines = ["", "## Where it looks", ""]
    if not card.saliency:
        return [
            *lines,
            "Not measured yet: python -m driving.report --models FOLDER (saliency is on by default).",
        ]
    lines += [
        "A method's map is shown as the model's only where it earns its place: hiding the map's top 10% "
        "of pixels moves the steering clearly more than hiding the same mask elsewhere (the ratio's "
        "lower 95% bound above 1.5; docs/saliency.md).",
        "",
        "| method | frames | on road and edge (chance) | ratio to the mask elsewhere [95% CI] | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for method, f in card.saliency.items():
        ratio = (
            "-"
            if f.ratio is None
            else f"{f.ratio:.2f} [{_or_dash(f.low, '{:.2f}')}, {_or_dash(f.high, '{:.2f}')}]"
        )
        lines.append(
            f"| {method} | {f.frames} | {f.road_and_edge:.0%} ({f.chance:.0%}) | {ratio} | {f.verdict} |"
        )
    shown = sorted({f.grid for f in card.saliency.values() if f.earns_its_place and f.grid})
    if shown:
        lines += ["", *(f"![where {card.name} looks]({grid})" for grid in shown)]
    else:
        lines += ["", "No method earned its place on this model: no map is shown as where it looks."]
    return lines
