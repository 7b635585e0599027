"""Which part of a look costs a model: a suite's drives in one new look, driven as the look was
drawn and again with one of its parts changed at a time (edges painted solid, shadows taken
away, midday light, ...). The shape, the textures' seed and every other part stay as they were,
so a change that brings autonomy back names what the model cannot yet read.

    python -m driving.evaluate runs/*/effnet-lcn.last.keras --suite looks --ablate-look 1010006

A diagnosis, not a test of generalisation: the changed looks are no longer unseen in any sense
that matters, and a part found this way is a lead for a training lever, judged on other looks.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from driving.config import TARGET_SPEED_MPH
from driving.evaluation.registry import Suite, SuiteDrive
from driving.evaluation.settings import DRIVE_TIMEOUT_S
from driving.evaluation.suites import drive_one, drive_tasks, model_labels
from driving.files import save_figure, write_json, write_text
from driving.run import DriveResult
from driving.sim.conditions import Conditions
from driving.sim.looks import look_name, new_look, roadside
from driving.sim.style import Style

Look = tuple[Style, Conditions]


@dataclass(frozen=True)
class LookChange:
    """One part of a look set to a plain value: `applies` says whether the look has that part to
    change, `apply` returns the changed look."""

    name: str
    description: str
    applies: Callable[[Style, Conditions], bool]
    apply: Callable[[Style, Conditions], Look]


def _opposite_tone(style: Style) -> Style:
    """Grey asphalt at the other end of brightness from the roadside: the road's tone stands out."""
    bright = roadside(style).mean() > 110
    return replace(style, asphalt=(55, 55, 58) if bright else (175, 175, 172))


CHANGES = (
    LookChange(
        "solid edges",
        "dashed edge lines painted solid",
        lambda s, c: s.edge == "dashed",
        lambda s, c: (replace(s, edge="lines"), c),
    ),
    LookChange(
        "marked edges",
        "white solid edge lines where the road has none",
        lambda s, c: s.edge == "none",
        lambda s, c: (replace(s, edge="lines", edge_colour=(235, 235, 225)), c),
    ),
    LookChange(
        "no centre line",
        "the centre line taken away",
        lambda s, c: s.centre_colour is not None,
        lambda s, c: (replace(s, centre_colour=None), c),
    ),
    LookChange(
        "no shadows",
        "no shadow blobs on road or ground",
        lambda s, c: s.shadows > 0 and c.shadow_density > 0,
        lambda s, c: (replace(s, shadows=0), c),
    ),
    LookChange(
        "midday light",
        "the sun overhead in a clear sky (full, neutral light)",
        lambda s, c: c.sun_elevation_deg < 90 or c.overcast > 0,
        lambda s, c: (s, replace(c, sun_elevation_deg=90.0, overcast=0.0)),
    ),
    LookChange(
        "no grain",
        "the fine grain of road and ground taken away",
        lambda s, c: s.texture_amp > 0 or bool(s.ground_texture_amp),
        lambda s, c: (replace(s, texture_amp=0.0, ground_texture_amp=0.0), c),
    ),
    LookChange(
        "no wear",
        "no patches of wear, light or dark on the surfaces",
        lambda s, c: s.wear > 0 or s.light_patches > 0,
        lambda s, c: (replace(s, wear=0.0, light_patches=0.0), c),
    ),
    LookChange(
        "no ground cover",
        "no bushes on the ground beside the road",
        lambda s, c: s.bushes > 0,
        lambda s, c: (replace(s, bushes=0), c),
    ),
    LookChange(
        "no shoulder",
        "no shoulder strip between road and ground",
        lambda s, c: s.shoulder_m > 0,
        lambda s, c: (replace(s, shoulder_m=0.0), c),
    ),
    LookChange(
        "contrasting road",
        "grey asphalt of the opposite brightness to the roadside",
        lambda s, c: True,
        lambda s, c: (_opposite_tone(s), c),
    ),
)
AS_DRAWN = "as drawn"


@dataclass
class Ablation:
    """Every model's drives of one look's suite drives, as drawn and under each change."""

    suite: str
    look: int
    kinds: dict[str, str]  # what the look is (driving.sim.looks: asphalt, ground, edge, ...)
    drives: list[str]  # the suite drives in this look
    models: dict[str, str]  # label -> model file
    changes: dict[str, str]  # name -> description, AS_DRAWN first
    autonomy: dict[str, dict[str, list[float]]]  # change -> label -> autonomy % per drive

    def mean(self, change: str, label: str) -> float:
        return statistics.fmean(self.autonomy[change][label])

    def to_dict(self) -> dict:
        return dict(vars(self))


def look_drives(suite: Suite, look: int) -> list[SuiteDrive]:
    return [d for d in suite.drives if d.look == look]


def _drive(task: tuple[str, SuiteDrive, float, Look]) -> DriveResult:
    model, drive, speed, look = task
    return drive_one(model, drive, speed, look=look)


