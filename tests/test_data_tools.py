"""Recording tools (python -m driving.data merge | cut | repath): each writes a new recording that
the loader reads whole, atomically, and never touches its sources; on recordings made by the
project, and on one with the real simulator's quirks (Windows paths, no header, leading spaces)."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from driving.config import CSV_NAME, IMG_DIR, SAMPLE_RATE_HZ
from driving.data import __main__ as data_cli
from driving.data import exclusions, reader, tools
from driving.data.writer import RecordingWriter
from tests.conftest import road_frame, write_recording


def recording_at(folder: Path, start: datetime, n: int, steering: float) -> Path:
    """A center-only recording of n frames from `start`, every steering value `steering`."""
    with RecordingWriter(folder) as rec:
        for i in range(n):
            rec.write(start + timedelta(seconds=i / SAMPLE_RATE_HZ), road_frame(steering), steering=steering)
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` by its bytes' hash, and its mode: what must not change."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def temp_folders(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name]


def load(folder: Path, exclusions: bool = True):
    return reader.load_recordings([folder], exclusions=exclusions)


def test_merge_concatenates_in_time_order_with_unique_names(tmp_path):
    early = recording_at(tmp_path / "early", datetime(2016, 12, 1, 13, 0, 0), 20, -0.25)
    late = recording_at(tmp_path / "late", datetime(2016, 12, 1, 14, 0, 0), 30, 0.25)
    twin = recording_at(tmp_path / "twin", datetime(2016, 12, 1, 13, 0, 0), 20, -0.5)  # early's names
    before = snapshot(tmp_path)
    written = tools.merge(tmp_path / "all", [late, twin, early])
    assert snapshot(tmp_path / "early") == {k[6:]: v for k, v in before.items() if k.startswith("early/")}
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("all/")} == before
    merged = load(tmp_path / "all").frames
    assert written.rows == len(merged) == 70 and written.skipped == {}
    # recordings by start time (early and twin tie: given order), rows in their own order
    assert list(merged["steering"]) == [-0.5] * 20 + [-0.25] * 20 + [0.25] * 30
    names = [Path(p).name for p in merged["center"]]
    assert len(set(names)) == 70 and names[20].startswith("2-center_")
    # the renamed files keep their timestamps: twin and early start together, late an hour on
    assert merged["time"].iloc[20] == 0 and merged["time"].iloc[19] == pytest.approx(19 / 15, abs=1e-3)
    assert merged["time"].iloc[40] == pytest.approx(3600, abs=1e-3)
    image = tmp_path / "all" / IMG_DIR / names[-1]
    source = late / IMG_DIR / names[-1]
    assert image.stat().st_ino == source.stat().st_ino and written.linked == 70  # hard links
    log = (tmp_path / "all" / CSV_NAME).read_text().splitlines()
    assert log[0].startswith(str(tmp_path / "all" / IMG_DIR) + "/") and len(log) == 70
    assert temp_folders(tmp_path) == []


def test_copy_copies_and_a_parent_folder_merges_its_recordings(tmp_path):
    write_recording(tmp_path / "data" / "a", n=10)
    write_recording(tmp_path / "data" / "b", n=12, seed=1)  # same timestamps as a: names clash
    written = tools.merge(tmp_path / "out", [tmp_path / "data"], copy=True)
    merged = load(tmp_path / "out").frames
    assert len(merged) == 22 and written.copied == 66 and written.linked == 0
    first = Path(merged["left"].iloc[0])
    assert first.stat().st_ino != (tmp_path / "data" / "a" / IMG_DIR / first.name).stat().st_ino


def test_excluded_ranges_follow_their_rows_into_a_merge(tmp_path):
    a = recording_at(tmp_path / "a", datetime(2016, 12, 1, 14, 0, 0), 20, 0.1)
    b = recording_at(tmp_path / "b", datetime(2016, 12, 1, 13, 0, 0), 10, 0.2)
    frames = load(a, exclusions=False).frames.reset_index(drop=True)
    exclusions.write_exclusions(a, exclusions.from_spans(frames, [(5, 9)]))
    written = tools.merge(tmp_path / "out", [a, b])
    assert written.excluded_ranges == 1
    kept = load(tmp_path / "out")
    assert kept.summary.skipped == {reader.EXCLUDED: 5}
    excluded_names = set(Path(p).name for p in frames["center"].iloc[5:10])
    assert not excluded_names & {Path(p).name for p in kept.frames["center"]}
    assert len(kept.frames) == 25 and list(kept.frames["row"][:10]) == list(range(1, 11))  # b first


def test_cut_leaves_out_time_ranges_and_carries_the_rest(tmp_path, capsys):
    rec = write_recording(tmp_path / "rec", n=60)
    frames = load(rec, exclusions=False).frames.reset_index(drop=True)
    exclusions.write_exclusions(rec, exclusions.from_spans(frames, [(40, 44)]))
    before = snapshot(rec)
    assert (
        data_cli.main(["cut", str(rec), str(tmp_path / "cut"), "--exclude", "1:2", "--exclude", "3.5:3.6"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("cut: ") and "rows cut out" in out and len(out.splitlines()) == 1
    times = frames["time"]
    gone = ((times >= 1) & (times <= 2)) | ((times >= 3.5) & (times <= 3.6))
    left = load(tmp_path / "cut", exclusions=False).frames
    assert len(left) == 60 - gone.sum() and gone.sum() == 17
    assert [Path(p).name for p in left["center"]] == [Path(p).name for p in frames["center"][~gone]]
    assert load(tmp_path / "cut").summary.skipped == {reader.EXCLUDED: 5}  # carried over
    assert snapshot(rec) == before


def test_cut_excluded_applies_excluded_json(tmp_path):
    rec = write_recording(tmp_path / "rec", n=30, sides=False)
    frames = load(rec, exclusions=False).frames.reset_index(drop=True)
    exclusions.write_exclusions(rec, exclusions.from_spans(frames, [(0, 9), (20, 24)]))
    written = tools.cut(rec, tmp_path / "clean", excluded=True)
    clean = load(tmp_path / "clean")
    assert written.cut == 15 and len(clean.frames) == 15 and clean.summary.skipped == {}
    assert not (tmp_path / "clean" / exclusions.EXCLUDED_NAME).exists()
    assert list(clean.frames["steering"]) == list(
        frames["steering"].iloc[list(range(10, 20)) + [25, 26, 27, 28, 29]]
    )
    with pytest.raises(reader.RecordingError, match="no excluded.json"):
        tools.cut(tmp_path / "clean", tmp_path / "again", excluded=True)


def windows_recording(tmp_path: Path) -> Path:
    """A recording as the real simulator writes it on Windows: no header, absolute Windows paths,
    the side cameras' paths after ', ' (the shared sample data's leading spaces), then moved here."""
    rec = write_recording(tmp_path / "made", n=12)
    lines = []
    for line in (rec / CSV_NAME).read_text().splitlines():
        fields = line.split(",")
        paths = [rf"C:\Users\someone\Desktop\track1\IMG\{Path(p).name}" for p in fields[:3]]
        lines.append(f"{paths[0]}, {paths[1]}, {paths[2]}, " + ", ".join(fields[3:]))
    (rec / CSV_NAME).write_text("\r\n".join(lines) + "\r\n")
    moved = tmp_path / "from-windows"
    rec.rename(moved)
    return moved


def test_repath_points_a_windows_recording_at_its_own_images(tmp_path):
    rec = windows_recording(tmp_path)
    before = snapshot(rec)
    assert data_cli.main(["repath", str(rec), str(tmp_path / "here")]) == 0
    log = (tmp_path / "here" / CSV_NAME).read_text()
    assert "\\" not in log and "C:" not in log and "\r" not in log and not log.startswith("center")
    for line in log.splitlines():
        paths = line.split(",")[:3]
        assert all(
            Path(p).is_absolute() and Path(p).is_file() and Path(p).parent == tmp_path / "here" / IMG_DIR
            for p in paths
        )
    original, repathed = load(rec).frames, load(tmp_path / "here").frames
    assert len(repathed) == len(original) == 12
    for column in ("steering", "throttle", "brake", "speed"):
        np.testing.assert_array_equal(repathed[column].to_numpy(), original[column].to_numpy())
    np.testing.assert_allclose(repathed["time"], original["time"])
    assert snapshot(rec) == before


def test_rows_the_loader_skips_are_left_out_and_counted(tmp_path, capsys):
    rec = write_recording(tmp_path / "rec", n=10, sides=False)
    lines = (rec / CSV_NAME).read_text().splitlines()
    lines[3] = lines[3].replace(",0.3,", ",nan,", 1)
    Path(lines[6].split(",")[0]).unlink()
    (rec / CSV_NAME).write_text("\n".join(lines) + "\n")
    assert data_cli.main(["repath", str(rec), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "NaN or infinite value: 1" in out and "missing image file: 1" in out
    assert len(load(tmp_path / "out").frames) == 8


@pytest.mark.parametrize("where", ["non-empty", "inside", "file", "itself"])
def test_an_output_that_exists_or_lies_inside_a_source_is_refused_in_one_line(tmp_path, capsys, where):
    rec = write_recording(tmp_path / "rec", n=6, sides=False)
    out = {
        "non-empty": tmp_path / "taken",
        "inside": rec / "cleaned",
        "file": tmp_path / "file",
        "itself": rec,
    }[where]
    if where == "non-empty":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    if where == "file":
        out.write_text("mine")
    before = snapshot(tmp_path)
    for argv in (
        ["merge", str(out), str(rec)],
        ["cut", str(rec), str(out), "--exclude", "0:1"],
        ["repath", str(rec), str(out)],
    ):
        assert data_cli.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {out.absolute()}: ")
    assert snapshot(tmp_path) == before and temp_folders(tmp_path) == [] and temp_folders(rec) == []


def test_an_empty_output_folder_is_used(tmp_path):
    rec = write_recording(tmp_path / "rec", n=6, sides=False)
    (tmp_path / "empty").mkdir()
    assert tools.repath(rec, tmp_path / "empty").rows == 6
    assert len(load(tmp_path / "empty").frames) == 6


def test_a_failure_midway_leaves_no_output_and_no_temporary_folder(tmp_path, monkeypatch):
    rec = write_recording(tmp_path / "rec", n=20, sides=False)
    calls = []

    def failing_link(source, target, **kw):
        calls.append(source)
        if len(calls) == 10:
            raise KeyboardInterrupt  # the user, halfway
        return os_link(source, target, **kw)

    os_link = os.link
    monkeypatch.setattr(tools.os, "link", failing_link)
    with pytest.raises(KeyboardInterrupt):
        tools.repath(rec, tmp_path / "out")
    assert not (tmp_path / "out").exists() and temp_folders(tmp_path) == []


def test_a_killed_runs_temporary_folder_is_cleared(tmp_path):
    rec = write_recording(tmp_path / "rec", n=4, sides=False)
    stale = tmp_path / ".out.tmp-999999999-0123abcd"  # no such process
    (stale / IMG_DIR).mkdir(parents=True)
    other = tmp_path / ".other.tmp-999999999-0123abcd"  # another output's: not ours to clear
    other.mkdir()
    tools.repath(rec, tmp_path / "out")
    assert not stale.exists() and other.exists()


def test_cut_needs_ranges_and_refuses_bad_ones(tmp_path, capsys):
    rec = write_recording(tmp_path / "rec", n=6, sides=False)
    assert data_cli.main(["cut", str(rec), str(tmp_path / "out")]) == 1
    assert "nothing to cut" in capsys.readouterr().err
    for bad in ("5:1", "x:2", "1", "-1:2", "nan:1"):
        with pytest.raises(SystemExit) as exit_:
            data_cli.main(["cut", str(rec), str(tmp_path / "out"), "--exclude", bad])
        assert exit_.value.code == 2
        assert "--exclude" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_cut_and_repath_name_one_recording(tmp_path):
    write_recording(tmp_path / "data" / "a", n=4, sides=False)
    write_recording(tmp_path / "data" / "b", n=4, sides=False)
    with pytest.raises(reader.RecordingError, match="holds 2 recordings"):
        tools.repath(tmp_path / "data", tmp_path / "out")
