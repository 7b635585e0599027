"""Seed studies: a driving claim is a distribution, so train each model with K seeds on the same
recordings and drive every one over a suite of unseen worlds.

    python -m driving.study seeds --models effnet effnet-slim base pilotnet --seeds 5 --budget cpu

For each recipe, model and seed it trains one run (driving.train.run) and drives its checkpoints
over the suite (driving.evaluate): the one with the best validation loss (NAME.keras) and, when
the recipe checks driving during training, the best validation driver (NAME.drive.keras). It
writes one table (study.md, study.json) and one PNG with a point per seed. Finished runs are
reused: a run folder whose study.json matches the run's settings and the suite is not redone, so an
interrupted study resumes where it stopped.

A recipe is how the training data is made and used: which recordings (the headless simulator
records them on first use), with which settings. Each lever of docs/evaluation.md is one recipe,
measured side by side; the project's defaults are the recipe that measured best.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from driving import cli
from driving.config import BUDGETS, AugmentConfig, Budget, RunConfig
from driving.evaluate import Suite

RECORD_KEYS = {"settings", "suite", "model", "seed", "val_mse", "summary", "steps"}  # what one_run writes
THRESHOLD = 90.0  # mean autonomy a run must reach on the suite to count as driving


@dataclass(frozen=True)
class Recording:
    """One training recording: a built-in track, or a suite-style track (TRAINING_SEEDS) in a
    style, recorded with `laps` expert laps; `vary` paints each lap in a new look."""

    track: str  # a built-in name, or "suite"
    laps: float
    seed: int
    vary: bool = False
    style: str = "lake"  # for suite tracks

    @property
    def folder_name(self) -> str:
        where = self.track if self.track != "suite" else f"suite{self.seed}-{self.style}"
        return f"{where}-{self.laps:g}laps-seed{self.seed}" + ("-varied" if self.vary else "")

    def make_track(self):
        from driving.evaluate import TRAINING_SEEDS
        from driving.sim.track import builtin_track, suite_track

        if self.track != "suite":
            return builtin_track(self.track)
        if self.seed not in TRAINING_SEEDS:
            raise ValueError(f"suite-style training tracks must use seeds in {TRAINING_SEEDS}")
        return suite_track(self.seed, self.style)


DEMO_RECORDINGS = (Recording("lake", 3.0, 0), Recording("jungle", 3.0, 1))
VARIED_RECORDINGS = (Recording("lake", 3.0, 0, vary=True), Recording("jungle", 3.0, 1, vary=True))
SUITE_STYLE_RECORDINGS = tuple(
    Recording("suite", 1.5, i, vary=True, style=style)
    for i, style in enumerate(("lake", "jungle", "desert", "lake"))
)
DIVERSE_RECORDINGS = VARIED_RECORDINGS + SUITE_STYLE_RECORDINGS


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    recordings: tuple[Recording, ...] = DEMO_RECORDINGS
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    drive_check_steps: int = 0


RECIPES = {
    r.name: r
    for r in (
        Recipe("demo", "the demo's recordings (3 expert laps of lake and of jungle), default training"),
        Recipe(
            "varied",
            "the same tracks and laps, each lap painted in a new style and conditions (sim record --vary)",
            recordings=VARIED_RECORDINGS,
        ),
        Recipe(
            "varied-colour",
            "varied recordings, and colour augmentation in training (train.py --colour)",
            recordings=VARIED_RECORDINGS,
            augment=AugmentConfig(colour=True),
        ),
        Recipe(
            "varied-nobright",
            "varied recordings, without the brightness augmentation (frames darkened to as little as "
            "10% of their light: the recordings' varied light does that job)",
            recordings=VARIED_RECORDINGS,
            augment=AugmentConfig(brightness=False),
        ),
        Recipe(
            "diverse-nobright",
            "varied recordings of lake and jungle plus four suite-style training tracks (hairpins, "
            "S-bends; seeds 0-3, 1.5 varied laps each), without the brightness augmentation",
            recordings=DIVERSE_RECORDINGS,
            augment=AugmentConfig(brightness=False),
        ),
        Recipe(
            "robust",
            "the project's default: varied recordings of lake and jungle plus four suite-style "
            "training tracks, no brightness augmentation, and a drive check every 120 steps that "
            "keeps the best validation driver (NAME.drive.keras)",
            recordings=DIVERSE_RECORDINGS,
            augment=AugmentConfig(brightness=False),
            drive_check_steps=120,
        ),
        Recipe(
            "diverse",
            "varied recordings of lake and jungle plus four suite-style training tracks (hairpins, "
            "S-bends; seeds 0-3, 1.5 varied laps each), colour augmentation",
            recordings=DIVERSE_RECORDINGS,
            augment=AugmentConfig(colour=True),
        ),
    )
}


# --- one run ----------------------------------------------------------------------------------------


def recordings(recipe: Recipe, data: Path) -> list[Path]:
    """The recipe's recording folders under `data`, recorded now where missing."""
    from driving.config import CSV_NAME
    from driving.sim.recorder import record

    folders = []
    for spec in recipe.recordings:
        folder = data / spec.folder_name
        if not ((folder / CSV_NAME).is_file() and (folder / CSV_NAME).stat().st_size):
            record(spec.make_track(), folder, laps=spec.laps, seed=spec.seed, vary=spec.vary)
        folders.append(folder)
    return folders


