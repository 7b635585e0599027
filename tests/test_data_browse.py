"""The recording browser (python -m driving.data view): its server without a browser (only listed
images are served, only to loopback names, saving only from its own page), the problem detectors,
a 50,000-row recording, and the page itself in headless Chromium: scrubbing moves the frames, and an
exclusion saved from the page changes what the loader, and so train.py, reads."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from driving.config import CSV_NAME, IMG_DIR, RunConfig
from driving.data import exclusions, problems, reader
from driving.data.browse import MAX_BODY, RecordingBrowser
from driving.data.writer import RecordingWriter, stamp
from driving.preprocess import encode_jpeg
from driving.train.stage import load_split  # what train.py runs before decoding anything
from driving.view import browser
from tests.conftest import road_frame, write_recording
from tests.test_view import install_chromium

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def served(tmp_path):
    """A browser over two recordings: a 40-row one with side cameras and a center-only one."""
    write_recording(tmp_path / "data" / "a", n=40)
    write_recording(tmp_path / "data" / "b", n=12, sides=False)
    page = RecordingBrowser([tmp_path / "data"])
    page.start()
    yield page
    page.stop()


def ask(page: RecordingBrowser, path: str, method: str = "GET", body: bytes | None = None, **headers):
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=20)
    connection.request(method, path, body=body, headers=headers)
    reply = connection.getresponse()
    data = reply.read()
    connection.close()
    return reply, data


def post(page: RecordingBrowser, spans, **headers):
    headers = {"Content-Type": "application/json", **headers}
    return ask(page, "/api/excluded/0", "POST", json.dumps({"spans": spans}).encode(), **headers)


# --- the server ----------------------------------------------------------------------------------


def test_serves_the_page_the_recordings_and_their_series(served):
    assert served._http.server_address[0] == "127.0.0.1"
    for path, kind in (
        ("/", "text/html"),
        ("/browse.js", "text/javascript"),
        ("/browse.css", "text/css"),
        ("/view.css", "text/css"),
    ):
        reply, body = ask(served, path)
        assert reply.status == 200 and reply.getheader("Content-Type").startswith(kind) and body
    reply, body = ask(served, "/api/recordings")
    assert [r["name"] for r in json.loads(body)] == ["a", "b"]
    info = json.loads(ask(served, "/api/recording/1")[1])
    assert info["rows"] == 12 and info["cameras"] == ["center"] and info["excluded"] == []
    assert set(info["problems"]["counts"]) == set(problems.KINDS)
    reply, body = ask(served, "/api/series/0")
    series = np.frombuffer(body, "<f4").reshape(-1, 5)
    frames = reader.load_recordings([served.recordings[0]]).frames
    np.testing.assert_allclose(series[:, 1], frames["steering"], atol=1e-6)
    assert list(series[:, 4]) == list(frames["row"])


def test_frames_are_served_by_row_with_validation_headers(served):
    frames = reader.load_recordings([served.recordings[0]]).frames
    reply, body = ask(served, "/frame/0/7/left")
    assert reply.status == 200 and reply.getheader("Content-Type") == "image/jpeg"
    assert body == Path(frames["left"].iloc[7]).read_bytes()
    tag = reply.getheader("ETag")
    assert tag and "max-age" in reply.getheader("Cache-Control")
    again, body = ask(served, "/frame/0/7/left", **{"If-None-Match": tag})
    assert again.status == 304 and body == b""


@pytest.mark.parametrize(
    "path",
    [
        "/frame/0/../../etc/passwd",
        "/frame/0/%2e%2e/center",
        "/frame/0/1/..%2f..%2fdriving_log.csv",
        "/frame/0/1/driving_log.csv",
        "/frame/0/-1/center",
        "/frame/0/40/center",
        "/frame/1/0/left",  # b has no side cameras
        "/frame/7/0/center",
        "/frame/0/99999999999999999999/center",
        "/../driving_log.csv",
        "/api/recording/9",
    ],
)
def test_only_images_the_recording_lists_are_served(served, path):
    reply, body = ask(served, path)
    assert reply.status == 404 and b"\xff\xd8" not in body and b"," not in body


def test_requests_for_another_host_name_are_refused(served):
    reply, _ = ask(served, "/api/recordings", Host=f"rebound.example:{served.port}")
    assert reply.status == 403


def test_a_fifo_in_place_of_a_frame_is_refused_not_read(served):
    frames = reader.load_recordings([served.recordings[1]]).frames
    served.load(1)  # listed while it was a file
    image = Path(frames["center"].iloc[3])
    image.unlink()
    os.mkfifo(image)
    reply, body = ask(served, "/frame/1/3/center")
    assert reply.status == 404 and b"not a regular file" in body


def test_saving_takes_json_from_the_page_itself(served, tmp_path):
    rec = served.recordings[0]
    assert post(served, [[0, 3]], Origin="http://evil.example")[0].status == 403
    assert (
        ask(served, "/api/excluded/0", "POST", b'{"spans": [[0, 3]]}', **{"Content-Type": "text/plain"})[
            0
        ].status
        == 415
    )
    assert not (rec / exclusions.EXCLUDED_NAME).exists()
    huge = ask(
        served,
        "/api/excluded/0",
        "POST",
        b" " * 16,
        **{"Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)},
    )
    assert huge[0].status == 413
    for bad in ([[0]], [["0", 3]], "all", [[0, 3.5]], None):
        reply, body = post(served, bad)
        assert reply.status == 400 and "spans" in json.loads(body)["error"]
    reply, body = post(served, [[30, 50], [2, 4], [5, 6]], Origin=f"http://127.0.0.1:{served.port}")
    answer = json.loads(body)
    assert reply.status == 200 and answer["excluded"] == [[2, 6], [30, 39]] and answer["excluded_rows"] == 15
    saved = exclusions.read_exclusions(rec)
    assert [(r.first_row, r.last_row) for r in saved.ranges] == [(3, 7), (31, 40)]
    assert json.loads(ask(served, "/api/recording/0")[1])["excluded"] == [[2, 6], [30, 39]]
    assert post(served, [])[0].status == 200  # everything included again
    assert exclusions.read_exclusions(rec).ranges == ()
    assert len(reader.load_recordings([rec]).frames) == 40


def test_a_damaged_excluded_json_is_shown_and_never_overwritten(tmp_path):
    rec = write_recording(tmp_path / "rec", n=10, sides=False)
    (rec / exclusions.EXCLUDED_NAME).write_text('{"mine": "not yours"}')
    page = RecordingBrowser([rec])
    page.start()
    try:
        info = json.loads(ask(page, "/api/recording/0")[1])
        assert "no ranges" in info["excluded_error"] and info["rows"] == 10
        reply, body = post(page, [[1, 2]])
        assert reply.status == 400 and "not saved" in json.loads(body)["error"]
    finally:
        page.stop()
    assert (rec / exclusions.EXCLUDED_NAME).read_text() == '{"mine": "not yours"}'


def test_a_recording_from_windows_is_browsed_and_excluded(tmp_path):
    """The real simulator's log: no header, Windows paths, ', ' between fields, CRLF, moved here."""
    rec = write_recording(tmp_path / "made", n=20)
    lines = []
    for line in (rec / CSV_NAME).read_text().splitlines():
        fields = line.split(",")
        paths = [rf"C:\Users\someone\Desktop\track1\IMG\{Path(p).name}" for p in fields[:3]]
        lines.append(", ".join(paths + fields[3:]))
    (rec / CSV_NAME).write_text("\r\n".join(lines) + "\r\n")
    moved = rec.rename(tmp_path / "track1")
    page = RecordingBrowser([moved])
    page.start()
    try:
        info = json.loads(ask(page, "/api/recording/0")[1])
        assert info["rows"] == 20 and info["skipped"] == {} and info["cameras"] == ["center", "left", "right"]
        reply, body = ask(page, "/frame/0/19/right")
        assert reply.status == 200 and body[:2] == b"\xff\xd8"
        assert post(page, [[0, 4]])[0].status == 200
    finally:
        page.stop()
    loaded = reader.load_recordings([moved])
    assert len(loaded.frames) == 15 and loaded.summary.skipped == {reader.EXCLUDED: 5}


