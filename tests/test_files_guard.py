"""Output options never replace what the command did not write (driving.files.check_output_file):
a recording, a model, a folder, a FIFO, another kind of file. Checked byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driving.files import OutputRefused, check_output_file, write_json

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    (folder / "IMG").mkdir(parents=True)
    (folder / "driving_log.csv").write_text("center,left,right,steering,throttle,brake,speed\n")
    (folder / "IMG" / "center.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    return folder


@pytest.mark.parametrize(
    "target, suffixes, message",
    [
        ("rec/driving_log.csv", (".png",), "expected a file name ending in .png"),
        ("rec/driving_log.csv", (".csv",), "inside a recording"),
        ("rec/steering.png", (".png",), "inside a recording"),
        ("rec/IMG/center.jpg", (".jpg",), "inside a recording"),
        ("rec", (".png",), "is a folder"),
        ("model.keras", (".png",), "a model file name"),
        ("model.h5", (".json",), "a model file name"),
        ("notes.png", (".png",), "not a .png file"),
        ("fifo.json", (".json",), "not a regular file"),
    ],
)
def test_what_the_command_did_not_write_is_refused_and_left_as_it_was(
    tmp_path, recording, target, suffixes, message
):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 a model")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (tmp_path / "notes.png").write_text("my notes, not a picture")
    os.mkfifo(tmp_path / "fifo.json")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(OutputRefused, match=message) as refused:
        check_output_file(tmp_path / target, "--out", suffixes)
    assert "--out" in str(refused.value) and target.split("/")[-1] in str(refused.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_earlier_output_of_the_same_kind_is_replaced_and_overwrite_is_explicit(tmp_path):
    chart = tmp_path / "chart.png"
    chart.write_bytes(PNG)
    assert check_output_file(chart, "--histogram", (".png",)) == chart
    report = write_json(tmp_path / "report.json", {"a": 1})
    assert check_output_file(report, "--report", (".json",)) == report
    assert check_output_file(tmp_path / "new.png", "--histogram", (".png",)) == tmp_path / "new.png"
    other = tmp_path / "other.json"
    other.write_bytes(PNG)
    with pytest.raises(OutputRefused, match="--overwrite"):
        check_output_file(other, "--report", (".json",))
    assert check_output_file(other, "--report", (".json",), overwrite=True) == other
