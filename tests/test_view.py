"""The live view: bounded state, a valid Server-Sent Events stream that no page can stall, the
feeds from the headless simulator and from drive.py's server, the command lines, and the page
itself in headless Chromium (a real drive with a tiny real Keras model)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

from driving.config import DEFAULT_PREPROCESSING, INPUT_SHAPE
from driving.drive_server import DriveServer, ServeConfig
from driving.evaluation.closed_loop import DirectLink, DriveOptions, SocketLink, drive
from driving.pilot import Pilot
from driving.preprocess import decode_jpeg, encode_jpeg
from driving.runtime import Predictor
from driving.sim.__main__ import main as sim_main
from driving.sim.track import get_track
from driving.view import browser
from driving.view.server import ViewServer
from driving.view.sources import DriveView, ServerView
from driving.view.state import MAX_MARKS, MAX_PATH_POINTS, MAX_POINTS, WINDOW_S, Cursor, Sample, ViewState
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
LAKE = get_track("lake")


def constant_model(steering: float) -> keras.Model:
    """A real (tiny) CNN that answers `steering` whatever it sees: zero kernel, fixed bias."""
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(2, 3, strides=8)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    bias = keras.initializers.Constant(steering)
    return keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer=bias)(x))


def pilot(steering: float) -> Pilot:
    return Pilot(Predictor.from_keras(constant_model(steering), name=f"steer{steering:g}"))


def sample(i: int, frame: bytes = b"\xff\xd8jpeg\xff\xd9", intervened: bool = False) -> Sample:
    """Frame i of a made-up drive along x at 1 m and 1/15 s per frame."""
    return Sample(
        time_s=i / 15,
        frame=frame,
        steering=0.1,
        throttle=0.2,
        mph=9.0,
        latency_ms=1.5,
        x=float(i),
        y=0.0,
        cte=0.3,
        laps=i / 700,
        interventions=0,
        intervened=intervened,
    )


def read_events(response: http.client.HTTPResponse, until: str) -> list[tuple[str, dict]]:
    """Parse the stream as a browser would (comments, `event:`, `data:`, blank line) until an
    event named `until`; every data line must be JSON."""
    events, name, data = [], None, []
    while True:
        line = response.fp.readline().decode("utf-8")
        assert line, f"the stream closed before a {until!r} event; got {[e for e, _ in events]}"
        line = line.rstrip("\n")
        if line.startswith(":") or line.startswith("retry:"):
            continue
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        else:
            assert line == "", f"not a Server-Sent Events line: {line[:80]!r}"
            if name is not None:
                events.append((name, json.loads("\n".join(data))))
                if name == until:
                    return events
            name, data = None, []


def open_stream(port: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    return connection, response


@pytest.fixture
def view():
    server = ViewServer(send_timeout=1.0)
    server.start()
    yield server
    server.stop(linger=0)


# --- state and stream, without a browser -----------------------------------------------------------


def test_memory_stays_bounded_after_many_frames():
    state = ViewState()
    state.begin("m", "test", DEFAULT_PREPROCESSING, "simulated", "round trip", track=LAKE)
    frames = 30_000  # 30 km at 1 m a frame, 33 minutes of the drive's clock
    for i in range(frames):
        state.add(sample(i, frame=bytes([i % 256]) * 64, intervened=i % 10 == 0))
    assert state.frames == frames
    assert len(state.points) <= MAX_POINTS and len(state.path) == MAX_PATH_POINTS
    assert len(state.marks) == MAX_MARKS
    assert state.latest.frame == bytes([(frames - 1) % 256]) * 64  # the latest frame only
    events = dict(state.read(Cursor()))  # a page arriving now gets what the rings hold
    times = [p[0] for p in events["update"]["points"]]
    assert times[-1] - times[0] <= WINDOW_S and len(times) == len(state.points)
    assert len(events["update"]["path"]) == MAX_PATH_POINTS
    assert len(events["hello"]["map"]["centre"]) <= 2000


def test_path_breaks_where_the_car_was_put_back():
    state = ViewState()
    state.begin("m", "test", DEFAULT_PREPROCESSING, "simulated", "round trip", track=LAKE)
    for i in range(5):
        state.add(sample(i, intervened=i == 2))
    path = dict(state.read(Cursor()))["update"]["path"]
    assert [p[3] for p in path] == [0, 0, 0, 1, 0]  # the point after the intervention starts anew
    assert dict(state.read(Cursor()))["update"]["marks"] == [(2.0, 0.0)]


def test_stream_serves_valid_events_and_the_page(view):
    page = http.client.HTTPConnection("127.0.0.1", view.port, timeout=10)
    for path, kind in (("/", "text/html"), ("/view.js", "text/javascript"), ("/view.css", "text/css")):
        page.request("GET", path)
        reply = page.getresponse()
        assert reply.status == 200 and reply.getheader("Content-Type").startswith(kind)
        body = reply.read()
        assert b"EventSource" in body if path == "/view.js" else body
        page.close()
    page.request("GET", "/nothing")
    assert page.getresponse().status == 404
    page.close()
    page.request("GET", "/", headers={"Host": f"rebound.example:{view.port}"})
    assert page.getresponse().status == 403  # another site's name pointed at 127.0.0.1

    connection, response = open_stream(view.port)
    view.state.begin("effnet.h5", "test", DEFAULT_PREPROCESSING, "simulated", "round trip", track=LAKE)
    jpeg = encode_jpeg(np.full((160, 320, 3), 90, np.uint8))
    for i in range(30):
        view.state.add(sample(i, frame=jpeg, intervened=i == 5))
    events = read_events(response, until="update")
    (name, hello), updates = events[0], [data for name, data in events[1:]]
    assert name == "hello" and hello["model"] == "effnet.h5"
    assert hello["crop"] == {"top": 80, "bottom": 140} and hello["frame"] == {"width": 320, "height": 160}
    assert hello["map"]["width"] == LAKE.width and len(hello["map"]["centre"]) > 100
    update = updates[-1]
    assert len(update["points"]) == 30 and update["points"][-1] == [round(29 / 15, 3), 0.1, 0.2, 9.0]
    assert update["marks"] == [[5.0, 0.0]] and len(update["path"]) == 30
    assert decode_jpeg(base64.b64decode(update["frame"])).shape == (160, 320, 3)
    assert update["stats"]["frames"] == 30 and update["stats"]["latency_ms"] == 1.5
    view.state.finish({"laps": 0.04, "interventions": 1})
    assert read_events(response, until="end")[-1] == ("end", {"laps": 0.04, "interventions": 1})
    assert response.fp.readline() == b""  # the stream ends with the drive
    connection.close()


def test_pages_that_stop_reading_or_leave_do_not_stall_the_drive(view):
    silent = socket.create_connection(("127.0.0.1", view.port))  # asks, then never reads
    silent.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    leaving, response = open_stream(view.port)  # reads the hello, then goes away mid-stream
    view.state.begin("m", "test", DEFAULT_PREPROCESSING, "simulated", "round trip", track=LAKE)
    read_events(response, until="hello")
    leaving.close()
    big = bytes(300_000)  # a frame this large fills the silent page's socket buffers in a few pushes
    frames = 3_000
    fed = threading.Event()

    def drive_thread() -> None:
        for i in range(frames):
            view.state.add(sample(i, frame=big + i.to_bytes(4, "big")))
            if i % 20 == 0:
                fed.wait(0.02)  # over about 3 s, so the streams push many updates meanwhile
        fed.set()

    thread = threading.Thread(target=drive_thread, daemon=True)
    thread.start()
    thread.join(60)
    assert fed.is_set() and view.state.frames == frames  # every frame was added: nothing waited
    assert wait_until(lambda: view.clients == 0, 30)  # both streams were dropped (send timeout: 1 s)
    silent.close()
    connection, response = open_stream(view.port)  # and the view still serves a new page
    assert [name for name, _ in read_events(response, until="update")] == ["hello", "update"]
    connection.close()


def test_too_many_pages_are_turned_away(view):
    view.max_clients = 1
    first, _ = open_stream(view.port)
    assert wait_until(lambda: view.clients == 1, 10)
    second = http.client.HTTPConnection("127.0.0.1", view.port, timeout=10)
    second.request("GET", "/events")
    assert second.getresponse().status == 503
    first.close()
    second.close()


# --- the feeds -----------------------------------------------------------------------------------


def test_headless_drive_feeds_the_view():
    state = ViewState()
    driver = pilot(0.5)
    options = DriveOptions(
        laps=0.03, progress=False, model="steer", observers=[DriveView(state, DEFAULT_PREPROCESSING)]
    )
    metrics, trace = drive(LAKE, DirectLink(driver), options)
    assert state.frames == len(trace.x) - 1  # every step after the first frame
    assert state.summary == metrics.to_dict() and state.info["model"] == "steer"
    assert len(state.marks) == metrics.interventions > 0
    assert state.info["map"]["name"] == "lake"


def test_drive_server_feeds_the_view_without_a_map():
    state = ViewState()
    driver = pilot(0.0)
    server = DriveServer(driver, ServeConfig(status_interval=0.0), listeners=[ServerView(state, driver)])
    port = server.start("127.0.0.1", 0)
    try:
        metrics, _ = drive(LAKE, SocketLink(port=port), DriveOptions(laps=0.005, progress=False))
    finally:
        server.stop()
    events = dict(state.read(Cursor()))
    assert events["hello"]["map"] is None and events["hello"]["model"] == "steer0"
    assert events["hello"]["clock"] == "wall" and events["hello"]["latency"] == "pilot"
    assert state.frames >= metrics.frames - 1  # the two chains of the simulator's start count too
    frame = decode_jpeg(base64.b64decode(events["update"]["frame"]))  # encoded from RGB by the stream
    assert frame.shape == (160, 320, 3) and events["update"]["path"] == []


# --- command lines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [["--fps", "0"], ["--fps", "nan"], ["--fps", "2000"], ["--view-port", "70000"]]
)
def test_bad_view_options_end_in_one_line(options, capsys):
    with pytest.raises(SystemExit) as exit_:
        sim_main(["drive", "--laps", "0.01", *options])
    assert exit_.value.code == 2
    assert f"error: argument {options[0]}" in capsys.readouterr().err.strip().splitlines()[-1]


def test_fps_is_refused_for_realtime_drives(capsys):
    assert sim_main(["drive", "--laps", "0.01", "--fps", "15", "--realtime"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: fps limits fixed-step drives; a realtime drive already runs at the wall clock"
    )


@pytest.mark.parametrize("view", [True, False])
def test_eval_prints_the_view_address_only_with_view(view, tmp_path, capsys):
    model = tmp_path / "straight.keras"
    constant_model(0.0).save(model)
    assert (
        sim_main(["eval", str(model), "--laps", "0.005", "--fps", "100", *(["--view"] if view else [])]) == 0
    )
    out = capsys.readouterr().out
    assert ("live view: http://127.0.0.1:" in out) == view and "straight" in out
    assert "--fps 15" not in out  # the pace hint is for drives without --fps


@pytest.mark.parametrize(
    "runner, target, args",
    [
        ("run_module", "driving.sim", ["eval", "--help"]),
        ("run_path", "drive.py", ["--help"]),
        ("run_module", "driving.view", ["screenshot", "--help"]),
    ],
)
def test_help_is_instant_because_it_imports_no_tensorflow(runner, target, args):
    code = (
        f"import runpy, sys\nsys.argv = [{target!r}, *{args!r}]\ntry:\n"
        f"    runpy.{runner}({target!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "usage:" in run.stdout, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


# --- the page in a real browser ------------------------------------------------------------------


def install_chromium() -> None:
    """Debian's chromium and chromium-driver, where this runs as root with apt (as CI does)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    if subprocess.run(install, env=env, capture_output=True, timeout=1200).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=1200)


