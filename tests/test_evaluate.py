"""Evaluation suites and seed studies with real drives of tiny real models: the suites are what they
say, the results do not depend on the number of parallel jobs, the confidence interval is right on
known inputs, and a study resumes instead of redoing finished runs."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from driving import demo, evaluate, study
from driving.config import (
    BUDGETS,
    CSV_NAME,
    MAX_BATCH_SIZE,
    MAX_SEEDS,
    TARGET_SPEED_MPH,
    AugmentConfig,
    Budget,
    ConfigError,
    RunConfig,
)
from driving.demo import DemoConfig
from driving.evaluation import registry, seed_tables, suites
from driving.evaluation.registry import SUITES, Suite, SuiteDrive
from driving.evaluation.seed_tables import same_weights
from driving.evaluation.seeds import checkpoint_of, seeds_study, training_step
from driving.evaluation.settings import EvalConfig, StudyConfig, TableConfig
from driving.evaluation.suites import bootstrap_ci
from driving.files import write_json
from driving.modelio import ModelInfo, save_keras
from driving.options import from_args, to_argv
from driving.run import SCHEMA, Checkpoint, DriveResult, RunFolder, StudyRecord, SuiteResult, SuiteSummary
from driving.sim import recorder
from driving.sim.track import track_features
from tests.test_runtime import tiny_model

CHECKPOINTS = ("val-best", "drive-best", "last")
TINY = Suite(
    "tiny", 1, (SuiteDrive(10900, "lake", 1_010_900, 0.04), SuiteDrive(10901, "desert", 1_010_901, 0.04)), "t"
)


def test_bootstrap_interval_on_known_inputs():
    assert bootstrap_ci([70.0] * 8) == (70.0, 70.0)  # no spread, no uncertainty
    low, high = bootstrap_ci([0.0, 100.0] * 50)
    assert low < 50 < high and high - low == pytest.approx(19.6, abs=2.5)  # 1.96 x 100 x 0.5 / sqrt(100)
    assert bootstrap_ci([1.0, 2.0, 3.0]) == bootstrap_ci([1.0, 2.0, 3.0])  # seeded: repeatable
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_suites_are_unseen_varied_and_versioned():
    unseen = SUITES["unseen"]
    assert len(unseen.drives) >= 20 and unseen.version >= 1
    seeds = [d.track_seed for s in ("unseen", "quick") for d in SUITES[s].drives]
    assert len(set(seeds)) == len(seeds) and all(s in registry.UNSEEN_SEEDS for s in seeds)
    assert all(d.track_seed in registry.VALIDATION_SEEDS for d in SUITES["validation"].drives)
    assert {d.style for d in unseen.drives} == {"lake", "jungle", "desert"}
    for drive in unseen.drives[:6]:
        features = track_features(drive.track())
        assert features["hairpins"] >= 1 and features["s_bends"] >= 1
    looks = {json.dumps(d.conditions().to_dict(), sort_keys=True) for d in unseen.drives}
    assert len(looks) == len(unseen.drives)  # every world has its own light and palette
    widths = {d.track().width for d in unseen.drives[:6]}
    assert len(widths) > 1
    # The recordings a study makes never use a suite's track seeds.
    for recipe in registry.RECIPES.values():
        for spec in recipe.recordings:
            assert spec.track != "suite" or spec.seed in registry.TRAINING_SEEDS


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    save_keras(tiny_model(), path, ModelInfo(model="tiny"))
    return path


def test_suite_results_do_not_depend_on_the_number_of_jobs(model_file, tmp_path):
    one = suites.run([model_file], TINY, jobs=1, progress=False)
    two = suites.run([model_file], TINY, jobs=2, progress=False, out=tmp_path)

    def strip(result: SuiteResult):  # latency is wall time: the only figure allowed to differ
        return [{k: v for k, v in asdict(r).items() if "latency" not in k} for r in result.drives["tiny"]]

    assert strip(one) == strip(two)
    assert all(isinstance(r, DriveResult) for r in one.drives["tiny"])
    assert [r.drive for r in one.drives["tiny"]] == ["lake-10900", "desert-10901"]
    summary = two.summary["tiny"]
    assert summary.drives == 2 and 0 <= summary.success_rate <= 1
    low, high = summary.autonomy_ci95
    assert low <= summary.autonomy_mean <= high
    assert (tmp_path / "suite-tiny.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "suite-tiny.json").read_text())
    assert saved["schema"] == SCHEMA and saved["suite"]["name"] == "tiny"
    assert SuiteResult.read(tmp_path / "suite-tiny.json") == two  # typed, and whole, on the way back
    assert "| tiny |" in (tmp_path / "suite-tiny.md").read_text()
    # The drive check of training reads two figures by key (transitional, see driving/run.py).


def stalling_suite() -> Suite:
    """Two drives of 50 laps each: minutes of driving, far past the seconds they are given."""
    return Suite(
        "long",
        1,
        (SuiteDrive(10900, "lake", 1_010_900, 50.0), SuiteDrive(10901, "desert", 1_010_901, 50.0)),
        "two drives too long for their time",
    )


def no_workers_left() -> bool:
    deadline = time.monotonic() + 30  # a terminated worker is reaped, not waited for
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not multiprocessing.active_children()


def test_a_drive_past_its_time_fails_the_suite_naming_it_and_stops_every_worker(model_file):
    with pytest.raises(suites.DriveFailed) as failed:
        suites.run([model_file], stalling_suite(), jobs=2, progress=False, drive_timeout=2)
    message = str(failed.value)
    assert re.match(r"suite long v1: drive (lake-10900|desert-10901) of tiny\.keras", message), message
    assert "took over 2 s (--drive-timeout)" in message and "\n" not in message
    assert no_workers_left()


def test_a_worker_that_dies_fails_the_suite_in_one_line(model_file):
    def kill_a_worker():
        # The worker started last: the executor itself may not be watching it yet.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = multiprocessing.active_children()
            if len(workers) == 2:
                os.kill(max(workers, key=lambda w: w._identity).pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    with pytest.raises(suites.DriveFailed, match="a worker process died") as failed:
        suites.run([model_file], stalling_suite(), jobs=2, progress=False, drive_timeout=120)
    killer.join()
    assert "suite long v1" in str(failed.value) and "\n" not in str(failed.value)
    assert no_workers_left()


def test_evaluate_command_names_a_bad_model_before_driving(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model")
    assert evaluate.main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a zip archive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main([str(bad), "--jobs", "0"])


def test_a_seed_study_trains_drives_tabulates_and_resumes(tmp_path):
    recipe = registry.Recipe(
        "tiny",
        "a short suite-style training track",
        recordings=(registry.Recording("suite", 0.4, 7, style="jungle"),),
        augment=AugmentConfig.off(),
        drive_check_steps=3,
    )
    budget = Budget(epochs=1, steps=6, batch=8)
    args = dict(
        recipes=[recipe], budget=budget, suite=TINY, data=tmp_path / "data", out=tmp_path / "out", jobs=1
    )
    result = seeds_study(["pilotnet"], [3], progress=False, **args)

    assert [r.seed for r in result.runs] == [3]
    for run in result.runs:
        assert set(run.summary) == {"val-best", "drive-best"}  # the drive check kept a checkpoint
        assert run.steps["drive-best"] in (3, 6) and run.steps["val-best"] == 6
    table = (tmp_path / "out" / "study.md").read_text()
    assert "| tiny | pilotnet | 1 |" in table and "of 1" in table
    assert (tmp_path / "out" / "study.png").read_bytes()[:4] == b"\x89PNG"

    # Resumed: nothing is trained or driven again.
    model = tmp_path / "out" / "tiny" / "pilotnet" / "seed-3" / "pilotnet.keras"
    stamp = model.stat().st_mtime_ns
    again = seeds_study(["pilotnet"], [3], progress=False, **args)
    assert model.stat().st_mtime_ns == stamp
    assert [r.summary for r in again.runs] == [r.summary for r in result.runs]
    assert np.isfinite(again.runs[0].val_mse)
    # The training's verdict on whether it learnt travels into the study's record.
    trained = seed_tables.train_result(
        seed_tables.study_run(tmp_path / "out", "tiny", "pilotnet", 3), "pilotnet"
    )
    assert again.runs[0].val_steering_variance == trained.val_steering_variance > 0
    assert again.runs[0].learnt_nothing is trained.learnt_nothing

    # The table of the finished runs, without training: what `study table` writes.
    (tmp_path / "out" / "study.md").unlink()
    runs = seed_tables.finished_runs(tmp_path / "out", TINY)
    assert [(r.recipe, r.summary) for r in runs] == [("tiny", r.summary) for r in result.runs]
    seed_tables.write_tables(tmp_path / "out", TINY, runs)
    assert "| tiny | pilotnet | 1 |" in (tmp_path / "out" / "study.md").read_text()
    assert seed_tables.finished_runs(tmp_path / "out", SUITES["quick"]) == []  # another suite

    # Another suite drives the same training again; another budget is refused before any work,
    # as the folder holds this one's training.
    other = Suite("tiny2", 1, (SuiteDrive(10902, "lake", 1_010_902, 0.04),), "t2")
    driven = tmp_path / "out" / "tiny" / "pilotnet" / "seed-3" / "suite-tiny.json"
    driven_stamp = driven.stat().st_mtime_ns
    elsewhere = seeds_study(["pilotnet"], [3], progress=False, **(args | {"suite": other}))
    assert model.stat().st_mtime_ns == stamp and elsewhere.runs[0].suite == other.label
    # Each suite keeps its record: the first suite's runs are neither trained nor driven again.
    kept = seed_tables.finished_runs(tmp_path / "out", TINY)
    assert [r.summary for r in kept] == [r.summary for r in result.runs]
    assert seeds_study(["pilotnet"], [3], progress=False, **args).runs == again.runs
    assert driven.stat().st_mtime_ns == driven_stamp and model.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="seed-3 holds a run trained with another budget") as refused:
        seeds_study(["pilotnet"], [3], progress=False, **(args | {"budget": Budget(1, 7, 8)}))
    assert "give the study another --out" in str(refused.value) and "\n" not in str(refused.value)
    assert model.stat().st_mtime_ns == stamp

    # A moved study resumes where it lies.
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "out", moved)
    seeds_study(["pilotnet"], [3], progress=False, **(args | {"out": moved}))
    assert (moved / "tiny" / "pilotnet" / "seed-3" / "pilotnet.keras").stat().st_mtime_ns == stamp


def test_a_recipe_with_a_fixed_budget_drives_and_serves_its_last_checkpoint(tmp_path):
    """Recipe.patience 0: training runs every epoch (train.py --patience 0), and the study drives
    the last checkpoint beside val-best and serves it in the table."""
    recipe = registry.Recipe(
        "fixed",
        "a short suite-style training track, a fixed budget",
        recordings=(registry.Recording("suite", 0.4, 7, style="jungle"),),
        augment=AugmentConfig.off(),
        patience=0,
    )
    result = seeds_study(
        ["pilotnet"], [3], [recipe], Budget(epochs=3, steps=4, batch=8), TINY, tmp_path / "data",
        tmp_path / "out", jobs=1, progress=False,
    )  # fmt: skip
    [run] = result.runs
    assert run.settings["patience"] == 0 and set(run.summary) == {"val-best", "last"}
    assert run.steps["last"] == 12 and run.checkpoints["last"].startswith("last")
    assert seed_tables.served_kind(run) == "last" and seed_tables.served(run) == run.summary["last"]
    folder = tmp_path / "out" / "fixed" / "pilotnet" / "seed-3"
    assert len((folder / "pilotnet.history.csv").read_text().splitlines()) == 1 + 3  # every epoch
    suite = json.loads((folder / "suite-tiny.json").read_text())
    # The last checkpoint is driven on its own unless it holds val-best's very weights.
    driven = {"val-best"} if run.steps["val-best"] == 12 else {"val-best", "last"}
    assert set(suite["models"]) == driven and suite["models"]["val-best"] == str(folder / "pilotnet.keras")
    assert "| last: " in (tmp_path / "out" / "study.md").read_text()


def test_a_recording_killed_half_way_is_recorded_again_not_taken_for_whole(tmp_path):
    """The study records into NAME.partial and renames it when whole: a study killed while
    recording (SIGKILL: no clean-up runs) leaves no NAME for the next study to reuse."""
    from driving.data.reader import load_recordings
    from driving.evaluation import seeds
    from driving.evaluation.registry import Recipe, Recording

    spec = Recording("lake", laps=0.5, seed=0)
    folder, partial = tmp_path / spec.folder_name, tmp_path / (spec.folder_name + seeds.PARTIAL_SUFFIX)
    child = (
        "import sys; from pathlib import Path; from driving.evaluation import seeds; "
        "from driving.evaluation.registry import Recipe, Recording; "
        "recipe = Recipe('r', 'r', recordings=(Recording('lake', laps=0.5, seed=0),)); "
        "seeds.recordings(recipe, Path(sys.argv[1]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (
            (partial / CSV_NAME).is_file() and len((partial / CSV_NAME).read_bytes().splitlines()) >= 10
        ):
            assert proc.poll() is None and time.monotonic() < deadline, "the recording never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert partial.is_dir() and not folder.exists()  # killed half way: nothing under the final name

    [made], _ = seeds.recordings(Recipe("r", "r", recordings=(spec,)), tmp_path)
    assert made == folder and not partial.exists()
    whole = recorder.record(spec.make_track(), tmp_path / "reference", laps=0.5, seed=0, progress=False)
    frames = load_recordings([folder]).frames
    assert len(frames) == whole.samples > 10
    log = (folder / CSV_NAME).read_text()
    assert str(partial) not in log and log.count(str(folder / "IMG")) == 3 * whole.samples
    before = (folder / CSV_NAME).stat().st_mtime_ns
    seeds.recordings(Recipe("r", "r", recordings=(spec,)), tmp_path)  # whole now: reused as it is
    assert (folder / CSV_NAME).stat().st_mtime_ns == before


def test_a_partial_folder_the_study_did_not_make_is_left_alone_in_one_line(tmp_path):
    from driving.evaluation import seeds
    from driving.evaluation.registry import Recipe, Recording

    specs = (Recording("lake", laps=0.05, seed=0), Recording("jungle", laps=0.05, seed=1))
    theirs = tmp_path / (specs[1].folder_name + seeds.PARTIAL_SUFFIX)
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="was not made by a study") as caught:
        seeds.recordings(Recipe("r", "r", recordings=specs), tmp_path)
    assert str(theirs) in str(caught.value) and "\n" not in str(caught.value)
    assert (theirs / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name]  # refused before recording anything


def test_a_recipe_that_validates_on_recordings_of_its_own_records_them_and_trains_with_them(tmp_path):
    """Recipe.validation: recorded beside the training recordings, handed to training as
    --val-data, and part of what makes a run: a run validated otherwise is not reused."""
    from driving.evaluation import seeds
    from driving.evaluation.registry import Recipe, Recording

    recipe = Recipe(
        "v", "v", recordings=(Recording("jungle", 0.05, 1),), validation=(Recording("lake", 0.05, 0),)
    )
    folders, held_out = seeds.recordings(recipe, tmp_path)
    assert [f.name for f in folders] == ["jungle-0.05laps-seed1"] and [f.name for f in held_out] == [
        "lake-0.05laps-seed0"
    ]
    assert all((f / CSV_NAME).stat().st_size for f in folders + held_out)
    cpu = BUDGETS["cpu"]
    config = seeds.run_config(recipe, ["pilotnet"], 0, cpu, folders, tmp_path / "run", val_folders=held_out)
    assert config.val_data == [str(held_out[0].absolute())] and config.data == [str(folders[0].absolute())]
    assert seed_tables.run_settings(config)["val_data"] == config.val_data
    assert seed_tables.run_settings(replace(config, val_data=[])) != seed_tables.run_settings(config)
    assert seeds.run_config(recipe, ["pilotnet"], 0, cpu, folders, tmp_path / "run").val_data == []


def test_a_study_table_needs_finished_runs(tmp_path, capsys):
    assert study.main(["table", "--out", str(tmp_path)]) == 1
    assert "no finished run" in capsys.readouterr().err
    for seed, text in enumerate(["", "[]", '{"suite": "unseen v1"}']):  # empty, a list, a stub
        record = tmp_path / "r" / "m" / f"seed-{seed}" / "study.json"
        record.parent.mkdir(parents=True)
        record.write_text(text)
    assert study.main(["table", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("left out") == 3 and "no finished run" in err and "Traceback" not in err


def test_models_are_named_apart_in_the_tables():
    from driving.evaluation.suites import model_labels

    assert model_labels(["a/b/seed-0/effnet.keras", "c/b/seed-0/effnet.keras", "x/pilot.h5"]) == [
        "a/b/seed-0/effnet",
        "c/b/seed-0/effnet",
        "pilot",
    ]
    assert model_labels(["m.keras", "m.keras"]) == ["m#1", "m#2"]


# --- a study's records: typed, checked, and a bad one left out in one line ------------------------


def finished_run(root: Path, seed: int) -> RunFolder:
    """A finished run of a seed study as it lies on disk (run.json and study-quick.json), untrained."""
    run = RunFolder(root / "tiny" / "pilotnet" / f"seed-{seed}")
    settings = json.loads(json.dumps(RunConfig(data=["/rec"], models=["pilotnet"], seed=seed).to_dict()))
    summary = SuiteSummary(
        drives=6, success_rate=0.5, autonomy_mean=80.0, autonomy_ci95=(70.0, 90.0), autonomy_min=60.0,
        interventions=3, km=1.2, interventions_per_km=2.5, mean_abs_cte_m=0.4, steering_rate_rms=0.5,
        latency_median_ms=1.0, autonomy_by_style={"lake": 80.0},
    )  # fmt: skip
    StudyRecord(
        settings=settings,
        suite=SUITES["quick"].label,
        model="pilotnet",
        seed=seed,
        val_mse=0.02,
        summary={"val-best": summary},
        steps={"val-best": 360},
    ).write(run.study_record("quick"))
    trained = {"name": "pilotnet", "params": 10, "epochs": 2, "best_val_loss": 0.02, "best_val_mae": 0.1}
    trained |= {"seconds_per_epoch": 3.0, "stopped_early": False}
    write_json(run.record, {**settings, "results": {"pilotnet": trained}})
    return run


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # NaN stays the token NaN, as a hand edit would leave it


def test_a_study_record_round_trips_typed(tmp_path):
    run = finished_run(tmp_path, 0)
    record = StudyRecord.read(run.study_record("quick"))
    assert isinstance(record.summary["val-best"], SuiteSummary) and record.steps == {"val-best": 360}
    assert json.loads(run.study_record("quick").read_text())["schema"] == SCHEMA
    assert StudyRecord.read(record.write(tmp_path / "again.json")) == record
    assert record.run_config.seed == 0


def test_a_run_that_learnt_nothing_is_named_in_the_study_table(tmp_path):
    from driving.evaluation import seed_tables

    learnt, idle, older = (finished_run(tmp_path, seed) for seed in range(3))
    edit(learnt.study_record("quick"), lambda d: d.update(val_steering_variance=0.05))
    nothing = {"val_mse": 0.048, "val_steering_variance": 0.05, "learnt_nothing": True}
    edit(idle.study_record("quick"), lambda d: d.update(nothing))
    runs = seed_tables.finished_runs(tmp_path, SUITES["quick"])
    # A record from before the fields reads as one that claims nothing.
    assert [r.val_steering_variance for r in runs] == [0.05, 0.05, None]
    assert [r.learnt_nothing for r in runs] == [False, True, False]
    assert "; did not learn: seed 1 |" in seed_tables.summary_table(runs)
    assert "did not learn" not in seed_tables.summary_table([runs[0], runs[2]])
    edit(older.study_record("quick"), lambda d: d.update(learnt_nothing="yes"))
    assert [r.seed for r in seed_tables.finished_runs(tmp_path, SUITES["quick"])] == [0, 1]


def test_a_study_record_older_than_a_setting_still_counts_as_made_with_its_default(tmp_path):
    """A run recorded before --bn-refresh or --drive-check-suite (and, nested, before --colour)
    existed is a run made with their defaults: a study resumes it and a curve selects it, unless
    the setting now differs."""
    from driving.evaluation import seeds
    from driving.evaluation.curve import select_runs

    cpu = BUDGETS["cpu"]
    config = RunConfig(data=["/rec"], models=["pilotnet"], seed=0, epochs=cpu.epochs,
                       steps_per_epoch=cpu.steps, batch_size=cpu.batch)  # fmt: skip
    run = finished_run(tmp_path, 0)
    older = seed_tables.run_settings(config)
    del older["bn_refresh_batches"], older["augment"]["colour"], older["drive_check_suite"]

    def setting(data):
        data["settings"] = older
        data["recipe"] = "tiny"

    edit(run.study_record("quick"), setting)
    assert "bn_refresh_batches" not in json.loads(run.study_record("quick").read_text())["settings"]
    found = seeds._finished(run, seed_tables.run_settings(config), SUITES["quick"])
    assert found is not None and found.settings == older  # the record is read as it was written
    assert found.run_config.bn_refresh_batches == 0 and found.run_config.augment.colour is False
    assert found.run_config.drive_check_suite == "validation"
    for changed in (
        replace(config, bn_refresh_batches=20),
        replace(config, drive_check_suite="two-lane-validation"),
        replace(config, augment=AugmentConfig(colour=True)),
    ):
        assert seeds._finished(run, seed_tables.run_settings(changed), SUITES["quick"]) is None
    assert seeds._finished(run, seed_tables.run_settings(config), SUITES["unseen"]) is None  # another suite
    assert select_runs([found], "tiny", ["pilotnet"], [0], cpu) == [found]


def test_a_run_keeps_a_record_per_suite_and_reads_an_older_runs_single_one(tmp_path, capsys):
    from driving.evaluation import seeds

    run = finished_run(tmp_path, 0)
    settings = StudyRecord.read(run.study_record("quick")).settings
    # An older run's one study.json is the record of the suite it drove, and of no other.
    run.study_record("quick").rename(run.older_study_record)
    assert [r.seed for r in seed_tables.finished_runs(tmp_path, SUITES["quick"])] == [0]
    assert seed_tables.finished_runs(tmp_path, SUITES["looks"]) == []
    assert seeds._finished(run, settings, SUITES["quick"]) is not None
    assert seeds._finished(run, settings, SUITES["looks"]) is None
    # A record of the suite's own is read before it.
    run.older_study_record.rename(run.study_record("quick"))
    write_json(run.older_study_record, {"suite": "quick v1"})  # damaged, and no longer read
    assert [r.seed for r in seed_tables.finished_runs(tmp_path, SUITES["quick"])] == [0]
    assert capsys.readouterr().err == ""


def test_a_record_of_a_training_since_replaced_is_left_out_in_one_line(tmp_path, capsys):
    finished_run(tmp_path, 0)
    retrained = finished_run(tmp_path, 1)
    edit(retrained.record, lambda d: d.update(epochs=9))  # trained again, with other settings
    assert [r.seed for r in seed_tables.finished_runs(tmp_path, SUITES["quick"])] == [0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(retrained.root) in err and "earlier training" in err, err


@pytest.mark.parametrize(
    "file, change, field",
    [
        ("run.json", lambda d: d.clear() or d.update(x=1), "field 'results'"),
        ("run.json", lambda d: d["results"]["pilotnet"].update(best_val_loss=-0.5), "best_val_loss"),
        ("run.json", lambda d: d["results"]["pilotnet"].update(best_val_loss=float("nan")), "NaN"),
        ("run.json", lambda d: d["results"]["pilotnet"].update(epochs=-1), "field 'epochs'"),
        ("study-quick.json", lambda d: d["summary"]["val-best"].update(autonomy_mean=150), "autonomy_mean"),
        ("study-quick.json", lambda d: d["summary"]["val-best"].update(autonomy_mean=float("nan")), "NaN"),
        ("study-quick.json", lambda d: d.update(seed=-1), "field 'seed'"),
        ("study-quick.json", lambda d: d.update(val_mse=-0.01), "field 'val_mse'"),
        ("study-quick.json", lambda d: d.update(val_mse="low"), "field 'val_mse'"),
        ("study-quick.json", lambda d: d["steps"].update({"val-best": -3}), "steps.val-best"),
        ("study-quick.json", lambda d: d["summary"].pop("val-best"), "no 'val-best'"),
        ("study-quick.json", lambda d: d["settings"].update(batch_size=0), "field 'settings': batch_size"),
        ("study-quick.json", lambda d: d.pop("summary"), "field 'summary' is missing"),
    ],
)
def test_a_tampered_run_is_left_out_of_the_table_in_one_line(tmp_path, capsys, file, change, field):
    finished_run(tmp_path, 0)
    bad = finished_run(tmp_path, 1).root / file
    edit(bad, change)
    runs = seed_tables.finished_runs(tmp_path, SUITES["quick"])
    assert [r.seed for r in runs] == [0] and runs[0].recipe == "tiny"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and field in err and "left out" in err, err

    assert study.main(["table", "--out", str(tmp_path), "--suite", "quick"]) == 0
    out, err = capsys.readouterr()
    assert "| tiny | pilotnet | 1 |" in out and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("text", ["[]", "[1, 2]", "not json", ""])
def test_a_run_json_that_is_not_an_object_is_named(tmp_path, capsys, text):
    finished_run(tmp_path, 0)
    bad = finished_run(tmp_path, 1).record
    bad.write_text(text)
    assert [r.seed for r in seed_tables.finished_runs(tmp_path, SUITES["quick"])] == [0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"study: {bad}: ") and "left out" in err


# --- settings declared once: each command's config, remade from its own command line ----------------


@pytest.mark.parametrize(
    "config",
    [
        EvalConfig([Path("m.keras")]),
        EvalConfig(
            [Path("a b/effnet.keras"), Path("base.h5")],
            suite="unseen",
            jobs=3,
            speed=12.25,
            out=Path("runs/x y"),
            drive_timeout=0.5,
        ),
        EvalConfig([Path("m.tflite")], speed=0.1, drive_timeout=86_400.0),
    ],
)
def test_an_evaluate_config_is_remade_from_its_command_line(config):
    assert evaluate.parse_args(to_argv(config)) == config


@pytest.mark.parametrize(
    "config",
    [
        StudyConfig(),
        StudyConfig(
            models=["pilotnet"],
            seeds=1,
            first_seed=7,
            recipes=["robust", "demo"],
            budget="full",
            suite="quick",
            data=Path("d"),
            out=Path("o p"),
            jobs=2,
            drive_timeout=30.0,
        ),
        StudyConfig(seeds=1000, first_seed=2**31 - 1, models=["effnet", "base"], budget="cpu4x"),
    ],
)
def test_a_study_config_is_remade_from_its_command_line(config):
    assert study.parse_args(["seeds", *to_argv(config)]) == config


def test_the_longer_cpu_budget_trains_on_four_times_the_frames_at_the_same_batch():
    cpu, longer = BUDGETS["cpu"], BUDGETS["cpu4x"]
    assert longer.frames == 4 * cpu.frames == 46_080 and longer.batch == cpu.batch
    assert longer.describe() == "4 epochs x 360 steps x batch 32"


@pytest.mark.parametrize("config", [TableConfig(), TableConfig(out=Path("runs/s"), suite="validation")])
def test_a_table_config_is_remade_from_its_command_line(config):
    assert study.parse_args(["table", *to_argv(config)]) == config


@pytest.mark.parametrize(
    "config",
    [
        DemoConfig(),
        DemoConfig(full=True, epochs=3, steps=4, batch_size=16, models=["pilotnet"], seed=5),
        DemoConfig(
            out=Path("r"), data=Path("d"), recipe="demo", suite="unseen", speed=7.5, jobs=2, drive_timeout=9.0
        ),
    ],
)
def test_a_demo_config_is_remade_from_its_command_line(config):
    assert from_args(DemoConfig, demo.build_parser().parse_args(to_argv(config))) == config


def test_the_configs_keep_the_shared_limits():
    assert EvalConfig([Path("m")]).speed == DemoConfig().speed == TARGET_SPEED_MPH
    assert DemoConfig(full=True, batch_size=7).budget == Budget(21, 128, 7)
    for bad in (EvalConfig([Path("m")], drive_timeout=0), EvalConfig([Path("m")], speed=31)):
        with pytest.raises(ConfigError):
            bad.validate()
    with pytest.raises(ConfigError, match="seeds"):
        StudyConfig(seeds=MAX_SEEDS + 1).validate()
    with pytest.raises(ConfigError, match="batch_size"):
        DemoConfig(batch_size=MAX_BATCH_SIZE + 1).validate()
    with pytest.raises(SystemExit):
        study.parse_args(["seeds", "--seeds", str(MAX_SEEDS + 1)])


# --- which checkpoints are the same: the typed record decides, never a label ---------------------------


def test_a_checkpoints_label_cannot_change_which_checkpoints_are_the_same(monkeypatch):
    def same(val_best: Checkpoint | None, drive_best: Checkpoint | None, steps_per_epoch: int = 6) -> bool:
        steps = {
            "val-best": training_step(val_best, steps_per_epoch),
            "drive-best": training_step(drive_best, steps_per_epoch),
        }
        return same_weights(steps, "drive-best")

    val = Checkpoint("val-best", epoch=1, metric="val_loss", value=0.02)  # epoch 1 of 6 steps: step 6
    drive = Checkpoint("drive-best", epoch=1, step=6, metric="autonomy", value=97.0)
    assert same(val, drive) and not same(val, replace(drive, step=3))
    assert same(val, replace(drive, step=3), steps_per_epoch=3)  # epoch 1 of 3 steps: step 3

    # Labels and notes say anything at all: the same weights stay the same, different ones differ.
    monkeypatch.setattr(Checkpoint, "label", property(lambda self: "best validation drive, step 3"))
    assert same(val, drive) and not same(val, replace(drive, step=3))
    assert same(replace(val, note="epoch 9"), replace(drive, note="step 99 (epoch 7)"))

    # A file from before the record: its prose is kept for people, never parsed; it is driven on its
    # own even where the prose would say the steps match.
    old_val = Checkpoint.from_record("best validation loss, epoch 1", "m.keras")
    old_drive = Checkpoint.from_record("best validation drive, step 6 (epoch 1)", "m.drive.keras")
    assert old_drive.kind == "unknown" and training_step(old_drive, 6) is None
    assert not same(old_val, old_drive) and not same(val, old_drive) and not same(None, drive)


def test_the_study_reads_which_checkpoint_a_model_file_is_from_its_record(tmp_path):
    model = tiny_model()
    run = RunFolder(tmp_path)
    for path, kept in (
        (run.model("m"), Checkpoint("val-best", epoch=1, metric="val_loss", value=0.1)),
        (run.drive_best("m"), Checkpoint("drive-best", epoch=1, step=6, metric="autonomy", value=90.0)),
        (run.last("m"), Checkpoint.from_record("best validation drive, step 6 (epoch 1)", "old")),
    ):
        save_keras(model, path, ModelInfo(model="tiny", checkpoint=kept))
    steps = {kind: training_step(checkpoint_of(run.checkpoint("m", kind)), 6) for kind in CHECKPOINTS}
    assert steps == {"val-best": 6, "drive-best": 6, "last": None}
    assert same_weights(steps, "drive-best") and not same_weights(steps, "last")
