"""The run folder's one owner and the records that cross stages (driving/run.py): paths, schema
versions, bounded reads, typed validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from driving.config import RunConfig
from driving.files import RecordError, read_json
from driving.run import (
    SCHEMA,
    Checkpoint,
    DriveResult,
    RunFolder,
    SuiteResult,
    SuiteSummary,
    TrainResult,
    read_record,
    record_from_dict,
    served_kind,
    write_record,
)


def test_the_folder_names_every_file_of_a_run(tmp_path: Path):
    run = RunFolder(tmp_path)
    assert run.record == tmp_path / "run.json"
    assert run.model("effnet") == tmp_path / "effnet.keras"
    assert run.checkpoint("effnet", "val-best") == run.model("effnet")
    assert run.checkpoint("effnet", "drive-best") == tmp_path / "effnet.drive.keras"
    assert run.checkpoint("effnet", "last") == tmp_path / "effnet.last.keras"
    assert run.tflite("effnet", "int8") == tmp_path / "effnet.int8.tflite"
    assert run.suite("quick", ".md") == tmp_path / "suite-quick.md"
    with pytest.raises(ValueError, match="precision"):
        run.tflite("effnet", "int4")
    for name in ("effnet.keras", "effnet.last.keras", "effnet.drive.keras", "base.keras"):
        (tmp_path / name).write_bytes(b"")
    assert run.models() == ["base", "effnet"]
    assert list(run.checkpoints("effnet")) == ["val-best", "drive-best"]
    assert list(run.checkpoints("base")) == ["val-best"]
    assert list(run.checkpoints("effnet", fixed_budget=True)) == ["val-best", "drive-best", "last"]


def test_one_rule_says_which_checkpoint_a_run_serves(tmp_path: Path):
    assert served_kind(["val-best", "drive-best", "last"]) == "drive-best"
    assert served_kind(["val-best", "last"]) == "last"
    assert served_kind(["val-best"]) == "val-best"
    run = RunFolder(tmp_path)
    for name in ("effnet.keras", "effnet.last.keras", "effnet.drive.keras"):
        (tmp_path / name).write_bytes(b"")
    checked = RunConfig(data=["x"], drive_check_steps=100)
    assert run.served("effnet", checked) == run.drive_best("effnet")
    # A drive-best file that this run's config never made (no drive check) is not its own.
    assert list(run.kept("effnet", RunConfig(data=["x"]))) == ["val-best"]
    assert run.served("effnet", RunConfig(data=["x"], patience=0)) == run.last("effnet")
    assert run.served("base", checked) is None


def test_a_checkpoint_record_round_trips_and_reads_old_labels():
    kept = Checkpoint("drive-best", epoch=2, step=240, metric="autonomy", value=97.5)
    assert Checkpoint.from_record(json.loads(json.dumps(kept.to_dict())), "m.keras") == kept
    assert kept.label == "best validation drive 97.5%, epoch 2 (step 240)"
    old = Checkpoint.from_record("best validation drive, step 240 (epoch 2)", "m.keras")
    assert old.kind == "unknown" and old.step is None  # prose is shown, never parsed
    assert Checkpoint.from_record("", "m.keras") is None


@pytest.mark.parametrize(
    "data, field",
    [
        ({"kind": "best"}, "kind"),
        ({"kind": "last", "epoch": -2}, "epoch"),
        ({"kind": "last", "step": "240"}, "step"),
        ({"kind": "val-best", "value": "NaN"}, "value"),
    ],
)
def test_a_bad_checkpoint_record_is_refused_naming_the_field(data, field):
    with pytest.raises(RecordError, match=f"m.keras: field '{field}'"):
        Checkpoint.from_record(data, "m.keras")


def suite_result() -> SuiteResult:
    drive = DriveResult(
        track="t", laps_target=1, laps=1, distance_m=120.0, elapsed_s=60.0, frames=900, interventions=0,
        autonomy_pct=100.0, mean_abs_cte_m=0.2, max_abs_cte_m=0.6, mean_speed_mph=8.9,
        steering_rate_rms=0.4, latency_median_ms=1.1, latency_p99_ms=2.0, completed=True, realtime=False,
        drive="lake-1", style="lake", track_seed=1, conditions_seed=2, width_m=8.0,
        features={"hairpin": True},
    )  # fmt: skip
    summary = SuiteSummary(
        drives=1, success_rate=1.0, autonomy_mean=100.0, autonomy_ci95=(100.0, 100.0), autonomy_min=100.0,
        interventions=0, km=0.12, interventions_per_km=0.0, mean_abs_cte_m=0.2, steering_rate_rms=0.4,
        latency_median_ms=1.1, autonomy_by_style={"lake": 100.0},
    )  # fmt: skip
    return SuiteResult({"name": "quick", "version": 1}, 9.0, {"m": "m.keras"}, {"m": [drive]}, {"m": summary})


def test_a_suite_result_is_written_with_its_schema_and_read_back_typed(tmp_path: Path):
    path = suite_result().write(tmp_path / "suite-quick.json")
    assert json.loads(path.read_text())["schema"] == SCHEMA
    assert SuiteResult.read(path) == suite_result()


def test_a_tampered_suite_result_is_refused_in_one_line(tmp_path: Path):
    data = suite_result().to_dict()
    data["summary"]["m"]["autonomy_mean"] = -5
    path = write_record(tmp_path / "suite-quick.json", data)
    with pytest.raises(RecordError, match="autonomy_mean") as raised:
        SuiteResult.read(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_records_from_before_schemas_are_read_and_newer_ones_refused(tmp_path: Path):
    old = tmp_path / "old.json"
    fields = {"name": "m", "params": 10, "epochs": 1, "best_val_loss": 0.1, "best_val_mae": 0.2}
    old.write_text(json.dumps({**fields, "seconds_per_epoch": 3.0, "stopped_early": False}))
    assert record_from_dict(TrainResult, read_record(old), str(old)).params == 10
    newer = write_record(tmp_path / "new.json", {})
    newer.write_text(newer.read_text().replace(f'"schema": {SCHEMA}', f'"schema": {SCHEMA + 1}'))
    with pytest.raises(RecordError, match="newer version"):
        read_record(newer)


def test_reads_are_bounded_in_size_and_depth_and_refuse_fifos(tmp_path: Path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(RecordError, match="levels deep"):
        read_json(deep)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "y" * 2000}))
    with pytest.raises(RecordError, match="more than the 1,000 a record may hold"):
        read_json(big, max_bytes=1000)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(RecordError, match="not a regular file"):
        read_json(fifo)  # returns at once: nothing writes to it
    nan = tmp_path / "nan.json"
    nan.write_text('{"x": NaN}')
    with pytest.raises(RecordError, match="not valid JSON"):
        read_json(nan)
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    with pytest.raises(RecordError, match="expected a JSON object"):
        read_record(listed)


def test_one_run_per_folder_the_holder_named_and_freed_when_it_dies(tmp_path: Path):
    import signal
    import subprocess
    import sys

    from driving.run import FolderInUse

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from driving.run import RunFolder\n"
         "with RunFolder(sys.argv[1]).hold():\n    print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        in_use = f"{tmp_path} is in use by another run \\(PID {holder.pid}\\)"
        with pytest.raises(FolderInUse, match=in_use), RunFolder(tmp_path).hold():
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    # The OS released the dead holder's lock; this process holds it now.
    with RunFolder(tmp_path).hold(), pytest.raises(FolderInUse, match=f"PID {os.getpid()}"):
        RunFolder(tmp_path).hold().__enter__()
