"""Seed studies: a driving claim is a distribution, so train each model with K seeds on the same
recordings and drive every one over a suite of unseen worlds.

    python -m driving.study seeds --models effnet effnet-slim base pilotnet --seeds 5 --budget cpu
    result = seeds.seeds_study(["effnet"], range(5), recipes=["robust"], suite="quick")
    result.runs[0].summary["val-best"].autonomy_mean         # one StudyRecord per run
    seeds.study(StudyConfig(models=["effnet"], seeds=5))      # what the command line runs

For each recipe, model and seed it trains one run (driving.train.run) and drives its checkpoints
over the suite (driving/evaluation/suites.py): the one with the best validation loss (NAME.keras)
and, when the recipe checks driving during training, the best validation driver
(NAME.drive.keras). It writes one table (study.md, study.json) and one PNG with a point per seed
(driving/evaluation/seed_tables.py). Finished runs are reused: a run folder whose record of the
suite (study-SUITE.json, a driving.run.StudyRecord, checked on read) matches the run's settings is
not redone, so an interrupted study resumes where it stopped; a model whose run.json holds no
whole result for it is trained again. A run keeps one record per suite, so the same study driven
over another suite (`looks-holdout` after `looks`) reuses its training and keeps both.

The recipes (which recordings, which training settings) are named in
driving/evaluation/registry.py (RECIPES).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from driving.config import BUDGETS, CSV_NAME, Budget, RunConfig
from driving.evaluation import suites
from driving.evaluation.registry import RECIPES, SUITES, Recipe, Recording, Suite
from driving.evaluation.seed_tables import (
    StudyTable,
    run_settings,
    same_run,
    same_weights,
    saved_settings,
    study_record_of,
    study_run,
    train_result,
    with_defaults,
    write_tables,
)
from driving.evaluation.settings import DRIVE_TIMEOUT_S, StudyConfig
from driving.files import RecordError, check_writable_folder, write_text
from driving.modelio import load_info
from driving.run import Checkpoint, RunFolder, StudyRecord, TrainResult
from driving.sim import recorder
from driving.train import stage as train

# --- one run ----------------------------------------------------------------------------------------


PARTIAL_SUFFIX = ".partial"  # a recording the study is making, renamed when whole
# In NAME.partial while the study records there: only a folder holding it is ever replaced.
PARTIAL_MARK = "made-by-study"


def recordings(recipe: Recipe, data: Path) -> tuple[list[Path], list[Path]]:
    """The recipe's recording folders under `data`, recorded now where missing: (training,
    validation), the second empty unless the recipe validates on recordings of its own."""
    return _recorded(recipe.recordings, data), _recorded(recipe.validation, data)


def _recorded(specs: Sequence[Recording], data: Path) -> list[Path]:
    """The folders of `specs` under `data`, recorded now where missing.

    A missing folder is recorded as NAME.partial and renamed to NAME once whole, so a recording
    killed half way (SIGKILL, power) is never taken for a finished one: the next study records
    it again over what the killed one left. A NAME.partial the study did not make (no
    PARTIAL_MARK in it) is someone else's: FileExistsError naming it, before anything is recorded."""
    for spec in specs:
        partial = _partial(data / spec.folder_name)
        if (
            not (data / spec.folder_name).exists()
            and partial.exists()
            and not (partial / PARTIAL_MARK).is_file()
        ):
            raise FileExistsError(
                f"{partial} is in the way of recording {spec.folder_name} and was not made by a study; "
                "move or remove it"
            )
    folders = []
    for spec in specs:
        folder = data / spec.folder_name
        if (folder / CSV_NAME).is_file() and (folder / CSV_NAME).stat().st_size:
            folders.append(folder)
            continue
        if folder.exists():  # an empty log, someone else's folder: recorded into as it is
            recorder.record(spec.make_track(), folder, laps=spec.laps, seed=spec.seed, vary=spec.vary)
        else:
            partial = _partial(folder)
            shutil.rmtree(partial, ignore_errors=True)  # what a killed study left
            partial.mkdir(parents=True)
            (partial / PARTIAL_MARK).write_bytes(b"")
            recorder.record(spec.make_track(), partial, laps=spec.laps, seed=spec.seed, vary=spec.vary)
            (partial / PARTIAL_MARK).unlink()
            _name_images_in(partial, folder)
            os.replace(partial, folder)
        folders.append(folder)
    return folders


