"""Recording: the simulator's exact files, loadable by the project's loader, deterministic."""

import csv
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from driving.config import CSV_NAME, FRAME_HEIGHT, FRAME_WIDTH, SAMPLE_RATE_HZ
from driving.data.reader import load_recordings
from driving.preprocess import read_frame
from driving.sim import recorder
from driving.sim.__main__ import build_parser, main
from driving.sim.conditions import Conditions
from driving.sim.expert import ExpertConfig
from driving.sim.recorder import RecordError, lap_look, record
from driving.sim.simulator import Simulator
from driving.sim.track import load_track, make_track

STAMP = r"(\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}_\d{3})"
NUMBER = re.compile(r"^-?\d+(\.\d+)?(E-?\d+)?$")


@pytest.fixture
def small_track(tmp_path) -> Path:
    """A small loop keeps the world texture small, so recording tests stay quick."""
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    points = np.column_stack([45 * np.cos(angles), 30 * np.sin(angles)]).round(2).tolist()
    path = tmp_path / "oval.json"
    path.write_text(json.dumps({"name": "oval", "width": 8.0, "points": points, "style": "jungle"}))
    return path


def rows(folder: Path) -> list[list[str]]:
    with open(folder / CSV_NAME, newline="") as f:
        return list(csv.reader(f))


def test_recording_matches_the_simulator_format(tmp_path, small_track):
    out = tmp_path / "rec"
    assert (
        main(["record", "--track", str(small_track), "--laps", "0.15", "--out", str(out), "--seed", "1"]) == 0
    )
    table = rows(out)
    assert len(table) > 20
    times = []
    for row in table:
        assert len(row) == 7  # no header, seven fields
        stamps = []
        for camera, path in zip(("center", "left", "right"), row[:3]):
            assert Path(path).is_absolute() and Path(path).parent == out.absolute() / "IMG"
            m = re.fullmatch(rf"{camera}_{STAMP}\.jpg", Path(path).name)
            assert m, path
            stamps.append(m.group(1))
        assert len(set(stamps)) == 1
        times.append(datetime.strptime(stamps[0] + "000", "%Y_%m_%d_%H_%M_%S_%f"))
        assert all(NUMBER.match(v) for v in row[3:]), row
        steering, throttle, brake, speed = map(float, row[3:])
        assert -1 <= steering <= 1 and 0 <= throttle <= 1 and 0 <= brake <= 1 and 0 <= speed <= 30
    gaps = np.diff([t.timestamp() for t in times])
    np.testing.assert_allclose(gaps, 1 / SAMPLE_RATE_HZ, atol=0.0015)
    assert float(table[-1][6]) > 5  # it got going
    for path in table[0][:3] + table[-1][:3]:
        assert read_frame(path).shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
    assert (out / "topdown.png").stat().st_size > 10_000
    loaded = load_recordings([out], strict=True)
    assert len(loaded.frames) == len(table)
    np.testing.assert_allclose(loaded.frames["steering"], [float(r[3]) for r in table])


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small_track):
    track = load_track(small_track)
    a = record(track, tmp_path / "a", laps=0.05, seed=4, progress=False, topdown=False)
    b = record(track, tmp_path / "b", laps=0.05, seed=4, progress=False, topdown=False)
    c = record(track, tmp_path / "c", laps=0.05, seed=5, progress=False, topdown=False)
    assert a.samples == b.samples > 5
    text_a = (a.folder / CSV_NAME).read_text().replace(str(a.folder), "")
    text_b = (b.folder / CSV_NAME).read_text().replace(str(b.folder), "")
    assert text_a == text_b
    for image in sorted((a.folder / "IMG").iterdir()):
        assert image.read_bytes() == (b.folder / "IMG" / image.name).read_bytes()
    text_c = (c.folder / CSV_NAME).read_text().replace(str(c.folder), "")
    first = sorted((a.folder / "IMG").iterdir())[0].name
    assert (
        text_c != text_a or (c.folder / "IMG" / first).read_bytes() != (a.folder / "IMG" / first).read_bytes()
    )


