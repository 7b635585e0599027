"""The slimming curve (driving/evaluation/curve.py): its command line, which models it names (the
Pareto front, the smallest that drives, where driving breaks) from study records written and read
back, and one small curve trained, driven, measured and drawn end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from driving import study
from driving.config import AugmentConfig, Budget, ConfigError, RunConfig
from driving.evaluation import curve as curves
from driving.evaluation import registry
from driving.evaluation.curve import CurveRow, CurveTable, ModelCost
from driving.evaluation.registry import SUITES, Suite, SuiteDrive
from driving.evaluation.seed_tables import finished_runs
from driving.evaluation.seeds import seeds_study
from driving.evaluation.settings import CurveConfig
from driving.files import RecordError, write_json
from driving.models import SLIMMING_FAMILY
from driving.options import declared_flags, to_argv
from driving.run import PRECISIONS, RunFolder, StudyRecord, SuiteSummary
from tests.test_cli import CHECK, ROOT

CPU = Budget(epochs=2, steps=180, batch=32)

# --- the command line -------------------------------------------------------------------------------


def test_the_curve_command_answers_help_at_once_listing_its_options():
    code = CHECK.format(
        name="driving.study",
        args=["curve"],
        run="runpy.run_module('driving.study', run_name='__main__', alter_sys=True)",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]  # CHECK fails if TensorFlow was imported
    for flag in declared_flags(CurveConfig):
        assert flag in result.stdout, flag
    text = " ".join(result.stdout.split())  # as argparse wraps it
    assert "(default robust)" in text and "(default runs/curve)" in text and "--no-train" in text


def every_setting_changed() -> list[CurveConfig]:
    return [
        CurveConfig(models=["effnet-tiny"]),
        CurveConfig(seeds=1, first_seed=7, recipe="demo", budget="full", suite="quick"),
        CurveConfig(data=Path("d e"), out=Path("o p"), jobs=2, drive_timeout=30.5, runs=7, train=False),
        CurveConfig(checkpoint="val-best"),
    ]


@pytest.mark.parametrize("config", [CurveConfig(), *every_setting_changed()])
def test_a_curve_config_is_remade_from_its_command_line(config):
    assert study.parse_args(["curve", *to_argv(config)]) == config


def test_the_curve_defaults_and_bounds():
    config = CurveConfig()
    assert config.models == list(SLIMMING_FAMILY) and config.seeds == 5 and config.recipe == "robust"
    assert (config.budget, config.suite, config.out) == ("cpu", "unseen", Path("runs/curve"))
    assert config.data == Path("data/study") and config.train and list(config.seed_range) == [0, 1, 2, 3, 4]
    used = {arg for c in every_setting_changed() for arg in to_argv(c)}
    assert set(declared_flags(CurveConfig)) <= used  # a new setting joins the round trip above
    for bad, field in (({"seeds": 0}, "seeds"), ({"models": []}, "models"), ({"runs": 0}, "runs")):
        with pytest.raises(ConfigError) as raised:
            CurveConfig(**bad).validate()
        assert raised.value.field == field
    with pytest.raises(SystemExit):
        study.parse_args(["curve", "--recipe", "nonsense"])


def test_redrawing_needs_finished_runs(tmp_path, capsys):
    assert study.main(["curve", "--no-train", "--out", str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert study.main(["curve", "--no-train", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished run of effnet-slim" in err and "Traceback" not in err


# --- which models it names, from records on disk --------------------------------------------------------


def write_run(out: Path, model: str, seed: int, autonomy: float, recipe="robust", budget=CPU, suite="quick"):
    """A finished seed-study run as it lies on disk (its study-SUITE.json and run.json), untrained."""
    run = RunFolder(out / recipe / model / f"seed-{seed}")
    config = RunConfig(
        data=["/rec"],
        models=[model],
        seed=seed,
        epochs=budget.epochs,
        steps_per_epoch=budget.steps,
        batch_size=budget.batch,
    )
    settings = json.loads(json.dumps(config.to_dict()))
    summary = SuiteSummary(
        drives=6, success_rate=0.5, autonomy_mean=autonomy, autonomy_ci95=(0.0, 100.0), autonomy_min=0.0,
        interventions=3, km=1.2, interventions_per_km=2.5, mean_abs_cte_m=0.4, steering_rate_rms=0.5,
        latency_median_ms=1.0,
    )  # fmt: skip
    StudyRecord(
        settings=settings,
        suite=SUITES[suite].label,
        model=model,
        seed=seed,
        val_mse=0.01 + seed / 1000,
        summary={"val-best": summary},
        steps={"val-best": 360},
    ).write(run.study_record(suite))
    trained = {"name": model, "params": 10, "epochs": 2, "best_val_loss": 0.02, "best_val_mae": 0.1}
    write_json(
        run.record,
        {**settings, "results": {model: trained | {"seconds_per_epoch": 3.0, "stopped_early": False}}},
    )
    return run


def cost(params: int) -> ModelCost:
    """A hand-made cost: only the parameters decide the front."""
    return ModelCost(
        params=params,
        macs=params * 20,
        seed=0,
        keras_bytes=params * 16,
        h5_no_optimizer_bytes=params * 5,
        tflite_bytes={p: params * (4 - i) for i, p in enumerate(PRECISIONS)},
        one_core_ms={p: params / 1e4 for p in PRECISIONS},
    )


# autonomy per seed 0-4 and parameters: "odd" is larger than "small" and drives worse
FAMILY = {
    "big": (70_000, [95, 96, 94, 93, 97]),  # 5 of 5 at >= 90, median 95
    "mid": (30_000, [92, 91, 88, 95, 93]),  # 4 of 5, median 92: the smallest that drives
    "odd": (20_000, [80, 85, 70, 91, 75]),  # median 80: dominated by "small"
    "small": (17_000, [91, 85, 80, 92, 93]),  # 3 of 5, median 91: driving breaks below it
    "smaller": (8_000, [70, 80, 60, 85, 75]),  # median 75
    "tiny": (6_600, [93, 60, 50, 40, 30]),  # median 50
}


def read_curve(out: Path, family: dict, seeds=range(5)) -> list[CurveRow]:
    """The curve's rows from the runs written under OUT and read back, as --no-train reads them."""
    runs = curves.select_runs(finished_runs(out, SUITES["quick"]), "robust", list(family), seeds, CPU)
    return curves.curve_rows(runs, {m: cost(params) for m, (params, _) in family.items()})


