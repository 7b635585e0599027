"""The slimming curve: how far can slimming go and still drive? Every model of the slimming family
trained with K seeds, driven over a suite, and set against what it costs.

    python -m driving.study curve                  # the slimming family, 5 seeds, robust, unseen
    python -m driving.study curve --no-train       # redrawn from the runs finished so far
    table = curve(CurveConfig(models=["effnet-slim", "effnet-tiny"]))
    table.front, table.smallest_driving, table.breaks_below

The seeds are trained and driven by the seed study (seeds.seeds_study), so the runs lie in
OUT/RECIPE/MODEL/seed-N and a seed study already run under the same OUT with the same settings is
reused, not redone. Each model is then measured once, from the run of its lowest seed (its size and
speed do not depend on the seed): parameters, MACs per frame, the .keras and .h5 files as training
saved them (driving.report.measure.file_sizes), its LiteRT float32, float16 and int8 files
(driving.modelio.export_tflite, written to a temporary folder: measured, not kept) and their batch-1
latency on one thread (driving.report.export.batch1_ms). Its driving comes from the runs'
StudyRecords: each seed's mean autonomy over the suite, of the checkpoint the recipe serves (the
drive-best one its drive check kept, else the val-best; `--checkpoint val-best` draws the lowest
validation loss instead).

From those, `pareto_front` names the models no other beats on both parameters and median autonomy,
`smallest_driving` the smallest model at >= 90% in at least 80% of its seeds, and `breaks_below`
where median autonomy falls under 90% for good. OUT/curve.md holds the table, OUT/curve.json the
CurveTable record, OUT/curve.png three panels: autonomy against parameters, MACs and int8 file size.

Light to import (no TensorFlow): training and measuring load it when they run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator

from driving.config import BUDGETS, Budget, Preprocessing
from driving.data.reader import load_recordings
from driving.evaluation.registry import RECIPES, SUITES, Recipe, Suite
from driving.evaluation.seed_tables import THRESHOLD, finished_runs, study_run
from driving.evaluation.settings import DRIVE_TIMEOUT_S, CurveConfig
from driving.files import RecordError, check_writable_folder, save_figure, write_text
from driving.preprocess import preprocess, read_frame
from driving.report.measure import machine_description
from driving.run import (
    PRECISIONS,
    RunFolder,
    StudyRecord,
    check_nonnegative,
    read_record,
    record_from_dict,
    write_record,
)

# Whose driving is drawn: the checkpoint the drive check kept (what a recipe with a drive check
# serves; a run that kept none counts its val-best), or the lowest validation loss.
CHECKPOINTS = ("drive-best", "val-best")
CHECKPOINT = CHECKPOINTS[0]
WHICH_CHECKPOINT = {
    "drive-best": " (the one the drive check kept, what the recipe serves; val-best where a run kept none)",
    "val-best": " (the lowest validation loss)",
}
DRIVING_SHARE = 0.8  # of a model's seeds at >= THRESHOLD for it to count as driving: 4 of 5
LATENCY_RUNS = 100  # timed calls per latency figure: a few seconds a model
# Frames that calibrate the int8 export, spread evenly through the run's recordings. The file's
# size and speed do not depend on them (its steering error would; the report measures that).
CALIBRATION_FRAMES = 200


class CurveError(ValueError):
    """A curve that cannot be drawn (no finished run to draw it from); the message says why."""


# --- the records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCost:
    """What one model costs, measured on one trained run: its size and work, its files, its speed."""

    params: int
    macs: int  # multiply-accumulates per frame (driving.models.count_macs)
    seed: int  # the run measured: RECIPE/MODEL/seed-N
    keras_bytes: int  # NAME.keras as training saved it (with optimizer state)
    h5_no_optimizer_bytes: int  # the model saved as .h5 without optimizer state
    tflite_bytes: dict[str, int]  # LiteRT file by precision: float32, float16, int8
    one_core_ms: dict[str, float]  # median batch-1 latency on one thread, by precision
    h5_bytes: int | None = None  # NAME.h5 as training saved it, where there is one

    def check(self, source: str) -> None:
        check_nonnegative(
            source, params=self.params, macs=self.macs, seed=self.seed, keras_bytes=self.keras_bytes
        )
        check_nonnegative(source, h5_no_optimizer_bytes=self.h5_no_optimizer_bytes, h5_bytes=self.h5_bytes)
        for name, by in (("tflite_bytes", self.tflite_bytes), ("one_core_ms", self.one_core_ms)):
            if sorted(by) != sorted(PRECISIONS):
                raise RecordError(
                    f"{source}: field '{name}' must hold {', '.join(PRECISIONS)}, got {sorted(by)}"
                )
            check_nonnegative(source, **{f"{name}.{k}": v for k, v in by.items()})


@dataclass(frozen=True)
class CurveRow:
    """One model on the curve: its cost, and the driving of each of its seeds."""

    model: str
    cost: ModelCost
    seeds: list[int]  # ascending
    autonomy: list[float]  # each seed's mean autonomy over the suite, % (the table's checkpoint)
    val_mse: list[float | None]  # each seed's best validation loss (None: never finite)
    on_front: bool = False  # on the Pareto front of parameters against median autonomy

    def check(self, source: str) -> None:
        if not self.seeds or not len(self.seeds) == len(self.autonomy) == len(self.val_mse):
            raise RecordError(
                f"{source}: fields 'seeds', 'autonomy' and 'val_mse' must be as long, and not empty"
            )
        for i, value in enumerate(self.autonomy):
            if not 0 <= value <= 100:
                raise RecordError(f"{source}: field 'autonomy[{i}]' must be 0 to 100, got {value!r}")

    @property
    def autonomy_median(self) -> float:
        return statistics.median(self.autonomy)

    @property
    def seeds_driving(self) -> int:
        """Seeds at >= THRESHOLD mean autonomy."""
        return sum(a >= THRESHOLD for a in self.autonomy)

    @property
    def drives(self) -> bool:
        """Whether at least DRIVING_SHARE of the seeds reach THRESHOLD (4 of 5)."""
        return self.seeds_driving >= DRIVING_SHARE * len(self.seeds) - 1e-9

    def to_dict(self) -> dict:
        """The record, and the figures the table shows, for readers of curve.json."""
        return asdict(self) | {
            "autonomy_median": self.autonomy_median,
            "autonomy_min": min(self.autonomy),
            "autonomy_max": max(self.autonomy),
            "seeds_driving": self.seeds_driving,
        }


@dataclass(frozen=True)
class CurveTable:
    """The slimming curve, as OUT/curve.json holds it."""

    date: str
    machine: str
    recipe: str
    budget: str  # "2 epochs x 180 steps x batch 32"
    suite: str  # the suite's label: "unseen v1"
    tracks: int  # drives in the suite
    rows: list[CurveRow]  # in the order the models were given
    front: list[str]  # the Pareto front, fewest parameters first
    smallest_driving: str | None  # the smallest model that drives (None: none does)
    breaks_below: str | None  # below it, every model's median autonomy is under THRESHOLD
    checkpoint: str = CHECKPOINT
    threshold: float = THRESHOLD
    driving_share: float = DRIVING_SHARE
    latency_runs: int = LATENCY_RUNS
    calibration_frames: int = CALIBRATION_FRAMES

    def check(self, source: str) -> None:
        if not self.rows:
            raise RecordError(f"{source}: field 'rows' is empty")
        names = [r.model for r in self.rows]
        for name in (*self.front, self.smallest_driving, self.breaks_below):
            if name is not None and name not in names:
                raise RecordError(f"{source}: names a model {name!r} that has no row")

    def to_dict(self) -> dict:
        return asdict(self) | {"rows": [r.to_dict() for r in self.rows]}

    def write(self, path: str | Path) -> Path:
        return write_record(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> CurveTable:
        return record_from_dict(cls, read_record(path), str(path))

    def row(self, model: str) -> CurveRow:
        return next(r for r in self.rows if r.model == model)


# --- which models win -------------------------------------------------------------------------------


def dominates(a: CurveRow, b: CurveRow) -> bool:
    """Whether `a` is at least as small and drives at least as well as `b`, and one strictly."""
    small, good = a.cost.params <= b.cost.params, a.autonomy_median >= b.autonomy_median
    strictly = a.cost.params < b.cost.params or a.autonomy_median > b.autonomy_median
    return small and good and strictly


def pareto_front(rows: Sequence[CurveRow]) -> list[str]:
    """The models no other dominates (parameters against median autonomy), fewest parameters first."""
    front = [r for r in rows if not any(dominates(o, r) for o in rows if o is not r)]
    return [r.model for r in sorted(front, key=lambda r: r.cost.params)]


def smallest_driving(rows: Sequence[CurveRow]) -> str | None:
    """The model with the fewest parameters of those that drive (>= THRESHOLD in at least
    DRIVING_SHARE of their seeds), or None when none does."""
    driving = [r for r in rows if r.drives]
    return min(driving, key=lambda r: r.cost.params).model if driving else None


def breaks_below(rows: Sequence[CurveRow]) -> str | None:
    """Where driving breaks: the largest model below which every model's median autonomy is under
    THRESHOLD. It drives at the median itself unless it is the largest model (then none does).
    None when the smallest model's median still reaches THRESHOLD: it does not break here."""
    by_size = sorted(rows, key=lambda r: -r.cost.params)
    if not by_size or by_size[-1].autonomy_median >= THRESHOLD:
        return None
    for i, row in enumerate(by_size):
        if all(r.autonomy_median < THRESHOLD for r in by_size[i + 1 :]):
            return row.model
    return None  # not reached: the smallest model alone satisfies the test