@pytest.fixture(scope="module")
def chromium():
    if browser.missing():
        install_chromium()
    problem = browser.missing()
    if problem:
        pytest.skip(f"no headless Chromium here: {problem}")
    with browser.headless_chromium(1280, 820) as driver:
        yield driver


FRAME_PIXELS = "return document.getElementById('frame').toDataURL()"


def count(page, name: str) -> int:
    """One of the page's counters (data-frames, data-points, data-path, data-marks)."""
    return int(page.execute_script(f"return document.body.dataset.{name}"))


@pytest.mark.timeout(1800)  # a first run may install Chromium
def test_the_page_shows_a_live_drive(chromium, tmp_path):
    view = ViewServer()
    view.start()
    driver = pilot(0.5)
    options = DriveOptions(
        laps=1.0,
        max_seconds=8.0,  # simulated, at 15 frames a wall second: about 8 s
        fps=15,
        progress=False,
        model="steer0.5",
        observers=[DriveView(view.state, driver.predictor.preprocessing)],
    )
    result = {}
    drive_thread = threading.Thread(
        target=lambda: result.update(metrics=drive(LAKE, DirectLink(driver), options)[0]), daemon=True
    )
    try:
        chromium.get(view.url)
        browser.wait_for(chromium, "return document.body.dataset.state === 'waiting'", 30)
        drive_thread.start()
        browser.wait_for(chromium, "return Number(document.body.dataset.frames) >= 2", 30)
        first, frames = chromium.execute_script(FRAME_PIXELS), count(chromium, "frames")
        browser.wait_for(chromium, f"return Number(document.body.dataset.frames) >= {frames + 5}", 30)
        assert chromium.execute_script(FRAME_PIXELS) != first  # the camera frame changes
        assert chromium.find_element("id", "model").text == "steer0.5"
        assert chromium.execute_script("return document.body.dataset.state") == "live"
        assert count(chromium, "points") > 0 and count(chromium, "path") > 0  # charts and map get points
        drive_thread.join(60)
        browser.wait_for(chromium, "return document.body.dataset.state === 'ended'", 30)
    finally:
        view.stop(linger=0)
    metrics = result["metrics"]
    assert count(chromium, "points") == metrics.frames - 1  # every step, none dropped
    assert count(chromium, "marks") == metrics.interventions > 0
    assert "interventions" in chromium.find_element("id", "summary").text
    shot = tmp_path / "live-view.png"
    assert chromium.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