def ablate_look(
    models: Sequence[str | Path],
    suite: Suite,
    look: int,
    jobs: int | None = None,
    speed: float = TARGET_SPEED_MPH,
    progress: bool = True,
    drive_timeout: float = DRIVE_TIMEOUT_S,
) -> Ablation:
    """Drive `suite`'s drives in new look `look` with every model, as drawn and with each change
    of CHANGES that the look has a part for, `jobs` drives at a time."""
    drives = look_drives(suite, look)
    if not drives:
        raise ValueError(f"suite {suite.label} has no drive in {look_name(look)}")
    drawn = new_look(look)
    style, conditions = drawn.style, drawn.conditions
    looks: dict[str, tuple[str, Look]] = {AS_DRAWN: ("the look as the suite drives it", (style, conditions))}
    for change in CHANGES:
        if change.applies(style, conditions):
            looks[change.name] = (change.description, change.apply(style, conditions))
    models = [str(m) for m in models]
    tasks = [(m, d, speed, look_) for _, look_ in looks.values() for m in models for d in drives]
    labels = model_labels(models)  # unique even where a file is given twice
    # The change and the model label of each task, in the tasks' order.
    owners = [(name, label) for name in looks for label in labels for _ in drives]
    rows = drive_tasks(_drive, tasks, jobs, drive_timeout, f"ablate {look_name(look)}", progress)
    autonomy: dict[str, dict[str, list[float]]] = {c: {label: [] for label in labels} for c in looks}
    for (change, label), row in zip(owners, rows, strict=True):
        autonomy[change][label].append(row.autonomy_pct)
    return Ablation(
        suite=suite.label,
        look=look,
        kinds=dict(drawn.kinds),
        drives=[d.name for d in drives],
        models=dict(zip(labels, models, strict=True)),
        changes={name: description for name, (description, _) in looks.items()},
        autonomy=autonomy,
    )


def markdown(result: Ablation) -> str:
    """One row a change: the mean autonomy over the models, its range, and how it moved from the
    look as drawn; most regained first."""
    labels = list(result.models)
    drawn = {label: result.mean(AS_DRAWN, label) for label in labels}
    lines = [
        f"# {look_name(result.look)} in suite {result.suite}: which part of the look costs the models",
        "",
        "; ".join(f"{k}: {v}" for k, v in result.kinds.items()),
        "",
        f"{len(labels)} model(s), {len(result.drives)} drive(s) each ({', '.join(result.drives)}); "
        "autonomy % averaged over the drives; 'better' and 'worse' count models that moved more "
        "than 5 points.",
        "",
        "| change | what changed | mean autonomy [min, max] | vs as drawn | better | worse |",
        "|---|---|---|---:|---:|---:|",
    ]

    def row(change: str) -> tuple[float, str]:
        means = [result.mean(change, label) for label in labels]
        moved = [m - drawn[label] for m, label in zip(means, labels, strict=True)]
        mean = statistics.fmean(means)
        text = (
            f"| {change} | {result.changes[change]} | {mean:.1f} [{min(means):.1f}, {max(means):.1f}] | "
            f"{statistics.fmean(moved):+.1f} | {sum(d > 5 for d in moved)} | {sum(d < -5 for d in moved)} |"
        )
        return statistics.fmean(moved), text

    rows = sorted((row(c) for c in result.changes if c != AS_DRAWN), key=lambda r: -r[0])
    return "\n".join([*lines, row(AS_DRAWN)[1], *(text for _, text in rows)]) + "\n"


def plot(result: Ablation, path: Path) -> Path:
    """Each change's mean autonomy over the models (bar) and every model's (dots)."""
    changes = list(result.changes)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(changes) + 1.4))
    for y, change in enumerate(changes):
        means = [result.mean(change, label) for label in result.models]
        ax.barh(y, statistics.fmean(means), color="tab:grey" if change == AS_DRAWN else "tab:blue", alpha=0.6)
        ax.plot(means, [y] * len(means), "k.", ms=4)
    ax.axvline(statistics.fmean(result.mean(AS_DRAWN, m) for m in result.models), color="k", lw=0.8, ls="--")
    ax.set_yticks(range(len(changes)), changes)
    ax.invert_yaxis()
    ax.set(xlim=(0, 102), xlabel="autonomy % (bar: mean over models; dots: each model)")
    ax.set_title(
        f"{look_name(result.look)} ({result.suite}): one part of the look changed at a time", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, path)


def write(result: Ablation, out: Path) -> list[Path]:
    """OUT/ablation-look-N.json, .md and .png, each written atomically."""
    stem = out / f"ablation-{look_name(result.look)}"
    return [
        write_json(stem.with_suffix(".json"), result.to_dict()),
        write_text(stem.with_suffix(".md"), markdown(result)),
        plot(result, stem.with_suffix(".png")),
    ]