def served_autonomy(run: StudyRecord, checkpoint: str = CHECKPOINT) -> float:
    """A run's mean autonomy over the suite, of `checkpoint` (drive-best falls back to val-best
    when the run kept no drive-best checkpoint)."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    kind = checkpoint if checkpoint in run.summary else "val-best"
    return run.summary[kind].autonomy_mean


def curve_rows(
    runs: Sequence[StudyRecord], costs: dict[str, ModelCost], checkpoint: str = CHECKPOINT
) -> list[CurveRow]:
    """One row per model of `costs` (in its order) from its runs, seeds ascending, each marked
    whether it lies on the Pareto front."""
    rows = []
    for model, cost in costs.items():
        mine = sorted((r for r in runs if r.model == model), key=lambda r: r.seed)
        rows.append(
            CurveRow(
                model=model,
                cost=cost,
                seeds=[r.seed for r in mine],
                autonomy=[served_autonomy(r, checkpoint) for r in mine],
                val_mse=[r.val_mse for r in mine],
            )
        )
    front = pareto_front(rows)
    return [replace(r, on_front=r.model in front) for r in rows]


# --- which runs -------------------------------------------------------------------------------------


def select_runs(
    runs: Sequence[StudyRecord], recipe: str, models: Sequence[str], seeds: Sequence[int], budget: Budget
) -> list[StudyRecord]:
    """The runs of the curve: this recipe, these models and seeds, trained at this budget."""
    wanted_seeds = set(seeds)

    def trained_so(run: StudyRecord) -> bool:
        c = run.run_config
        return (c.epochs, c.steps_per_epoch, c.batch_size) == (budget.epochs, budget.steps, budget.batch)

    return [
        r
        for r in runs
        if r.recipe == recipe and r.model in models and r.seed in wanted_seeds and trained_so(r)
    ]


# --- measuring one model ----------------------------------------------------------------------------


def calibration_frames(data: Sequence[str], geometry: Preprocessing, count: int) -> np.ndarray:
    """`count` centre frames spread evenly through the recordings, preprocessed as the model's."""
    rows = load_recordings(list(data), check_images=False).frames
    picked = np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)
    return np.stack([preprocess(read_frame(p), geometry) for p in rows["center"].iloc[picked]])


