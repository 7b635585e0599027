"""Loading recordings: formats, bad input, the summary, the time-block split and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from driving.config import CSV_NAME, SAMPLE_RATE_HZ
from driving.data import __main__ as data_cli
from driving.data import reader
from tests.conftest import write_recording


def csv_lines(folder: Path) -> list[str]:
    return (folder / CSV_NAME).read_text().splitlines()


def rewrite(folder: Path, lines: list[str]) -> None:
    (folder / CSV_NAME).write_text("\n".join(lines) + "\n")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "rec", n=8)


def test_reads_the_simulators_own_format(small):
    frames = reader.load_recordings([small]).frames
    assert list(frames.columns) == list(reader.FRAME_COLUMNS)
    assert len(frames) == 8 and list(frames["row"]) == list(range(1, 9))
    expected = [0.5 * np.sin(i / 7.0) for i in range(8)]
    np.testing.assert_allclose(frames["steering"], expected, atol=1e-6)
    assert all(Path(p).is_file() for cam in ("center", "left", "right") for p in frames[cam])
    np.testing.assert_allclose(np.diff(frames["time"]), 1 / SAMPLE_RATE_HZ, atol=1e-3)


def test_header_relative_paths_and_leading_spaces(small):
    before = reader.load_recordings([small]).frames
    lines = ["center,left,right,steering,throttle,brake,speed"]
    for line in csv_lines(small):
        fields = line.split(",")
        lines.append(
            ",".join(f" IMG/{Path(p).name}" if i else f"IMG/{Path(p).name}" for i, p in enumerate(fields[:3]))
            + ","
            + ",".join(fields[3:])
        )
    rewrite(small, lines)
    after = reader.load_recordings([small]).frames
    assert list(after["center"]) == list(before["center"])
    assert list(after["left"]) == list(before["left"])
    assert list(after["row"]) == list(range(2, 10))  # line numbers count the header


def test_windows_paths_found_in_the_moved_recordings_own_img(small, tmp_path):
    lines = []
    for line in csv_lines(small):
        fields = line.split(",")
        lines.append(
            ",".join(rf"C:\Users\someone\Desktop\rec\IMG\{Path(p).name}" for p in fields[:3])
            + ","
            + ",".join(fields[3:])
        )
    rewrite(small, lines)
    moved = shutil.move(small, tmp_path / "elsewhere")
    frames = reader.load_recordings([moved]).frames
    assert len(frames) == 8
    assert all(
        Path(p).parent == Path(moved).absolute() / "IMG" and Path(p).is_file() for p in frames["center"]
    )


def test_center_only_recordings_leave_side_paths_empty(tmp_path):
    frames = reader.load_recordings([write_recording(tmp_path / "c", n=4, sides=False)]).frames
    assert len(frames) == 4 and set(frames["left"]) == {""} and set(frames["right"]) == {""}


def test_a_parent_folder_merges_its_recordings(tmp_path):
    write_recording(tmp_path / "all" / "b", n=5, seed=1)
    write_recording(tmp_path / "all" / "a", n=4)
    found = reader.find_recordings([tmp_path / "all"])
    assert [p.name for p in found] == ["a", "b"]
    loaded = reader.load_recordings([tmp_path / "all"])
    assert loaded.frames.groupby("recording").size().to_dict() == {str(found[0]): 4, str(found[1]): 5}
    assert loaded.summary.read == 9 and loaded.summary.used == 9
    # Naming the same recording twice reads it once.
    assert len(reader.load_recordings([found[0], tmp_path / "all"]).frames) == 9


def test_no_recording_is_a_clear_error(tmp_path):
    with pytest.raises(reader.RecordingError, match="no driving_log.csv"):
        reader.find_recordings([tmp_path])
    with pytest.raises(reader.RecordingError, match="no such folder"):
        reader.find_recordings([tmp_path / "missing"])


BAD_ROWS = {
    # reason: how to break row 3 (its fields as the simulator wrote them)
    reader.WRONG_FIELDS: lambda f: f[:6],
    reader.NOT_NUMERIC: lambda f: f[:4] + ["fast"] + f[5:],
    reader.NOT_FINITE: lambda f: f[:3] + ["nan"] + f[4:],
    reader.STEERING_RANGE: lambda f: f[:3] + ["1.5"] + f[4:],
    reader.NO_CENTER: lambda f: [""] + f[1:],
}


@pytest.mark.parametrize("reason", list(BAD_ROWS))
def test_bad_rows_are_skipped_and_counted_or_stop_a_strict_run(small, reason):
    lines = csv_lines(small)
    lines[2] = ",".join(BAD_ROWS[reason](lines[2].split(",")))
    rewrite(small, lines)
    loaded = reader.load_recordings([small])
    assert len(loaded.frames) == 7 and 3 not in set(loaded.frames["row"])
    assert loaded.summary.skipped == {reason: 1}
    assert loaded.summary.read == 8 and loaded.summary.used == 7
    assert f"{CSV_NAME}, line 3" in str(loaded.summary) and reason in str(loaded.summary)
    with pytest.raises(reader.RecordingError, match=f"{CSV_NAME}, line 3: "):
        reader.load_recordings([small], strict=True)


def test_missing_image_is_skipped_and_counted_or_stops_a_strict_run(small):
    frames = reader.load_recordings([small]).frames
    Path(frames["left"].iloc[4]).unlink()
    loaded = reader.load_recordings([small])
    assert loaded.summary.skipped == {reader.MISSING_IMAGE: 1} and 5 not in set(loaded.frames["row"])
    with pytest.raises(reader.RecordingError, match="line 5: left image .* does not exist"):
        reader.load_recordings([small], strict=True)
    assert len(reader.load_recordings([small], check_images=False).frames) == 8


def test_comma_decimal_locale_is_never_misread(small):
    lines = csv_lines(small)
    lines[1] = r"C:\x\IMG\c.jpg,C:\x\IMG\l.jpg,C:\x\IMG\r.jpg,0,05,0,0,22,1"
    rewrite(small, lines)
    for strict in (False, True):
        with pytest.raises(reader.RecordingError, match=r"line 2: 9 fields .*decimal comma"):
            reader.load_recordings([small], strict=strict)


def test_unreadable_and_truncated_jpegs_are_dropped_and_counted(small):
    loaded = reader.load_recordings([small])
    frames = loaded.frames
    center = Path(frames["center"].iloc[1])
    center.write_bytes(center.read_bytes()[:500])  # truncated
    Path(frames["right"].iloc[6]).write_bytes(b"this is no jpeg")
    kept = reader.check_decodable(frames, loaded.summary)
    assert list(kept["row"]) == [1, 3, 4, 5, 6, 8]
    assert loaded.summary.skipped == {reader.BROKEN_IMAGE: 2}
    assert loaded.summary.used == 6
    with pytest.raises(reader.RecordingError, match="line 2: .*truncated JPEG"):
        reader.check_decodable(frames, strict=True)


def test_summary_table_counts_per_recording(tmp_path):
    a, b = write_recording(tmp_path / "a", n=4), write_recording(tmp_path / "b", n=3)
    lines = csv_lines(b)
    lines[0] = lines[0].replace(",0.3,", ",slow,", 1)
    rewrite(b, lines)
    text = str(reader.load_recordings([a, b]).summary)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:5]}
    assert text.splitlines()[0].split() == ["recording", "read", "used", "non-numeric", "value"]
    assert rows[str(a.absolute())] == ["4", "4", "0"] and rows[str(b.absolute())] == ["3", "2", "1"]
    assert rows["total"] == ["7", "6", "1"]


def test_split_is_by_contiguous_time_blocks_disjoint_and_seeded(tmp_path):
    write_recording(tmp_path / "r" / "a", n=90, sides=False)
    write_recording(tmp_path / "r" / "b", n=60, seed=1, sides=False)
    frames = reader.load_recordings([tmp_path / "r"]).frames
    train, val = reader.split_by_time(frames, val_fraction=0.25, block_seconds=1.0, seed=3)
    key = lambda df: set(zip(df["recording"], df["row"]))
    assert not key(train) & key(val) and key(train) | key(val) == key(frames)
    assert 0.25 <= len(val) / len(frames) < 0.25 + 15 / len(frames)  # at most one block over
    for _, block in val.groupby(["recording", val["time"] // 1.0]):
        assert len(block) == 15 and np.all(np.diff(block["row"]) == 1)  # whole 1 s blocks
    again_train, again_val = reader.split_by_time(frames, val_fraction=0.25, block_seconds=1.0, seed=3)
    assert key(again_val) == key(val) and key(again_train) == key(train)
    _, other = reader.split_by_time(frames, val_fraction=0.25, block_seconds=1.0, seed=4)
    assert key(other) != key(val)


def test_split_refuses_a_recording_too_short_to_split(small):
    frames = reader.load_recordings([small]).frames
    with pytest.raises(ValueError, match="cannot split 8 frames in 1 block"):
        reader.split_by_time(frames, val_fraction=0.2, block_seconds=10.0)


def test_summary_cli_prints_the_table_and_writes_a_histogram(small, tmp_path, capsys):
    lines = csv_lines(small)
    lines[3] = lines[3].replace(",0.3,", ",nan,", 1)
    rewrite(small, lines)
    png = tmp_path / "steering.png"
    assert data_cli.main(["summary", "--data", str(small), "--hist", str(png)]) == 0
    out = capsys.readouterr().out
    assert "NaN or infinite value" in out and "line 4" in out and "7 frames" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data_cli.main(["summary", "--data", str(small), "--strict", "--hist", str(png)]) == 1
    assert "line 4" in capsys.readouterr().err
