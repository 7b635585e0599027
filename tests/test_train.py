"""Training on generated recordings: it learns, saves loadable models that carry their run, resumes,
distributes, seeds each model by its name, and never loses or overwrites work on careless input."""

from __future__ import annotations

import json
import os
import queue
import resource
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from driving import card, models
from driving.config import AugmentConfig, ConfigError, Preprocessing, RunConfig, model_seed
from driving.contrast import LocalContrast
from driving.modelio import load_info, load_keras, save_keras
from driving.preprocess import encode_jpeg
from driving.run import SCHEMA, Checkpoint, RunFolder
from driving.train import cli, cluster, stage
from driving.train.history import LEARNT_NOTHING_SHARE, learnt_nothing
from tests.conftest import free_ports, wait_until, write_recording

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--batch-size", "16", "--steps-per-epoch", "8", "--no-augment", "--no-tensorboard", "--seed", "1"]
ARGS += ["--block-seconds", "1"]


def config(data: Path, out: Path, **kw) -> RunConfig:
    """The tiny budget of these tests: a few steps of batch 16, no augmentation."""
    base = RunConfig(
        data=[str(data)],
        models=["pilotnet"],
        out=str(out),
        seed=1,
        epochs=1,
        batch_size=16,
        steps_per_epoch=8,
        block_seconds=1.0,
        augment=AugmentConfig.off(),
        tensorboard=False,
    )
    return replace(base, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_recording(tmp_path_factory.mktemp("data") / "rec", n=120, seed=3)


def run_cli(*args: str, limit_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    """train.py as a user runs it, in a fresh process (optionally with a file-size limit, which
    makes every write beyond it fail as a full disk does)."""

    def limit():
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited: a too-large write fails, not kills
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=limit,
            cwd=ROOT,
        )
    finally:
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


def test_training_lowers_validation_loss_saves_models_and_resumes(data, tmp_path):
    out = tmp_path / "models"
    [result] = stage.run(config(data, out, epochs=2), progress=False)

    # Predicting 0 everywhere scores mean(y^2) on validation; a model that learned must beat it well.
    from driving.pipeline import frames_from_folders

    _, val_df, _ = frames_from_folders([data], seed=1, block_seconds=1)
    assert result.best_val_loss < 0.5 * float(np.mean(val_df["steering"] ** 2))
    # ...and the record knows what one constant angle scores, so it can tell that it learnt.
    assert result.val_steering_variance == pytest.approx(float(val_df["steering"].var(ddof=0)))
    assert not result.learnt_nothing and "did not learn" not in stage.summary_table([result])

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
    assert [p.name for p in out.glob(".*")] == [RunFolder(out).lock.name]  # and no temp file left behind

    # The run records itself, and every model file carries its preprocessing and run.
    run = json.loads((out / "run.json").read_text())
    assert run["schema"] == SCHEMA
    assert run["seed"] == 1 and run["data"] == [str(data.absolute())] and run["models"] == ["pilotnet"]
    assert run["versions"]["tensorflow"] and run["versions"]["lock"]
    assert run["results"]["pilotnet"]["epochs"] == 2
    assert RunConfig.from_dict(run).split() == config(data, out).split() | {"data": [str(data.absolute())]}
    # ...and the command it records, parsed again, makes the very config it ran.
    remade, _ = cli.parse(shlex.split(run["command"])[2:])
    assert remade == replace(RunConfig.from_dict(run), versions={})
    for name in ("pilotnet.keras", "pilotnet.h5", "pilotnet.last.keras"):
        info = load_info(out / name)
        assert info.preprocessing == Preprocessing() and info.model == "pilotnet"
        assert info.run["seed"] == 1 and info.run["val_fraction"] == 0.2

    # Which checkpoint each file is, typed: the val-best one at the epoch of the lowest val loss.
    best_epoch = int(history["val_loss"].idxmin()) + 1
    assert load_info(out / "pilotnet.keras").checkpoint == Checkpoint(
        kind="val-best", epoch=best_epoch, step=best_epoch * 8, metric="val_loss", value=result.best_val_loss
    )
    assert load_info(out / "pilotnet.h5").checkpoint == load_info(out / "pilotnet.keras").checkpoint
    last = load_info(out / "pilotnet.last.keras").checkpoint
    assert (last.kind, last.epoch, last.step, last.value) == ("last", 2, 16, history["val_loss"].iloc[-1])

    # The best-by-validation checkpoint is what NAME.keras and NAME.h5 hold.
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 128, 128, 3)).astype("float32")
    (from_keras, _), (from_h5, _) = load_keras(out / "pilotnet.keras"), load_keras(out / "pilotnet.h5")
    np.testing.assert_allclose(from_keras(x), from_h5(x), rtol=0, atol=1e-6)
    assert isinstance(load_keras(out / "pilotnet.keras", compile=True)[0].optimizer, keras.optimizers.Adam)

    # --resume continues after the last epoch instead of starting again.
    stage.run(config(data, out, epochs=3, resume=True), progress=False)
    history = pd.read_csv(out / "pilotnet.history.csv")
    assert list(history["epoch"]) == [0, 1, 2]