def test_refuses_to_mix_into_an_existing_recording(tmp_path, small_track):
    out = tmp_path / "rec"
    out.mkdir()
    (out / CSV_NAME).write_text("something\n")
    with pytest.raises(FileExistsError, match=CSV_NAME):
        record(load_track(small_track), out, laps=0.01, progress=False)


def test_cli_reports_a_bad_track_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "width": 8, "points": [[0, 0], [1, 1]]}))
    done = subprocess.run(
        [sys.executable, "-m", "driving.sim", "record", "--track", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "bad.json" in done.stderr and "at least 4 points" in done.stderr
    assert not (tmp_path / "o" / CSV_NAME).exists()


# --- Careless and hostile input: one line, before any rendering; nothing half-written left ---------
@pytest.fixture
def ring():
    """A 108 m loop: a lap is about 300 samples."""
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    return make_track("ring", 7.0, np.column_stack([22 * np.cos(a), 16 * np.sin(a)]).tolist(), "lake")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--speed", "0"),
        ("--speed", "-1"),
        ("--speed", "nan"),
        ("--speed", "1e9"),
        ("--laps", "0"),
        ("--laps", "-2"),
        ("--laps", "nan"),
        ("--laps", "inf"),
        ("--laps", "1e12"),
        ("--seed", "-1"),
        ("--seed", "1.5"),
        ("--seed", "99999999999999999999"),
    ],
)
def test_cli_refuses_bad_record_options_up_front(tmp_path, capsys, option, value):
    out = tmp_path / "rec"
    with pytest.raises(SystemExit) as exit_:
        main(["record", "--track", "lake", "--out", str(out), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["drive", "--laps", "0"],
        ["drive", "--laps", "nan"],
        ["drive", "--laps", "1e300"],
        ["drive", "--seed", "-3"],
        ["drive", "--max-seconds", "0"],
        ["drive", "--max-seconds", "inf"],
        ["eval", "m.h5", "--laps", "-1"],
        ["eval", "m.h5", "--max-seconds", "nan"],
    ],
)
def test_drive_and_eval_options_are_checked_by_argparse(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(args)
    assert exit_.value.code == 2
    assert f"argument {args[-2]}" in one_line_error(capsys)


def test_cli_out_must_be_a_writable_folder_without_a_recording(tmp_path, capsys, small_track):
    file = tmp_path / "file"
    file.write_text("keep me")
    assert main(["record", "--track", str(small_track), "--out", str(file), "--laps", "0.01"]) == 2
    assert "is a file" in one_line_error(capsys) and file.read_text() == "keep me"
    assert main(["record", "--track", str(small_track), "--out", str(file / "sub"), "--laps", "0.01"]) == 2
    assert "cannot write" in one_line_error(capsys)
    out = tmp_path / "rec"
    out.mkdir()
    (out / CSV_NAME).write_text("a recording\n")
    assert main(["record", "--track", str(small_track), "--out", str(out), "--laps", "0.01"]) == 2
    assert "already holds a recording" in one_line_error(capsys)
    assert (out / CSV_NAME).read_text() == "a recording\n"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"laps": 0}, "laps"),
        ({"laps": -1.0}, "laps"),
        ({"laps": float("nan")}, "laps"),
        ({"laps": float("inf")}, "laps"),
        ({"laps": 1e9}, "laps"),
        ({"laps": True}, "laps"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"max_samples": 0}, "max_samples"),
    ],
)
def test_record_refuses_bad_arguments_before_touching_the_disk(tmp_path, ring, kwargs, message):
    with pytest.raises(ValueError, match=message):
        record(ring, tmp_path / "rec", **{"progress": False, **kwargs})
    assert not (tmp_path / "rec").exists()


def test_expert_settings_that_would_stall_or_write_nan_are_refused():
    for cruise in (0.0, -5.0, float("nan"), 31.0):
        with pytest.raises(ValueError, match="cruise_mph"):
            ExpertConfig(cruise_mph=cruise)


