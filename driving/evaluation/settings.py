"""The settings of the evaluation commands, declared once (driving/options.py): what
`python -m driving.evaluate` (EvalConfig) and `python -m driving.study seeds|table|curve`
(StudyConfig, TableConfig, CurveConfig) take. Their parsers, range checks and the command that
remakes a config all come from these declarations, and the libraries take the same configs:

    config = EvalConfig([Path("models/effnet.keras")], suite="unseen", jobs=2)
    suites.evaluate(config)          # what `python -m driving.evaluate` runs
    to_argv(config)                  # ["models/effnet.keras", "--suite", "unseen", "--jobs", "2"]

Light on purpose (the registry's names, no rendering, no TensorFlow): every --help is built from
here before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driving.config import BUDGETS, MAX_SEEDS, TARGET_SPEED_MPH
from driving.evaluation.registry import RECIPES, SUITES
from driving.models import MODELS, SLIMMING_FAMILY
from driving.options import ConfigError, check_bounds, option, same_as

MAX_JOBS = 256  # drives at a time: beyond this a typo, not a machine
MAX_SPEED_MPH = 30.0  # the simulator's top speed
# A drive of the `unseen` suite takes 10-30 s in a worker, and the first one a worker drives also
# loads TensorFlow and the model (5-30 s on a loaded 2-core box): five minutes is ten times that.
DRIVE_TIMEOUT_S = 300.0
MAX_DRIVE_TIMEOUT_S = 86_400.0
MAX_SEED = 2**31 - 1
MAX_RUNS = 100_000  # timed calls per latency figure: beyond this a typo

JOBS_HELP = "drives at a time, each in its own process (default: one per core)"
DRIVE_TIMEOUT_HELP = (
    "seconds one drive may take in its worker process (loading the model included) before the "
    "suite fails, naming the drive, and every worker is stopped (default %(default)s)"
)


def drive_timeout_option() -> Any:
    """The --drive-timeout option, for every command that drives a suite."""
    return option(
        DRIVE_TIMEOUT_S,
        "--drive-timeout",
        DRIVE_TIMEOUT_HELP,
        low=0,
        low_open=True,
        high=MAX_DRIVE_TIMEOUT_S,
        metavar="SECONDS",
    )


@dataclass
class EvalConfig:
    """`python -m driving.evaluate`: models driven over one named suite."""

    models: list[Path] = option(help="model files (.h5, .keras, .tflite)", metavar="models")
    suite: str = option("quick", "--suite", "which suite (default quick)", choices=tuple(SUITES))
    jobs: int | None = option(None, "--jobs", JOBS_HELP, low=1, high=MAX_JOBS)
    speed: float = option(
        TARGET_SPEED_MPH,
        "--speed",
        f"target speed in mph (default {TARGET_SPEED_MPH:g})",
        low=0,
        low_open=True,
        high=MAX_SPEED_MPH,
    )
    out: Path = option(
        Path("runs/evaluate"), "--out", "where suite-NAME.json/.md/.png go (default runs/evaluate)"
    )
    drive_timeout: float = drive_timeout_option()
    ablate_look: int | None = option(
        None,
        "--ablate-look",
        "instead of the whole suite: its drives in new look N, as drawn and with one part of the "
        "look changed at a time (edges solid, no shadows, midday light, ...), to find what part "
        "costs the models; writes OUT/ablation-look-N.json/.md/.png",
        low=0,
        metavar="N",
    )

    def validate(self) -> EvalConfig:
        check_bounds(self)
        if self.ablate_look is not None:
            looks = sorted({d.look for d in SUITES[self.suite].drives if d.look is not None})
            if self.ablate_look not in looks:
                shown = ", ".join(map(str, looks[:6])) + (", ..." if len(looks) > 6 else "")
                raise ConfigError(
                    "ablate_look",
                    f"{self.ablate_look}: suite {self.suite} has no drive in that look "
                    f"({'its new looks: ' + shown if looks else 'it drives no new look'})",
                )
        return self


@dataclass
class StudyConfig:
    """`python -m driving.study seeds`: every recipe x model x seed trained and driven over a suite."""

    models: list[str] = option(
        lambda: ["effnet", "effnet-slim", "base", "pilotnet"],
        "--models",
        "models to train",
        nargs="+",
        choices=tuple(MODELS),
    )
    seeds: int = option(5, "--seeds", "seeds per model (default 5)", low=1, high=MAX_SEEDS)
    first_seed: int = option(0, "--first-seed", "seeds run from this one (default 0)", low=0, high=MAX_SEED)
    # The recipes' help names the project's default recipe, so no "(default ...)" is added to it
    # (the generator would escape its "%" then): escaped here for argparse.
    recipes: list[str] = option(
        lambda: ["demo"],
        "--recipes",
        "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()).replace("%", "%%"),
        nargs="+",
        choices=tuple(RECIPES),
    )
    budget: str = option(
        "cpu",
        "--budget",
        "; ".join(f"{name}: {b.describe()}" for name, b in BUDGETS.items())
        + " (cpu is the demo's, full the original work's)",
        choices=tuple(BUDGETS),
    )
    suite: str = option("unseen", "--suite", "the suite every run drives", choices=tuple(SUITES))
    data: Path = option(Path("data/study"), "--data", "where the recordings go")
    out: Path = option(Path("runs/study"), "--out", "runs, study.md/.json/.png")
    jobs: int | None = option(None, "--jobs", "parallel drives (default: cores)", low=1, high=MAX_JOBS)
    drive_timeout: float = drive_timeout_option()

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    def validate(self) -> StudyConfig:
        check_bounds(self)
        return self


@dataclass
class TableConfig:
    """`python -m driving.study table`: the table of the finished runs under a study's folder."""

    out: Path = option(Path("runs/study"), "--out", "the study's folder")
    suite: str = option("unseen", "--suite", "the suite the runs drove", choices=tuple(SUITES))


