"""Drive server round trip: frames answered lock-step, as the simulator's client sends them.

Renders real 320x160 camera frames with the headless simulator (JPEG, quality 75 like Unity's
EncodeToJPG), then for each server runs it as its own process on a free loopback port and drives the
frames through SimulatorClient one at a time: send telemetry, wait for `steer`, send the next. The
round-trip time per frame is the simulator's frame time. Servers, side by side in one run:

- drive.py with an untrained effnet: the .h5 as served by default (converted to LiteRT in
  memory, every core), the .tflite, the .h5 on one LiteRT thread, the .h5 on Keras (traced
  tf.function), and the .h5 on eventlet;
- the classic handler: model.predict per frame on eventlet (with the namespace shim, without which
  python-socketio 5 would not answer the simulator at all).

Targets (this 2-core machine, effnet): median <= 3 ms, p99 <= 10 ms, >= 5x faster than classic.

    python bench/drive_latency.py [--frames 1000] [--classic-frames 300] [--track lake]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

TARGET_MEDIAN_MS, TARGET_P99_MS, TARGET_SPEEDUP = 3.0, 10.0, 5.0
WARMUP = 20  # frames sent before timing starts: first calls trace and warm caches
SERVING = re.compile(r"on http://127\.0\.0\.1:(\d+) ")


# --- the classic handler, as the original drive.py wrote it ----------------------------------------


def classic_server(model_path: str, port: int) -> None:
    """The classic drive.py: eventlet, PIL decode, model.predict per frame, string replies.
    Two changes so it can be measured at all: the namespace shim (python-socketio 5 ignores the
    simulator otherwise) and no `steer` on connect (a third chain would pair each telemetry with
    the previous reply). Its per-frame print is left out as well."""
    import base64
    import warnings
    from io import BytesIO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet
        import eventlet.wsgi
    import keras
    import socketio
    from PIL import Image

    from driving.config import TARGET_SPEED_MPH
    from driving.pilot import SpeedController
    from driving.preprocess import preprocess
    from driving.socketio_compat import SimulatorCompatibleServer

    model = keras.models.load_model(model_path, compile=False)
    controller = SpeedController(speed=TARGET_SPEED_MPH)
    sio = SimulatorCompatibleServer(async_mode="eventlet")

    @sio.on("telemetry")
    def telemetry(sid, data):
        if data:
            image = np.asarray(Image.open(BytesIO(base64.b64decode(data["image"]))))
            steering = float(model.predict(preprocess(image)[None], batch_size=1, verbose=0)[0, 0])
            throttle = controller.update(float(data["speed"]))
            sio.emit("steer", {"steering_angle": str(steering), "throttle": str(throttle)}, to=sid)
        else:
            sio.emit("manual", {}, to=sid)

    listener = eventlet.listen(("127.0.0.1", port))
    print(
        f"classic serving {model_path} on http://127.0.0.1:{listener.getsockname()[1]} (eventlet)", flush=True
    )
    eventlet.wsgi.server(listener, socketio.WSGIApp(sio), log_output=False)


# --- measuring ---------------------------------------------------------------------------------------


def render_frames(track: str, count: int) -> list[bytes]:
    from driving.config import SAMPLE_RATE_HZ
    from driving.preprocess import encode_jpeg
    from driving.sim.expert import Expert
    from driving.sim.simulator import Simulator
    from driving.sim.track import builtin_track

    sim = Simulator(builtin_track(track), seed=0)
    expert = Expert(sim.track, seed=0)
    dt = 1.0 / SAMPLE_RATE_HZ
    frames = []
    for _ in tqdm(range(count), desc=f"render {track}", unit="frame"):
        frames.append(encode_jpeg(sim.render("center"), quality=75))
        steering, throttle, brake = expert.act(sim.car, sim.location.s, dt)
        sim.step(steering, throttle, brake, dt)
    return frames


def save_models(folder: Path) -> tuple[Path, Path]:
    from driving import tfsetup

    tfsetup.setup()

    from driving.modelio import ModelInfo, export_tflite, save_keras
    from driving.models import build

    model = build("effnet")  # untrained: latency does not depend on the weights
    h5, tflite = folder / "effnet.h5", folder / "effnet.tflite"
    save_keras(model, h5, ModelInfo(model="effnet"))
    export_tflite(model, tflite, "float32", ModelInfo(model="effnet"))
    return h5, tflite


def drive(command: list[str], frames: list[bytes], label: str) -> np.ndarray:
    """Start a server process, drive `frames` lock-step, stop it; round-trip seconds per frame."""
    from driving.config import TARGET_SPEED_MPH
    from driving.sim.client import SimulatorClient

    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    try:
        for line in server.stdout:
            log.append(line)
            if match := SERVING.search(line):
                port = int(match.group(1))
                break
        else:
            raise RuntimeError(f"{label}: server exited before serving:\n{''.join(log)}")
        times = []
        with SimulatorClient(port=port, timeout=60.0) as client:
            client.connect(frames[0])
            for i, jpeg in enumerate(tqdm(frames[:WARMUP] + frames, desc=label, unit="frame")):
                start = time.perf_counter()
                client.send_telemetry(0.0, 0.2, TARGET_SPEED_MPH, jpeg)  # the car at speed
                client.receive_reply()
                if i >= WARMUP:
                    times.append(time.perf_counter() - start)
        return np.array(times)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1000, help="frames per drive.py server (default 1000)")
    parser.add_argument(
        "--classic-frames",
        type=int,
        default=300,
        help="frames for the classic handler, ~20-200 ms each (default 300)",
    )
    parser.add_argument("--track", default="lake", help="built-in track to render frames from")
    parser.add_argument("--classic-server", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.classic_server:
        return classic_server(args.classic_server, args.port)

    frames = render_frames(args.track, args.frames)
    jpeg_kb = np.mean([len(f) for f in frames]) / 1024
    print(f"{len(frames)} frames from track {args.track!r}, JPEG mean {jpeg_kb:.1f} KB")
    python, drive_py = sys.executable, str(ROOT / "drive.py")
    with tempfile.TemporaryDirectory() as tmp:
        h5, tflite = save_models(Path(tmp))
        serve = [python, drive_py, "--port", "0", "--quiet"]
        runs = {
            "drive.py effnet.h5 (default)": (serve + [str(h5)], frames),
            "drive.py effnet.tflite": (serve + [str(tflite)], frames),
            "drive.py effnet.h5 --threads 1": (serve + [str(h5), "--threads", "1"], frames),
            "drive.py effnet.h5 --backend keras": (serve + [str(h5), "--backend", "keras"], frames),
            "drive.py effnet.h5 --async-mode eventlet": (
                serve + [str(h5), "--async-mode", "eventlet"],
                frames,
            ),
            "classic: model.predict, eventlet": (
                [python, __file__, "--classic-server", str(h5)],
                frames[: args.classic_frames],
            ),
        }
        results = {label: drive(command, fs, label) * 1e3 for label, (command, fs) in runs.items()}

    classic = np.median(results["classic: model.predict, eventlet"])
    print(f"\nround trip per frame, lock-step ({time.strftime('%Y-%m-%d')}):")
    print(f"{'server':42} {'frames':>6} {'median ms':>10} {'p99 ms':>8} {'frames/s':>9} {'vs classic':>10}")
    for label, ms in results.items():
        print(
            f"{label:42} {ms.size:6d} {np.median(ms):10.2f} {np.percentile(ms, 99):8.2f} "
            f"{1e3 / ms.mean():9.1f} {classic / np.median(ms):9.1f}x"
        )
    print()
    for label in ("drive.py effnet.h5 (default)", "drive.py effnet.tflite"):
        ms = results[label]
        median, p99, speedup = np.median(ms), np.percentile(ms, 99), classic / np.median(ms)
        checks = [
            f"median {median:.2f} ms {'<=' if median <= TARGET_MEDIAN_MS else '>'} {TARGET_MEDIAN_MS}",
            f"p99 {p99:.2f} ms {'<=' if p99 <= TARGET_P99_MS else '>'} {TARGET_P99_MS}",
            f"{speedup:.1f}x {'>=' if speedup >= TARGET_SPEEDUP else '<'} {TARGET_SPEEDUP}x classic",
        ]
        print(f"target check, {label}: " + "; ".join(checks))


if __name__ == "__main__":
    main()