def test_a_stalled_expert_is_an_error_and_leaves_the_folder_as_it_was(tmp_path, ring, monkeypatch):
    monkeypatch.setattr(recorder, "STALL_WINDOW_S", 2.0)  # 30 samples, to keep the test quick
    out = tmp_path / "rec"
    with pytest.raises(RecordError, match="stalled.*nothing was kept"):
        record(ring, out, config=ExpertConfig(cruise_mph=0.01), progress=False)
    assert not out.exists()
    out.mkdir()  # a folder with someone's file in it, and an empty CSV
    (out / "notes.txt").write_text("mine")
    (out / CSV_NAME).write_text("")
    with pytest.raises(RecordError):
        record(ring, out, config=ExpertConfig(cruise_mph=0.01), progress=False)
    assert sorted(p.name for p in out.iterdir()) == [CSV_NAME, "notes.txt"]
    assert (out / CSV_NAME).read_text() == "" and (out / "notes.txt").read_text() == "mine"


def test_samples_are_bounded(tmp_path, ring):
    with pytest.raises(RecordError, match="10 samples"):
        record(ring, tmp_path / "rec", laps=1.0, max_samples=10, progress=False)
    assert not (tmp_path / "rec").exists()
    # The default bound is the laps at 1 m/s: far above what the expert needs.
    done = record(ring, tmp_path / "ok", laps=0.2, progress=False, topdown=False)
    assert 0 < done.samples < 0.2 * ring.length * SAMPLE_RATE_HZ


def test_an_interrupted_recording_is_removed(tmp_path, ring, monkeypatch):
    calls = []

    def render(self, camera="center"):
        calls.append(camera)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return np.zeros((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)

    monkeypatch.setattr(Simulator, "render", render)
    with pytest.raises(KeyboardInterrupt):
        record(ring, tmp_path / "rec", progress=False)
    assert not (tmp_path / "rec").exists()


# --- Varied recordings ---------------------------------------------------------------------------
def test_vary_drives_each_lap_in_a_fresh_look(tmp_path, ring):
    a = record(ring, tmp_path / "a", laps=1.1, seed=5, vary=True, progress=False, topdown=False)
    assert [look["look"] for look in a.looks] == [0, 1, 2, 3]  # three looks a lap
    assert {look["style"] for look in a.looks[:3]} == {"lake", "jungle", "desert"}  # every style
    assert a.looks[0]["first_sample"] == 0 < a.looks[1]["first_sample"] < a.samples
    for look in a.looks:
        style, conditions, world_seed = lap_look(5, look["look"])
        assert (look["style"], look["world_seed"]) == (style, world_seed)
        assert Conditions.from_dict(look["conditions"]) == conditions
    assert json.loads((a.folder / "looks.json").read_text()) == a.looks
    # Same seed, same bytes; the two laps look different.
    b = record(ring, tmp_path / "b", laps=1.1, seed=5, vary=True, progress=False, topdown=False)
    images = sorted((a.folder / "IMG").iterdir())
    assert all(p.read_bytes() == (b.folder / "IMG" / p.name).read_bytes() for p in images)
    centre = [p for p in images if p.name.startswith("center_")]
    first, second = (read_frame(centre[i]).astype(int) for i in (5, a.looks[1]["first_sample"] + 5))
    assert np.abs(first[:60] - second[:60]).mean() > 5  # another sky


def test_cli_vary_and_save_track(tmp_path, capsys, small_track):
    out, saved = tmp_path / "rec", tmp_path / "tracks" / "oval.json"
    args = ["record", "--track", str(small_track), "--laps", "0.02", "--out", str(out), "--vary"]
    assert main([*args, "--save-track", str(saved)]) == 0
    assert "looks: 0 lake" in capsys.readouterr().out
    assert load_track(saved).name == "oval" and (out / "looks.json").exists()


def test_the_command_line_and_record_share_the_bound_on_laps():
    from driving import config
    from driving.sim import __main__ as sim_cli

    assert sim_cli.MAX_LAPS == recorder.MAX_LAPS == config.MAX_LAPS  # defined once, in config