# --- problems ------------------------------------------------------------------------------------


def troubled_recording(folder: Path) -> Path:
    """60 rows: standing for the first 2 s, a steering jump at row 40, row 50 the same file as
    row 49 and row 51 the same bytes, and line 45 with a NaN speed."""
    start = datetime(2016, 12, 1, 13, 0, 0)
    with RecordingWriter(folder) as rec:
        for i in range(60):
            steering = 0.8 if i == 40 else 0.0
            rec.write(
                start + timedelta(seconds=i / 15),
                road_frame(0.02 * i),
                steering=steering,
                speed=0.0 if i < 30 else 12.0,
            )
    lines = (folder / CSV_NAME).read_text().splitlines()
    lines[50] = lines[49]
    first = lines[51].split(",")[0]
    shutil.copyfile(lines[50].split(",")[0], first)
    lines[44] = lines[44].rsplit(",", 1)[0] + ",nan"
    (folder / CSV_NAME).write_text("\n".join(lines) + "\n")
    return folder


def test_problems_are_found_where_they_are(tmp_path):
    rec = troubled_recording(tmp_path / "rec")
    loaded = reader.load_recordings([rec])
    frames = loaded.frames.reset_index(drop=True)
    found = problems.find_problems(frames, loaded.summary.stats(str(rec)).lines, problems.ProblemThresholds())
    by_kind = {kind: [(p.first, p.last, p.rows) for p in found if p.kind == kind] for kind in problems.KINDS}
    assert by_kind[problems.STILL] == [(0, 29, 30)]
    assert by_kind[problems.JUMP] == [(39, 40, 2), (40, 41, 2)]  # up at line 41, down at 42
    assert by_kind[problems.SKIPPED] == [(44, 44, 1)]  # line 45, shown at the row after it
    assert by_kind[problems.REPEATED] == [(48, 50, 2)]  # lines 50, 51 and 52: one image thrice
    assert [p.note for p in found if p.kind == problems.SKIPPED] == [reader.NOT_FINITE]
    stricter = problems.ProblemThresholds(still_mph=0.5, still_seconds=3.0, jump=0.9)
    assert problems.standing_still(frames, stricter) == [] and problems.steering_jumps(frames, stricter) == []


