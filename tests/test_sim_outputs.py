"""Every file `python -m driving.sim` writes is checked before any work: a path holding something
the command did not write (a model, a recording, a training record, a folder, a file of another
kind) is refused in one line naming the option and the path, and is left byte for byte as it was;
nothing else is created. Real files, and real processes where the order of the work matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wsproto.events import CloseConnection, TextMessage

from driving.config import CSV_NAME, IMG_DIR, MAX_LAPS, TARGET_SPEED_MPH
from driving.files import OutputRefused
from driving.sim import __main__ as sim_cli
from driving.sim import recorder
from driving.sim.__main__ import build_parser, main
from driving.sim.track import builtin_track
from tests.test_sim_client import OPEN, hostile, upgrade  # noqa: F401 (hostile: a fixture)

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
MP4 = bytes(4) + b"ftypisom" + bytes(64)
RUN_JSON = json.dumps({"data": ["data/lake"], "epochs": 10, "models": ["effnet"]}).encode()
REPORT = json.dumps({"metrics": {"track": "lake"}, "definitions": {}, "interventions": []}).encode()
TRACK = json.dumps({"name": "mine", "width": 8, "points": [[0, 0], [100, 0], [100, 100], [0, 100]]}).encode()


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root`: a file's bytes, or what else it is."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "folder"
        elif path.is_file():
            found[name] = path.read_bytes()
        else:
            found[name] = "fifo"
    return found


@pytest.fixture
def place(tmp_path) -> Path:
    """A folder of things a careless path could land on."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "effnet.keras").write_bytes(b"PK\x03\x04 a zipped model")
    (tmp_path / "models" / "run.json").write_bytes(RUN_JSON)
    rec = tmp_path / "rec"
    (rec / IMG_DIR).mkdir(parents=True)
    (rec / CSV_NAME).write_bytes(b"/a/IMG/center_1.jpg,/a/IMG/left_1.jpg,/a/IMG/right_1.jpg,0,0,0,9\n")
    (rec / IMG_DIR / "center_1.jpg").write_bytes(b"\xff\xd8\xff a frame")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_bytes(b"buy milk\n")
    (tmp_path / "photo.png").write_bytes(b"\xff\xd8\xff a JPEG named .png")
    (tmp_path / "photo.json").write_bytes(PNG)
    (tmp_path / "clip.mp4").write_bytes(b"not a video at all")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "huge.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    os.mkfifo(tmp_path / "fifo.json")
    return tmp_path


def refused(capsys, argv: list[str], *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for text in expected:
        assert text in err[0], err[0]
    return err[0]


# --- record --save-track ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, message",
    [
        ("models/effnet.keras", "a model file name"),
        ("models/run.json", "holds JSON that is not a track; move it, or pass --overwrite"),
        ("rec/driving_log.csv", "expected a file name ending in .json"),
        ("rec/track.json", "inside a recording"),
        ("rec/IMG/track.json", "inside a recording"),
        ("folder.json", "is a folder"),
        ("fifo.json", "not a regular file"),
        ("photo.json", "holds a file that is not a .json file"),
        ("huge.json", "holds JSON that is not a track"),
        ("notes", "is a folder"),
        ("track.txt", "expected a file name ending in .json"),
    ],
)
def test_save_track_refuses_what_it_did_not_write(place, capsys, target, message):
    before = snapshot(place)
    out = place / "new-rec"
    argv = ["record", "--track", "lake", "--laps", "0.01", "--out", str(out)]
    refused(capsys, [*argv, "--save-track", str(place / target)], f"--save-track {place / target}", message)
    assert snapshot(place) == before  # byte for byte, and no recording folder made


def test_save_track_replaces_an_earlier_track_and_overwrite_replaces_other_json(place, capsys):
    earlier = place / "tracks" / "r7.json"
    earlier.parent.mkdir()
    earlier.write_bytes(TRACK)
    args = build_parser().parse_args(["record", "--out", str(place / "o"), "--save-track", str(earlier)])
    sim_cli._check_outputs(args)  # an earlier track file: taken
    run = place / "models" / "run.json"
    args = build_parser().parse_args(["record", "--out", "o", "--save-track", str(run), "--overwrite"])
    sim_cli._check_outputs(args)  # named on purpose: taken
    for target in ("models/effnet.keras", "rec/track.json", "folder.json", "fifo.json"):
        argv = ["record", "--out", "o", "--save-track", str(place / target), "--overwrite"]
        args = build_parser().parse_args(argv)
        with pytest.raises(OutputRefused, match=f"--save-track {place / target}"):
            sim_cli._check_outputs(args)  # never a model, a recording, a folder or a FIFO


# --- record --out ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, message",
    [
        ("notes", "holds files a recording does not (todo.txt); name a new or empty folder"),
        ("models", "holds files a recording does not (effnet.keras, run.json)"),
        ("models/effnet.keras", "a model file's name"),
        ("models/new.h5", "a model file's name"),
        ("photo.png", "is a file, not a folder"),
        ("fifo.json", "is a file, not a folder"),
        ("rec", "already holds a recording; record into a new folder"),
        ("rec/IMG", "inside the recording"),
        ("rec/more", "inside the recording"),
    ],
)
def test_record_out_refuses_a_folder_it_would_mix_into(place, capsys, target, message):
    before = snapshot(place)
    refused(capsys, ["record", "--track", "lake", "--laps", "0.01", "--out", str(place / target)], message)
    assert snapshot(place) == before