def measure(run: RunFolder, record: StudyRecord, runs: int = LATENCY_RUNS) -> ModelCost:
    """The model of `record`, trained in `run`, measured: parameters, MACs, its files as training
    saved them, and its LiteRT files (exported to a temporary folder) with their one-core batch-1
    latency, each over `runs` timed calls. The int8 file is calibrated on the run's own recordings."""
    # TensorFlow and the report's exporter, only when a model is measured.
    import keras

    from driving import models
    from driving.modelio import ModelInfo, export_tflite, load_keras
    from driving.report.export import batch1_ms
    from driving.report.measure import file_sizes

    name = record.model
    model, info = load_keras(run.model(name))
    info = info or ModelInfo()
    params, _ = models.count_params(model)
    sizes = file_sizes(model, run, name)
    calibration = calibration_frames(record.run_config.data, info.preprocessing, CALIBRATION_FRAMES)
    tflite_bytes, one_core_ms = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in PRECISIONS:
            path = export_tflite(model, RunFolder(tmp).tflite(name, precision), precision, info, calibration)
            tflite_bytes[precision] = path.stat().st_size
            one_core_ms[precision] = batch1_ms(path, runs, threads=1)
    cost = ModelCost(
        params=params,
        macs=models.count_macs(model),
        seed=record.seed,
        keras_bytes=int(sizes["keras"]),
        h5_no_optimizer_bytes=int(sizes["h5_no_optimizer"]),
        h5_bytes=int(sizes["h5"]) if "h5" in sizes else None,
        tflite_bytes=tflite_bytes,
        one_core_ms=one_core_ms,
    )
    keras.backend.clear_session()
    return cost


