"""The slimming report on tiny trained models: every figure is measured and matches a recomputation
here; TFLite exports agree with Keras within the stated tolerance; each model is scored on its own
run's validation split; a damaged model is reported, not fatal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from driving import models
from driving.config import AugmentConfig, Preprocessing, RunConfig
from driving.modelio import load_info, load_keras
from driving.report import cli, export, stage
from driving.train import stage as train
from tests.conftest import write_recording


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
    result = stage.run(out, runs=5, val_frames=32, progress=False)  # no --data: run.json says

    saved = json.loads((out / "report.json").read_text())
    rows = {r["model"]: r for r in saved["models"]}
    assert list(rows) == ["base", "pilotnet"] and saved == json.loads(json.dumps(result))
    assert saved["not_measured"] == [] and len(set(saved["scored_on"].values())) == 1
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
    result = stage.run(out, runs=3, val_frames=16, export=False, progress=False)

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
    for bad in (["--runs", "0"], ["--val-frames", "-3"], ["--seed", "x"]):
        with pytest.raises(SystemExit) as exit_code:
            cli.main(["--models", str(tmp_path), *bad])
        assert exit_code.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_report_help_imports_no_tensorflow():
    import subprocess
    import sys

    code = "import sys; from driving.report import cli; cli.build_parser(); "
    code += "assert 'tensorflow' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_every_exported_precision_is_driven_and_tabulated(data, tmp_path):
    from driving.evaluation.registry import Suite, SuiteDrive

    out = tmp_path / "models"
    train.run(config(data, out, models=["pilotnet"]), progress=False)
    tiny = Suite("tiny", 1, (SuiteDrive(10910, "lake", 1_010_910, 0.03),), "one short drive")
    result = stage.run(out, runs=3, val_frames=16, saliency=(), drive_precisions=tiny, jobs=1, progress=False)
    rows = result["precisions"]["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("pilotnet", "float32"),
        ("pilotnet", "float16"),
        ("pilotnet", "int8"),
    ]
    sizes = {r["precision"]: r["kib"] for r in rows}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    for r in rows:
        low, high = r["autonomy_ci95"]
        assert 0 <= low <= r["autonomy_mean"] <= high <= 100 and r["one_core_ms"] > 0
    text = (out / "report.md").read_text()
    assert "## Every precision, driven" in text and "pilotnet | int8 |" in text
    assert (out / "precision.png").read_bytes()[:4] == b"\x89PNG"


def test_an_export_beyond_its_tolerance_is_named_with_its_error_and_what_to_do():
    from driving.report.render import _export_misses

    def export(max_error, tolerance):
        return {
            "max_abs_error": max_error,
            "mean_abs_error": 0.02,
            "p99_abs_error": 0.08,
            "tolerance": tolerance,
            "within_tolerance": max_error <= tolerance,
        }

    rows = [
        {"model": "effnet-bn", "tflite": {"float32": export(1e-7, 1e-4), "int8": export(0.123, 0.1)}},
        {"model": "pilotnet", "tflite": {"int8": export(0.007, 0.1)}},
    ]
    (line,) = _export_misses(rows)
    assert "effnet-bn int8 misses its tolerance" in line and "0.123 against 0.1" in line
    assert "99% of frames within 0.080" in line and "float16" in line
    assert _export_misses(rows[1:]) == []
