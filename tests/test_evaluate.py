"""Evaluation suites and seed studies with real drives of tiny real models: the suites are what they
say, the results do not depend on the number of parallel jobs, the confidence interval is right on
known inputs, and a study resumes instead of redoing finished runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from driving import evaluate, study
from driving.config import AugmentConfig, Budget
from driving.evaluation import registry, seed_tables, suites
from driving.evaluation.registry import SUITES, Suite, SuiteDrive
from driving.evaluation.seeds import seeds_study
from driving.evaluation.suites import bootstrap_ci
from driving.modelio import ModelInfo, save_keras
from driving.sim.track import track_features
from tests.test_runtime import tiny_model

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

    def strip(result):  # latency is wall time: the only figure allowed to differ
        return [{k: v for k, v in r.items() if "latency" not in k} for r in result["drives"]["tiny"]]

    assert strip(one) == strip(two)
    assert [r["drive"] for r in one["drives"]["tiny"]] == ["lake-10900", "desert-10901"]
    summary = two["summary"]["tiny"]
    assert summary["drives"] == 2 and 0 <= summary["success_rate"] <= 1
    low, high = summary["autonomy_ci95"]
    assert low <= summary["autonomy_mean"] <= high
    assert (tmp_path / "suite-tiny.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "suite-tiny.json").read_text())
    assert saved["suite"]["name"] == "tiny" and "autonomy_ci95" in saved["summary"]["tiny"]
    assert "| tiny |" in (tmp_path / "suite-tiny.md").read_text()


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

    assert [r["seed"] for r in result["runs"]] == [3]
    for run in result["runs"]:
        assert set(run["summary"]) == {"val-best", "drive-best"}  # the drive check kept a checkpoint
        assert run["steps"]["drive-best"] in (3, 6) and run["steps"]["val-best"] == 6
    table = (tmp_path / "out" / "study.md").read_text()
    assert "| tiny | pilotnet | 1 |" in table and "of 1" in table
    assert (tmp_path / "out" / "study.png").read_bytes()[:4] == b"\x89PNG"

    # Resumed: nothing is trained or driven again.
    model = tmp_path / "out" / "tiny" / "pilotnet" / "seed-3" / "pilotnet.keras"
    stamp = model.stat().st_mtime_ns
    again = seeds_study(["pilotnet"], [3], progress=False, **args)
    assert model.stat().st_mtime_ns == stamp
    assert [r["summary"] for r in again["runs"]] == [r["summary"] for r in result["runs"]]
    assert np.isfinite(again["runs"][0]["val_mse"])

    # The table of the finished runs, without training: what `study table` writes.
    (tmp_path / "out" / "study.md").unlink()
    runs = seed_tables.finished_runs(tmp_path / "out", TINY)
    assert [(r["recipe"], r["summary"]) for r in runs] == [("tiny", r["summary"]) for r in result["runs"]]
    seed_tables.write_tables(tmp_path / "out", TINY, runs)
    assert "| tiny | pilotnet | 1 |" in (tmp_path / "out" / "study.md").read_text()
    assert seed_tables.finished_runs(tmp_path / "out", SUITES["quick"]) == []  # another suite


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
    from driving.evaluation.suites import _labels

    assert _labels(["a/b/seed-0/effnet.keras", "c/b/seed-0/effnet.keras", "x/pilot.h5"]) == [
        "a/b/seed-0/effnet",
        "c/b/seed-0/effnet",
        "pilot",
    ]
    assert _labels(["m.keras", "m.keras"]) == ["m#1", "m#2"]
