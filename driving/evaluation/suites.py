"""Evaluation suites: many worlds a model never saw, driven in parallel, summarised with
confidence intervals.

    python -m driving.evaluate models/effnet.h5 models/base.h5 --suite unseen [--jobs 2] [--out DIR]
    result = suites.run(["models/effnet.h5"], SUITES["quick"], jobs=2)   # a SuiteResult
    result.summary["effnet"].autonomy_mean, result.drives["effnet"][0].interventions

The suites (which tracks, looks and laps, from which seed ranges) are named in
driving/evaluation/registry.py (SUITES); this module drives them and sums them up.

Every drive is deterministic (fixed 1/15 s step, the Pilot driven directly in-process, LiteRT on
one thread), so a suite gives the same figures whatever the number of parallel jobs. Each wait
has an end: a drive that runs past its time in a worker process (--drive-timeout), or whose
worker dies, fails the suite in one line naming the drive, and every worker is stopped.

Per model, per drive and in aggregate: success rate (drives with zero interventions), autonomy
mean with a 95% bootstrap confidence interval over the drives, interventions per km, mean
|cross-track error|, steering rate, latency. Seen looks (the named styles) and new looks
(driving.sim.looks) apart, each with its interval, and the gap new - seen with a 95% interval:
paired by track shape where a suite drives shapes in both (the `looks` suites), which isolates the
look. Written as JSON (driving.run.SuiteResult, with its schema), a markdown table and a PNG; the
look columns and the PNG's second set of points appear only for a suite with both kinds.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from driving import card
from driving.config import TARGET_SPEED_MPH
from driving.evaluation.closed_loop import DriveOptions, drive_pilot
from driving.evaluation.registry import SUITES, Suite, SuiteDrive
from driving.evaluation.settings import DRIVE_TIMEOUT_S, EvalConfig
from driving.files import save_figure, write_text
from driving.pilot import Pilot, PilotConfig
from driving.run import DriveResult, RunFolder, SuiteResult, SuiteSummary
from driving.runtime import Predictor
from driving.sim.conditions import Conditions
from driving.sim.kinds import KINDS
from driving.sim.looks import look_name, look_seed, new_look
from driving.sim.style import Style
from driving.sim.track import track_features

BOOTSTRAP_SAMPLES = 10_000


class DriveFailed(RuntimeError):
    """A suite's drive that did not finish: it ran past its time, or its worker process died. The
    message names the drive in one line; every worker has been stopped."""


# --- driving the suite ----------------------------------------------------------------------------


@cache
def _pilot(model: str, speed: float) -> Pilot:
    """One Pilot per model and process (TensorFlow and the model load once per worker)."""
    return Pilot(Predictor.load(model, threads=1), PilotConfig(speed=speed))


def drive_one(
    model: str,
    drive: SuiteDrive,
    speed: float = TARGET_SPEED_MPH,
    pilot: Pilot | None = None,
    look: tuple[Style, Conditions] | None = None,
) -> DriveResult:
    """Drive one suite drive with `model` (or an in-memory `pilot`); the drive's metrics, with
    what was driven (track features, conditions). `look` paints and lights the world instead of
    the drive's own style and conditions (driving/evaluation/ablation.py changes one part of it)."""
    track = drive.track()
    style, conditions = look if look is not None else (None, drive.conditions())
    options = DriveOptions(
        laps=drive.laps,
        seed=drive.conditions_seed,
        conditions=conditions,
        progress=False,
        model=Path(model).stem if model else "",
        world=KINDS[drive.world],
        style=style,
    )
    metrics, _ = drive_pilot(pilot or _pilot(model, speed), track, options, direct=True)
    return DriveResult(
        **metrics.to_dict(),
        drive=drive.name,
        style=drive.world_style,
        look=drive.look,
        track_seed=drive.track_seed,
        conditions_seed=drive.conditions_seed,
        width_m=track.width,
        features=track_features(track),
    )


Task = tuple[str, SuiteDrive, float]  # model file, drive, speed
AnyTask = TypeVar("AnyTask", bound=tuple)  # a task that begins with a model file and a drive
WORKER_CHECK_S = 1.0  # how often a suite checks that none of its workers has died


def _task(task: Task) -> DriveResult:
    return drive_one(*task)