def test_a_run_on_steering_unrelated_to_its_frames_says_it_did_not_learn(tmp_path, capsys):
    # Frames whose steering is drawn at random: nothing in an image tells its label. More rows than
    # two epochs show, so the model cannot learn the noise by heart either.
    noise = write_recording(tmp_path / "noise", n=360, seed=4)
    log = pd.read_csv(noise / "driving_log.csv", header=None)
    log[3] = np.random.default_rng(0).uniform(-0.5, 0.5, len(log))
    log.to_csv(noise / "driving_log.csv", header=False, index=False)
    out = tmp_path / "models"
    [result] = stage.run(config(noise, out, epochs=2), progress=False)

    assert result.learnt_nothing
    assert result.best_val_loss >= LEARNT_NOTHING_SHARE * result.val_steering_variance
    assert "pilotnet: did not learn to steer: best val MSE" in capsys.readouterr().err
    assert (
        "did not learn (val MSE >= 0.95 x the steering's variance, training loss flat)"
        in stage.summary_table([result])
    )
    recorded = json.loads((out / "run.json").read_text())["results"]["pilotnet"]
    assert recorded["val_steering_variance"] == result.val_steering_variance and recorded["learnt_nothing"]
    model_card = card.read(out, "pilotnet")
    assert model_card.learnt_nothing and "(did not learn)" in model_card.summary()
    assert "**This run did not learn to steer**" in RunFolder(out).card_md("pilotnet").read_text()


@pytest.mark.parametrize(
    "loss, val_loss, verdict",
    [
        ([0.100, 0.099, 0.101], [0.056, 0.058, 0.055], True),  # flat at the constant (variance 0.046)
        ([0.090, 0.060, 0.040], [0.056, 0.058, 0.055], False),  # it fits; validation on stale BN statistics
        ([0.100, 0.099, 0.101], [0.056, 0.030, 0.055], False),  # one epoch beat the constant
        ([0.100], [0.050], True),  # one epoch: validation alone decides
        ([0.100, 0.099], [float("nan"), float("inf")], False),  # no finite validation: nothing to tell
    ],
)
def test_learnt_nothing_needs_a_constant_val_mse_and_a_flat_training_loss(loss, val_loss, verdict):
    history = pd.DataFrame({"loss": loss, "val_loss": val_loss})
    assert learnt_nothing(history, 0.046) is verdict
    assert learnt_nothing(history, None) is False  # a run that did not measure the variance


def test_patience_zero_trains_the_whole_budget(data, tmp_path):
    # At a learning rate this small no weight moves, so the val loss never improves after epoch 1:
    # patience 1 stops after epoch 2; patience 0 (a fixed budget) trains all four.
    early = config(data, tmp_path / "p1", epochs=4, lr=1e-12, patience=1)
    fixed_budget = config(data, tmp_path / "p0", epochs=4, lr=1e-12, patience=0)
    stopped, fixed = stage.run(early, progress=False), stage.run(fixed_budget, progress=False)
    assert (stopped[0].epochs, fixed[0].epochs) == (2, 4)
    last = load_info(tmp_path / "p0" / "pilotnet.last.keras").checkpoint
    assert (last.kind, last.epoch, last.step) == ("last", 4, 32)
    assert load_info(tmp_path / "p0" / "pilotnet.keras").checkpoint.epoch == 1
    # A fixed budget's end is the model: the card lists it and says to serve it.
    run = RunFolder(tmp_path / "p0")
    assert run.served("pilotnet", fixed_budget) == run.last("pilotnet")
    assert list(card.read(run, "pilotnet").checkpoints) == ["val-best", "last"]
    assert "Serve pilotnet.last.keras: the run trained a fixed budget" in run.card_md("pilotnet").read_text()
    early_run = RunFolder(tmp_path / "p1")
    assert early_run.served("pilotnet", early) == early_run.model("pilotnet")
    assert list(card.read(early_run, "pilotnet").checkpoints) == ["val-best"]
    assert "Serve pilotnet.keras: " in early_run.card_md("pilotnet").read_text()