def test_record_out_takes_a_new_an_empty_or_an_emptied_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    emptied = tmp_path / "emptied"  # what a run that recorded nothing leaves
    (emptied / IMG_DIR).mkdir(parents=True)
    (emptied / CSV_NAME).write_bytes(b"")
    for folder in (tmp_path / "new", empty, emptied):
        assert recorder.check_out_folder(folder) == folder
    (emptied / IMG_DIR / "stray.jpg").write_bytes(b"x")  # but not one with something in IMG/
    with pytest.raises(OutputRefused, match="holds files a recording does not"):
        recorder.check_out_folder(emptied)


def test_a_refused_out_folder_writes_no_track_file(place, capsys):
    """--out is checked before --save-track is written (the order matters: a real process)."""
    saved = place / "r7.json"
    done = subprocess.run(
        [sys.executable, "-m", "driving.sim", "record", "--track", "random", "--seed", "7",
         "--out", str(place / "notes"), "--save-track", str(saved)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "--out" in done.stderr and not saved.exists()
    assert (place / "notes" / "todo.txt").read_bytes() == b"buy milk\n"


# --- drive and eval: --report, its PNG, --video -------------------------------------------------------
@pytest.mark.parametrize(
    "option, target, message",
    [
        ("--report", "models/run.json", "holds JSON that is not a drive report"),
        ("--report", "models/effnet.keras", "a model file name"),
        ("--report", "rec/report.json", "inside a recording"),
        ("--report", "rec/driving_log.csv", "expected a file name ending in .json"),
        ("--report", "folder.json", "is a folder"),
        ("--report", "fifo.json", "not a regular file"),
        ("--report", "photo.json", "holds a file that is not a .json file"),
        ("--report", "photo.x.json", "--report {place}/photo.x.png: holds a file that is not a .png file"),
        ("--video", "clip.mp4", "holds a file that is not a .mp4 file"),
        ("--video", "models/effnet.h5", "a model file name"),
        ("--video", "rec/IMG/run.mp4", "inside a recording"),
        ("--video", "run.avi", "expected a file name ending in .mp4"),
    ],
)
def test_drive_refuses_outputs_before_it_connects(place, capsys, option, target, message):
    """No drive.py runs on the port: a check that came after connecting would say so instead."""
    (place / "photo.x.png").write_bytes(b"\xff\xd8\xff a JPEG named .png")
    before = snapshot(place)
    refused(capsys, ["drive", "--port", "1", "--laps", "0.01", option, str(place / target)],
            message.format(place=place))  # fmt: skip
    assert snapshot(place) == before


def test_eval_refuses_outputs_before_the_model_loads(place, capsys):
    model = place / "models" / "broken.h5"
    model.write_bytes(b"not HDF5")  # loading it would fail with another message
    before = snapshot(place)
    run = str(place / "models" / "run.json")
    refused(capsys, ["eval", str(model), "--report", run], "not a drive report")
    refused(capsys, ["eval", str(model), "--video", str(place / "clip.mp4")], "not a .mp4 file")
    assert snapshot(place) == before


# --- a real drive: reports are written, an earlier one replaced ------------------------------------------
def steerer(conn, stop):
    """A drive server in thirty lines: every telemetry gets a steer reply with string values."""
    ws = upgrade(conn)
    conn.sendall(ws.send(TextMessage(OPEN)))
    conn.settimeout(0.1)
    text = ""
    while not stop.is_set():
        try:
            data = conn.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            return
        ws.receive_data(data)
        out = b""
        for event in ws.events():
            if isinstance(event, CloseConnection):
                conn.sendall(ws.send(event.response()))
                return
            if isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    if text.startswith('42["telemetry"'):
                        out += ws.send(TextMessage('42["steer",{"steering_angle":"0.0","throttle":"0.3"}]'))
                    text = ""
        if out:
            conn.sendall(out)


def test_a_drive_writes_its_report_and_replaces_an_earlier_one(hostile, tmp_path):  # noqa: F811
    server = hostile(steerer)
    report, video = tmp_path / "runs" / "lake.json", tmp_path / "runs" / "lake.mp4"
    argv = [sys.executable, "-m", "driving.sim", "drive", "--port", str(server.port), "--laps", "0.005",
            "--report", str(report), "--video", str(video)]  # fmt: skip
    for marker in ("first", "second"):  # the second run replaces the first one's files
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        written = json.loads(report.read_text())
        assert written["metrics"]["track"] == "lake" and "marker" not in written
        assert report.with_suffix(".png").read_bytes().startswith(PNG[:8])
        assert video.read_bytes()[4:8] == b"ftyp"
        report.write_text(json.dumps({**written, "marker": marker}))  # still a report: replaceable


# --- defaults defined once --------------------------------------------------------------------------
def test_the_command_line_takes_its_limits_and_targets_from_config(tmp_path, capsys):
    args = build_parser().parse_args(["eval", "m.h5"])
    assert args.speed == TARGET_SPEED_MPH
    for command in (["record", "--out", "o"], ["drive"], ["eval", "m.h5"]):
        assert build_parser().parse_args([*command, "--laps", str(MAX_LAPS)]).laps == MAX_LAPS
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--laps", str(MAX_LAPS * 1.01)])
    capsys.readouterr()
    with pytest.raises(ValueError, match=f"at most {MAX_LAPS:g}"):
        recorder.record(builtin_track("lake"), tmp_path / "rec", laps=MAX_LAPS * 1.01, progress=False)
    assert not (tmp_path / "rec").exists()
