"""The slimming report on two tiny trained models: every figure is measured, and matches a
recomputation here; TFLite exports agree with Keras within the stated tolerance."""

from __future__ import annotations

import json

import h5py
import numpy as np

from driving import models, report, train
from tests.conftest import write_recording


def test_report_on_two_trained_models(tmp_path):
    data = write_recording(tmp_path / "rec", n=90, seed=5)
    out = tmp_path / "models"
    common = [
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "2",
        "--no-augment",
        "--no-tensorboard",
        "--block-seconds",
        "1",
    ]
    train.main(
        [
            "--data",
            str(data),
            "--model",
            "base",
            "--model",
            "pilotnet",
            "--epochs",
            "1",
            "--out",
            str(out),
            *common,
        ]
    )
    result = report.main(
        [
            "--models",
            str(out),
            "--data",
            str(data),
            "--runs",
            "5",
            "--val-frames",
            "32",
            "--block-seconds",
            "1",
        ]
    )

    saved = json.loads((out / "report.json").read_text())
    rows = {r["model"]: r for r in saved["models"]}
    assert list(rows) == ["base", "pilotnet"] and saved == json.loads(json.dumps(result))
    x_val, y_val, _ = report.validation_frames([data], limit=32, block_seconds=1)
    for name, row in rows.items():
        model = models.load(out / f"{name}.keras")
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
            assert lite["max_abs_error"] <= report.TOLERANCE[kind]
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