def test_each_model_is_seeded_by_its_name_not_by_what_was_built_before(data, tmp_path):
    small = Preprocessing(input_height=32, input_width=64)  # the seeding does not depend on it
    alone = stage.run(
        config(data, tmp_path / "alone", models=["effnet-slim"], seed=3, preprocessing=small), progress=False
    )
    beside = stage.run(
        config(data, tmp_path / "beside", models=["pilotnet", "effnet-slim"], seed=3, preprocessing=small),
        progress=False,
    )
    a, _ = load_keras(tmp_path / "alone" / "effnet-slim.last.keras")
    b, _ = load_keras(tmp_path / "beside" / "effnet-slim.last.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-6)
    assert alone[0].best_val_loss == pytest.approx(beside[1].best_val_loss, rel=1e-5)
    # ...and another seed gives another model.
    assert model_seed(3, "effnet-slim") != model_seed(4, "effnet-slim") != model_seed(3, "pilotnet")


def test_other_preprocessing_travels_with_the_model(data, tmp_path):
    geometry = Preprocessing(crop_top=60, crop_bottom=150, input_height=64, input_width=96)
    stage.run(config(data, tmp_path, preprocessing=geometry), progress=False)
    model, info = load_keras(tmp_path / "pilotnet.keras")
    assert info.preprocessing == geometry and tuple(model.input_shape[1:]) == (64, 96, 3)


def test_resume_without_a_last_checkpoint_refuses_and_overwrites_nothing(data, tmp_path):
    out = tmp_path / "models"
    stage.run(config(data, out), progress=False)
    (out / "pilotnet.last.keras").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(stage.TrainError, match="pilotnet.last.keras is missing"):
        stage.run(config(data, out, epochs=2, resume=True), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_with_another_split_refuses(data, tmp_path):
    out = tmp_path / "models"
    stage.run(config(data, out), progress=False)
    with pytest.raises(stage.TrainError, match="pilotnet.last.keras holds another split"):
        stage.run(config(data, out, epochs=2, resume=True, seed=2), progress=False)


def test_val_data_validates_on_whole_recordings_of_its_own(data, tmp_path):
    """--val-data: every --data row trains, and the validation loss (what early stopping and the
    val-best checkpoint go by) is the model's error on the other recording, which the run, the
    card and the slimming report all record and use."""
    from driving.report.config import ReportConfig
    from driving.report.stage import model_split, validation_frames

    other = write_recording(tmp_path / "other", n=40, seed=5)
    out = tmp_path / "models"
    [result] = stage.run(config(data, out, val_data=[str(other)]), progress=False)
    run = json.loads((out / "run.json").read_text())
    assert run["val_data"] == [str(other.absolute())]
    assert cli.parse(shlex.split(run["command"])[2:])[0].val_data == [str(other.absolute())]
    held_out = json.loads((out / "pilotnet.card.json").read_text())["data"]
    assert (held_out["train_rows"], held_out["val_rows"]) == (120, 40)
    assert held_out["validation"] == [str(other.absolute())]
    assert f"every row of {other.absolute()}" in (out / "pilotnet.card.md").read_text()

    split = model_split(out / "pilotnet.keras", None, ReportConfig(folder=out))
    x_val, y_val, _ = validation_frames(split)
    assert len(y_val) == 40  # the report scores the model where it was validated
    model, _ = load_keras(out / "pilotnet.keras")
    mse = float(np.mean((model.predict(x_val, verbose=0)[:, 0] - y_val) ** 2))
    assert mse == pytest.approx(result.best_val_loss, rel=1e-4)

    with pytest.raises(stage.TrainError, match="the split differs"):  # a resume keeps its split
        stage.run(config(data, out, epochs=2, resume=True), progress=False)


@pytest.mark.parametrize(
    "val_data, message",
    [
        (["{data}"], "--val-data: .*/rec is a training recording too"),
        (["{tmp}/nowhere"], "--val-data: .*/nowhere: no such folder"),
    ],
)
def test_val_data_that_cannot_validate_is_refused_in_one_line_before_training(
    data, tmp_path, val_data, message
):
    from driving.data.reader import RecordingError

    given = [v.format(data=data, tmp=tmp_path) for v in val_data]
    with pytest.raises(RecordingError, match=message):
        stage.run(config(data, tmp_path / "out", val_data=given), progress=False)
    assert not (tmp_path / "out" / "run.json").exists()


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_a_checkpoint_or_record_of_another_run_and_changes_nothing(data, tmp_path, capsys):
    out = tmp_path / "models"
    stage.run(config(data, out), progress=False)
    argv = ["--data", str(data), "--model", "pilotnet", "--epochs", "2", "--out", str(out), "--resume", *ARGS]
    run_json, last = RunFolder(out).record, RunFolder(out).last("pilotnet")

    # A run.json with a field of the wrong type: one line naming the file and the field.
    good = run_json.read_text()
    run_json.write_text(good.replace('"seed": 1,', '"seed": "1",'))
    before = files_of(out)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{run_json}: field 'seed' must be a whole number" in err[-1] and "Traceback" not in "\n".join(err)
    assert files_of(out) == before
    run_json.write_text(good)

    # NAME.last.keras holding another architecture (its record says which): refused, and every
    # file in the folder, run.json included, byte for byte as it was.
    info = load_info(last)
    other = models.build("effnet-slim", input_shape=info.preprocessing.input_shape)
    save_keras(other, last, replace(info, model="effnet-slim"))
    before = files_of(out)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "pilotnet.last.keras holds another model (effnet-slim)" in err[-1], err
    assert files_of(out) == before


def test_two_runs_into_one_folder_the_second_is_refused_naming_the_first(data, tmp_path, capsys):
    out = tmp_path / "models"
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "--data", str(data), "--model", "pilotnet"]
        + ["--epochs", "1000", "--out", str(out), *ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        lock = RunFolder(out).lock

        def held() -> bool:  # by the first, alive
            return first.poll() is None and lock.is_file() and lock.read_text().strip() == str(first.pid)

        assert wait_until(held, 240)
        assert cli.main(["--data", str(data), "--model", "pilotnet", "--out", str(out), *ARGS]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert f"in use by another run (PID {first.pid})" in err[-1] and len(err) == 1, err
        # SIGTERM ends the first at once, in one line, its files complete.
        first.send_signal(signal.SIGTERM)
        output, _ = first.communicate(timeout=120)
        assert first.returncode == 143, output[-2000:]
        assert output.strip().splitlines()[-1].startswith("train.py: terminated")
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "a b", "c"],
        ["--data", "rec", "--model", "effnet", "--model", "pilotnet", "--strategy", "mirrored"],
        ["--data", "rec", "--mixed-precision", "--lr", "0.00037", "--no-augment", "--input-size", "64x96"],
        ["--data", "rec", "--strategy", "multiworker", "--workers", "h:1", "h:2", "--worker-index", "1"]
        + ["--start-timeout", "30", "--no-tensorboard", "--cache-dir", "/tmp/c d", "--resume"],
        ["--data", "rec", "--colour", "--no-flip", "--steering-correction", "0.1", "--frame-size", "120x240"]
        + ["--crop-top", "40", "--crop-bottom", "110", "--drive-check-steps", "60", "--val-fraction", "0.3"],
        ["--data", "rec", "--bn-refresh", "20", "--drive-check-steps", "120"],
        ["--data", "rec", "--drive-check-steps", "120", "--drive-check-suite", "two-lane-validation"],
        ["--data", "rec", "--val-data", "other", "third one"],
    ],
)
def test_the_recorded_command_remakes_the_config(argv):
    config, _ = cli.parse(argv)
    assert cli.parse(shlex.split(config.command())[2:])[0] == config