def test_a_recording_of_50000_rows_is_sent_compactly(tmp_path):
    """Three real frames hard-linked under 50,000 names: the page's data stay small and bounded."""
    rec = tmp_path / "long"
    (rec / IMG_DIR).mkdir(parents=True)
    sources = []
    for k in range(3):
        sources.append(rec / f"source{k}.jpg")
        sources[-1].write_bytes(encode_jpeg(road_frame(k / 3)))
    start, rows, lines = datetime(2016, 12, 1, 13, 0, 0), 50_000, []
    for i in range(rows):
        name = rec / IMG_DIR / f"center_{stamp(start + timedelta(milliseconds=67 * i))}.jpg"
        os.link(sources[i % 3], name)
        steering = 0.9 if i % 1000 == 500 else 0.0  # 50 spikes: 50 jumps up, 50 down
        lines.append(f"{name},,,{steering},0.3,0,{0 if i < 600 else 15}")
    (rec / CSV_NAME).write_text("\n".join(lines) + "\n")
    page = RecordingBrowser([rec])
    page.start()
    try:
        reply, body = ask(page, "/api/recording/0")
        info = json.loads(body)
        assert info["rows"] == rows and len(body) < 40_000
        assert info["problems"]["counts"]["jump"] == {"spans": 100, "rows": 200}
        assert info["problems"]["counts"]["still"]["spans"] == 1
        reply, body = ask(page, "/api/series/0")
        assert len(body) == rows * 5 * 4  # one float32 array: 1 MB for 50,000 rows
        reply, body = ask(page, f"/frame/0/{rows - 1}/center")
        assert reply.status == 200 and body == sources[(rows - 1) % 3].read_bytes()
    finally:
        page.stop()


def test_view_help_loads_no_tensorflow():
    for command in (["view", "--help"], ["merge", "--help"], ["cut", "--help"], ["repath", "--help"]):
        code = (
            "import runpy, sys\n"
            f"sys.argv = ['driving.data', *{command!r}]\n"
            "try:\n    runpy.run_module('driving.data', run_name='__main__', alter_sys=True)\n"
            "except SystemExit:\n    pass\n"
            "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
        )
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert "usage:" in run.stdout, run.stderr
        assert run.stdout.strip().splitlines()[-1] == "[]"


# --- the page in a real browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    if browser.missing():
        install_chromium()
    problem = browser.missing()
    if problem:
        pytest.skip(f"no headless Chromium here: {problem}")
    with browser.headless_chromium(1280, 820) as driver:
        yield driver


def state(page) -> dict:
    return page.execute_script(
        "const d = document.body.dataset; return {state: d.state, cursor: Number(d.cursor), "
        "selection: d.selection, excluded: Number(d.excluded), saved: Number(d.saved), "
        "src: document.getElementById('center').getAttribute('src')}"
    )