def _partial(folder: Path) -> Path:
    return folder.with_name(folder.name + PARTIAL_SUFFIX)


def _name_images_in(recording: Path, final: Path) -> None:
    """Rewrite `recording`'s log so its image paths name `final`, the folder it is about to become
    (the recorder writes absolute paths, as the simulator does)."""
    log = recording / CSV_NAME
    old, new = str(recording.absolute()) + os.sep, str(final.absolute()) + os.sep
    write_text(log, log.read_text(encoding="utf-8").replace(old, new))


def run_config(
    recipe: Recipe,
    models: Sequence[str],
    seed: int,
    budget: Budget,
    folders: list[Path],
    out: Path,
    cache_dir: Path | None = None,
    val_folders: Sequence[Path] = (),
) -> RunConfig:
    """The training run of `recipe` for `models` with `seed` and `budget` (cache: beside the runs),
    validated on `val_folders` where the recipe names recordings to validate on."""
    patience = {} if recipe.patience is None else {"patience": recipe.patience}
    return RunConfig(
        **patience,
        data=[str(f.absolute()) for f in folders],
        val_data=[str(f.absolute()) for f in val_folders],
        models=list(models),
        out=str(out.absolute()),
        seed=seed,
        epochs=budget.epochs,
        steps_per_epoch=budget.steps,
        batch_size=budget.batch,
        augment=recipe.augment,
        preprocessing=recipe.preprocessing,
        drive_check_steps=recipe.drive_check_steps,
        drive_check_suite=recipe.drive_check_suite,
        bn_refresh_batches=recipe.bn_refresh_batches,
        cache_dir=str((cache_dir or out.parent.parent / "cache").absolute()),
        tensorboard=False,
    )


def _finished(run: RunFolder, settings: dict, suite: Suite) -> StudyRecord | None:
    """The run's record, when it holds these settings driven over this suite. A setting the record
    lacks (it is older than the setting) counts as its default."""
    try:
        saved = study_record_of(run, suite)
    except RecordError as e:
        print(f"study: {e}; the run is done again", file=sys.stderr)
        return None
    if saved is None:
        return None
    same = same_run(with_defaults(saved.settings, run_settings(RunConfig(data=[]))), settings)
    return saved if same and saved.suite == suite.label else None


def _trained(run: RunFolder, name: str, settings: dict) -> TrainResult | None:
    """Model `name`'s training figures, when the run trained it with these settings to the end
    and its file is there: a drive over another suite reuses the training, another budget or
    recipe does not."""
    if not (run.model(name).is_file() and run.record.is_file()):
        return None
    saved = saved_settings(run)
    if saved is None or not same_run(saved, settings):
        return None
    try:
        return train_result(run, name)
    except RecordError as e:
        print(f"study: {e}; the model is trained again", file=sys.stderr)
        return None


def check_budget(run: RunFolder, budget: Budget) -> None:
    """Refuse to train over a run folder that holds another budget's training: the study would
    overwrite it. Raises ValueError naming the folder and both budgets."""
    saved = saved_settings(run) if run.record.is_file() else None
    if saved is None:
        return
    fields = ("epochs", "steps_per_epoch", "batch_size")
    if tuple(saved[k] for k in fields) == (budget.epochs, budget.steps, budget.batch):
        return
    theirs = ", ".join(f"{k} {saved[k]}" for k in fields)
    raise ValueError(
        f"{run.root} holds a run trained with another budget ({theirs}), not {budget.describe()}; "
        "give the study another --out to keep both"
    )


