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
from driving.data import load_recordings
from driving.preprocess import read_frame
from driving.sim.__main__ import main
from driving.sim.record import record
from driving.sim.track import load_track

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