def drive_suite(
    models: Sequence[str | Path],
    suite: Suite,
    jobs: int | None = None,
    speed: float = TARGET_SPEED_MPH,
    progress: bool = True,
    drive_timeout: float = DRIVE_TIMEOUT_S,
) -> dict[str, list[DriveResult]]:
    """Every model on every drive of `suite`, `jobs` drives at a time in separate processes
    (default: one per core); {model path: [drive results in suite order]}. The results do not
    depend on `jobs`. A drive that takes over `drive_timeout` seconds in a worker, or whose worker
    dies, fails the suite with DriveFailed (with one job the drives run in this process, where
    nothing is waited for: no time limit applies)."""
    tasks: list[Task] = [(str(m), d, speed) for m in models for d in suite.drives]
    rows = drive_tasks(_task, tasks, jobs, drive_timeout, f"suite {suite.label}", progress)
    out: dict[str, list[DriveResult]] = {str(m): [] for m in models}
    for (model, _, _), row in zip(tasks, rows, strict=True):
        out[model].append(row)
    return out


def drive_tasks(
    function: Callable[[AnyTask], DriveResult],
    tasks: Sequence[AnyTask],
    jobs: int | None,
    timeout: float,
    what: str,
    progress: bool = True,
) -> list[DriveResult]:
    """`function(task)` for every task with a progress bar: in this process with one job (no time
    limit), else in `jobs` worker processes (default: one per core; see drive_in_workers)."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    bar = tqdm(total=len(tasks), desc=what, unit="drive", disable=not progress)
    try:
        if jobs == 1:
            rows = []
            for task in tasks:
                rows.append(function(task))
                bar.update(1)
            return rows
        return drive_in_workers(function, tasks, jobs, timeout, what, lambda: bar.update(1))
    finally:
        bar.close()


def drive_in_workers(
    function: Callable[[AnyTask], DriveResult],
    tasks: Sequence[AnyTask],
    jobs: int,
    timeout: float = DRIVE_TIMEOUT_S,
    what: str = "suite",
    done_one: Callable[[], None] = lambda: None,
) -> list[DriveResult]:
    """`function(task)` for every task (a module-level function: it is sent to the workers), in
    `jobs` worker processes; the results in task order. At most `jobs` tasks are handed out at a
    time, so a drive's clock starts when a worker is free to take it. A drive that runs past
    `timeout` seconds, or whose worker dies, raises DriveFailed naming it (`what` begins the
    message); an error a drive raises is re-raised as it is. Either way every worker is stopped
    first, so nothing is left running or waited for."""
    # spawn, not fork: a forked TensorFlow can deadlock. Each worker loads what it drives once.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    rows: list[DriveResult | None] = [None] * len(tasks)
    waiting = deque(range(len(tasks)))
    running: dict[Future, tuple[int, float]] = {}  # future -> task index, when it was handed out

    def named(indices) -> str:
        return ", ".join(f"{tasks[i][1].name} of {Path(tasks[i][0]).name}" for i in indices)

    def died() -> DriveFailed:
        return DriveFailed(
            f"{what}: a worker process died (killed, or out of memory) while "
            f"driving {named(index for index, _ in running.values())}"
        )

    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i = waiting.popleft()
                running[pool.submit(function, tasks[i])] = (i, time.monotonic())
            first_due = min(started for _, started in running.values()) + timeout
            due_in = max(0.0, first_due - time.monotonic())
            done, _ = wait(running, min(due_in, WORKER_CHECK_S), FIRST_COMPLETED)
            if not done and _a_worker_died(pool):
                raise died()
            for future in done:
                i, _ = running[future]
                try:
                    rows[i] = future.result()
                except BrokenProcessPool:
                    raise died() from None
                del running[future]
                done_one()
            now = time.monotonic()
            late = [i for i, started in running.values() if now - started >= timeout]
            if late:
                raise DriveFailed(
                    f"{what}: drive {named(late)} took over {timeout:g} s "
                    "(--drive-timeout): stopped, with every worker"
                )
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return rows


def _a_worker_died(pool: ProcessPoolExecutor) -> bool:
    """Whether a worker of `pool` has ended. Asked on our own clock: the executor (Python 3.11)
    watches only the workers it knew of when it last woke, so one that dies just after it was
    started goes unnoticed until another drive ends, or for good."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # its process table
    return any(process.exitcode is not None for process in processes)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End every worker now: shutdown() alone would wait for a stalled drive forever."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14 and later
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the executor offers no public way to stop a busy worker: its process table.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