def one_run(
    config: RunConfig,
    suite: Suite,
    jobs: int | None,
    progress: bool,
    drive_timeout: float = DRIVE_TIMEOUT_S,
    recipe: str = "",
) -> StudyRecord:
    """Train (unless done) and drive the suite (unless done); the run's figures."""
    run, settings = RunFolder(config.out), run_settings(config)
    done = _finished(run, settings, suite)
    if done is not None:
        return done
    name = config.models[0]
    trained = _trained(run, name, settings)
    if trained is None:
        train.run(config, progress=progress)
        trained = train_result(run, name)
    checkpoints = run.kept(name, config)  # val-best, drive-best if checked, last if a fixed budget
    kept = {kind: checkpoint_of(path) for kind, path in checkpoints.items()}
    steps = {kind: training_step(c, config.steps_per_epoch) for kind, c in kept.items()}
    # The drive check may keep the very checkpoint the validation loss kept: drive it once.
    distinct = {k: v for k, v in checkpoints.items() if k == "val-best" or not same_weights(steps, k)}
    result = suites.run(
        list(distinct.values()),
        suite,
        jobs,
        out=run.root,
        names=list(distinct),
        progress=progress,
        drive_timeout=drive_timeout,
    )
    record = StudyRecord(
        settings=settings,
        suite=suite.label,
        model=name,
        seed=config.seed,
        val_mse=trained.best_val_loss,
        val_steering_variance=trained.val_steering_variance,
        learnt_nothing=trained.learnt_nothing,
        epoch_seconds=trained.seconds_per_epoch,
        summary={k: result.summary[k if k in distinct else "val-best"] for k in checkpoints},
        checkpoints={kind: c.label if c else "" for kind, c in kept.items()},
        steps=steps,
        recipe=recipe,
    )
    record.write(run.study_record(suite.name))
    return record


def checkpoint_of(path: Path) -> Checkpoint | None:
    """Which checkpoint of its run a model file is, as the file's own record says."""
    info = load_info(path)
    return info.checkpoint if info else None


def training_step(checkpoint: Checkpoint | None, steps_per_epoch: int | None) -> int | None:
    """The training step a checkpoint's weights come from: its record's step, else its epoch's last
    step. None when the file does not say: one written before checkpoints had a record (its prose
    label is shown, never parsed), or with no record at all."""
    if checkpoint is None or checkpoint.kind == "unknown":
        return None
    if checkpoint.step is not None:
        return checkpoint.step
    if checkpoint.epoch is not None and steps_per_epoch:
        return checkpoint.epoch * steps_per_epoch
    return None


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
    drive_timeout: float = DRIVE_TIMEOUT_S,
) -> StudyTable:
    """Every recipe x model x seed, trained and driven; writes OUT/study.json, study.md, study.png.
    Recipes, budget and suite are given by name (RECIPES, BUDGETS, SUITES: registry.py, config.py)
    or as objects."""
    check_writable_folder(out, "--out folder")
    chosen = SUITES[suite] if isinstance(suite, str) else suite
    size = BUDGETS[budget] if isinstance(budget, str) else budget
    chosen_recipes = [RECIPES[r] if isinstance(r, str) else r for r in recipes]
    for recipe in chosen_recipes:  # before any recording or training
        for model in models:
            for seed in seeds:
                check_budget(study_run(out, recipe.name, model, seed), size)
    runs = []
    for recipe in chosen_recipes:
        folders, held_out = recordings(recipe, data)
        for model in models:
            for seed in seeds:
                folder = study_run(out, recipe.name, model, seed).root
                config = run_config(recipe, [model], seed, size, folders, folder, val_folders=held_out)
                record = one_run(config, chosen, jobs, progress, drive_timeout, recipe.name)
                runs.append(replace(record, recipe=recipe.name))
                write_tables(out, chosen, runs, with_plot=False)
    return write_tables(out, chosen, runs)


def study(config: StudyConfig, progress: bool = True) -> StudyTable:
    """What `python -m driving.study seeds` runs."""
    config.validate()
    return seeds_study(
        config.models,
        config.seed_range,
        config.recipes,
        config.budget,
        config.suite,
        config.data,
        config.out,
        config.jobs,
        progress,
        config.drive_timeout,
    )