# --- the curve --------------------------------------------------------------------------------------


def slimming_curve(
    models: Sequence[str],
    seeds: Sequence[int],
    recipe: str | Recipe = "robust",
    budget: str | Budget = "cpu",
    suite: str | Suite = "unseen",
    data: Path = Path("data/study"),
    out: Path = Path("runs/curve"),
    jobs: int | None = None,
    progress: bool = True,
    drive_timeout: float = DRIVE_TIMEOUT_S,
    train: bool = True,
    runs: int = LATENCY_RUNS,
    checkpoint: str = CHECKPOINT,
) -> CurveTable:
    """Every model x seed trained and driven (unless done, or `train` is off: then only the runs
    finished under OUT are used), each model measured; writes OUT/curve.md, curve.json, curve.png.
    Recipe, budget and suite are given by name (RECIPES, BUDGETS, SUITES) or as objects. Raises
    CurveError when no run of these settings has finished."""
    models = list(dict.fromkeys(models))
    chosen_recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    size = BUDGETS[budget] if isinstance(budget, str) else budget
    chosen_suite = SUITES[suite] if isinstance(suite, str) else suite
    if train:
        from driving.evaluation.seeds import seeds_study  # trains: TensorFlow

        found = seeds_study(
            models, seeds, [chosen_recipe], size, chosen_suite, data, out, jobs, progress, drive_timeout
        ).runs
    else:
        found = finished_runs(out, chosen_suite) if out.is_dir() else []
    picked = select_runs(found, chosen_recipe.name, models, seeds, size)
    drawn = [m for m in models if any(r.model == m for r in picked)]
    if not drawn:
        raise CurveError(
            f"{out}: no finished run of {', '.join(models)} with recipe {chosen_recipe.name}, budget "
            f"{size.describe()} and suite {chosen_suite.label}"
        )
    for model in models:
        if model not in drawn:
            print(f"curve: {model} has no finished run under {out}; left out", file=sys.stderr)
    check_writable_folder(out, "--out folder")
    costs = {}
    for model in drawn:
        first = min((r for r in picked if r.model == model), key=lambda r: r.seed)
        if progress:
            print(f"curve: measuring {model} (seed-{first.seed})", file=sys.stderr)
        costs[model] = measure(study_run(out, chosen_recipe.name, model, first.seed), first, runs)
    rows = curve_rows(picked, costs, checkpoint)
    table = CurveTable(
        date=date.today().isoformat(),
        machine=machine_description(),
        recipe=chosen_recipe.name,
        budget=size.describe(),
        suite=chosen_suite.label,
        tracks=len(chosen_suite.drives),
        rows=rows,
        front=pareto_front(rows),
        smallest_driving=smallest_driving(rows),
        breaks_below=breaks_below(rows),
        checkpoint=checkpoint,
        latency_runs=runs,
    )
    write_curve(out, table)
    return table


