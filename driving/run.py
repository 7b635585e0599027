"""A run folder and the records that cross stages, owned in one place.

Every path inside a run folder is a method of `RunFolder`; no other module spells a file name of a
run. The results that one stage hands another are dataclasses here (a checkpoint, a drive, a
suite, a training result, one run of a seed study); they become dicts only at the file edge,
where each JSON file carries a schema version, is read with bounds (size, depth) and is validated
field by field:

    run = RunFolder("models")
    run.model("effnet")            # models/effnet.keras, the validation-best checkpoint
    run.checkpoint("effnet", "drive-best")
    write_record(run.record, {...})          # {"schema": SCHEMA, ...}, atomically
    data = read_record(run.record)           # RecordError naming the file and field, or the dict

A file of an older schema is read as it is (every field added since has a default); one of a newer
schema is refused in one line: it was written by a newer version of the package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import math
import os
import typing
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from driving.config import CSV_NAME, RUN_JSON, RunConfig
from driving.files import RecordError, read_json, write_json

# The version of every JSON record written here; bump it when a field changes meaning or is added.
# 2: a drive names the new look it was driven in (DriveResult.look); a suite summary splits
#    autonomy into seen and new looks and gives the gap between them (SuiteSummary).
SCHEMA = 2
SCHEMA_KEY = "schema"

PRECISIONS = ("float32", "float16", "int8")
TFLITE_SUFFIXES = {"float32": ".tflite", "float16": ".float16.tflite", "int8": ".int8.tflite"}
CheckpointKind = Literal["val-best", "drive-best", "last", "unknown"]
CHECKPOINT_KINDS: tuple[str, ...] = typing.get_args(CheckpointKind)


def served_kind(kinds: Iterable[str]) -> str:
    """Which of a run's checkpoints (`kinds`) to serve: drive-best where the drive check kept one
    (validation loss does not say who drives); else the last one, which a run keeps among its
    checkpoints only when it trained a fixed budget (--patience 0; on new looks such ends drove
    better than val-best, docs/evaluation.md); else val-best."""
    kinds = set(kinds)
    return next((kind for kind in ("drive-best", "last") if kind in kinds), "val-best")


# --- the folder -----------------------------------------------------------------------------------


class FolderInUse(RuntimeError):
    """Another live process holds the run folder; the message names its PID."""


@dataclass(frozen=True)
class RunFolder:
    """The layout of a training run's output folder (train.py --out): one model NAME's files,
    the run's record and the reports that later stages add."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    # the run
    @property
    def record(self) -> Path:
        """run.json: the RunConfig, the command that remakes it, versions and results."""
        return self.root / RUN_JSON

    @property
    def lock(self) -> Path:
        return self.root / ".run.lock"

    @property
    def loss_overlay(self) -> Path:
        return self.root / "loss_overlay.png"

    # one model's training files
    def model(self, name: str) -> Path:
        """The validation-best checkpoint, with optimizer state."""
        return self.root / f"{name}.keras"

    def h5(self, name: str) -> Path:
        """The validation-best checkpoint in the legacy .h5 format of the original comparison."""
        return self.root / f"{name}.h5"

    def last(self, name: str) -> Path:
        """The last epoch's checkpoint: what --resume continues from."""
        return self.root / f"{name}.last.keras"

    def drive_best(self, name: str) -> Path:
        """The checkpoint that drove its drive check's suite best (train.py --drive-check-steps)."""
        return self.root / f"{name}.drive.keras"

    def drive_log(self, name: str) -> Path:
        """One row per drive check: step, epoch, scores, whether it was kept."""
        return self.root / f"{name}.drive.csv"

    def history(self, name: str) -> Path:
        return self.root / f"{name}.history.csv"

    def history_json(self, name: str) -> Path:
        return self.root / f"{name}.history.json"

    def loss_plot(self, name: str) -> Path:
        return self.root / f"{name}.loss.png"

    def logs(self, name: str) -> Path:
        """TensorBoard logs."""
        return self.root / "logs" / name

    def tflite(self, name: str, precision: str = "float32") -> Path:
        if precision not in TFLITE_SUFFIXES:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        return self.root / f"{name}{TFLITE_SUFFIXES[precision]}"

    def checkpoint(self, name: str, kind: str) -> Path:
        """The file of checkpoint `kind` ("val-best", "drive-best", "last") of model `name`."""
        paths = {"val-best": self.model, "drive-best": self.drive_best, "last": self.last}
        if kind not in paths:
            raise ValueError(f"checkpoint kind must be one of {', '.join(paths)}, got {kind!r}")
        return paths[kind](name)

    def checkpoints(self, name: str, fixed_budget: bool = False) -> dict[str, Path]:
        """The checkpoints of `name` that exist, by kind: val-best first, then drive-best, then,
        for a run that trained a fixed budget (--patience 0), the last one: its end is a checkpoint
        in its own right, not only what --resume continues from."""
        kinds = ("val-best", "drive-best", "last") if fixed_budget else ("val-best", "drive-best")
        found = {kind: self.checkpoint(name, kind) for kind in kinds}
        return {kind: path for kind, path in found.items() if path.is_file()}

    def kept(self, name: str, config: RunConfig) -> dict[str, Path]:
        """The checkpoints of `name` that the run of `config` kept, by kind: val-best; drive-best
        where it ran the drive check (not a file an earlier run left); last where it trained a
        fixed budget."""
        found = self.checkpoints(name, fixed_budget=config.patience == 0)
        if not config.drive_check_steps:
            found.pop("drive-best", None)
        return found

    def served(self, name: str, config: RunConfig) -> Path | None:
        """The checkpoint of `name` to serve (served_kind), or None when the run kept none."""
        found = self.kept(name, config)
        return found[served_kind(found)] if found else None

    def models(self) -> list[str]:
        """The models trained here (those with a validation-best checkpoint), sorted."""
        suffix = ".keras"
        return sorted(
            p.name[: -len(suffix)]
            for p in self.root.glob(f"*{suffix}")
            if not p.name.endswith((".last.keras", ".drive.keras")) and not p.name.startswith(".")
        )

    def card_md(self, name: str) -> Path:
        """The model's card for people (driving/card.py)."""
        return self.root / f"{name}.card.md"

    def card_json(self, name: str) -> Path:
        """The model's card for programs: a schema-versioned record (driving/card.py)."""
        return self.root / f"{name}.card.json"

    # what later stages add
    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    def chart(self, name: str) -> Path:
        """A report chart: params, macs, sizes, latency, saliency, precision..."""
        return self.root / f"{name}.png"

    def suite(self, suite: str, suffix: str = ".json") -> Path:
        """A suite's results (.json), table (.md) and chart (.png)."""
        return self.root / f"suite-{suite}{suffix}"

    @property
    def precision_drives(self) -> RunFolder:
        """Where the report's drives of every exported precision go (their suite-NAME files)."""
        return RunFolder(self.root / "precision")

    def study_record(self, suite: str) -> Path:
        """One seed-study run's figures over the suite named `suite` (driving.study): a file per
        suite, so driving the run over another suite keeps what this one measured."""
        return self.root / f"study-{suite}.json"

    @property
    def older_study_record(self) -> Path:
        """study.json: a run's one record, whatever its suite, from before a run kept one per suite
        (read, never written)."""
        return self.root / "study.json"

    @property
    def study_table(self) -> Path:
        """A seed study's table of its runs over the suite last asked for (study.json, with .md
        and .png beside it); `python -m driving.study table --suite NAME` redraws any suite's."""
        return self.root / "study.json"

    @property
    def summary(self) -> Path:
        """The demo's one table."""
        return self.root / "summary.md"

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """One run per folder at a time: an advisory lock (flock) on `.run.lock`, held while the
        block runs and released by the OS however the process ends, so a killed run never leaves
        the folder locked. A second holder is refused at once with FolderInUse naming the first's
        PID."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUse(
                f"{self.root} is in use by another run (PID {holder}): wait for it to finish, or "
                "choose another output folder"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def is_recording(self) -> bool:
        """Whether this folder holds a recording (a run must never be written over one)."""
        return (self.root / CSV_NAME).is_file()


# --- records at the file edge ---------------------------------------------------------------------


def write_record(path: str | Path, data: dict) -> Path:
    """A record as JSON with the schema version, atomically (NaN and infinity become null)."""
    return write_json(path, {SCHEMA_KEY: SCHEMA, **{k: v for k, v in data.items() if k != SCHEMA_KEY}})


def read_record(path: str | Path) -> dict:
    """A record written by `write_record` (or before schemas existed), bounded and checked to be a
    JSON object of a schema this version reads. RecordError names the file."""
    data = read_json(path)
    return check_schema(data, str(path))


def check_schema(data: Any, source: str) -> dict:
    if not isinstance(data, dict):
        raise RecordError(f"{source}: expected a JSON object, got {type(data).__name__}")
    schema = data.get(SCHEMA_KEY, 0)  # files from before schemas: version 0, read as they are
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 0:
        raise RecordError(f"{source}: field '{SCHEMA_KEY}' must be a whole number, got {schema!r}")
    if schema > SCHEMA:
        raise RecordError(
            f"{source}: written by a newer version of driving (schema {schema}; this one reads up to "
            f"{SCHEMA}): upgrade the package"
        )
    return data


def _check_value(value: Any, kind: Any, where: str) -> Any:
    """`value` checked against type `kind` (finite numbers only), or RecordError naming `where`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if args and type(None) in args:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _check_value(value, rest[0], where)  # our records use `X | None` only
    if origin is Literal:
        if value not in args:
            raise RecordError(f"{where}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where}: must be a list, got {type(value).__name__}")
        item = args[0] if args else Any
        made = [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(made) if origin is tuple else made
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: must be an object, got {type(value).__name__}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _check_value(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return record_from_dict(kind, value, where)
    if kind is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where}: must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int and not isinstance(value, int):
            ok = False
        if not ok or not math.isfinite(value):
            raise RecordError(f"{where}: must be a finite number, got {value!r}")
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise RecordError(f"{where}: must be text, got {type(value).__name__}")
        return value
    return value


def record_from_dict(cls, data: Any, source: str):
    """Dataclass `cls` from a JSON object: every known field checked by its type (numbers finite),
    unknown keys ignored (a newer file's additions), missing ones defaulted (an older file)."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _check_value(data[f.name], hints[f.name], f"{source}: field '{f.name}'")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(f"{source}: field '{f.name}' is missing")
    made = cls(**values)
    check = getattr(made, "check", None)
    if check is not None:
        check(source)
    return made


def _nonnegative(source: str, **values: float | int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise RecordError(f"{source}: field '{name}' must not be negative, got {value!r}")


# Records kept beside the stage that writes them (driving/evaluation/curve.py) check fields with it too.
check_nonnegative = _nonnegative


# --- the records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Which checkpoint of a run a model file is, and why it was kept: stored inside every model
    file a run writes, so a later stage never has to read it back from prose."""

    kind: CheckpointKind
    epoch: int | None = None  # 1-based: the epoch the weights come from
    step: int | None = None  # training steps taken when it was saved
    metric: str = ""  # what chose it: "val_loss", "autonomy", ""
    value: float | None = None  # that metric's value then
    note: str = ""  # the prose label of a file written before this record existed

    def check(self, source: str) -> None:
        _nonnegative(source, epoch=self.epoch, step=self.step)

    @property
    def label(self) -> str:
        """For people: 'best validation loss 0.0123, epoch 4 (step 720)'."""
        if self.kind == "unknown":
            return self.note or "unknown checkpoint"
        what = {"val-best": "best validation loss", "drive-best": "best validation drive", "last": "last"}
        text = what[self.kind]
        if self.value is not None and self.kind != "last":
            text += f" {self.value:.4g}" + ("%" if self.metric == "autonomy" else "")
        where = [f"epoch {self.epoch}"] if self.epoch is not None else []
        if self.step is not None:
            where.append(f"step {self.step}")
        return f"{text}, {' '.join(where[:1])}{f' ({where[1]})' if len(where) > 1 else ''}".rstrip(", ")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, data: Any, source: str) -> Checkpoint | None:
        """From a model file's record: a dict (this schema), a prose label (older files), or
        nothing."""
        if data in (None, "", {}):
            return None
        if isinstance(data, str):
            return cls(kind="unknown", note=data)
        return record_from_dict(cls, data, source)