def run_config(
    recipe: Recipe,
    models: Sequence[str],
    seed: int,
    budget: Budget,
    folders: list[Path],
    out: Path,
    cache_dir: Path | None = None,
) -> RunConfig:
    """The training run of `recipe` for `models` with `seed` and `budget` (cache: beside the runs)."""
    return RunConfig(
        data=[str(f.absolute()) for f in folders],
        models=list(models),
        out=str(out.absolute()),
        seed=seed,
        epochs=budget.epochs,
        steps_per_epoch=budget.steps,
        batch_size=budget.batch,
        augment=recipe.augment,
        drive_check_steps=recipe.drive_check_steps,
        cache_dir=str((cache_dir or out.parent.parent / "cache").absolute()),
        tensorboard=False,
    )


def _settings(config: RunConfig) -> dict:
    """What makes a run what it is (not where it ran or with which versions)."""
    made = config.to_dict()
    for key in ("versions", "cache_dir", "resume", "tensorboard"):
        made.pop(key, None)
    return json.loads(json.dumps(made))  # as it reads back from study.json (tuples become lists)


def one_run(config: RunConfig, suite, jobs: int | None, progress: bool) -> dict:
    """Train (unless done) and drive the suite (unless done); the run's figures."""
    from driving import evaluate, train
    from driving.files import write_json

    out = Path(config.out)
    done = out / "study.json"
    if done.is_file():
        try:
            saved = json.loads(done.read_text())
            if saved.get("settings") == _settings(config) and saved.get("suite") == suite.label:
                return saved
        except (ValueError, OSError):
            pass  # unreadable: the run is redone
    name = config.models[0]
    if not (out / f"{name}.keras").is_file() or not (out / "run.json").is_file():
        train.run(config, progress=progress)
    run = json.loads((out / "run.json").read_text())
    checkpoints = {"val-best": out / f"{name}.keras"}
    if (out / f"{name}.drive.keras").is_file():
        checkpoints["drive-best"] = out / f"{name}.drive.keras"
    labels = {k: _checkpoint_of(v) for k, v in checkpoints.items()}
    steps = {k: _step_of(label, config.steps_per_epoch) for k, label in labels.items()}
    # The drive check may keep the very checkpoint the validation loss kept: drive it once.
    distinct = {k: v for k, v in checkpoints.items() if k == "val-best" or steps[k] != steps["val-best"]}
    result = evaluate.run(
        list(distinct.values()), suite, jobs, out=out, names=list(distinct), progress=progress
    )
    summary = {k: result["summary"][k if k in distinct else "val-best"] for k in checkpoints}
    results = run.get("results", {}).get(name) or {}
    record = {
        "settings": _settings(config),
        "suite": suite.label,
        "model": name,
        "seed": config.seed,
        "val_mse": results.get("best_val_loss"),
        "epoch_seconds": results.get("seconds_per_epoch"),
        "summary": summary,
        "checkpoints": labels,
        "steps": steps,
    }
    write_json(done, record)
    return record


def _step_of(label: str, steps_per_epoch: int | None) -> int | None:
    """The training step a checkpoint label names ("..., step 240 (epoch 2)" or "..., epoch 2")."""
    step = re.search(r"step (\d+)", label)
    if step:
        return int(step.group(1))
    epoch = re.search(r"epoch (\d+)", label)
    return int(epoch.group(1)) * steps_per_epoch if epoch and steps_per_epoch else None


def _checkpoint_of(path: Path) -> str:
    from driving.modelio import load_info

    info = load_info(path)
    return info.checkpoint if info else ""


# --- the study ----------------------------------------------------------------------------------------