def test_the_front_the_smallest_that_drives_and_where_driving_breaks(tmp_path):
    for model, (_, autonomy) in FAMILY.items():
        for seed, value in enumerate(autonomy):
            write_run(tmp_path, model, seed, value)
    # Runs the curve leaves out: another recipe, another seed.
    write_run(tmp_path, "tiny", 0, 99.0, recipe="demo")
    write_run(tmp_path, "tiny", 7, 99.0)

    rows = read_curve(tmp_path, FAMILY)
    assert [r.model for r in rows] == list(FAMILY)
    for row in rows:
        assert row.seeds == [0, 1, 2, 3, 4] and row.autonomy == FAMILY[row.model][1]
        assert row.val_mse == [pytest.approx(0.01 + s / 1000) for s in range(5)]
    assert {r.model: r.seeds_driving for r in rows} == {
        "big": 5, "mid": 4, "odd": 1, "small": 3, "smaller": 0, "tiny": 1
    }  # fmt: skip
    assert curves.pareto_front(rows) == ["tiny", "smaller", "small", "mid", "big"]
    assert [r.model for r in rows if r.on_front] == ["big", "mid", "small", "smaller", "tiny"]
    assert curves.smallest_driving(rows) == "mid"
    assert curves.breaks_below(rows) == "small"

    # Fewer seeds on disk: 2 of 3 is under 80%, 3 of 3 is not.
    three = read_curve(tmp_path, FAMILY, seeds=range(3))
    assert {r.model: (r.seeds_driving, r.drives) for r in three if r.model in ("big", "mid")} == {
        "big": (3, True),
        "mid": (2, False),
    }
    assert curves.smallest_driving(three) == "big"


