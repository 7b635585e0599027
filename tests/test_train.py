"""train.py on generated recordings: it learns, saves loadable models, resumes, and distributes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import driving.quiet  # noqa: F401

import keras
import numpy as np
import pandas as pd

from driving import models, train
from tests.conftest import write_recording

ARGS = [
    "--model",
    "pilotnet",
    "--batch-size",
    "16",
    "--steps-per-epoch",
    "8",
    "--no-augment",
    "--no-tensorboard",
    "--seed",
    "1",
    "--block-seconds",
    "1",
]


def test_training_lowers_validation_loss_saves_models_and_resumes(tmp_path):
    data = write_recording(tmp_path / "rec", n=120, seed=3)
    out = tmp_path / "models"
    [result] = train.main(["--data", str(data), "--epochs", "2", "--out", str(out), *ARGS])

    # Predicting 0 everywhere scores mean(y^2) on validation; a model that learned must beat it well.
    from driving.pipeline import frames_from_folders

    _, val_df, _ = frames_from_folders([data], seed=1, block_seconds=1)
    always_zero = float(np.mean(val_df["steering"] ** 2))
    assert result.best_val_loss < 0.5 * always_zero

    history = pd.read_csv(out / "pilotnet.history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert {"loss", "val_loss", "val_mae", "epoch_seconds"} <= set(history.columns)
    assert (history["epoch_seconds"] > 0).all()
    assert json.loads((out / "pilotnet.history.json").read_text())["val_loss"] == list(history["val_loss"])
    for name in (
        "pilotnet.keras",
        "pilotnet.h5",
        "pilotnet.last.keras",
        "pilotnet.loss.png",
        "loss_overlay.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*"))  # no temp files left behind

    # The best-by-validation checkpoint is what NAME.keras and NAME.h5 hold.
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 128, 128, 3)).astype("float32")
    from_keras, from_h5 = models.load(out / "pilotnet.keras"), models.load(out / "pilotnet.h5")
    np.testing.assert_allclose(from_keras(x), from_h5(x), rtol=0, atol=1e-6)
    assert isinstance(models.load(out / "pilotnet.keras", compile=True).optimizer, keras.optimizers.Adam)

    # --resume continues after the last epoch instead of starting again.
    train.main(["--data", str(data), "--epochs", "3", "--out", str(out), "--resume", *ARGS])
    history = pd.read_csv(out / "pilotnet.history.csv")
    assert list(history["epoch"]) == [0, 1, 2]


def test_mixed_precision_model_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.build("effnet-slim", input_shape=(32, 32, 3))
        assert model.layers[1].compute_dtype == "float16"
        assert model.get_layer("steering").compute_dtype == "float32"
        assert model(np.zeros((1, 32, 32, 3), "float32")).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(tmp_path):
    data = write_recording(tmp_path / "rec", n=60, seed=4)
    out = tmp_path / "models"
    # Logical devices must be configured before TensorFlow touches the CPU: a fresh process.
    script = textwrap.dedent(f"""
        import driving.quiet
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from driving import train
        train.main(["--data", {str(data)!r}, "--epochs", "1", "--out", {str(out)!r},
                    "--strategy", "mirrored", *{ARGS!r}])
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 replica(s)" in run.stdout
    assert (out / "pilotnet.keras").is_file()
    assert len(pd.read_csv(out / "pilotnet.history.csv")) == 1