@dataclass
class CurveConfig:
    """`python -m driving.study curve`: the slimming family's seed study, each model measured (size,
    work, latency) and its driving set against them."""

    models: list[str] = option(
        lambda: list(SLIMMING_FAMILY),
        "--models",
        "models on the curve",
        nargs="+",
        choices=tuple(MODELS),
    )
    seeds: int = same_as(StudyConfig, "seeds")
    first_seed: int = same_as(StudyConfig, "first_seed")
    recipe: str = option(
        "robust", "--recipe", "the recipe every model is trained with", choices=tuple(RECIPES)
    )
    budget: str = same_as(StudyConfig, "budget")
    suite: str = same_as(StudyConfig, "suite")
    data: Path = same_as(StudyConfig, "data")
    out: Path = option(
        Path("runs/curve"),
        "--out",
        "runs (OUT/RECIPE/MODEL/seed-N, as the seed study lays them out: a seed study there is "
        "reused), curve.md/.json/.png",
    )
    jobs: int | None = same_as(StudyConfig, "jobs")
    drive_timeout: float = drive_timeout_option()
    runs: int = option(100, "--runs", "timed calls per latency figure", low=1, high=MAX_RUNS)
    checkpoint: str = option(
        "drive-best",
        "--checkpoint",
        "whose driving is drawn: drive-best, the checkpoint the drive check kept (what the recipe "
        "serves; a run that kept none counts its val-best), or val-best, the lowest validation loss",
        choices=("drive-best", "val-best"),
    )
    train: bool = option(
        True,
        "--no-train",
        "train and drive nothing: redraw the curve from the runs under --out that finished with "
        "these settings (models, seeds, recipe, budget, suite)",
    )

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    def validate(self) -> CurveConfig:
        check_bounds(self)
        if not self.models:
            raise ConfigError("models", "must name at least one")
        return self
