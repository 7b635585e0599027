"""Seed studies: a driving claim is a distribution, so train each model with K seeds on the same
recordings and drive every one over a suite of unseen worlds.

    python -m driving.study seeds --models effnet effnet-slim base pilotnet --seeds 5 --budget cpu
    result = seeds.seeds_study(["effnet"], range(5), recipes=["robust"], suite="quick")

For each recipe, model and seed it trains one run (driving.train.run) and drives its checkpoints
over the suite (driving/evaluation/suites.py): the one with the best validation loss (NAME.keras)
and, when the recipe checks driving during training, the best validation driver
(NAME.drive.keras). It writes one table (study.md, study.json) and one PNG with a point per seed
(driving/evaluation/seed_tables.py). Finished runs are reused: a run folder whose study.json
matches the run's settings and the suite is not redone, so an interrupted study resumes where it
stopped.

The recipes (which recordings, which training settings) are named in
driving/evaluation/registry.py (RECIPES).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from driving.config import BUDGETS, CSV_NAME, Budget, RunConfig
from driving.evaluation import suites
from driving.evaluation.registry import RECIPES, SUITES, Recipe, Suite
from driving.evaluation.seed_tables import write_tables
from driving.files import check_writable_folder, write_json
from driving.modelio import load_info
from driving.sim import recorder
from driving.train import stage as train

# --- one run ----------------------------------------------------------------------------------------


def recordings(recipe: Recipe, data: Path) -> list[Path]:
    """The recipe's recording folders under `data`, recorded now where missing."""
    folders = []
    for spec in recipe.recordings:
        folder = data / spec.folder_name
        if not ((folder / CSV_NAME).is_file() and (folder / CSV_NAME).stat().st_size):
            recorder.record(spec.make_track(), folder, laps=spec.laps, seed=spec.seed, vary=spec.vary)
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


def one_run(config: RunConfig, suite: Suite, jobs: int | None, progress: bool) -> dict:
    """Train (unless done) and drive the suite (unless done); the run's figures."""
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
    result = suites.run(
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
    Recipes, budget and suite are given by name (RECIPES, BUDGETS, SUITES: registry.py, config.py)
    or as objects."""
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
