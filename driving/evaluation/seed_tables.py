"""The tables of a seed study (driving/evaluation/seeds.py): every finished run's record read
back (RECIPE/MODEL/seed-N/study-SUITE.json, one per suite it drove), summarised per recipe and
model, and written as OUT/study.md, study.json and study.png for the suite asked for.
Nothing here trains or drives, so `python -m driving.study table` shows a study still running
without loading TensorFlow.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from driving.config import Budget, RunConfig
from driving.evaluation.registry import RECIPES, Suite
from driving.files import RecordError, save_figure, write_text
from driving.models import MODELS
from driving.report.measure import machine_description
from driving.run import (
    RunFolder,
    StudyRecord,
    SuiteResult,
    SuiteSummary,
    TrainResult,
    read_record,
    record_from_dict,
    write_record,
)
from driving.run import served_kind as run_served_kind
from driving.sim.looks import MAX_LOOK_SEED, look_name, new_look

THRESHOLD = 90.0  # mean autonomy a run must reach on the suite to count as driving
COSTLIEST_LOOKS = 3  # how many of the new looks that cost most the study table names
LOST_POINTS = 10.0  # a new look's drive that lost more than this against its seen shape is counted
# The looks target: new-look autonomy within this many points of seen-look autonomy, either way (a
# run whose seen looks fell below its new ones has a small gap for the wrong reason).
GAP_POINTS = 3.0


@dataclass(frozen=True)
class StudyTable:
    """A study's runs and their table, as OUT/study.md and study.json hold them."""

    suite: str  # the suite's label
    runs: list[StudyRecord]
    table: str  # the markdown table (study.md without its header)


def write_tables(out: Path, suite: Suite, runs: list[StudyRecord], with_plot: bool = True) -> StudyTable:
    """OUT/study.md, study.json and (with_plot) study.png for these runs; the summary, and where
    the suite drove seen and new looks, the new looks that cost most (costliest_looks)."""
    table = summary_table(runs)
    if drove_both_looks(runs):
        table += "\n\n" + costliest_looks(out, suite, runs)
    record = RunFolder(out).study_table
    write_text(record.with_suffix(".md"), header(suite, runs) + table + "\n")
    write_record(record, {"suite": suite.label, "runs": [r.to_dict() for r in runs]})
    if with_plot:
        plot(runs, record.with_suffix(".png"), suite.label)
    return StudyTable(suite.label, list(runs), table)


def study_run(out: Path, recipe: str, model: str, seed: int) -> RunFolder:
    """Where a seed study under OUT keeps the run of `recipe`, `model` and `seed`."""
    return RunFolder(out / recipe / model / f"seed-{seed}")


def run_settings(config: RunConfig) -> dict:
    """What makes a run what it is (not where it ran or with which versions)."""
    made = config.to_dict()
    for key in ("versions", "cache_dir", "resume", "tensorboard"):
        made.pop(key, None)
    return json.loads(json.dumps(made))  # as it reads back from a record (tuples become lists)


def with_defaults(saved: dict, defaults: dict) -> dict:
    """`saved` settings with every key it lacks taken from `defaults`, nested objects (augment,
    preprocessing) key by key: a record written before a setting existed was made with its
    default, whatever it holds."""
    filled = dict(saved)
    for key, default in defaults.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(default, dict) and isinstance(filled[key], dict):
            filled[key] = with_defaults(filled[key], default)
    return filled


def same_run(saved: dict, settings: dict) -> bool:
    """Whether two runs' settings are one run's: all but where it was written (a study folder may
    be moved)."""
    return {k: v for k, v in saved.items() if k != "out"} == {k: v for k, v in settings.items() if k != "out"}


def settings_of(made: dict) -> dict:
    """A record's settings as runs compare: only what makes a run (run_settings' keys), each one
    the record lacks at its default."""
    defaults = run_settings(RunConfig(data=[]))
    return with_defaults({key: made[key] for key in defaults if key in made}, defaults)


