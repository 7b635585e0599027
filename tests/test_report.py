"""The slimming report on tiny trained models: every figure is measured and matches a recomputation
here; TFLite exports agree with Keras within the stated tolerance; each model is scored on its own
run's validation split; a damaged model is reported, not fatal; every export is driven and paired by
track with its Keras model, and one that drives worse is flagged and not recommended."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from driving import models
from driving.config import AugmentConfig, Preprocessing, RunConfig
from driving.evaluation.registry import Suite, SuiteDrive
from driving.files import RecordError
from driving.modelio import load_info, load_keras
from driving.options import ConfigError, to_argv
from driving.report import cli, export, render, stage
from driving.report.config import ReportConfig
from driving.run import (
    SCHEMA,
    DrivenFile,
    ExportCheck,
    Latency,
    ReportRow,
    RunFolder,
    read_record,
    record_from_dict,
    write_record,
)
from driving.train import stage as train
from tests.conftest import write_recording

# Two short drives of unseen tracks (as tests/test_evaluate.py makes them): a real interval, fast.
TINY = Suite(
    "tiny", 1, (SuiteDrive(10900, "lake", 1_010_900, 0.04), SuiteDrive(10901, "desert", 1_010_901, 0.04)), "t"
)


def config(data: Path, out: Path, **kw) -> RunConfig:
    made = RunConfig(
        data=[str(data)],
        models=["base", "pilotnet"],
        out=str(out),
        epochs=1,
        batch_size=8,
        steps_per_epoch=2,
        block_seconds=1.0,
        augment=AugmentConfig.off(),
        tensorboard=False,
    )
    return replace(made, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_recording(tmp_path_factory.mktemp("data") / "rec", n=90, seed=5)


def test_report_on_two_trained_models(data, tmp_path):
    out = tmp_path / "models"
    train.run(config(data, out), progress=False)
    record = RunFolder(out).record  # run.json, as if the run had been made on another numpy
    made = json.loads(record.read_text())
    record.write_text(json.dumps({**made, "versions": {**made["versions"], "numpy": "0.0.1"}}))
    result = stage.run(ReportConfig(out, runs=5, val_frames=32), progress=False)  # no --data: run.json says

    saved = json.loads((out / "report.json").read_text())
    rows = {r["model"]: r for r in saved["models"]}
    assert list(rows) == ["base", "pilotnet"] and saved == json.loads(json.dumps(result))
    assert saved["schema"] == SCHEMA and read_record(out / "report.json") == saved
    assert saved["not_measured"] == [] and len(set(saved["scored_on"].values())) == 1
    # every row reads back as the typed record it was written from
    assert [record_from_dict(ReportRow, r, "report.json").model for r in saved["models"]] == list(rows)
    split = stage.Split((str(data.absolute()),), 0.2, 1.0, 0, Preprocessing())
    x_val, y_val, _ = stage.validation_frames(split, limit=32)
    for name, row in rows.items():
        model, _ = load_keras(out / f"{name}.keras")
        assert (row["params"], row["trainable"]) == models.count_params(model)
        assert row["macs"] == models.count_macs(model)
        assert row["keras"] == (out / f"{name}.keras").stat().st_size
        assert row["h5"] == (out / f"{name}.h5").stat().st_size
        with h5py.File(out / f"{name}.h5") as f:
            assert row["h5_has_optimizer"] == ("optimizer_weights" in f)
        assert row["h5_no_optimizer"] < row["h5"]
        pred = model.predict(x_val, verbose=0).reshape(-1)
        assert np.isclose(row["val_mse"], np.mean((pred - y_val) ** 2), rtol=1e-4)
        assert row["keras_latency"]["median_ms"] > 0
        assert row["keras_latency"]["p99_ms"] >= row["keras_latency"]["median_ms"]
        assert row["seconds_per_epoch"] > 0
        for kind, lite in row["tflite"].items():
            assert lite["bytes"] == (out / lite["file"]).stat().st_size
            assert lite["within_tolerance"], (name, kind, lite["max_abs_error"])
            assert lite["max_abs_error"] <= export.TOLERANCE[kind]
            assert load_info(out / lite["file"]).preprocessing == Preprocessing()  # exports carry it
        # full-integer int8 is smaller than float16, smaller than float32
        sizes = [row["tflite"][k]["bytes"] for k in ("int8", "float16", "float32")]
        assert sizes == sorted(sizes)

    pilot, base = rows["pilotnet"], rows["base"]
    assert np.isclose(pilot["vs_base"]["macs"], pilot["macs"] / base["macs"])
    assert np.isclose(
        pilot["vs_base"]["litert_float32_median_ms"],
        pilot["tflite"]["float32"]["latency"]["median_ms"]
        / base["tflite"]["float32"]["latency"]["median_ms"],
    )
    text = (out / "report.md").read_text()
    assert f"{pilot['params']:,}" in text and f"{base['macs']:,}" in text
    [versions] = [n for n in saved["findings"] if "requirements.lock" in n]
    assert "numpy 0.0.1 (lock: " in versions and versions in text
    assert any("numpy 0.0.1" in d for d in saved["versions_differ_from_lock"])
    assert f"{base['macs'] / pilot['macs']:.1f}x fewer MACs" in text  # findings use measured numbers
    for chart in ("params.png", "macs.png", "sizes.png", "latency.png", "loss_overlay.png"):
        assert (out / chart).read_bytes()[:4] == b"\x89PNG", chart
        assert f"({chart})" in text


def test_models_from_different_runs_are_scored_on_their_own_splits_and_a_broken_one_is_reported(
    data, tmp_path
):
    out = tmp_path / "models"
    train.run(config(data, out, models=["pilotnet"], seed=0), progress=False)
    train.run(config(data, out, models=["base"], seed=7), progress=False)  # another split, same folder
    (out / "effnet.keras").write_bytes((out / "base.keras").read_bytes()[:5000])  # truncated
    result = stage.run(ReportConfig(out, runs=3, val_frames=16, export="none"), progress=False)

    assert [r["model"] for r in result["models"]] == ["base", "pilotnet"]
    [failed] = result["not_measured"]
    assert failed["model"] == "effnet" and "not a zip archive" in failed["error"]
    assert "seed 7" in result["scored_on"]["base"] and "seed 0" in result["scored_on"]["pilotnet"]
    text = (out / "report.md").read_text()
    assert "come from different runs" in text and "effnet: " in text

    # pilotnet's validation error is measured on its own run's validation frames (seed 0).
    split = stage.Split((str(data.absolute()),), 0.2, 1.0, 0, Preprocessing())
    x_val, y_val, _ = stage.validation_frames(split, limit=16)
    model, _ = load_keras(out / "pilotnet.keras")
    pred = model.predict(x_val, verbose=0).reshape(-1)
    pilot = next(r for r in result["models"] if r["model"] == "pilotnet")
    assert np.isclose(pilot["val_mse"], np.mean((pred - y_val) ** 2), rtol=1e-4)


def test_careless_report_calls_end_in_one_line(tmp_path, capsys):
    assert cli.main(["--models", str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err
    tmp_path.joinpath("empty").mkdir()
    assert cli.main(["--models", str(tmp_path / "empty")]) == 1
    assert "no trained models" in capsys.readouterr().err
    for bad in (
        ["--runs", "0"],
        ["--val-frames", "-3"],
        ["--seed", "x"],
        ["--saliency", "none", "vbp"],
        ["--export", "none", "--drive-precisions", "quick"],
    ):
        with pytest.raises(SystemExit) as exit_code:
            cli.main(["--models", str(tmp_path), *bad])
        assert exit_code.value.code == 2 and "Traceback" not in capsys.readouterr().err
    with pytest.raises(ConfigError, match="runs"):  # a library call is held to the same bounds
        stage.run(ReportConfig(tmp_path, runs=0))


def test_the_report_settings_are_declared_once():
    config = cli.parse_args(["--models", "runs/m", "--saliency", "none", "--drive-precisions", "quick"])
    assert config == ReportConfig(Path("runs/m"), saliency=["none"], drive_precisions="quick")
    assert config.saliency_methods == [] and config.exports
    assert cli.parse_args(to_argv(config)) == config  # the command that remakes it
    assert ReportConfig().saliency_methods == ["vbp"] and ReportConfig().folder == Path("models")


def test_report_help_imports_no_tensorflow():
    import subprocess
    import sys

    code = "import sys; from driving.report import cli; cli.build_parser(); "
    code += "assert 'tensorflow' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_every_export_is_driven_and_paired_by_track_with_its_keras_model(data, tmp_path):
    out = tmp_path / "models"
    train.run(config(data, out, models=["pilotnet"]), progress=False)
    result = stage.run(
        ReportConfig(out, runs=3, val_frames=16, saliency=["none"], jobs=1), progress=False, suite=TINY
    )
    section = result["precisions"]
    assert section["suite"] == "tiny v1" and section["tracks"] == 2
    files = [record_from_dict(DrivenFile, r, "report.json") for r in section["rows"]]
    assert [(f.model, f.precision) for f in files] == [
        ("pilotnet", "keras"),
        ("pilotnet", "float32"),
        ("pilotnet", "float16"),
        ("pilotnet", "int8"),
    ]
    keras_file, f32, f16, i8 = files
    assert keras_file.file == "pilotnet.keras" and keras_file.verdict == "reference"
    assert i8.bytes < f16.bytes < f32.bytes
    for f in files:
        low, high = f.autonomy_ci95
        assert 0 <= low <= f.autonomy_mean <= high <= 100
        assert list(f.autonomy_by_track) == ["lake-10900", "desert-10901"]  # every figure: 2 tracks
    for f in (f32, f16, i8):
        assert (
            f.one_core_ms > 0 and f.paired_tracks == 2 and f.verdict in ("no worse", "inconclusive", "worse")
        )
        expected = [f.autonomy_by_track[t] - keras_file.autonomy_by_track[t] for t in f.autonomy_by_track]
        assert f.difference_mean == pytest.approx(np.mean(expected))
    # float32 LiteRT drives as its Keras model does: a difference near 0, an interval holding 0
    low, high = f32.difference_ci95
    assert abs(f32.difference_mean) <= 1 and low <= 0 <= high and f32.verdict == "no worse"
    assert section["recommended"]["pilotnet"] == export.recommended(files).file

    text = (out / "report.md").read_text()
    assert "## Which file do I flash" in text and "| pilotnet | int8 | pilotnet.int8.tflite |" in text
    assert "| pilotnet | keras | pilotnet.keras |" in text and "over 2 paired tracks" in text
    assert f"- **pilotnet**: flash {section['recommended']['pilotnet']}" in text
    assert (out / "precision.png").read_bytes()[:4] == b"\x89PNG"
    assert RunFolder(out).precision_drives.suite("tiny").is_file()  # the exports' drives, kept


def driven(precision: str, by_track: dict[str, float], reference: dict[str, float], size: int) -> DrivenFile:
    """A DrivenFile as export.precision_section makes it, from synthetic autonomies."""
    mean, ci95, paired = export.paired_difference(by_track, reference)
    return DrivenFile(
        model="m",
        precision=precision,
        file=f"m.{precision}.tflite",
        bytes=size,
        all_cores_ms=1.0,
        one_core_ms=1.0,
        autonomy_by_track=by_track,
        autonomy_mean=float(np.mean(list(by_track.values()))),
        autonomy_ci95=(0.0, 100.0),
        success_rate=0.5,
        difference_mean=mean,
        difference_ci95=ci95,
        paired_tracks=paired,
        verdict=export.verdict(ci95),
    )


def test_an_export_wholly_below_minus_one_point_is_flagged_and_not_recommended():
    rng = np.random.default_rng(0)
    tracks = [f"track-{i}" for i in range(12)]
    keras_by_track = {t: float(v) for t, v in zip(tracks, rng.uniform(60, 95, len(tracks)), strict=True)}
    shifted = lambda shift, spread: {
        t: float(np.clip(v + shift + rng.normal(0, spread), 0, 100)) for t, v in keras_by_track.items()
    }
    f32 = driven("float32", dict(keras_by_track), keras_by_track, 3000)
    f16 = driven("float16", shifted(-1.0, 2.0), keras_by_track, 1500)  # straddles -1
    i8 = driven("int8", shifted(-6.0, 1.0), keras_by_track, 800)  # wholly below -1

    assert f32.difference_mean == 0 and f32.difference_ci95 == (0.0, 0.0) and f32.verdict == "no worse"
    low, high = f16.difference_ci95
    assert low < -1 < high and f16.verdict == "inconclusive"  # not flagged
    assert i8.difference_ci95[1] < -1 and i8.verdict == "worse" and i8.paired_tracks == 12
    assert export.recommended([f32, f16, i8]) is f16  # the smallest file not flagged

    text = "\n".join(render.precision_markdown([f32, f16, i8], "tiny v1", 12, 9.0, "precision.png"))
    assert "**m int8 drives worse than its Keras model**" in text and "over 12 tracks paired" in text
    assert "m float16 drives worse" not in text
    assert "- **m**: flash m.float16.tflite" in text
    assert export.recommended([i8]) is None
    assert "every export drives worse" in render.recommendation("m", [i8])
    # the bootstrap is seeded: the same drives give the same interval
    assert export.paired_difference(i8.autonomy_by_track, keras_by_track)[1] == i8.difference_ci95


def test_the_report_records_refuse_what_cannot_be(tmp_path):
    row = ReportRow(
        model="m",
        params=10,
        trainable=8,
        macs=100,
        keras=2048,
        h5_no_optimizer=1024,
        val_mse=0.01,
        val_mae=0.05,
        val_frames=32,
        keras_latency=Latency(1.0, 2.0),
    )
    int4 = ExportCheck("m.int4.tflite", 500, Latency(1.0, 2.0), 0.1, 0.01, 0.05, 0.1, True)
    write_record(tmp_path / "r.json", row.to_dict())
    assert record_from_dict(ReportRow, read_record(tmp_path / "r.json"), "r.json").keras_latency.p99_ms == 2.0
    for bad, field in (
        ({"trainable": 11}, "trainable"),
        ({"val_frames": 0}, "val_frames"),
        ({"keras": -1}, "keras"),
        ({"val_mse": float("nan")}, "val_mse"),
        ({"tflite": {"int4": asdict(int4)}}, "unknown precision 'int4'"),
    ):
        with pytest.raises(RecordError, match=field):
            record_from_dict(ReportRow, {**row.to_dict(), **bad}, "r.json")
    assert stage.versions_sentence([]) is None
    assert "tensorflow 2.20.0 (lock: 2.21.0)" in stage.versions_sentence(["tensorflow 2.20.0 (lock: 2.21.0)"])


def test_an_export_beyond_its_tolerance_is_named_with_its_error_and_what_to_do():
    from driving.report.render import _export_misses

    def export(max_error, tolerance):
        return ExportCheck(
            file="m.tflite",
            bytes=1000,
            latency=Latency(1.0, 2.0),
            max_abs_error=max_error,
            mean_abs_error=0.02,
            p99_abs_error=0.08,
            tolerance=tolerance,
            within_tolerance=max_error <= tolerance,
        )

    def row(name, tflite):
        return ReportRow(name, 10, 10, 100, 2048, 1024, 0.01, 0.05, 32, Latency(1.0, 2.0), tflite=tflite)

    rows = [
        row("effnet-bn", {"float32": export(1e-7, 1e-4), "int8": export(0.123, 0.1)}),
        row("pilotnet", {"int8": export(0.007, 0.1)}),
    ]
    (line,) = _export_misses(rows)
    assert "effnet-bn int8 misses its tolerance" in line and "0.123 against 0.1" in line
    assert "99% of frames within 0.080" in line and "float16" in line
    assert _export_misses(rows[1:]) == []