def curve(config: CurveConfig, progress: bool = True) -> CurveTable:
    """What `python -m driving.study curve` runs."""
    config.validate()
    return slimming_curve(
        config.models,
        config.seed_range,
        config.recipe,
        config.budget,
        config.suite,
        config.data,
        config.out,
        config.jobs,
        progress,
        config.drive_timeout,
        config.train,
        config.runs,
        config.checkpoint,
    )


# --- the table and the figure -----------------------------------------------------------------------


def write_curve(out: Path, table: CurveTable) -> Path:
    """OUT/curve.md, curve.json and curve.png of `table`; the path of curve.md."""
    table.write(out / "curve.json")
    plot(table, out / "curve.png")
    return write_text(out / "curve.md", markdown(table))


def _seeds_text(rows: Sequence[CurveRow]) -> str:
    counts = sorted({len(r.seeds) for r in rows})
    if len(counts) == 1:
        return f"{counts[0]} seed{'s' if counts[0] > 1 else ''} per model"
    return f"{counts[0]} to {counts[-1]} seeds per model"


def _spread(values: Sequence[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def _kib(size: int) -> str:
    return f"{size / 1024:.1f}"


def table_lines(table: CurveTable) -> list[str]:
    """The markdown table: one row per model."""
    lines = [
        "| model | params | MACs/frame | .keras KiB | .h5 KiB (weights only) | LiteRT KiB float32 / "
        "float16 / int8 | 1-core ms float32 / float16 / int8 | val MSE median [min, max] | "
        f"autonomy % median [min, max] | seeds >= {THRESHOLD:g}% | Pareto front |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table.rows:
        c = r.cost
        mse = [v for v in r.val_mse if v is not None]
        lines.append(
            f"| {r.model} | {c.params:,} | {c.macs:,} | {_kib(c.keras_bytes)} | "
            f"{_kib(c.h5_no_optimizer_bytes)} | "
            f"{' / '.join(_kib(c.tflite_bytes[p]) for p in PRECISIONS)} | "
            f"{' / '.join(f'{c.one_core_ms[p]:.2f}' for p in PRECISIONS)} | "
            f"{_spread(mse, 4) if mse else '-'} | {_spread(r.autonomy, 1)} | "
            f"{r.seeds_driving} of {len(r.seeds)} | {'yes' if r.on_front else ''} |"
        )
    return lines


def verdict_lines(table: CurveTable) -> list[str]:
    """What the table says: the front, the smallest model that drives, where driving breaks."""
    rows = {r.model: r for r in table.rows}
    need = f">= {table.threshold:g}% in at least {table.driving_share:.0%} of its seeds"
    front = ", ".join(
        f"{m} ({rows[m].cost.params:,} params, {rows[m].autonomy_median:.1f}%)" for m in table.front
    )
    lines = [
        f"- **Pareto front** (parameters against median autonomy: no other model has as few or fewer "
        f"parameters and as high or higher a median, one of the two strictly): {front}."
    ]
    if table.smallest_driving:
        r = rows[table.smallest_driving]
        lines.append(
            f"- **Smallest that drives** ({need}): {r.model}, {r.cost.params:,} params, "
            f"{r.seeds_driving} of {len(r.seeds)} seeds."
        )
    else:
        lines.append(f"- **No model drives** ({need}).")
    by_size = sorted(table.rows, key=lambda r: -r.cost.params)
    if table.breaks_below is None:
        under = [r for r in by_size if r.autonomy_median < table.threshold]
        if under:  # not a size at which driving breaks: seeds, not parameters, decide
            listed = ", ".join(f"{r.model} ({r.autonomy_median:.1f}%)" for r in under)
            lines.append(
                f"- **Driving does not break at a size**: the smallest model, {by_size[-1].model}, has "
                f"a median of {by_size[-1].autonomy_median:.1f}%, while larger ones fall under "
                f"{table.threshold:g}%: {listed}."
            )
        else:
            lines.append(
                f"- Median autonomy stays at >= {table.threshold:g}% down to the smallest model, "
                f"{by_size[-1].model} ({by_size[-1].autonomy_median:.1f}%)."
            )
    elif table.breaks_below == by_size[0].model and by_size[0].autonomy_median < table.threshold:
        lines.append(
            f"- Even the largest model, {by_size[0].model}, has a median autonomy under "
            f"{table.threshold:g}% ({by_size[0].autonomy_median:.1f}%)."
        )
    else:
        at = next(i for i, r in enumerate(by_size) if r.model == table.breaks_below)
        edge, below = by_size[at], by_size[at + 1]
        lines.append(
            f"- **Driving breaks below {edge.model}** ({edge.cost.params:,} params, median "
            f"{edge.autonomy_median:.1f}%): every smaller model's median is under {table.threshold:g}% "
            f"(the next, {below.model}: {below.autonomy_median:.1f}%)."
        )
    return lines


def markdown(table: CurveTable) -> str:
    seeds = {s for r in table.rows for s in r.seeds}
    header = (
        f"# The slimming curve\n\n{table.date}, {table.machine}; budget {table.budget}; recipe "
        f"{table.recipe}; suite {table.suite} ({table.tracks} tracks); {_seeds_text(table.rows)} "
        f"(seeds {min(seeds)}-{max(seeds)}: the runs finished with these settings).\n\n"
        f"Autonomy is each seed's mean autonomy over the suite's tracks, of its {table.checkpoint} "
        f"checkpoint{WHICH_CHECKPOINT[table.checkpoint]}. Sizes and latency are measured on one run "
        f"per model (its lowest seed; they do not depend on the seed): .keras as training saved it (with "
        f"optimizer state), .h5 without it, and the LiteRT files; latency is the median of "
        f"{table.latency_runs} batch-1 calls on one thread.\n\n"
    )
    return header + "\n".join(table_lines(table)) + "\n\n" + "\n".join(verdict_lines(table)) + "\n"


AXES = (
    ("parameters (log)", lambda r: r.cost.params),
    ("MACs per frame (log)", lambda r: r.cost.macs),
    ("int8 LiteRT file, KiB (log)", lambda r: r.cost.tflite_bytes["int8"] / 1024),
)


def _compact(value: float, _position: object = None) -> str:
    """A tick label: 6k, 20k, 1M, 0.5."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def plot(table: CurveTable, path: Path) -> Path:
    """Mean autonomy against parameters, MACs and int8 file size: a dot per seed, a bar at each
    model's median, the 90% line dashed, the Pareto front (by parameters) drawn and labelled."""
    fig, axes = plt.subplots(1, len(AXES), figsize=(15, 5), sharey=True)
    front = [table.row(m) for m in table.front]
    for ax, (label, x_of) in zip(axes, AXES, strict=True):
        for i, r in enumerate(table.rows):
            x, colour = x_of(r), f"C{i % 10}"
            # Seeds of one model share an x: spread them a little (about 2% apart) to see each.
            spread = 10 ** (0.01 * (np.arange(len(r.autonomy)) - (len(r.autonomy) - 1) / 2))
            ax.plot(x * spread, r.autonomy, "o", color=colour, alpha=0.7, ms=5, label=r.model)
            ax.plot(x, r.autonomy_median, "_", color=colour, ms=22, mew=2.5)
        xs = [x_of(r) for r in front]
        order = np.argsort(xs)
        ax.plot(
            np.array(xs)[order],
            [front[i].autonomy_median for i in order],
            "-",
            color="0.2",
            lw=1.2,
            label="Pareto front (by parameters)",
        )
        for r in front:
            ax.annotate(
                r.model, (x_of(r), r.autonomy_median), textcoords="offset points", xytext=(4, 6), fontsize=7
            )
        ax.axhline(table.threshold, color="0.4", ls="--", lw=1)
        ax.set(xscale="log", xlabel=label, ylim=(-3, 103))
        # Labelled minor ticks where the axis spans few decades, fewer where it spans more.
        values = [x_of(r) for r in table.rows]
        decades = np.log10(max(values) / min(values))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0) if decades < 1.5 else (2.0, 5.0)))
        for ticks in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            ticks(FuncFormatter(_compact))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean autonomy, % ({table.checkpoint} checkpoint)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"The slimming curve: {table.suite} ({table.tracks} tracks), recipe {table.recipe}, "
        f"{table.budget}; a dot per seed, a bar at the median, dashed: {table.threshold:g}%",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)