def saved_settings(run: RunFolder) -> dict | None:
    """The settings run.json was trained with (older records' missing ones at their defaults);
    None when the run has no readable run.json."""
    try:
        return settings_of(read_record(run.record))
    except RecordError:
        return None


def study_record_of(run: RunFolder, suite: Suite) -> StudyRecord | None:
    """The run's record over `suite`: its own file (study-SUITE.json), else the one study.json of a
    run recorded before runs kept one per suite, where that drove this suite; None when neither.
    RecordError, naming the file and field, when the one to read is damaged."""
    path = run.study_record(suite.name)
    if path.is_file():
        return StudyRecord.read(path)
    if run.older_study_record.is_file():
        record = StudyRecord.read(run.older_study_record)
        return record if record.suite == suite.label else None
    return None


def same_weights(steps: dict[str, int | None], kind: str) -> bool:
    """Whether checkpoint `kind` holds the very weights of the val-best one: both saved at the same,
    known training step. A checkpoint whose step is unknown (an older file) counts as different,
    so it is driven and tabulated on its own."""
    step = steps.get(kind)
    return step is not None and step == steps.get("val-best")


def train_result(run: RunFolder, name: str) -> TrainResult:
    """Model `name`'s training figures from the run's run.json, every field checked. RecordError
    names the file and the field in one line."""
    data = read_record(run.record)
    results = data.get("results")
    if not isinstance(results, dict) or name not in results:
        raise RecordError(f"{run.record}: field 'results' has no model {name!r}")
    return record_from_dict(TrainResult, results[name], f"{run.record}: results.{name}")


def finished_runs(out: Path, suite: Suite) -> list[StudyRecord]:
    """Every finished run under OUT (OUT/RECIPE/MODEL/seed-N/study-SUITE.json) that drove `suite`
    with the training its run.json holds, in recipe, model and seed order: the table of a study
    still running, stopped, or run in parts. A run whose record or run.json cannot be used
    (damaged, tampered, figures out of range, or a drive of a training since replaced) is left
    out, with one line naming the file and the field."""
    runs = []
    for folder in sorted(p for p in out.glob("*/*/seed-*") if p.is_dir()):
        run = RunFolder(folder)
        try:
            record = study_record_of(run, suite)
            if record is None or record.suite != suite.label:
                continue
            train_result(run, record.model)  # the training it sums up must be whole too
        except RecordError as e:
            print(f"study: {e}; left out", file=sys.stderr)
            continue
        trained = saved_settings(run)
        if trained is not None and not same_run(settings_of(record.settings), trained):
            print(
                f"study: {folder}: its {suite.label} drives were of an earlier training (run.json "
                "holds other settings); left out until the study drives this one",
                file=sys.stderr,
            )
            continue
        runs.append(replace(record, recipe=folder.parents[1].name))
    recipes, models = list(RECIPES), list(MODELS)

    def order(run: StudyRecord) -> tuple:
        return (
            recipes.index(run.recipe) if run.recipe in recipes else len(recipes),
            run.recipe,
            models.index(run.model) if run.model in models else len(models),
            run.model,
            run.seed,
        )

    return sorted(runs, key=order)


def header(suite: Suite, runs: list[StudyRecord]) -> str:
    budgets = dict.fromkeys(
        Budget(c.epochs, c.steps_per_epoch, c.batch_size).describe() for c in (r.run_config for r in runs)
    )
    return (
        f"# Seed study\n\n{date.today().isoformat()}, {machine_description()}; budget "
        f"{' / '.join(budgets) or '-'}; suite {suite.label} ({len(suite.drives)} unseen drives per "
        f"checkpoint). {len(runs)} runs.\n\n"
    )


def _spread(values: list[float], sign: str = "", unit: str = "%") -> str:
    """'97.1% [90.2, 98.0]': median and range over seeds."""
    if not values:
        return "-"
    v = np.array(values)
    return f"{np.median(v):{sign}.1f}{unit} [{v.min():{sign}.1f}, {v.max():{sign}.1f}]"