# --- the figures ----------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (resampling the drives
    with replacement, `samples` times, from a fixed seed: the same interval every time)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (samples, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_difference_ci(
    new: Sequence[float], seen: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(new) - mean(seen) for two unpaired sets of drives (each
    resampled on its own, from fixed seeds)."""
    a, b = np.asarray(new, dtype=np.float64), np.asarray(seen, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return (float("nan"), float("nan"))
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(1)
    diffs = a[rng_a.integers(0, a.size, (samples, a.size))].mean(axis=1) - b[
        rng_b.integers(0, b.size, (samples, b.size))
    ].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def look_split(rows: Sequence[DriveResult]) -> dict:
    """SuiteSummary's look fields of one model's drives: seen and new looks apart, and the gap."""
    seen = [r for r in rows if r.look is None]
    new = [r for r in rows if r.look is not None]

    def figures(part: list[DriveResult]) -> tuple[float | None, tuple[float, float] | None]:
        if not part:
            return None, None
        values = [r.autonomy_pct for r in part]
        return float(np.mean(values)), bootstrap_ci(values)

    (seen_mean, seen_ci), (new_mean, new_ci) = figures(seen), figures(new)
    gap, gap_ci, pairs = None, None, 0
    if seen and new:
        by_shape = {}  # track seed -> (seen autonomies, new autonomies)
        for r in rows:
            by_shape.setdefault(r.track_seed, ([], []))[r.look is not None].append(r.autonomy_pct)
        paired = [float(np.mean(n) - np.mean(s)) for s, n in by_shape.values() if s and n]
        if paired:
            gap, gap_ci, pairs = float(np.mean(paired)), bootstrap_ci(paired), len(paired)
        else:
            gap = new_mean - seen_mean
            gap_ci = bootstrap_difference_ci([r.autonomy_pct for r in new], [r.autonomy_pct for r in seen])
    return dict(
        seen_drives=len(seen),
        seen_autonomy_mean=seen_mean,
        seen_autonomy_ci95=seen_ci,
        new_look_drives=len(new),
        new_look_autonomy_mean=new_mean,
        new_look_autonomy_ci95=new_ci,
        look_gap=gap,
        look_gap_ci95=gap_ci,
        gap_pairs=pairs,
    )


def summarise(rows: Sequence[DriveResult]) -> SuiteSummary:
    """The aggregate figures of one model's drives."""
    autonomy = [r.autonomy_pct for r in rows]
    km = sum(r.distance_m for r in rows) / 1000
    interventions = sum(r.interventions for r in rows)
    low, high = bootstrap_ci(autonomy)
    by_style = {}
    # The suite's named styles in its order (lake, jungle, desert; or the lane styles); a drive in a
    # new look counts in the seen/new split, not as a style of its own.
    for style in dict.fromkeys(r.style for r in rows if look_seed(r.style) is None):
        mine = [r.autonomy_pct for r in rows if r.style == style]
        if mine:
            by_style[style] = float(np.mean(mine))
    return SuiteSummary(
        drives=len(rows),
        success_rate=float(np.mean([r.interventions == 0 and r.completed for r in rows])),
        autonomy_mean=float(np.mean(autonomy)),
        autonomy_ci95=(low, high),
        autonomy_min=float(np.min(autonomy)),
        interventions=interventions,
        km=km,
        interventions_per_km=interventions / km if km else None,  # no distance: no rate
        mean_abs_cte_m=float(np.mean([r.mean_abs_cte_m for r in rows])),
        steering_rate_rms=float(np.mean([r.steering_rate_rms for r in rows])),
        latency_median_ms=float(np.median([r.latency_median_ms for r in rows])),
        autonomy_by_style=by_style,
        **look_split(rows),
    )


def markdown(result: SuiteResult) -> str:
    suite = result.suite
    order = list(dict.fromkeys(st for s in result.summary.values() for st in s.autonomy_by_style))
    lines = [
        f"# Suite {suite['name']} v{suite['version']}",
        "",
        f"{suite['description']}. {len(suite['drives'])} drives per model at {result.speed:g} mph, "
        f"fixed 1/15 s step. Autonomy: (1 - interventions x 6 s / elapsed s) x 100; its 95% "
        "interval is a bootstrap over the drives.",
        "",
        "| model | success | autonomy mean [95% CI] | min | interventions/km | mean abs CTE m | "
        "steer rms/s | latency ms | " + " | ".join(order) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(order),
    ]
    for name, s in result.summary.items():
        low, high = s.autonomy_ci95
        styles = [f"{s.autonomy_by_style.get(st, float('nan')):.1f}%" for st in order]
        per_km = "-" if s.interventions_per_km is None else f"{s.interventions_per_km:.2f}"
        lines.append(
            f"| {name} | {s.success_rate * 100:.0f}% | "
            f"{s.autonomy_mean:.1f}% [{low:.1f}, {high:.1f}] | "
            f"{s.autonomy_min:.1f}% | {per_km} | {s.mean_abs_cte_m:.2f} | "
            f"{s.steering_rate_rms:.3f} | {s.latency_median_ms:.1f} | " + " | ".join(styles) + " |"
        )
    lines += ["", "Per drive (interventions, autonomy):", ""]
    names = list(result.drives)
    lines.append("| drive | width m | " + " | ".join(names) + " |")
    lines.append("|---|---:|" + "---:|" * len(names))
    for i in range(len(suite["drives"])):
        first = result.drives[names[0]][i]
        cells = [
            f"{result.drives[n][i].interventions}, {result.drives[n][i].autonomy_pct:.0f}%" for n in names
        ]
        lines.append(f"| {first.drive} | {first.width_m:.1f} | " + " | ".join(cells) + " |")
    if any(s.has_both_looks for s in result.summary.values()):
        lines += _look_lines(result)
    return "\n".join(lines) + "\n"


def _interval(mean: float | None, ci: tuple[float, float] | None, sign: str = "", unit: str = "%") -> str:
    if mean is None or ci is None:
        return "-"
    return f"{mean:{sign}.1f}{unit} [{ci[0]:{sign}.1f}, {ci[1]:{sign}.1f}]"


def _look_lines(result: SuiteResult) -> list[str]:
    """The markdown of seen against new looks: per model the two autonomies and the gap, and each
    new look in words."""
    pairs = max(s.gap_pairs for s in result.summary.values())
    how = (
        f"paired by track shape ({pairs} shapes driven in both)"
        if pairs
        else "of the two means (no shape driven in both)"
    )
    lines = [
        "",
        "Seen and new looks: autonomy on the named styles and on generated looks no recording has, "
        f"each with a 95% bootstrap interval over its drives, and the gap (new - seen, points) {how}. "
        "A gap whose interval lies below 0 is the look costing autonomy.",
        "",
        "| model | seen looks | new looks | gap new - seen [95% CI] |",
        "|---|---:|---:|---:|",
    ]
    for name, s in result.summary.items():
        seen = _interval(s.seen_autonomy_mean, s.seen_autonomy_ci95)
        new = _interval(s.new_look_autonomy_mean, s.new_look_autonomy_ci95)
        gap = _interval(s.look_gap, s.look_gap_ci95, "+", "")
        lines.append(f"| {name} | {seen} ({s.seen_drives}) | {new} ({s.new_look_drives}) | {gap} |")
    first = next(iter(result.drives.values()))
    looks = dict.fromkeys(r.look for r in first if r.look is not None)
    lines += ["", "The new looks:", ""]
    lines += [f"- `{look_name(seed)}`: {new_look(seed).describe()}" for seed in looks]
    return lines


STYLE_COLOURS = {"lake": "tab:blue", "jungle": "tab:green", "desert": "tab:orange"}


def _mean_bar(ax, x: float, mean: float, ci: tuple[float, float], marker: str) -> None:
    """A mean as a black marker with its 95% interval as error bars, drawn above the drive dots."""
    ax.errorbar(
        x,
        mean,
        yerr=[[mean - ci[0]], [ci[1] - mean]],
        fmt=marker,
        color="black",
        ms=7,
        capsize=5,
        lw=2,
        zorder=5,
    )


def plot(result: SuiteResult, path: Path) -> Path:
    """Per model: mean autonomy with its 95% interval, and one dot per drive (coloured by style);
    for a suite of seen and new looks, the two side by side with the gap."""
    if any(s.has_both_looks for s in result.summary.values()):
        return _plot_looks(result, path)
    names = list(result.summary)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(names) + 2), 4.5))
    jitter = np.random.default_rng(0)
    for i, name in enumerate(names):
        s = result.summary[name]
        for row in result.drives[name]:
            ax.plot(
                i + jitter.uniform(-0.25, 0.25),
                row.autonomy_pct,
                "o",
                ms=4,
                alpha=0.6,
                color=STYLE_COLOURS.get(row.style, "0.5"),
            )
        _mean_bar(ax, i, s.autonomy_mean, s.autonomy_ci95, "D")
    for style, colour in STYLE_COLOURS.items():
        ax.plot([], [], "o", color=colour, label=f"{style} drives")
    ax.plot([], [], "D", color="black", label="mean, 95% CI")
    ax.axhline(90, color="0.6", ls=":", lw=1)
    ax.set_xticks(range(len(names)), names, rotation=15)
    suite = result.suite
    ax.set(
        ylabel="autonomy %",
        ylim=(-3, 103),
        title=f"{suite['name']} v{suite['version']}: {len(suite['drives'])} unseen drives per model",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_looks(result: SuiteResult, path: Path) -> Path:
    """Per model: seen-look drives (coloured by style) and new-look drives side by side, each
    kind's mean with its 95% interval, and the gap with its interval written above."""
    names = list(result.summary)
    new_colour = "tab:purple"
    fig, ax = plt.subplots(figsize=(max(5.5, 2.2 * len(names) + 2), 4.8))
    jitter = np.random.default_rng(0)
    for i, name in enumerate(names):
        s = result.summary[name]
        for row in result.drives[name]:
            x = i + (0.2 if row.look is not None else -0.2) + jitter.uniform(-0.1, 0.1)
            colour = new_colour if row.look is not None else STYLE_COLOURS.get(row.style, "0.5")
            ax.plot(x, row.autonomy_pct, "o", ms=4, alpha=0.6, color=colour)
        for dx, mean, ci, marker in (
            (-0.2, s.seen_autonomy_mean, s.seen_autonomy_ci95, "D"),
            (0.2, s.new_look_autonomy_mean, s.new_look_autonomy_ci95, "s"),
        ):
            if mean is not None and ci is not None:
                _mean_bar(ax, i + dx, mean, ci, marker)
        if s.look_gap is not None and s.look_gap_ci95 is not None:
            gap = _interval(s.look_gap, s.look_gap_ci95, "+", "")
            ax.text(i, 104, f"gap {gap}", ha="center", fontsize="small")
    for style, colour in STYLE_COLOURS.items():
        ax.plot([], [], "o", color=colour, label=f"{style} drives (seen)")
    ax.plot([], [], "o", color=new_colour, label="new-look drives")
    ax.plot([], [], "D", color="black", label="seen: mean, 95% CI")
    ax.plot([], [], "s", color="black", label="new: mean, 95% CI")
    ax.axhline(90, color="0.6", ls=":", lw=1)
    ax.set_xticks(range(len(names)), names, rotation=15)
    suite = result.suite
    ax.set(
        ylabel="autonomy %",
        ylim=(-3, 110),
        title=f"{suite['name']} v{suite['version']}: seen (left) and new looks (right), gap new - seen",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def run(
    models: Sequence[str | Path],
    suite: Suite,
    jobs: int | None = None,
    speed: float = TARGET_SPEED_MPH,
    out: Path | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
    drive_timeout: float = DRIVE_TIMEOUT_S,
) -> SuiteResult:
    """Drive `suite` with every model; write suite-NAME.json/.md/.png into `out` when given.
    `names` label the models in tables (default: their file stems, made unique). A drive that
    takes over `drive_timeout` seconds in a worker process raises DriveFailed."""
    models = [str(m) for m in models]
    names = list(names or model_labels(models))
    drives = drive_suite(models, suite, jobs, speed, progress, drive_timeout)
    result = SuiteResult(
        suite={
            "name": suite.name,
            "version": suite.version,
            "description": suite.description,
            "drives": [vars(d) | {"name": d.name} for d in suite.drives],
        },
        speed=speed,
        models=dict(zip(names, models, strict=True)),
        drives={n: drives[m] for n, m in zip(names, models, strict=True)},
        summary={n: summarise(drives[m]) for n, m in zip(names, models, strict=True)},
    )
    if out is not None:
        folder = RunFolder(out)
        result.write(folder.suite(suite.name))
        write_text(folder.suite(suite.name, ".md"), markdown(result))
        plot(result, folder.suite(suite.name, ".png"))
    card.add_suite(result)  # a model of a run folder keeps the suite's figures on its card
    return result


def evaluate(config: EvalConfig, progress: bool = True) -> SuiteResult:
    """What `python -m driving.evaluate` runs: `config`'s models over its suite, written to its
    output folder."""
    config.validate()
    return run(
        config.models,
        SUITES[config.suite],
        config.jobs,
        config.speed,
        config.out,
        progress=progress,
        drive_timeout=config.drive_timeout,
    )


def model_labels(models: Sequence[str]) -> list[str]:
    """Unique names for tables: each file's stem, with folders added only where names clash (the
    same file given twice gets a number)."""
    paths = [Path(m).absolute() for m in models]
    depth = [0] * len(paths)
    label = lambda i: "/".join(
        [*paths[i].parent.parts[len(paths[i].parent.parts) - depth[i] :], paths[i].stem]
    )
    while True:
        labels = [label(i) for i in range(len(paths))]
        clashing = [i for i, text in enumerate(labels) if labels.count(text) > 1]
        if not clashing:
            return labels
        if all(depth[i] >= len(paths[i].parent.parts) for i in clashing):
            return [f"{paths[i].stem}#{i + 1}" if i in clashing else text for i, text in enumerate(labels)]
        for i in clashing:
            depth[i] += 1