def seeds_study(
    models: Sequence[str],
    seeds: Sequence[int],
    recipes: Sequence[str | Recipe] = ("demo",),
    budget: str | Budget = "cpu",
    suite: str | Suite = "unseen",
    data: Path = Path("data/study"),
    out: Path = Path("runs/study"),
    jobs: int | None = None,
    progress: bool = True,
) -> dict:
    """Every recipe x model x seed, trained and driven; writes OUT/study.json, study.md, study.png.
    Recipes, budget and suite are given by name (RECIPES, BUDGETS, driving.evaluate.SUITES) or as
    objects."""
    from driving.evaluate import SUITES
    from driving.files import check_writable_folder

    check_writable_folder(out, "--out folder")
    chosen = SUITES[suite] if isinstance(suite, str) else suite
    size = BUDGETS[budget] if isinstance(budget, str) else budget
    runs = []
    for recipe in recipes:
        recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
        folders = recordings(recipe, data)
        for model in models:
            for seed in seeds:
                folder = out / recipe.name / model / f"seed-{seed}"
                config = run_config(recipe, [model], seed, size, folders, folder)
                record = one_run(config, chosen, jobs, progress)
                runs.append({"recipe": recipe.name, **record})
                write_tables(out, chosen, runs, with_plot=False)
    return write_tables(out, chosen, runs)


def write_tables(out: Path, suite: Suite, runs: list[dict], with_plot: bool = True) -> dict:
    """OUT/study.md, study.json and (with_plot) study.png for these runs; the summary."""
    from driving.files import write_json, write_text

    table = summary_table(runs)
    write_text(out / "study.md", header(suite, runs) + table + "\n")
    write_json(out / "study.json", {"suite": suite.label, "runs": runs})
    if with_plot:
        plot(runs, out / "study.png", suite.label)
    return {"suite": suite.label, "runs": runs, "table": table}


def finished_runs(out: Path, suite: Suite) -> list[dict]:
    """Every finished run under OUT (OUT/RECIPE/MODEL/seed-N/study.json) that drove `suite`, in
    recipe, model and seed order: the table of a study still running, stopped, or run in parts."""
    from driving.models import MODELS

    runs = []
    for path in out.glob("*/*/seed-*/study.json"):
        try:
            record = json.loads(path.read_text())
        except (ValueError, OSError) as e:
            print(f"study: {path}: unreadable ({e}); left out", file=sys.stderr)
            continue
        if not isinstance(record, dict) or not record.keys() >= RECORD_KEYS:
            print(f"study: {path}: not a study record; left out", file=sys.stderr)
        elif record["suite"] == suite.label:
            runs.append({"recipe": path.parents[2].name, **record})
    recipes, models = list(RECIPES), list(MODELS)

    def order(run: dict) -> tuple:
        recipe, model = run["recipe"], run["model"]
        return (
            recipes.index(recipe) if recipe in recipes else len(recipes),
            recipe,
            models.index(model) if model in models else len(models),
            model,
            run["seed"],
        )

    return sorted(runs, key=order)


def header(suite: Suite, runs: list[dict]) -> str:
    from datetime import date

    from driving.measure import machine_description

    budgets = dict.fromkeys(
        f"{s['epochs']} epochs x {s['steps_per_epoch']} steps x batch {s['batch_size']}"
        for s in (r["settings"] for r in runs)
    )
    return (
        f"# Seed study\n\n{date.today().isoformat()}, {machine_description()}; budget "
        f"{' / '.join(budgets) or '-'}; suite {suite.label} ({len(suite.drives)} unseen drives per "
        f"checkpoint). {len(runs)} runs.\n\n"
    )