def served_kind(run: StudyRecord) -> str:
    """The checkpoint a run serves, by driving.run.served_kind: drive-best where it kept one, else
    the last one where it trained a fixed budget (--patience 0), else val-best."""
    return run_served_kind(run.summary)


def served(run: StudyRecord):
    """The summary of the checkpoint a run serves (served_kind)."""
    return run.summary[served_kind(run)]


def drove_both_looks(runs: list[StudyRecord]) -> bool:
    """Whether the suite of these runs drove seen and new looks (a `looks` suite)."""
    return any(r.summary["val-best"].has_both_looks for r in runs)


def summary_table(runs: list[StudyRecord]) -> str:
    """Per recipe and model: seeds at >= THRESHOLD mean autonomy, median and range of the mean
    autonomy, success rate, validation MSE (naming the seeds that learnt nothing); and how the
    drive-best checkpoint compares. When the suite drove seen and new looks: the served
    checkpoint's seen-look and new-look autonomy and the gap between them, median and range over
    seeds, with the seeds whose new looks reach THRESHOLD and those that also meet the gap
    (close_gap)."""
    looks = drove_both_looks(runs)
    look_header = (
        f" seen looks median [min, max] | new looks median [min, max] | new looks >= {THRESHOLD:g}% |"
        f" gap new - seen median [min, max] | new >= {THRESHOLD:g}% and gap within {GAP_POINTS:g} points |"
        if looks
        else ""
    )
    lines = [
        f"| recipe | model | seeds | >= {THRESHOLD:g}% autonomy | autonomy median [min, max] | "
        "drives without intervention | val MSE median [min, max] | served where not val-best "
        f"(drive-best, or last): >= {THRESHOLD:g}%, autonomy median [min, max], differs from "
        "val-best, mean gain |" + look_header,
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" * 5 if looks else ""),
    ]
    keys = list(dict.fromkeys((r.recipe, r.model) for r in runs))
    for recipe, model in keys:
        mine = [r for r in runs if (r.recipe, r.model) == (recipe, model)]
        auto = np.array([r.summary["val-best"].autonomy_mean for r in mine])
        success = np.mean([r.summary["val-best"].success_rate for r in mine])
        mse = np.array([r.val_mse for r in mine if r.val_mse is not None], dtype=float)
        mse_text = f"{np.median(mse):.4f} [{mse.min():.4f}, {mse.max():.4f}]" if mse.size else "-"
        idle = [r.seed for r in mine if r.learnt_nothing]
        if idle:
            mse_text += f"; did not learn: seed {', '.join(map(str, idle))}"
        other = [r for r in mine if served_kind(r) != "val-best"]
        if other:
            kinds = " / ".join(dict.fromkeys(served_kind(r) for r in other))
            d_auto = np.array([served(r).autonomy_mean for r in other])
            v_auto = np.array([r.summary["val-best"].autonomy_mean for r in other])
            differs = sum(not same_weights(r.steps, served_kind(r)) for r in other)
            drive_text = (
                f"{kinds}: {int((d_auto >= THRESHOLD).sum())} of {len(other)}, {np.median(d_auto):.1f}% "
                f"[{d_auto.min():.1f}, {d_auto.max():.1f}], {differs} of {len(other)}, "
                f"{np.mean(d_auto - v_auto):+.1f} points"
            )
        else:
            drive_text = "-"
        look_cells = ""
        if looks:
            figures = [served(r) for r in mine]
            seen, new, gap = (
                [v for v in (getattr(f, name) for f in figures) if v is not None]
                for name in ("seen_autonomy_mean", "new_look_autonomy_mean", "look_gap")
            )
            drove = sum(v >= THRESHOLD for v in new)
            close = sum(close_gap(f) for f in figures)
            look_cells = (
                f" {_spread(seen)} | {_spread(new)} | {drove} of {len(new)} |"
                f" {_spread(gap, '+', '')} | {close} of {len(gap)} |"
            )
        lines.append(
            f"| {recipe} | {model} | {len(mine)} | {int((auto >= THRESHOLD).sum())} of {len(mine)} | "
            f"{np.median(auto):.1f}% [{auto.min():.1f}, {auto.max():.1f}] | {success * 100:.0f}% | "
            f"{mse_text} | {drive_text} |" + look_cells
        )
    if looks:
        lines += [
            "",
            "Seen and new looks: the served checkpoint's (drive-best where a run kept one, the "
            "last one where it trained a fixed budget, else val-best) mean autonomy on the suite's "
            "seen styles and on its new looks, and the gap new - seen in points, paired by track "
            f"shape; median and range over seeds. The counts are the seeds that drove new looks at "
            f">= {THRESHOLD:g}% and those that did so with a gap within {GAP_POINTS:g} points either "
            "way (a run that drove nothing has no gap worth the name, and seen looks that fell "
            "below new ones are no closer to the target). A run whose best val MSE is no better "
            "than one constant steering angle's is named in the val MSE column: it did not learn.",
        ]
    return "\n".join(lines)


