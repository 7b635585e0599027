"""Closed-loop driving against the REAL drive server on a free loopback port, with tiny real Keras
models whose steering is known: metrics, reports, interventions and resets, stalls, the command line,
and a server whose `steer` values are numbers (the real simulator would stall on them)."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from driving.config import INPUT_SHAPE
from driving.drive_server import DriveServer, ServeConfig
from driving.evaluation.closed_loop import DirectLink, DriveOptions, SocketLink, drive
from driving.evaluation.metrics import autonomy, steering_rate_rms
from driving.pilot import Pilot, PilotConfig
from driving.runtime import Predictor
from driving.sim.__main__ import main as sim_main
from driving.sim.client import ProtocolError
from driving.sim.track import get_track
from driving.socketio_compat import SimulatorCompatibleServer
from driving.video.writer import count_frames

LAKE = get_track("lake")


def constant_model(steering: float) -> keras.Model:
    """A real (tiny) CNN whose output is `steering` whatever the frame: zero kernel, fixed bias."""
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(2, 3, strides=8)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(
        1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(steering)
    )(x)
    return keras.Model(inputs, out)


class Served:
    """drive.py's server for one model on a free loopback port, in this process."""

    def __init__(self, steering: float, **pilot):
        pilot = Pilot(Predictor.from_keras(constant_model(steering)), PilotConfig(**pilot))
        self.server = DriveServer(pilot, ServeConfig(status_interval=0.0))

    def __enter__(self) -> int:
        return self.server.start("127.0.0.1", 0)

    def __exit__(self, *exc) -> None:
        self.server.stop()


def options(laps: float, **kw) -> DriveOptions:
    return DriveOptions(laps=laps, progress=False, **kw)


def test_autonomy_and_smoothness_formulas():
    assert autonomy(0, 100.0) == 100.0
    assert autonomy(1, 60.0) == pytest.approx(90.0)  # PilotNet: 6 s charged per intervention
    assert autonomy(20, 60.0) == 0.0  # floored
    t = np.arange(5) / 10
    assert steering_rate_rms(t, np.zeros(5)) == 0.0
    assert steering_rate_rms(t, np.array([0, 0.1, 0.2, 0.3, 0.4])) == pytest.approx(1.0)
    assert steering_rate_rms(t, np.array([0, 0.1, 0, 0.1, 0])) == pytest.approx(1.0)


def test_steering_hard_right_is_intervened_and_put_back_on_the_centre_line(tmp_path):
    with Served(1.0, speed=9.0) as port:
        metrics, trace = drive(LAKE, SocketLink(port=port), options(0.06))
    assert metrics.interventions >= 2  # a 5.6 m turning circle cannot stay on an 8 m road
    assert metrics.interventions == len(trace.interventions)
    for event in trace.interventions:  # off the road, then put back on the centre line
        row = trace.time_s.index(event.time_s)
        assert abs(trace.cte[row]) > LAKE.width / 2
        assert abs(trace.cte[row + 1]) < 0.3  # one frame (0.27 m) after being put back
    assert metrics.completed and metrics.laps >= 0.06
    assert metrics.max_abs_cte_m > LAKE.width / 2
    assert metrics.autonomy_pct == pytest.approx(autonomy(metrics.interventions, metrics.elapsed_s), abs=0.01)
    assert metrics.autonomy_pct < 100
    assert set(np.round(trace.steering[1:], 4)) == {1.0}
    assert metrics.steering_rate_rms < 1.0  # constant steering after the first command


def test_straight_model_metrics_report_and_determinism(tmp_path):
    with Served(0.0, speed=9.0) as port:
        metrics, trace = drive(LAKE, SocketLink(port=port), options(0.03))
        again, trace2 = drive(LAKE, SocketLink(port=port), options(0.03))
    assert trace.x == trace2.x and trace.cte == trace2.cte  # fixed physics step: deterministic
    assert metrics.frames == len(trace.x) == len(trace.latency_s) + 2  # start + the connect reply
    assert metrics.elapsed_s == pytest.approx((metrics.frames - 1) / 15, abs=1e-3)
    assert metrics.distance_m == pytest.approx(0.03 * LAKE.length, rel=0.05)
    assert 0 < metrics.mean_speed_mph < 10
    assert metrics.interventions == 0 and metrics.autonomy_pct == 100.0
    assert metrics.steering_rate_rms == 0.0
    assert 0 < metrics.latency_median_ms <= metrics.latency_p99_ms
    assert metrics.end_reason == "laps done"