def test_when_none_drives_and_when_none_breaks(tmp_path):
    weak = {"a": (9_000, [80, 95, 85]), "b": (5_000, [91, 60, 70])}
    for model, (_, autonomy) in weak.items():
        for seed, value in enumerate(autonomy):
            write_run(tmp_path / "weak", model, seed, value)
    # Left out: a run of another budget, one of another suite.
    write_run(tmp_path / "weak", "a", 3, 99.0, budget=Budget(1, 4, 8))
    write_run(tmp_path / "weak", "b", 3, 99.0, suite="unseen")
    rows = read_curve(tmp_path / "weak", weak, range(4))
    assert [r.seeds for r in rows] == [[0, 1, 2], [0, 1, 2]]
    assert curves.smallest_driving(rows) is None and curves.breaks_below(rows) == "a"  # even the largest

    strong = {"a": (9_000, [95, 92]), "b": (5_000, [90, 91]), "c": (5_000, [90, 89]), "d": (5_000, [91, 90])}
    for model, (_, autonomy) in strong.items():
        for seed, value in enumerate(autonomy):
            write_run(tmp_path / "strong", model, seed, value)
    rows = read_curve(tmp_path / "strong", strong, range(2))
    assert curves.breaks_below(rows) is None and curves.smallest_driving(rows) == "b"  # the first of a tie
    # "b" and "d" tie (as small, the same median): neither dominates the other, both dominate "c";
    # "a" is larger but drives better.
    assert curves.pareto_front(rows) == ["b", "d", "a"]


def family_table(out: Path) -> CurveTable:
    """The curve of FAMILY, its runs written under OUT and read back, with hand-made costs."""
    for model, (_, autonomy) in FAMILY.items():
        for seed, value in enumerate(autonomy):
            write_run(out, model, seed, value)
    rows = read_curve(out, FAMILY)
    return table_of(rows)


def table_of(rows: list[CurveRow]) -> CurveTable:
    """The curve of `rows` as slimming_curve assembles it, on the quick suite at the CPU budget."""
    return CurveTable(
        date="2026-12-05",
        machine="a test",
        recipe="robust",
        budget=CPU.describe(),
        suite=SUITES["quick"].label,
        tracks=len(SUITES["quick"].drives),
        rows=rows,
        front=curves.pareto_front(rows),
        smallest_driving=curves.smallest_driving(rows),
        breaks_below=curves.breaks_below(rows),
    )