def close_gap(figures: SuiteSummary) -> bool:
    """The looks target, for one run's served checkpoint: it drove new looks at >= THRESHOLD and
    its gap new - seen lies within GAP_POINTS either way."""
    new, gap = figures.new_look_autonomy_mean, figures.look_gap
    return new is not None and gap is not None and new >= THRESHOLD and abs(gap) <= GAP_POINTS


def look_losses(out: Path, suite: Suite, run: StudyRecord) -> list[tuple[int, float]]:
    """What each new-look drive of the suite cost the run's served checkpoint: (look seed, its
    autonomy minus the same shape's in its seen style, in points), from the run's
    suite-NAME.json. RecordError (or OSError) when that file cannot be used."""
    path = study_run(out, run.recipe, run.model, run.seed).suite(suite.name)
    result = SuiteResult.read(path)
    # A served checkpoint with val-best's very weights was driven once, as val-best.
    drives = result.drives.get(served_kind(run)) or result.drives.get("val-best") or []
    seen = {d.track_seed: d.autonomy_pct for d in drives if d.look is None}
    for d in drives:
        if d.look is not None and not 0 <= d.look <= MAX_LOOK_SEED:
            raise RecordError(f"{path}: drive {d.drive}: field 'look' is not a look seed: {d.look!r}")
    return [
        (d.look, d.autonomy_pct - seen[d.track_seed])
        for d in drives
        if d.look is not None and d.track_seed in seen
    ]


