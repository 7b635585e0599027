"""Loading recordings: formats, bad input, the summary, the time-block split and the CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driving import pipeline
from driving.config import CSV_NAME, SAMPLE_RATE_HZ
from driving.data import __main__ as data_cli
from driving.data import exclusions, reader
from driving.preprocess import encode_jpeg
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


# --- hardening ---------------------------------------------------------------------------------


def test_a_fifo_or_device_in_place_of_the_log_is_refused_in_one_line(tmp_path):
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / CSV_NAME)  # reading it would wait forever for a writer
    device = tmp_path / "device"
    device.mkdir()
    (device / CSV_NAME).symlink_to("/dev/zero")  # reading it would never end
    for folder in (fifo, device):
        for named in (folder, folder / CSV_NAME):
            with pytest.raises(reader.RecordingError, match="not a regular file") as refused:
                reader.load_recordings([named])
            assert "\n" not in str(refused.value) and CSV_NAME in str(refused.value)


def test_the_summary_refuses_a_fifo_log_in_one_line(tmp_path, capsys):
    os.mkfifo(tmp_path / CSV_NAME)
    code = data_cli.main(["summary", "--data", str(tmp_path), "--histogram", str(tmp_path.parent / "h.png")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "not a regular file" in err


def test_strict_summary_refuses_two_frame_sizes(small, tmp_path, capsys):
    frames = reader.load_recordings([small]).frames
    big = np.zeros((320, 640, 3), np.uint8)
    Path(frames["center"].iloc[5]).write_bytes(encode_jpeg(big))
    png = tmp_path / "h.png"
    assert data_cli.main(["summary", "--data", str(small), "--histogram", str(png)]) == 0
    out = capsys.readouterr().out
    assert "frame sizes: 320x160 (23 images), 640x320 (1 image)" in out
    assert data_cli.main(["summary", "--data", str(small), "--strict", "--histogram", str(png)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{CSV_NAME}, line 6:" in err
    assert "640x320 image" in err and "2 sizes" in err
    with pytest.raises(reader.RecordingError, match="2 sizes"):
        reader.check_decodable(frames, strict=True)


def test_strict_help_names_every_check(capsys):
    with pytest.raises(SystemExit):
        data_cli.main(["summary", "--help"])
    text = capsys.readouterr().out
    assert "--strict" in text and "second size" in " ".join(text.split())
    for check in ("7 fields", "finite", "[-1, 1]", "center image", "present", "JPEG", "one size"):
        assert check in " ".join(text.split()), check


@pytest.mark.parametrize(
    "name, content",
    [("notes.png", b"my notes, not a picture"), ("rec/steering.png", None), ("folder.png", "dir")],
)
def test_histogram_refuses_a_path_it_did_not_write(small, tmp_path, capsys, name, content):
    target = small / "steering.png" if name.startswith("rec/") else tmp_path / name
    if content == "dir":
        target.mkdir()
    elif content is not None:
        target.write_bytes(content)
    before = sorted((p, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert data_cli.main(["summary", "--data", str(small), "--histogram", str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --histogram")
    assert sorted((p, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_histogram_replaces_its_own_png_and_keeps_the_old_flag(small, tmp_path, capsys):
    png = tmp_path / "h.png"
    for flag in ("--histogram", "--hist", "--histogram"):
        assert data_cli.main(["summary", "--data", str(small), "--no-decode", flag, str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "rec"]  # no temporary file left


# --- excluded.json: the rows a person left out ------------------------------------------------


def save_exclusions(folder: Path, spans: list[tuple[int, int]]) -> exclusions.Exclusions:
    frames = reader.load_recordings([folder], exclusions=False).frames.reset_index(drop=True)
    chosen = exclusions.from_spans(frames, spans)
    exclusions.write_exclusions(folder, chosen)
    return chosen


def test_excluded_rows_are_left_out_and_counted(tmp_path):
    rec = write_recording(tmp_path / "rec", n=30, sides=False)
    before = (rec / CSV_NAME).read_bytes()
    save_exclusions(rec, [(3, 7), (20, 20)])
    loaded = reader.load_recordings([rec])
    assert len(loaded.frames) == 24 and not set(loaded.frames["row"]) & {4, 5, 6, 7, 8, 21}
    assert loaded.summary.skipped == {reader.EXCLUDED: 6}
    assert loaded.summary.read == 30 and loaded.summary.used == 24
    assert "excluded by excluded.json" in str(loaded.summary) and "lines 4-8" in str(loaded.summary)
    assert len(reader.load_recordings([rec], exclusions=False).frames) == 30
    assert (rec / CSV_NAME).read_bytes() == before  # the log is never edited
    # an excluded row is not checked, even strictly: a broken stretch can be left out
    lines = csv_lines(rec)
    lines[4] = lines[4].replace(",0.3,", ",fast,", 1)
    rewrite(rec, lines)
    assert len(reader.load_recordings([rec], strict=True).frames) == 24


def test_the_split_and_train_read_what_the_exclusions_leave(tmp_path):
    rec = write_recording(tmp_path / "rec", n=90, sides=False)
    save_exclusions(rec, [(0, 29)])  # the first 2 s
    train, val, summary = pipeline.frames_from_folders([rec], val_fraction=0.25, block_seconds=1.0)
    assert len(train) + len(val) == 60 and min(pd.concat([train, val])["row"]) == 31
    assert summary.skipped == {reader.EXCLUDED: 30}


def test_exclusions_that_no_longer_fit_the_log_are_refused(tmp_path):
    rec = write_recording(tmp_path / "rec", n=10, sides=False)
    save_exclusions(rec, [(2, 4)])
    lines = csv_lines(rec)
    rewrite(rec, lines[1:])  # a row removed by hand: every line moved up
    with pytest.raises(reader.RecordingError, match=r"excluded.json: line 3 of .* names .*changed"):
        reader.load_recordings([rec])
    rewrite(rec, lines[:3])  # cut short before the range ends
    with pytest.raises(reader.RecordingError, match="shorter now"):
        reader.load_recordings([rec])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[1, 2]", "no ranges"),
        (b'{"schema": 2, "ranges": []}', "schema 2"),
        (b'{"schema": 1, "ranges": [{"first_row": 5, "last_row": 3}]}', "no range of lines"),
        (
            b'{"schema": 1, "ranges": [{"first_row": 1, "last_row": 3, "first_center": "../x.jpg", '
            b'"last_center": "b.jpg"}]}',
            "not an image file name",
        ),  # fmt: skip
        (b'{"schema": 1, "ranges": ' + b"[" * 50 + b"]" * 50 + b"}", "nested"),
        (b"not json", "not valid JSON"),
    ],
)
def test_a_damaged_excluded_json_stops_the_load_in_one_line(small, content, message):
    (small / exclusions.EXCLUDED_NAME).write_bytes(content)
    with pytest.raises(reader.RecordingError, match=message) as refused:
        reader.load_recordings([small])
    assert "\n" not in str(refused.value) and "excluded.json" in str(refused.value)
    with pytest.raises(exclusions.ExclusionsError):  # and is never overwritten
        exclusions.write_exclusions(small, exclusions.Exclusions())
    assert (small / exclusions.EXCLUDED_NAME).read_bytes() == content


def test_a_fifo_excluded_json_is_refused_not_read(small):
    os.mkfifo(small / exclusions.EXCLUDED_NAME)
    with pytest.raises(reader.RecordingError, match="not a regular file"):
        reader.load_recordings([small])