def test_the_parser_is_the_declarations_plus_its_own_two_flags():
    from driving.options import declared_flags

    parser_flags = {flag for action in cli.build_parser()._actions for flag in action.option_strings}
    assert parser_flags == {*declared_flags(RunConfig), "--no-augment", "--report", "-h", "--help"}
    config, _ = cli.parse(["--data", "rec", "--no-augment", "--colour"])
    assert config.augment == AugmentConfig.off()  # the preset wins over single switches


def test_two_runs_of_one_seed_give_the_same_weights_bit_for_bit(data, tmp_path):
    """Op determinism on, augmentation on: the same seed, data and versions, the same model."""
    geometry = Preprocessing(input_height=32, input_width=64)
    weights = []
    for out in (tmp_path / "a", tmp_path / "b"):
        run = config(data, out, models=["effnet-slim"], augment=AugmentConfig(), preprocessing=geometry)
        stage.run(run, progress=False)
        weights.append(load_keras(out / "effnet-slim.last.keras")[0].get_weights())
    assert len(weights[0]) == len(weights[1])
    for a, b in zip(*weights, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_a_full_disk_loses_nothing_and_says_so_in_one_line(data, tmp_path):
    out = tmp_path / "models"
    first = run_cli("--data", str(data), "--model", "pilotnet", "--epochs", "1", "--out", str(out), *ARGS)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip().splitlines()[-1] == f"serve pilotnet: {out / 'pilotnet.keras'}"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # A model file is about 3 MB: with writes capped at 1 MB, saving the second epoch fails.
    full = run_cli(
        "--data", str(data), "--model", "pilotnet", "--epochs", "2", "--out", str(out), "--resume", *ARGS,
        limit_file_bytes=1_000_000,
    )  # fmt: skip
    assert full.returncode == 1
    assert "Traceback" not in full.stderr and "File too large" in full.stderr.strip().splitlines()[-1]
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for name in ("pilotnet.keras", "pilotnet.h5", "pilotnet.last.keras", "pilotnet.history.csv"):
        assert after[name] == before[name], name  # nothing truncated, nothing half-written
    assert [p.name for p in out.glob(".*")] == [RunFolder(out).lock.name]  # no temp file left


def test_a_killed_save_leaves_no_temp_file_for_good(data, tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    stray = out / ".pilotnet.tmp-999999999-0123abcd.keras"  # the pid of a process long gone
    stray.write_bytes(b"half a model")
    live = out / f".pilotnet.tmp-{os.getpid()}-0123abcd.keras"  # a write in progress: kept
    live.write_bytes(b"being written")
    stage.run(config(data, out), progress=False)
    assert not stray.exists() and live.exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--lr", "-1", "out of range"),
        ("--lr", "nan", "out of range"),
        ("--lr", "0", "out of range"),
        ("--block-seconds", "0", "out of range"),
        ("--epochs", "0", "out of range"),
        ("--batch-size", "-5", "out of range"),
        ("--batch-size", "1e9", "not a whole number"),
        ("--val-fraction", "1", "out of range"),
        ("--steps-per-epoch", "x", "not a whole number"),
        ("--seed", "-1", "out of range"),
        ("--bn-refresh", "-2", "out of range"),
        ("--bn-refresh", "two", "not a whole number"),
        ("--input-size", "8x8", "--input-size: must be a whole number from 32"),
        ("--crop-bottom", "400", "crop rows"),
        ("--steering-correction", "inf", "out of range"),
        ("--model", "resnet", "invalid choice"),
    ],
)
def test_nonsense_options_are_refused_in_one_line(option, value, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["--data", str(tmp_path), option, value, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_careless_runs_end_in_one_line_before_the_long_work(data, tmp_path, capsys):
    file_out = tmp_path / "a-file"
    file_out.write_text("not a folder")
    one = ["--block-seconds", "1"]
    cases = [
        # --out is a file: found before the data is even looked at (the data does not exist).
        (["--data", str(tmp_path / "nowhere"), "--out", str(file_out)], "is a file, not a folder"),
        (["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o1")], "no such folder"),
        (["--data", str(data), "--out", str(tmp_path / "o2")], "cannot split 120 frames in 1 block(s)"),
        (["--data", str(data), "--batch-size", "4000", *one, "--out", str(tmp_path / "o3")], "more than the"),
        (
            ["--data", str(data), "--frame-size", "240x320", *one, "--out", str(tmp_path / "o4")],
            "--frame-size 160x320",
        ),
        (
            ["--data", str(data), "--resume", *one, "--out", str(tmp_path / "o5")],
            "effnet.last.keras is missing",
        ),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 1, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert message in lines[-1] and "Traceback" not in "\n".join(lines), (argv, lines)


def test_a_recording_of_broken_images_is_summarised_truthfully(tmp_path, capsys):
    rec = write_recording(tmp_path / "rec", n=40, seed=1)
    for jpeg in (rec / "IMG").iterdir():
        jpeg.write_bytes(jpeg.read_bytes()[:200])  # every JPEG truncated
    assert cli.main(["--data", str(rec), "--out", str(tmp_path / "out"), *ARGS]) == 1
    captured = capsys.readouterr()
    total = next(line for line in captured.out.splitlines() if line.startswith("total"))
    assert total.split()[1:3] == ["40", "0"]  # read 40, used 0: the decode failures are counted
    assert "unreadable or truncated JPEG" in captured.out
    assert "0 training" in captured.err.strip().splitlines()[-1]


def test_frames_of_another_size_are_skipped_not_cropped_wrongly(tmp_path):
    rec = write_recording(tmp_path / "rec", n=60, seed=2)
    odd = sorted((rec / "IMG").glob("center_*.jpg"))[-5:]
    for path in odd:
        path.write_bytes(encode_jpeg(np.zeros((120, 240, 3), np.uint8)))
    from driving.data.reader import load_recordings
    from driving.pipeline import cache_split

    frames = load_recordings([rec]).frames
    summary_before = load_recordings([rec]).summary
    _, train_rows, val_rows = cache_split(
        frames, frames.iloc[:0], AugmentConfig.off(), summary=summary_before
    )
    assert len(train_rows) == 55
    reasons = "".join(summary_before.recordings[str(rec.absolute())].examples.values())
    assert "240x120 image" in reasons and "320x160" in reasons


def test_divergence_stops_training_and_is_never_saved(tmp_path):
    from driving.modelio import ModelInfo
    from driving.train.callbacks import Checkpoints, StopOnDivergence

    model = models.build("pilotnet")
    checkpoints, divergence = Checkpoints(RunFolder(tmp_path), "m", ModelInfo(), 8), StopOnDivergence()
    for callback in (checkpoints, divergence):
        callback.set_model(model)
    divergence.on_train_batch_end(3, {"loss": float("nan")})
    assert model.stop_training and divergence.diverged == "step 4: loss nan"
    checkpoints.on_epoch_end(0, {"loss": float("inf"), "val_loss": 0.01})
    checkpoints.on_epoch_end(0, {"loss": 0.1, "val_loss": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(data, tmp_path):
    out = tmp_path / "models"
    # Logical devices must be configured before TensorFlow touches the CPU: a fresh process.
    script = textwrap.dedent(f"""
        from driving import tfsetup

        tfsetup.setup()
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from driving.train import cli
        raise SystemExit(cli.main(["--data", {str(data)!r}, "--model", "pilotnet", "--epochs", "1",
                                     "--out", {str(out)!r}, "--strategy", "mirrored", *{ARGS!r}]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 replica(s)" in run.stdout
    assert (out / "pilotnet.keras").is_file()
    assert len(pd.read_csv(out / "pilotnet.history.csv")) == 1


@pytest.mark.parametrize("name", ["effnet-slim", "effnet-slim-lcn"])
def test_a_mixed_precision_step_is_finite_and_updates_every_layer(name):
    """The GPU path's numerics, run on the CPU: float16 compute, float32 weights, BatchNorm, and the
    zero-initialised float32 steering head (whose zeros block every other layer's gradient on the
    first step), under Keras' dynamic loss scaling; the local-contrast layer stays float32."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = models.build(name, input_shape=(32, 32, 3))
        contrast = [layer for layer in model.layers if isinstance(layer, LocalContrast)]
        assert all(layer.compute_dtype == "float32" for layer in contrast) and len(contrast) == name.endswith(
            "-lcn"
        )
        models.compile_for_training(model)
        before = [w.numpy().copy() for w in model.trainable_weights]
        rng = np.random.default_rng(0)
        x = rng.uniform(-0.5, 0.5, (16, 32, 32, 3)).astype("float32")
        y = rng.uniform(-0.5, 0.5, (16, 1)).astype("float32")
        losses = [float(model.train_on_batch(x, y)[0]) for _ in range(5)]
        assert all(np.isfinite(losses)), losses
        unchanged = [w.path for w, b in zip(model.trainable_weights, before) if np.array_equal(w.numpy(), b)]
        assert not unchanged, unchanged
        assert all(w.dtype == "float32" for w in model.trainable_weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_model_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.build("effnet-slim", input_shape=(32, 32, 3))
        assert model.layers[1].compute_dtype == "float16"
        assert model.get_layer("steering").compute_dtype == "float32"
        assert model(np.zeros((1, 32, 32, 3), "float32")).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_help_is_instant_because_it_imports_no_tensorflow():
    code = "import sys; from driving.train import cli; cli.build_parser(); "
    code += "assert 'tensorflow' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_two_workers_train_as_one_process_would_and_resume(data, tmp_path):
    """MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1, the global batch
    split between them; the chief alone writes. Same weights as one process with that batch."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    common = ["--data", str(data), "--model", "pilotnet", *ARGS]  # 8 steps of a global batch of 16
    common += ["--strategy", "multiworker", "--workers", *workers]

    def job(epochs: int, *extra: str, shared: bool = False) -> None:
        outs = [tmp_path / "chief", tmp_path / ("chief" if shared else "worker")]
        argv = [[sys.executable, str(ROOT / "train.py"), *common, "--epochs", str(epochs), *extra]
                + ["--worker-index", str(i), "--out", str(out)] for i, out in enumerate(outs)]  # fmt: skip
        procs = [
            subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
            for a in argv
        ]
        for proc in procs:
            output, _ = proc.communicate(timeout=400)
            assert proc.returncode == 0, output[-3000:]

    job(1)
    assert not [p for p in (tmp_path / "worker").iterdir()]  # the worker wrote nothing
    single = tmp_path / "single"
    stage.run(config(data, single), progress=False)
    both, _ = load_keras(tmp_path / "chief" / "pilotnet.last.keras")
    one, _ = load_keras(single / "pilotnet.last.keras")
    for a, b in zip(both.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)  # all-reduce sums in another order

    # The job restarted (say, after a worker died), every worker on the shared output folder: it
    # carries on from the chief's last checkpoint.
    job(2, "--resume", shared=True)
    assert list(pd.read_csv(tmp_path / "chief" / "pilotnet.history.csv")["epoch"]) == [0, 1]


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ("{not json", "TF_CONFIG: not valid JSON"),
        ("[1, 2]", "TF_CONFIG: must be a JSON object, got list"),
        ('{"task": {"type": "worker"}}', "field 'cluster' must be an object"),
        (
            '{"cluster": {"worker": "h:1"}, "task": {"type": "worker"}}',
            "field 'cluster.worker' must be a non",
        ),
        ('{"cluster": {"worker": ["h:1", 7]}, "task": {}}', "field 'cluster.worker[1]' must be a HOST:PORT"),
        (
            '{"cluster": {"worker": ["h:1", "h"]}, "task": {}}',
            "field 'cluster.worker[1]' must be a HOST:PORT",
        ),
        ('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {}}', "names h:1 a second time"),
        ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps"}}', "field 'cluster.ps' is not a job"),
        ('{"cluster": {"worker": ["h:1"]}}', "field 'task' must be an object"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief"}}', "field 'task.type' must be a job"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}', "from 0 to 0, got 1"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}}', "got '0'"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": true}}', "got True"),
    ],
)
def test_a_tf_config_of_the_wrong_shape_is_one_line_naming_the_field(tf_config, message, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        cluster.parse_tf_config(tf_config)
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["--data", "rec", "--strategy", "multiworker"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and message in lines[-1], lines
    assert lines[-1].startswith("python train.py: error: TF_CONFIG: ")


def test_the_chief_is_the_chief_task_or_worker_0():
    two = {"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 0}}
    assert cluster.parse_tf_config(json.dumps(two)).is_chief
    two["task"]["index"] = 1
    assert not cluster.parse_tf_config(two).is_chief
    two["cluster"]["chief"] = ["h:3"]
    assert not cluster.parse_tf_config(two).is_chief
    chief = cluster.parse_tf_config({**two, "task": {"type": "chief", "index": 0}})
    assert chief.is_chief and chief.peers == ["h:1", "h:2"]


def silent_peer() -> tuple[socket.socket, str]:
    """A port on 127.0.0.1 that takes connections (the kernel's backlog) and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


def start_worker(data: Path, out: Path, peer: str, timeout: str) -> subprocess.Popen:
    [port] = free_ports(1)
    argv = ["--data", str(data), "--model", "pilotnet", "--out", str(out), *ARGS, "--strategy", "multiworker"]
    argv += ["--workers", f"127.0.0.1:{port}", peer, "--worker-index", "0", "--start-timeout", timeout]
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def test_a_worker_whose_peer_never_answers_stops_at_its_deadline_in_one_line(data, tmp_path):
    peer_socket, peer = silent_peer()
    with peer_socket:
        worker = start_worker(data, tmp_path / "out", peer, "3")
        output, _ = worker.communicate(timeout=300)
    lines = output.strip().splitlines()
    assert worker.returncode == 1, output[-2000:]
    assert "waiting up to 3 s for the other workers" in output
    assert "no start within 3 s (--start-timeout)" in lines[-1] and peer in lines[-1]
    assert lines[-1].startswith("train.py: worker 0 of 2") and "Traceback" not in output


def test_a_sigterm_while_waiting_for_the_workers_ends_the_process_at_once(data, tmp_path):
    peer_socket, peer = silent_peer()
    with peer_socket:
        worker = start_worker(data, tmp_path / "out", peer, "600")
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in worker.stdout], daemon=True)
        reader.start()
        try:
            while "waiting up to 600 s" not in lines.get(timeout=240):
                pass
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 143  # not the 600 s of its deadline
        finally:
            worker.kill()
        reader.join(timeout=30)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert rest and rest[-1].startswith("train.py: terminated"), rest


# --- --bn-refresh: BatchNorm statistics re-estimated from clean frames ----------------------------

SMALL = Preprocessing(input_height=32, input_width=64)


@pytest.fixture(scope="module")
def bn_runs(data, tmp_path_factory) -> dict[int, RunConfig]:
    """effnet-slim (BatchNorm in its blocks) trained twice on one seed: with --bn-refresh 3 and
    without (0), by --bn-refresh."""
    root = tmp_path_factory.mktemp("bn")
    runs = {}
    for refresh in (3, 0):
        runs[refresh] = config(
            data, root / f"refresh-{refresh}", models=["effnet-slim"], epochs=2, preprocessing=SMALL,
            bn_refresh_batches=refresh,
        )  # fmt: skip
        stage.run(runs[refresh], progress=False)
    return runs


def frames_of(rows: pd.DataFrame) -> np.ndarray:
    """The rows' centre frames as the model is served them (read and preprocessed one by one)."""
    from driving.preprocess import preprocess, read_frame

    return np.stack([preprocess(read_frame(p), SMALL) for p in rows["center"]])


def batch_statistics_average(model: keras.Model, batches: list[np.ndarray]) -> dict[str, tuple]:
    """By BN layer name: the mean over `batches` of its input's per-channel batch mean and (biased)
    variance, each batch normalised by its own statistics and every other layer run as served.
    Walked layer by layer (effnet-slim is a chain), apart from the code under test."""
    stats: dict[str, list] = {}
    for x in batches:
        h = x
        for layer in model.layers[1:]:
            if isinstance(layer, keras.layers.BatchNormalization):
                flat = np.asarray(h).reshape(-1, h.shape[-1]).astype(np.float64)
                mean, var = flat.mean(axis=0), flat.var(axis=0)
                stats.setdefault(layer.name, []).append((mean, var))
                h = (np.asarray(h) - mean) / np.sqrt(var + layer.epsilon) * layer.gamma.numpy()
                h = (h + layer.beta.numpy()).astype(np.float32)
            else:
                h = np.asarray(layer(h, training=False))
    return {name: tuple(np.mean(parts, axis=0) for parts in zip(*pairs)) for name, pairs in stats.items()}


def test_bn_refresh_leaves_the_clean_batches_average_and_validates_with_it(bn_runs):
    from driving.train.batchnorm import refresh_rows

    run = bn_runs[3]
    train_rows, val_rows, _ = stage.load_split(run)
    chosen = refresh_rows(train_rows, 3, run.batch_size, run.seed)
    assert len(chosen) == 48 and chosen.index.is_unique
    assert chosen.index.equals(refresh_rows(train_rows, 3, run.batch_size, run.seed).index)  # by seed
    batches = np.split(frames_of(chosen), 3)
    history = pd.read_csv(Path(run.out) / "effnet-slim.history.csv")
    val_x, val_y = frames_of(val_rows), val_rows["steering"].to_numpy(np.float32)
    for file, epoch in (
        ("effnet-slim.keras", int(history["val_loss"].idxmin())),
        ("effnet-slim.last.keras", 1),
    ):
        model, _ = load_keras(Path(run.out) / file)
        saved = {
            layer.name: (layer.moving_mean.numpy(), layer.moving_variance.numpy())
            for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        }
        expected = batch_statistics_average(model, batches)
        assert len(expected) == len(saved) == 21
        for name, (mean, var) in expected.items():
            np.testing.assert_allclose(saved[name][0], mean, rtol=1e-3, atol=1e-5, err_msg=name)
            np.testing.assert_allclose(saved[name][1], var, rtol=1e-3, atol=1e-5, err_msg=name)
        # The epoch's val_loss is this very model's MSE on the validation frames: the validation
        # ran after the refresh, on the statistics the checkpoint holds.
        mse = float(np.mean((model.predict(val_x, verbose=0)[:, 0] - val_y) ** 2))
        assert history["val_loss"].iloc[epoch] == pytest.approx(mse, rel=1e-4), file


def test_bn_refresh_changes_the_statistics_and_nothing_training_learns(bn_runs):
    on, off = (load_keras(Path(bn_runs[n].out) / "effnet-slim.last.keras")[0] for n in (3, 0))
    for a, b in zip(on.trainable_weights, off.trainable_weights, strict=True):
        assert a.numpy().tobytes() == b.numpy().tobytes(), a.path  # the same training, bit for bit
    moving = [(a, b) for a, b in zip(on.weights, off.weights, strict=True) if "moving" in a.path]
    assert len(moving) == 42 and all(not np.allclose(a.numpy(), b.numpy()) for a, b in moving)
    # Off, the validation ran on the moving statistics training left: another val_loss.
    val = [pd.read_csv(Path(bn_runs[n].out) / "effnet-slim.history.csv")["val_loss"] for n in (3, 0)]
    assert not np.allclose(val[0], val[1])
    record = json.loads((Path(bn_runs[3].out) / "run.json").read_text())
    assert record["bn_refresh_batches"] == 3 and "--bn-refresh 3" in record["command"]


def test_bn_refresh_reads_nothing_for_a_model_without_batch_norm():
    from driving.train.batchnorm import refresh

    batches = iter([np.zeros((2, 128, 128, 3), np.float32)])
    assert refresh(models.build("pilotnet"), batches) == 0
    assert next(batches).shape == (2, 128, 128, 3)  # not even the first batch was taken


def test_bn_refresh_is_refused_beside_more_than_one_replica_before_anything_runs(capsys, tmp_path):
    for strategy in ("mirrored", "multiworker"):
        with pytest.raises(ConfigError) as raised:
            RunConfig(data=["x"], bn_refresh_batches=2, strategy=strategy).validate()
        assert raised.value.field == "bn_refresh_batches"
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["--data", str(tmp_path), "--bn-refresh", "2", "--strategy", "mirrored"]
                 + ["--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and "--bn-refresh: works with --strategy default only" in err[-1]
    assert not (tmp_path / "out").exists()


def test_the_drive_check_refreshes_the_statistics_before_it_drives_and_keeps_them(tmp_path):
    from driving.evaluation.registry import Suite, SuiteDrive
    from driving.modelio import ModelInfo
    from driving.train.callbacks import DriveCheck

    keras.utils.set_random_seed(0)
    model = models.build("effnet-slim", input_shape=SMALL.input_shape)
    batches = list(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8, *SMALL.input_shape)).astype("float32"))
    short = Suite("short", 1, (SuiteDrive(5000, "lake", 1_005_000, 0.02),), "one short drive")
    check = DriveCheck(RunFolder(tmp_path), "m", ModelInfo(preprocessing=SMALL), 1, short, bn_batches=batches)
    check.set_model(model)
    assert check.check()["kept"]
    kept, _ = load_keras(tmp_path / "m.drive.keras")
    expected = batch_statistics_average(kept, batches)
    for layer in kept.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            np.testing.assert_allclose(
                layer.moving_mean.numpy(), expected[layer.name][0], rtol=1e-3, atol=1e-5
            )
            np.testing.assert_allclose(
                layer.moving_variance.numpy(), expected[layer.name][1], rtol=1e-3, atol=1e-5
            )


def test_the_drive_check_drives_the_suite_it_is_named_and_records_it(data, tmp_path):
    out = tmp_path / "lanes"
    stage.run(config(data, out, drive_check_steps=8, drive_check_suite="two-lane-validation"), progress=False)
    # The row names the suite whose drives the check drove (DriveCheck.suite, the one it was given).
    [row] = pd.read_csv(out / "pilotnet.drive.csv").to_dict(orient="records")
    assert (row["step"], row["suite"], row["kept"]) == (8, "two-lane-validation v1", True)
    assert load_info(out / "pilotnet.drive.keras").checkpoint.kind == "drive-best"
    record = json.loads((out / "run.json").read_text())
    assert record["drive_check_suite"] == "two-lane-validation"
    assert "--drive-check-suite two-lane-validation" in record["command"]
    # run.json from before the setting existed still loads, with the classic suite.
    del record["drive_check_suite"]
    assert RunConfig.from_dict(record).drive_check_suite == "validation"


def test_a_resumed_drive_check_compares_scores_on_its_own_suite_only(tmp_path):
    """A row without a suite (a file older than the column) was driven on `validation`."""
    from driving.evaluation.registry import SUITES
    from driving.modelio import ModelInfo

    folder = RunFolder(tmp_path)
    folder.drive_best("m").write_bytes(b"kept")
    rows = [
        {"step": 8, "epoch": 0, "autonomy": 50.0, "mean_abs_cte_m": 1.0, "kept": True},
        {"step": 16, "epoch": 1, "suite": "two-lane-validation v1", "autonomy": 70.0, "mean_abs_cte_m": 0.5}
        | {"kept": True},
    ]
    for written in (rows[:1], rows):  # a file of old rows only, then one with the column
        folder.drive_log("m").write_text(pd.DataFrame(written).to_csv(index=False))
        best = {
            name: stage._drive_check(folder, "m", ModelInfo(), 8, 16, suite=SUITES[name]).best
            for name in ("validation", "two-lane-validation")
        }
        assert best["validation"] == (50.0, -1.0)
        assert best["two-lane-validation"] == ((70.0, -0.5) if len(written) == 2 else None)


def test_a_drive_check_suite_needs_a_known_name_and_a_drive_check(tmp_path, capsys):
    for argv, message in (
        (
            ["--drive-check-steps", "8", "--drive-check-suite", "unseen"],
            "--drive-check-suite: invalid choice",
        ),
        (["--drive-check-suite", "two-lane-validation"], "--drive-check-suite: is for a drive check"),
    ):
        with pytest.raises(SystemExit) as exit_code:
            cli.main(["--data", str(tmp_path), *argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_code.value.code == 2 and message in err[-1], err
        assert not (tmp_path / "out").exists()