@dataclass(frozen=True)
class TrainResult:
    """One model's training, as run.json's "results" records it."""

    name: str
    params: int
    epochs: int
    best_val_loss: float | None
    best_val_mae: float | None
    seconds_per_epoch: float | None
    stopped_early: bool
    diverged: str | None = None  # where the loss stopped being finite, if it did
    # The validation frames' steering variance: the val MSE of the best constant steering (None in
    # records older than the field).
    val_steering_variance: float | None = None
    learnt_nothing: bool = False  # by driving.train.history.learnt_nothing

    def check(self, source: str) -> None:
        _nonnegative(
            source,
            params=self.params,
            epochs=self.epochs,
            best_val_loss=self.best_val_loss,
            best_val_mae=self.best_val_mae,
            seconds_per_epoch=self.seconds_per_epoch,
            val_steering_variance=self.val_steering_variance,
        )


@dataclass(frozen=True)
class DriveMetrics:
    """What one closed-loop drive measured (driving.evaluation.metrics.metrics_of makes it)."""

    track: str
    laps_target: float
    laps: float  # laps driven along the centre line (fractional)
    distance_m: float
    elapsed_s: float  # simulated seconds
    frames: int
    interventions: int
    autonomy_pct: float
    mean_abs_cte_m: float
    max_abs_cte_m: float
    mean_speed_mph: float
    steering_rate_rms: float  # steering units per simulated second, RMS
    latency_median_ms: float
    latency_p99_ms: float
    completed: bool  # reached laps_target (otherwise: stalled or out of time)
    realtime: bool
    model: str = ""
    end_reason: str = ""

    def check(self, source: str) -> None:
        _nonnegative(source, distance_m=self.distance_m, frames=self.frames, interventions=self.interventions)
        if not 0 <= self.autonomy_pct <= 100:
            raise RecordError(f"{source}: field 'autonomy_pct' must be 0 to 100, got {self.autonomy_pct!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DriveResult(DriveMetrics):
    """One closed-loop drive of one model over one suite drive: its metrics and what was driven."""

    drive: str = ""
    style: str = ""  # the style the world was painted in: a named style, or look-N
    look: int | None = None  # the new look's seed (driving.sim.looks); None: a seen style
    track_seed: int | None = None
    conditions_seed: int | None = None
    width_m: float | None = None
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteSummary:
    """The aggregate figures of one model's drives over a suite."""

    drives: int
    success_rate: float
    autonomy_mean: float
    autonomy_ci95: tuple[float, float]
    autonomy_min: float
    interventions: int
    km: float
    interventions_per_km: float | None
    mean_abs_cte_m: float
    steering_rate_rms: float
    latency_median_ms: float
    autonomy_by_style: dict[str, float] = field(default_factory=dict)
    # Seen looks (the named styles) and new looks (driving.sim.looks) apart, each with a 95%
    # bootstrap interval over its drives, and the gap new - seen in points of autonomy: paired by
    # track shape where the suite drives shapes in both (gap_pairs of them), else of the two means.
    # None where a suite has no drive of the kind (and in records from before schema 2).
    seen_drives: int = 0
    seen_autonomy_mean: float | None = None
    seen_autonomy_ci95: tuple[float, float] | None = None
    new_look_drives: int = 0
    new_look_autonomy_mean: float | None = None
    new_look_autonomy_ci95: tuple[float, float] | None = None
    look_gap: float | None = None
    look_gap_ci95: tuple[float, float] | None = None
    gap_pairs: int = 0

    def check(self, source: str) -> None:
        _nonnegative(
            source,
            drives=self.drives,
            interventions=self.interventions,
            km=self.km,
            seen_drives=self.seen_drives,
            new_look_drives=self.new_look_drives,
            gap_pairs=self.gap_pairs,
        )
        for name in ("success_rate",):
            if not 0 <= getattr(self, name) <= 1:
                raise RecordError(f"{source}: field '{name}' must be 0 to 1")
        for name in ("autonomy_mean", "autonomy_min", "seen_autonomy_mean", "new_look_autonomy_mean"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 100:
                raise RecordError(f"{source}: field '{name}' must be 0 to 100, got {value!r}")
        if self.look_gap is not None and not -100 <= self.look_gap <= 100:
            raise RecordError(f"{source}: field 'look_gap' must be -100 to 100, got {self.look_gap!r}")
        if self.seen_drives + self.new_look_drives > self.drives:
            raise RecordError(f"{source}: fields 'seen_drives' and 'new_look_drives' add up to over 'drives'")

    @property
    def has_both_looks(self) -> bool:
        """Whether the suite drove both seen and new looks (and so measured a gap)."""
        return self.seen_drives > 0 and self.new_look_drives > 0

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("autonomy_ci95", "seen_autonomy_ci95", "new_look_autonomy_ci95", "look_gap_ci95"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data


@dataclass(frozen=True)
class SuiteResult:
    """Every model driven over one suite: what a `suite-NAME.json` holds."""

    suite: dict[str, Any]  # name, version, description, drives (the suite's definition)
    speed: float
    models: dict[str, str]  # label -> model file
    drives: dict[str, list[DriveResult]]
    summary: dict[str, SuiteSummary]

    def to_dict(self) -> dict:
        return {
            "suite": self.suite,
            "speed": self.speed,
            "models": dict(self.models),
            "drives": {name: [d.to_dict() for d in rows] for name, rows in self.drives.items()},
            "summary": {name: s.to_dict() for name, s in self.summary.items()},
        }

    def write(self, path: str | Path) -> Path:
        return write_record(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> SuiteResult:
        return record_from_dict(cls, read_record(path), str(path))


@dataclass(frozen=True)
class StudyRecord:
    """One run of a seed study, one recipe x model x seed trained and driven over a suite: what
    RECIPE/MODEL/seed-N/study-SUITE.json holds, and one row of the study's study.json."""

    settings: dict[str, Any]  # the run's RunConfig, less where and on what it ran
    suite: str  # the suite's label: "unseen v1"
    model: str
    seed: int
    val_mse: float | None  # the best validation loss (None: it never was finite)
    summary: dict[str, SuiteSummary]  # by checkpoint kind: "val-best", and "drive-best" when kept
    steps: dict[str, int | None]  # the training step each checkpoint was saved at (None: unknown)
    epoch_seconds: float | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)  # each checkpoint's label, for people
    recipe: str = ""  # the recipe's name (its folder: RECIPE/MODEL/seed-N)
    val_steering_variance: float | None = None  # TrainResult's: None in records older than it
    learnt_nothing: bool = False  # TrainResult's

    def check(self, source: str) -> None:
        _nonnegative(
            source,
            seed=self.seed,
            val_mse=self.val_mse,
            epoch_seconds=self.epoch_seconds,
            val_steering_variance=self.val_steering_variance,
        )
        _nonnegative(source, **{f"steps.{kind}": step for kind, step in self.steps.items()})
        if "val-best" not in self.summary:
            raise RecordError(f"{source}: field 'summary' has no 'val-best' checkpoint")
        for kind in self.summary:
            if kind not in CHECKPOINT_KINDS:
                raise RecordError(f"{source}: field 'summary' names an unknown checkpoint {kind!r}")
            if kind not in self.steps:
                raise RecordError(f"{source}: field 'steps' has no {kind!r} checkpoint")
        try:
            RunConfig.from_dict(self.settings, "settings")
        except (ValueError, TypeError) as e:
            raise RecordError(f"{source}: field 'settings': {e}") from None

    @property
    def run_config(self) -> RunConfig:
        """The settings, as the RunConfig they were (checked: ConfigError names the field)."""
        return RunConfig.from_dict(self.settings, "settings")

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        return write_record(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> StudyRecord:
        return record_from_dict(cls, read_record(path), str(path))


# --- the slimming report's records ------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Batch-1 wall time of one model file, in milliseconds."""

    median_ms: float
    p99_ms: float

    def check(self, source: str) -> None:
        _nonnegative(source, median_ms=self.median_ms, p99_ms=self.p99_ms)


@dataclass(frozen=True)
class ExportCheck:
    """One LiteRT export of a model, checked against the Keras model on validation frames
    (|TFLite - Keras| steering) and timed at batch 1."""

    file: str
    bytes: int
    latency: Latency
    max_abs_error: float
    mean_abs_error: float
    p99_abs_error: float
    tolerance: float
    within_tolerance: bool

    def check(self, source: str) -> None:
        _nonnegative(
            source,
            bytes=self.bytes,
            max_abs_error=self.max_abs_error,
            mean_abs_error=self.mean_abs_error,
            p99_abs_error=self.p99_abs_error,
            tolerance=self.tolerance,
        )


@dataclass(frozen=True)
class ReportRow:
    """Every figure the slimming report measured of one trained model (driving.report): what
    crosses from measuring to the tables, the charts and report.json. Sizes are bytes."""

    model: str
    params: int
    trainable: int
    macs: int
    keras: int  # NAME.keras as train.py saved it
    h5_no_optimizer: int  # the same model saved as .h5 without optimizer state
    val_mse: float
    val_mae: float
    val_frames: int
    keras_latency: Latency  # a traced tf.function at batch 1, every core
    h5: int | None = None  # NAME.h5 as train.py saved it, where there is one
    h5_has_optimizer: bool | None = None
    seconds_per_epoch: float | None = None  # median, from NAME.history.csv
    tflite: dict[str, ExportCheck] = field(default_factory=dict)  # by precision
    vs_base: dict[str, float] = field(default_factory=dict)  # figure / base's figure

    def check(self, source: str) -> None:
        _nonnegative(
            source,
            params=self.params,
            macs=self.macs,
            keras=self.keras,
            h5_no_optimizer=self.h5_no_optimizer,
            h5=self.h5,
            val_mse=self.val_mse,
            val_mae=self.val_mae,
            seconds_per_epoch=self.seconds_per_epoch,
        )
        if not 0 <= self.trainable <= self.params:
            raise RecordError(f"{source}: field 'trainable' must be 0 to params, got {self.trainable!r}")
        if self.val_frames < 1:
            raise RecordError(f"{source}: field 'val_frames' must be at least 1, got {self.val_frames!r}")
        unknown = sorted(set(self.tflite) - set(PRECISIONS))
        if unknown:
            raise RecordError(f"{source}: field 'tflite' has an unknown precision {unknown[0]!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DrivenFile:
    """One model file driven over a suite for the report's "which file do I flash" table: the Keras
    model (the reference) or one of its LiteRT exports, whose autonomy is compared with the Keras
    model's track by track. Differences are in points of autonomy (export minus Keras)."""

    model: str
    precision: Literal["keras", "float32", "float16", "int8"]
    file: str
    bytes: int
    all_cores_ms: float  # batch-1 median on every core (Keras: a traced tf.function)
    one_core_ms: float | None  # batch-1 median of LiteRT on one thread; None for the Keras model
    autonomy_by_track: dict[str, float]  # suite drive name -> autonomy %
    autonomy_mean: float
    autonomy_ci95: tuple[float, float]  # bootstrap over the tracks
    success_rate: float  # share of tracks driven without an intervention
    difference_mean: float | None = None  # mean of the per-track differences to the Keras model
    difference_ci95: tuple[float, float] | None = None  # bootstrap over the paired tracks
    paired_tracks: int = 0  # tracks driven by both this file and the Keras model
    verdict: Literal["reference", "no worse", "inconclusive", "worse"] = "reference"

    def check(self, source: str) -> None:
        _nonnegative(source, bytes=self.bytes, all_cores_ms=self.all_cores_ms, one_core_ms=self.one_core_ms)
        by_track = {f"autonomy_by_track.{k}": v for k, v in self.autonomy_by_track.items()}
        for name, value in {"autonomy_mean": self.autonomy_mean, **by_track}.items():
            if not 0 <= value <= 100:
                raise RecordError(f"{source}: field '{name}' must be 0 to 100, got {value!r}")
        if not 0 <= self.success_rate <= 1:
            raise RecordError(f"{source}: field 'success_rate' must be 0 to 1, got {self.success_rate!r}")
        if not 0 <= self.paired_tracks <= len(self.autonomy_by_track):
            raise RecordError(f"{source}: field 'paired_tracks' must be 0 to the tracks driven")
        if (self.precision == "keras") != (self.verdict == "reference"):
            raise RecordError(f"{source}: field 'verdict' is 'reference' for the Keras model only")

    @property
    def tracks(self) -> int:
        return len(self.autonomy_by_track)

    @property
    def kib(self) -> float:
        return self.bytes / 1024

    def to_dict(self) -> dict:
        return asdict(self)