def test_the_table_and_figure_are_written_and_read_back(tmp_path):
    table = family_table(tmp_path)
    curves.write_curve(tmp_path, table)
    assert CurveTable.read(tmp_path / "curve.json") == table
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert saved["schema"] >= 1 and saved["rows"][1]["autonomy_median"] == 92
    assert saved["rows"][1]["seeds_driving"] == 4 and saved["smallest_driving"] == "mid"
    text = (tmp_path / "curve.md").read_text()
    assert (
        "quick v1 (6 tracks); 5 seeds per model (seeds 0-4" in text
        and "drive-best checkpoint (the one the drive check kept" in text
    )
    assert "| mid | 30,000 | 600,000 | 468.8 | 146.5 | 117.2 / 87.9 / 58.6 | 3.00 / 3.00 / 3.00 | " in text
    assert "| 0.0120 [0.0100, 0.0140] | 92.0 [88.0, 95.0] | 4 of 5 | yes |" in text
    assert "| odd | 20,000 |" in text and "| 1 of 5 |  |" in text
    assert (
        "**Smallest that drives** (>= 90% in at least 80% of its seeds): mid, 30,000 params, 4 of 5" in text
    )
    assert "**Driving breaks below small** (17,000 params, median 91.0%)" in text and "smaller: 75.0%" in text
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["rows"][0]["autonomy"].append(50.0), "'seeds', 'autonomy' and 'val_mse'"),
        (lambda d: d["rows"][0]["autonomy"].__setitem__(0, 101.0), "autonomy[0]"),
        (lambda d: d["rows"][0]["cost"]["tflite_bytes"].pop("int8"), "tflite_bytes"),
        (lambda d: d["rows"][0]["cost"].update(params=-1), "params"),
        (lambda d: d.update(front=["nobody"]), "'nobody'"),
        (lambda d: d.update(rows=[]), "'rows' is empty"),
    ],
)
def test_a_damaged_curve_record_is_named_in_one_line(tmp_path, change, field):
    path = family_table(tmp_path).write(tmp_path / "curve.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as raised:
        CurveTable.read(path)
    message = str(raised.value)
    assert message.startswith(str(path)) and field in message and "\n" not in message, message


# --- one small curve, end to end: trained, driven, measured, drawn -------------------------------------


def test_a_curve_reuses_a_finished_seed_study_and_draws_its_records(tmp_path):
    """Two of the family's smallest, one seed, a few training steps, one short drive: the seed study
    trains and drives them; the curve reuses those runs (nothing trained again) and measures them."""
    recipe = registry.Recipe(
        "tiny",
        "a short suite-style training track",
        recordings=(registry.Recording("suite", 0.3, 7, style="jungle"),),
        augment=AugmentConfig.off(),
    )
    suite = Suite("one", 1, (SuiteDrive(10900, "lake", 1_010_900, 0.03),), "one short drive")
    models = ["effnet-w025-h32-r64", "effnet-tiny"]
    args = dict(recipe=recipe, budget=Budget(epochs=1, steps=3, batch=8), suite=suite)
    args |= dict(data=tmp_path / "data", out=tmp_path / "out", jobs=1, progress=False)
    seeds_study(models, [0], [args.pop("recipe")], **args)
    files = {m: tmp_path / "out" / "tiny" / m / "seed-0" / f"{m}.keras" for m in models}
    stamps = {m: f.stat().st_mtime_ns for m, f in files.items()}

    table = curves.slimming_curve(models, [0], recipe, runs=3, **args)

    assert {m: f.stat().st_mtime_ns for m, f in files.items()} == stamps  # reused, not trained again
    assert CurveTable.read(tmp_path / "out" / "curve.json") == table
    assert (tmp_path / "out" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "out" / "curve.md").read_text()
    assert "recipe tiny; suite one v1 (1 tracks); 1 seed per model (seeds 0-0" in text
    for model, params in zip(models, (8_141, 6_605), strict=True):
        record = StudyRecord.read(files[model].parent / "study-one.json")
        row = table.row(model)
        assert row.seeds == [0] and row.autonomy == [record.summary["val-best"].autonomy_mean]
        assert row.val_mse == [record.val_mse] and row.cost.params == params and row.cost.seed == 0
        assert row.cost.keras_bytes == files[model].stat().st_size
        sizes = row.cost.tflite_bytes
        assert sizes["int8"] < sizes["float16"] < sizes["float32"]
        assert all(ms > 0 for ms in row.cost.one_core_ms.values())
        assert f"| {model} | {params:,} | {row.cost.macs:,} | " in text
        assert f"| {row.autonomy[0]:.1f} [{row.autonomy[0]:.1f}, {row.autonomy[0]:.1f}] |" in text
    assert table.row("effnet-tiny").cost.tflite_bytes["int8"] < 32 * 1024  # docs/models.md's promise
    assert table.front == curves.pareto_front(table.rows) and "effnet-tiny" in table.front


def test_the_checkpoint_drawn_is_the_served_one_unless_asked_otherwise(tmp_path):
    """drive-best where the run kept one (what the recipe serves), else val-best; --checkpoint
    val-best draws the lowest validation loss; the command line takes it."""
    from dataclasses import replace

    from driving.evaluation.curve import served_autonomy

    kept = StudyRecord.read(write_run(tmp_path, "effnet-tiny", 0, 71.8).study_record("quick"))
    kept = replace(
        kept, summary=kept.summary | {"drive-best": replace(kept.summary["val-best"], autonomy_mean=97.0)}
    )
    none_kept = StudyRecord.read(write_run(tmp_path, "effnet-tiny", 1, 80.0).study_record("quick"))
    assert served_autonomy(kept) == 97.0 and served_autonomy(kept, "val-best") == 71.8
    assert served_autonomy(none_kept) == 80.0
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        served_autonomy(kept, "last")
    rows = curves.curve_rows([kept, none_kept], {"effnet-tiny": cost(6605)})
    assert rows[0].autonomy == [97.0, 80.0]
    assert curves.curve_rows([kept, none_kept], {"effnet-tiny": cost(6605)}, "val-best")[0].autonomy == [
        71.8,
        80.0,
    ]
    assert study.parse_args(["curve"]).checkpoint == "drive-best"
    assert study.parse_args(["curve", "--checkpoint", "val-best"]).checkpoint == "val-best"


def test_a_curve_whose_smallest_drives_but_a_larger_one_does_not_says_driving_does_not_break_at_a_size(
    tmp_path,
):
    uneven = {"big": (70_000, [95, 96, 94]), "mid": (20_000, [70, 75, 91]), "tiny": (6_600, [91, 92, 80])}
    for model, (_, autonomy) in uneven.items():
        for seed, value in enumerate(autonomy):
            write_run(tmp_path, model, seed, value)
    rows = read_curve(tmp_path, uneven, range(3))
    assert curves.breaks_below(rows) is None
    text = "\n".join(curves.verdict_lines(table_of(rows)))
    assert "**Driving does not break at a size**: the smallest model, tiny, has a median of 91.0%" in text
    assert "larger ones fall under 90%: mid (75.0%)." in text and "stays at" not in text