def costliest_looks(out: Path, suite: Suite, runs: list[StudyRecord]) -> str:
    """Where the gap lives: per recipe and model, the COSTLIEST_LOOKS new looks whose drives lost
    most against the same shapes in their seen styles (the mean over its drives in every run, and
    how many lost more than LOST_POINTS), the gap over every shape beside the gap without those
    looks' shapes (median and range over runs), and what those looks are. A diagnosis: the
    suite's gap is the one over every shape. A run whose suite file cannot be read is left out of
    it, with one line naming the file."""
    lines = [
        "Where the gap lives: per recipe and model, the new looks that lost most against the same "
        "shape in its seen style (the served checkpoint's autonomy, new - seen in points: the mean "
        f"over its drives, and how many of them lost more than {LOST_POINTS:g}), and the gap over "
        "every shape beside the gap over the shapes left without those looks (median and range "
        "over runs; a diagnosis, not the suite's figure).",
        "",
        f"| recipe | model | runs | the {COSTLIEST_LOOKS} new looks that lost most | gap, every shape | "
        "gap without them |",
        "|---|---|---:|---|---:|---:|",
    ]
    named: dict[int, None] = {}
    for recipe, model in dict.fromkeys((r.recipe, r.model) for r in runs):
        per_run: list[list[tuple[int, float]]] = []
        for run in (r for r in runs if (r.recipe, r.model) == (recipe, model)):
            try:
                per_run.append(look_losses(out, suite, run))
            except (RecordError, OSError) as e:
                print(f"study: {e}; left out of where the gap lives", file=sys.stderr)
        losses: dict[int, list[float]] = {}
        for look, cost in (pair for costs in per_run for pair in costs):
            losses.setdefault(look, []).append(cost)
        if not losses:
            continue
        means = {look: float(np.mean(v)) for look, v in losses.items()}
        worst = [look for look in sorted(means, key=means.get) if means[look] < 0][:COSTLIEST_LOOKS]
        every = [float(np.mean([c for _, c in costs])) for costs in per_run if costs]
        kept = [[c for look, c in costs if look not in worst] for costs in per_run]
        without = [float(np.mean(k)) for k in kept if k]
        cells = ", ".join(
            f"{look_name(look)} {means[look]:+.1f} ({sum(v < -LOST_POINTS for v in losses[look])} of "
            f"{len(losses[look])})"
            for look in worst
        )
        lines.append(
            f"| {recipe} | {model} | {len(per_run)} | {cells or '-'} | {_spread(every, '+', '')} | "
            f"{_spread(without, '+', '')} |"
        )
        named.update(dict.fromkeys(worst))
    lines += ["", *[f"- `{look_name(look)}`: {new_look(look).describe()}" for look in named]]
    return "\n".join(lines).rstrip()


def plot(runs: list[StudyRecord], path: Path, suite_label: str) -> Path:
    """study.png: the figure of study_figure()."""
    return save_figure(study_figure(runs, suite_label), path)


def study_figure(runs: list[StudyRecord], suite_label: str) -> plt.Figure:
    """One point per seed: mean suite autonomy of each recipe x model (the served checkpoint hollow
    where it is not val-best: drive-best, last). When the
    suite drove seen and new looks, each seed instead shows its served checkpoint's seen-look
    (triangle) and new-look (dot) autonomy joined by a line: the gap, seed by seed."""
    # Grouped by model, one colour each, so the recipes of a model stand side by side.
    models = list(dict.fromkeys(r.model for r in runs))
    keys = sorted(dict.fromkeys((r.recipe, r.model) for r in runs), key=lambda k: models.index(k[1]))
    looks = drove_both_looks(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(keys) + 2), 4.5))
    for i, key in enumerate(keys):
        mine = [r for r in runs if (r.recipe, r.model) == key]
        colour = f"C{models.index(key[1]) % 10}"
        for j, r in enumerate(mine):
            x = i + (j - (len(mine) - 1) / 2) * (0.12 if looks else 0.08)
            figures = served(r)
            if looks and figures.has_both_looks:
                seen, new = figures.seen_autonomy_mean, figures.new_look_autonomy_mean
                ax.plot([x, x], [seen, new], color=colour, lw=1, alpha=0.5)
                ax.plot(x, seen, "^", mfc="none", color=colour, ms=7)
                ax.plot(x, new, "o", color=colour, ms=6)
                continue
            ax.plot(x, r.summary["val-best"].autonomy_mean, "o", color=colour, ms=6)
            if served_kind(r) != "val-best":
                ax.plot(x, figures.autonomy_mean, "o", mfc="none", color=colour, ms=9)
    ax.axhline(THRESHOLD, color="0.5", ls=":", lw=1)
    ax.set_xticks(range(len(keys)), [f"{m}\n{r}" for r, m in keys], fontsize="small")
    title = (
        f"Seen looks (triangle) and new looks (dot) per training seed ({suite_label}), served checkpoint"
        if looks
        else f"One point per training seed ({suite_label}); hollow: the served checkpoint (drive-best, last)"
    )
    ax.set(ylabel="mean autonomy on the suite, %", ylim=(-3, 103), title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