def shows(row: int) -> str:
    """A script that says whether the center camera's image is row `row`'s."""
    return f"return document.getElementById('center').getAttribute('src') === 'frame/0/{row}/center'"


def press(page, *keys) -> None:
    # selenium is optional (the test extra): imported where a browser test runs, as browser.py does
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(page).send_keys(*keys).perform()


@pytest.mark.timeout(1800)  # a first run may install Chromium
def test_scrubbing_moves_the_frames(chromium, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    write_recording(tmp_path / "rec", n=300)
    page = RecordingBrowser([tmp_path / "rec"])
    page.start()
    try:
        chromium.get(page.url)
        browser.wait_for(chromium, "return document.body.dataset.state === 'ready'", 30)
        first = state(chromium)
        assert first["cursor"] == 0 and first["src"] == "frame/0/0/center"
        press(chromium, Keys.ARROW_RIGHT)
        browser.wait_for(chromium, shows(1), 10)
        press(chromium, Keys.PAGE_DOWN)
        assert state(chromium)["cursor"] == 151
        press(chromium, Keys.END)
        assert state(chromium)["cursor"] == 299
        press(chromium, Keys.HOME)
        assert state(chromium)["cursor"] == 0
        timeline = chromium.find_element("id", "timeline")
        width = timeline.size["width"]
        ActionChains(chromium).move_to_element_with_offset(timeline, width // 4, 0).click().perform()
        clicked = state(chromium)
        assert 200 < clicked["cursor"] < 250  # three quarters along the charts
        browser.wait_for(chromium, shows(clicked["cursor"]), 10)
        assert browser.wait_for(chromium, "return document.getElementById('center').naturalWidth", 10) == 320
        ActionChains(chromium).move_to_element_with_offset(
            timeline, -width // 4, 0
        ).click_and_hold().move_by_offset(40, 0).release().perform()
        dragged = state(chromium)["cursor"]
        assert 60 < dragged < 150 and state(chromium)["selection"] == ""  # a plain drag scrubs
    finally:
        page.stop()


@pytest.mark.timeout(1800)
def test_an_exclusion_saved_in_the_page_changes_what_training_reads(chromium, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    rec = write_recording(tmp_path / "rec", n=150, sides=False)
    log = (rec / CSV_NAME).read_bytes()
    page = RecordingBrowser([rec])
    page.start()
    try:
        chromium.get(page.url)
        browser.wait_for(chromium, "return document.body.dataset.state === 'ready'", 30)
        # keys: to row 10, selection start; to row 24, selection end; then the button
        press(chromium, *[Keys.ARROW_RIGHT] * 10, "[", *[Keys.ARROW_RIGHT] * 14, "]")
        assert state(chromium)["selection"] == "10:24"
        chromium.find_element("id", "exclude").click()
        browser.wait_for(chromium, "return document.body.dataset.saved === '1'", 10)
        assert state(chromium)["excluded"] == 15
        # the mouse: shift+drag over the last part of the timeline, then the button again
        timeline = chromium.find_element("id", "timeline")
        width = timeline.size["width"]
        ActionChains(chromium).key_down(Keys.SHIFT).move_to_element_with_offset(
            timeline, width // 2 - 20, 0
        ).click_and_hold().move_by_offset(-60, 0).release().key_up(Keys.SHIFT).perform()
        first, last = map(int, state(chromium)["selection"].split(":"))
        assert 100 < first < last < 150
        chromium.find_element("id", "exclude").click()
        browser.wait_for(chromium, "return document.body.dataset.saved === '2'", 10)
        excluded = 15 + last - first + 1
        assert state(chromium)["excluded"] == excluded
        assert "excluded" in chromium.find_element("id", "saved").text
        chromium.save_screenshot(str(tmp_path / "page.png"))
    finally:
        page.stop()
    assert (rec / CSV_NAME).read_bytes() == log  # the log is never edited
    loaded = reader.load_recordings([rec])
    assert len(loaded.frames) == 150 - excluded and loaded.summary.skipped == {reader.EXCLUDED: excluded}
    assert not set(loaded.frames["row"]) & set(range(11, 26))  # lines 11-25: rows 10-24
    config = RunConfig(data=[str(rec)], val_fraction=0.2, block_seconds=1.0, batch_size=8)
    train, val, summary = load_split(config)
    assert len(train) + len(val) == 150 - excluded and summary.skipped == {reader.EXCLUDED: excluded}
    assert (tmp_path / "page.png").stat().st_size > 20_000
