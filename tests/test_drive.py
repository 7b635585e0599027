"""The drive.py command line: its settings declared once (driving/drive_config.py), the command that
remakes a config, and the --record folders it refuses before loading anything."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from driving.config import TARGET_SPEED_MPH
from driving.drive import build_parser, check_record_folder, parse_args
from driving.drive_config import DriveConfig, PilotConfig, ServeConfig
from driving.files import OutputRefused
from driving.options import ConfigError, declared_flags, flag_for, to_argv

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "pyproject.toml"  # any existing file will do for parsing


def remade(config: DriveConfig) -> DriveConfig:
    return parse_args(to_argv(config))


BASE = DriveConfig(MODEL)
CASES = {
    "defaults": BASE,
    "the pilot": replace(BASE, pilot=PilotConfig(speed=12.5, throttle=-0.25, turn_slowdown=0.5)),
    "the server": replace(
        BASE, serve=ServeConfig(host="0.0.0.0", port=0, async_mode="eventlet", record=Path("runs/lap 1"))
    ),
    "the runtime": replace(BASE, backend="keras", threads=3),
    "the output": replace(BASE, quiet=True, view=True, view_port=8001),
    "everything": DriveConfig(
        MODEL,
        ServeConfig(host="::1", port=65535, async_mode="eventlet", record=Path("/tmp/rec")),
        PilotConfig(speed=0.0, throttle=1.0, turn_slowdown=10.0),
        backend="litert",
        threads=256,
        quiet=True,
        view=True,
        view_port=1,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_a_config_survives_its_command_line(name):
    config = CASES[name]
    assert remade(config) == config


def test_every_flag_is_exercised_by_the_round_trip_and_the_defaults_give_none():
    used = {arg for config in CASES.values() for arg in to_argv(config)}
    assert set(declared_flags(DriveConfig)) <= used
    assert to_argv(BASE) == [str(MODEL)]


def test_the_command_line_is_the_one_drive_py_always_had():
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == {
        "--host", "--port", "--speed", "--throttle", "--turn-slowdown", "--record", "--async-mode",
        "--backend", "--threads", "--quiet", "--view", "--view-port",
    }  # fmt: skip
    config = parse_args([str(MODEL)])
    assert (config.serve.host, config.serve.port, config.serve.async_mode) == ("127.0.0.1", 4567, "threading")
    assert config.pilot == PilotConfig(speed=TARGET_SPEED_MPH, throttle=None, turn_slowdown=0.0)
    assert (config.backend, config.threads, config.view_port) == ("auto", None, 0)
    assert not (config.quiet or config.view) and config.serve.record is None
    help_text = parser.format_help()
    assert "(default 9.0)" in help_text and "(default 4567, the simulator's" in help_text


@pytest.mark.parametrize(
    "argv",
    [
        ["--speed", "31"],
        ["--speed", "nan"],
        ["--throttle", "-2"],
        ["--turn-slowdown", "11"],
        ["--port", "65536"],
        ["--view-port", "-1"],
        ["--threads", "0"],
        ["--backend", "onnx"],
        ["--async-mode", "gevent"],
    ],
)
def test_out_of_range_values_are_refused_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args([str(MODEL), *argv])
    assert exited.value.code == 2 and argv[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "config, field",
    [
        (PilotConfig(speed=31.0), "speed"),
        (PilotConfig(throttle=float("inf")), "throttle"),
        (ServeConfig(port=70000), "port"),
        (ServeConfig(async_mode="gevent"), "async_mode"),
        (ServeConfig(status_interval=-1.0), "status_interval"),
        (replace(BASE, threads=0), "threads"),
        (replace(BASE, pilot=PilotConfig(turn_slowdown=-1.0)), "turn_slowdown"),
    ],
)
def test_configs_made_in_code_meet_the_same_bounds(config, field):
    with pytest.raises(ConfigError) as raised:
        config.validate()
    assert raised.value.field == field


def test_errors_name_the_option_of_a_field():
    assert flag_for(DriveConfig, "turn_slowdown") == "--turn-slowdown"
    assert flag_for(DriveConfig, "record") == "--record"
    assert flag_for(DriveConfig, "view_port") == "--view-port"


def test_quiet_means_no_status_lines():
    assert BASE.serve_settings().status_interval == 1.0
    assert replace(BASE, quiet=True).serve_settings() == replace(BASE.serve, status_interval=0.0)


# --- --record: a folder for this drive only ----------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def refused_folders(tmp_path: Path) -> dict[str, Path]:
    recording = tmp_path / "lap1"
    (recording / "IMG").mkdir(parents=True)
    (recording / "IMG" / "center_2024_01_01_00_00_00_000.jpg").write_bytes(b"\xff\xd8\xff\xe0 a frame")
    (recording / "driving_log.csv").write_text("/x/center.jpg,,,0.1,0.5,0,9.0\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine\n")
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 a model")
    (tmp_path / "a file").write_text("mine\n")
    return {
        "a recording already": recording,
        "a folder of other files": notes,
        "an existing model file": tmp_path / "model.keras",
        "a model file's name": tmp_path / "next.h5",
        "a file": tmp_path / "a file",
        "a recording's IMG folder": recording / "IMG",
        "a new folder inside a recording": recording / "again",
    }


def test_record_folders_holding_what_drive_py_did_not_write_are_refused(tmp_path):
    for name, folder in refused_folders(tmp_path).items():
        with pytest.raises(OutputRefused, match="--record") as raised:
            check_record_folder(folder)
        assert "\n" not in str(raised.value), name


def test_new_and_empty_record_folders_are_taken(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nothing recorded" / "IMG").mkdir(parents=True)  # what a drive of no frames leaves
    (tmp_path / "nothing recorded" / "driving_log.csv").touch()
    for name in ("new", "new/deeper", "empty", "nothing recorded"):
        assert check_record_folder(tmp_path / name) == tmp_path / name


def test_drive_py_refuses_a_record_folder_in_one_line_before_the_model_and_changes_nothing(tmp_path):
    folders = refused_folders(tmp_path)
    # Not a model: were the folder checked after loading, the model's error would come first.
    model = tmp_path / "not-a-model.keras"
    model.write_bytes(b"not a zip archive")
    before = snapshot(tmp_path)
    for name, folder in folders.items():
        result = subprocess.run(
            [sys.executable, str(ROOT / "drive.py"), str(model), "--record", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = result.stderr.strip().splitlines()
        assert (result.returncode, len(lines)) == (2, 1), (name, result.stderr)
        assert lines[0].startswith(f"drive.py: --record {folder}: "), (name, lines)
        assert snapshot(tmp_path) == before, name