def summary_table(runs: list[dict]) -> str:
    """Per recipe and model: seeds at >= THRESHOLD mean autonomy, median and range of the mean
    autonomy, success rate, validation MSE; and how the drive-best checkpoint compares."""
    lines = [
        f"| recipe | model | seeds | >= {THRESHOLD:g}% autonomy | autonomy median [min, max] | "
        "drives without intervention | val MSE median [min, max] | drive-best: >= "
        f"{THRESHOLD:g}%, autonomy median [min, max], differs from val-best, mean gain |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = list(dict.fromkeys((r["recipe"], r["model"]) for r in runs))
    for recipe, model in keys:
        mine = [r for r in runs if (r["recipe"], r["model"]) == (recipe, model)]
        auto = np.array([r["summary"]["val-best"]["autonomy_mean"] for r in mine])
        success = np.mean([r["summary"]["val-best"]["success_rate"] for r in mine])
        mse = np.array([r["val_mse"] for r in mine if r["val_mse"] is not None], dtype=float)
        mse_text = f"{np.median(mse):.4f} [{mse.min():.4f}, {mse.max():.4f}]" if mse.size else "-"
        drive = [r for r in mine if "drive-best" in r["summary"]]
        if drive:
            d_auto = np.array([r["summary"]["drive-best"]["autonomy_mean"] for r in drive])
            v_auto = np.array([r["summary"]["val-best"]["autonomy_mean"] for r in drive])
            differs = sum(r["steps"]["drive-best"] != r["steps"]["val-best"] for r in drive)
            drive_text = (
                f"{int((d_auto >= THRESHOLD).sum())} of {len(drive)}, {np.median(d_auto):.1f}% "
                f"[{d_auto.min():.1f}, {d_auto.max():.1f}], {differs} of {len(drive)}, "
                f"{np.mean(d_auto - v_auto):+.1f} points"
            )
        else:
            drive_text = "-"
        lines.append(
            f"| {recipe} | {model} | {len(mine)} | {int((auto >= THRESHOLD).sum())} of {len(mine)} | "
            f"{np.median(auto):.1f}% [{auto.min():.1f}, {auto.max():.1f}] | {success * 100:.0f}% | "
            f"{mse_text} | {drive_text} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], path: Path, suite_label: str) -> Path:
    """One point per seed: mean suite autonomy of each recipe x model (drive-best hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from driving.files import save_figure

    keys = list(dict.fromkeys((r["recipe"], r["model"]) for r in runs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(keys) + 2), 4.5))
    for i, key in enumerate(keys):
        mine = [r for r in runs if (r["recipe"], r["model"]) == key]
        for j, r in enumerate(mine):
            x = i + (j - (len(mine) - 1) / 2) * 0.08
            ax.plot(x, r["summary"]["val-best"]["autonomy_mean"], "o", color=f"C{i % 10}", ms=6)
            if "drive-best" in r["summary"]:
                ax.plot(
                    x, r["summary"]["drive-best"]["autonomy_mean"], "o", mfc="none", color=f"C{i % 10}", ms=9
                )
    ax.axhline(THRESHOLD, color="0.5", ls=":", lw=1)
    ax.set_xticks(range(len(keys)), [f"{m}\n{r}" for r, m in keys], fontsize="small")
    ax.set(
        ylabel="mean autonomy on the suite, %",
        ylim=(-3, 103),
        title=f"One point per training seed ({suite_label}); hollow: drive-best checkpoint",
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


# --- the command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from driving.evaluate import SUITES
    from driving.models import MODELS

    parser = argparse.ArgumentParser(
        prog="python -m driving.study",
        description="Studies that need many training runs. `seeds`: train each model with K seeds "
        "on the same recordings and drive every run over a suite of unseen worlds.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "seeds",
        help="K training seeds per model, each driven over a suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=["effnet", "effnet-slim", "base", "pilotnet"]
    )
    p.add_argument("--seeds", type=cli.integer(1, 1000), default=5, help="seeds per model (default 5)")
    p.add_argument("--first-seed", type=cli.seed, default=0, help="seeds run from this one (default 0)")
    p.add_argument(
        "--recipes",
        nargs="+",
        choices=list(RECIPES),
        default=["demo"],
        help="; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()).replace("%", "%%"),
    )
    p.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="cpu",
        help="cpu: the demo's 2 x 180 x 32; full: the original 21 x 128 x 128",
    )
    p.add_argument("--suite", choices=list(SUITES), default="unseen", help="the suite every run drives")
    p.add_argument("--data", type=Path, default=Path("data/study"), help="where the recordings go")
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="runs, study.md/.json/.png")
    p.add_argument("--jobs", type=cli.integer(1, 256), default=None, help="parallel drives (default: cores)")
    t = sub.add_parser(
        "table",
        help="the table of every finished run under --out, without training",
        description="Write OUT/study.md, study.json and study.png from every finished run under OUT "
        "(OUT/RECIPE/MODEL/seed-N): for a study still running, stopped, or run in parts.",
    )
    t.add_argument("--out", type=Path, default=Path("runs/study"), help="the study's folder")
    t.add_argument("--suite", choices=list(SUITES), default="unseen", help="the suite the runs drove")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from driving.data.reader import RecordingError
    from driving.modelio import ModelFileError
    from driving.train import TrainError

    if args.command == "table":
        return _table(args.out, args.suite)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    try:
        result = seeds_study(
            args.models, seeds, args.recipes, args.budget, args.suite, args.data, args.out, args.jobs
        )
    except (RecordingError, TrainError, ModelFileError, OSError, ValueError) as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(result["table"])
    print(f"\nwrote {args.out / 'study.md'}, study.json and study.png")
    return 0


def _table(out: Path, suite_name: str) -> int:
    from driving.evaluate import SUITES

    suite = SUITES[suite_name]
    runs = finished_runs(out, suite) if out.is_dir() else []
    if not runs:
        print(f"study: no finished run under {out} drove the {suite.label} suite", file=sys.stderr)
        return 1
    try:
        result = write_tables(out, suite, runs)
    except OSError as e:
        print(f"study: {e}", file=sys.stderr)
        return 1
    print(result["table"])
    print(f"\nwrote {out / 'study.md'}, study.json and study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