def test_stalled_car_ends_the_drive():
    with Served(0.0, throttle=0.0) as port:
        metrics, _ = drive(LAKE, SocketLink(port=port), options(1.0))
    assert not metrics.completed and metrics.end_reason.startswith("stalled")
    assert metrics.elapsed_s == pytest.approx(30.0, abs=0.1)


def test_realtime_mode_advances_by_wall_clock():
    with Served(0.0, speed=9.0) as port:
        metrics, trace = drive(LAKE, SocketLink(port=port), options(0.01, realtime=True))
    steps = np.diff(trace.time_s)
    assert metrics.realtime and metrics.completed
    assert not np.allclose(steps, steps[0])  # the step follows the server, not a fixed rate


def test_eval_command_writes_report_png_and_video(tmp_path, capsys):
    model = tmp_path / "straight.keras"
    constant_model(0.0).save(model)
    report, video = tmp_path / "run.json", tmp_path / "run.mp4"
    rc = sim_main(
        [
            "eval",
            str(model),
            "--track",
            "lake",
            "--laps",
            "0.02",
            "--report",
            str(report),
            "--video",
            str(video),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "autonomy" in out and "straight" in out and "lake" in out
    data = json.loads(report.read_text())
    m = data["metrics"]
    assert m["model"] == "straight" and m["track"] == "lake" and m["completed"]
    for key in (
        "laps",
        "distance_m",
        "elapsed_s",
        "mean_abs_cte_m",
        "max_abs_cte_m",
        "interventions",
        "autonomy_pct",
        "mean_speed_mph",
        "steering_rate_rms",
        "latency_median_ms",
        "latency_p99_ms",
    ):
        assert isinstance(m[key], (int, float)) and math.isfinite(m[key]), key
    assert report.with_suffix(".png").stat().st_size > 10_000
    assert count_frames(video) == m["frames"] - 1  # one per frame sent to the server


def test_eval_rejects_a_missing_model(tmp_path, capsys):
    assert sim_main(["eval", str(tmp_path / "none.h5"), "--laps", "0.01"]) == 2
    assert "no such model file" in capsys.readouterr().err


def number_steer_server() -> DriveServer:
    """A real Socket.IO server, simulator-compatible, that replies with JSON numbers."""
    server = DriveServer(Pilot(Predictor.from_keras(constant_model(0.0))), ServeConfig(status_interval=0.0))
    sio: SimulatorCompatibleServer = server.sio
    sio.on(
        "telemetry",
        lambda sid, data=None: sio.emit("steer", {"steering_angle": 0.1, "throttle": 0.2}, to=sid),
    )
    return server


def test_drive_fails_loudly_on_number_steer_values(capsys):
    server = number_steer_server()
    port = server.start("127.0.0.1", 0)
    try:
        with pytest.raises(ProtocolError, match="not a string"):
            drive(LAKE, SocketLink(port=port), options(0.01))
        assert sim_main(["drive", "--port", str(port), "--laps", "0.01"]) == 1
    finally:
        server.stop()
    assert "would stall the simulator" in capsys.readouterr().err


def test_drive_without_a_server_says_so(capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert sim_main(["drive", "--port", str(port), "--laps", "0.01"]) == 1
    assert "is drive.py running" in capsys.readouterr().err


def test_demo_summary_table_joins_report_and_suite():
    from driving.demo import summary_table
    from driving.run import SuiteResult, SuiteSummary

    report = {
        "models": [
            {"model": name, "params": params, "h5": h5, "macs": macs, "val_mse": mse,
             "keras_latency": {"median_ms": lat}, "tflite": {"float32": {"latency": {"median_ms": lat / 3}}}}
            for name, params, h5, macs, mse, lat in (
                ("effnet", 630_433, 7_700_000, 40.7e6, 0.012, 4.0),
                ("effnet-slim", 70_625, 900_000, 21e6, 0.015, 3.0),
            )
        ]
    }  # fmt: skip
    summary = {
        name: SuiteSummary(
            drives=6, success_rate=ok / 6, autonomy_mean=mean, autonomy_ci95=(low, high), autonomy_min=low,
            interventions=6 - ok, km=1.5, interventions_per_km=(6 - ok) / 1.5, mean_abs_cte_m=0.5,
            steering_rate_rms=0.3, latency_median_ms=1.0,
            autonomy_by_style={"lake": 100.0, "jungle": 95.0, "desert": d},
        )
        for name, ok, mean, low, high, d in (("effnet", 5, 97.5, 93.1, 100.0, 97.5),
                                             ("effnet-slim", 2, 80.2, 61.0, 95.4, 45.6))
    }  # fmt: skip
    suite = SuiteResult(suite={}, speed=9.0, models={}, drives={}, summary=summary)
    table = summary_table(report["models"], suite).splitlines()
    assert len(table) == 4 and "autonomy mean [95% CI]" in table[0]
    assert table[2].split(" | ")[1:3] == ["630,433", "7,520"]
    assert table[2].endswith("5 of 6 | 97.5% [93.1, 100.0] | 100.0% | 95.0% | 97.5% |")
    assert table[3].endswith("2 of 6 | 80.2% [61.0, 95.4] | 100.0% | 95.0% | 45.6% |")


def test_demo_refuses_nonsense_before_any_work(capsys, tmp_path):
    from driving.demo import main as demo_main

    for argv, message in (
        (["--models", "resnet"], "unknown model"),
        (["--recipe", "mystery"], "invalid choice"),
        (["--speed", "nan"], "out of range"),
    ):
        with pytest.raises(SystemExit):
            demo_main([*argv, "--out", str(tmp_path / "o")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_direct_link_drives_exactly_as_the_socket(tmp_path):
    """The suites drive the Pilot in-process; the drive must be the one the real server gives."""
    from tests.test_runtime import tiny_model

    pilot = Pilot(Predictor.from_keras(tiny_model()), PilotConfig(speed=9.0))
    direct, direct_trace = drive(LAKE, DirectLink(pilot), options(0.04))
    server = DriveServer(pilot, ServeConfig(status_interval=0.0))
    port = server.start("127.0.0.1", 0)
    try:
        socket, socket_trace = drive(LAKE, SocketLink(port=port), options(0.04))
    finally:
        server.stop()
    assert len(set(np.round(direct_trace.steering, 4))) > 3  # it really steers from the image
    assert direct_trace.x == socket_trace.x and direct_trace.steering == socket_trace.steering
    assert direct.autonomy_pct == socket.autonomy_pct and direct.frames == socket.frames


@pytest.mark.parametrize("laps", [0.0, -1.0, math.nan, math.inf, 5000.0])
def test_nonsense_laps_are_refused_before_driving(laps):
    with pytest.raises(ValueError, match="laps"):
        DriveOptions(laps=laps).validate()


@pytest.mark.parametrize("kind", ["float16", "int8"])
def test_drive_py_serves_reduced_precision_files_closed_loop(tmp_path, kind):
    """drive.py's server drives a float16 or full-integer int8 LiteRT file as it drives the float32
    one: the same Pilot, the file's own (de)quantisation, steering close to float32's."""
    from driving.modelio import ModelInfo, export_tflite
    from driving.preprocess import preprocess
    from driving.sim.simulator import Simulator
    from tests.test_runtime import tiny_model

    model = tiny_model()
    sim = Simulator(LAKE, seed=0)
    calibration = []
    for s in np.linspace(0, LAKE.length, 40, endpoint=False):
        sim.reset(s=s)
        calibration.append(preprocess(sim.render("center")))
    files = {}
    for precision in ("float32", kind):
        files[precision] = export_tflite(
            model, tmp_path / f"m.{precision}.tflite", precision, ModelInfo(), np.stack(calibration)
        )
    traces = {}
    for precision, path in files.items():
        pilot = Pilot(Predictor.load(path), PilotConfig(speed=9.0))
        server = DriveServer(pilot, ServeConfig(status_interval=0.0))
        port = server.start("127.0.0.1", 0)
        try:
            metrics, traces[precision] = drive(LAKE, SocketLink(port=port), options(0.02))
        finally:
            server.stop()
        assert metrics.completed and metrics.frames > 10
    first = min(len(traces["float32"].steering), len(traces[kind].steering), 20)
    gap = np.abs(np.subtract(traces["float32"].steering[:first], traces[kind].steering[:first])).max()
    assert gap < (0.01 if kind == "float16" else 0.1), gap
