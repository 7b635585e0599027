"""Headless simulator speed: rendered frames per second on one core, against the 300 frames/s
target (100 three-camera samples per second), and JPEG writing throughput.

    python bench/sim.py [--track lake] [--frames 600] [--conditions SEED]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta

import cv2

from driving.config import CAMERAS, SAMPLE_RATE_HZ
from driving.data.writer import RecordingWriter
from driving.preprocess import encode_jpeg
from driving.sim.conditions import Conditions
from driving.sim.expert import Expert
from driving.sim.simulator import Simulator
from driving.sim.track import builtin_track

TARGET_FPS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--track", default="lake")
    parser.add_argument("--frames", type=int, default=600, help="frames per measurement")
    parser.add_argument(
        "--conditions", type=int, metavar="SEED", help="render under Conditions.draw(SEED) (default: none)"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as the target says

    t0 = time.perf_counter()
    conditions = Conditions() if args.conditions is None else Conditions.draw(args.conditions)
    sim = Simulator(builtin_track(args.track), seed=0, conditions=conditions)
    print(
        f"world + cameras built in {time.perf_counter() - t0:.2f} s "
        f"(texture {sim.world.shape[1]}x{sim.world.shape[0]} px)"
    )
    expert = Expert(sim.track, seed=0)
    dt = 1 / SAMPLE_RATE_HZ
    samples = args.frames // 3
    poses = []
    for _ in range(samples):  # a driven stretch of road, so the poses are realistic
        sim.step(*expert.act(sim.car, sim.location.s, dt), dt=dt)
        poses.append((sim.car.x, sim.car.y, sim.car.heading))

    t0 = time.perf_counter()
    frames = [sim.cameras[cam].render(*pose) for pose in poses for cam in CAMERAS]
    render_fps = len(frames) / (time.perf_counter() - t0)
    print(
        f"render:      {render_fps:7.0f} frames/s  ({render_fps / 3:.0f} samples/s), "
        f"{render_fps / TARGET_FPS:.2f}x the {TARGET_FPS:.0f} frames/s target"
    )

    t0 = time.perf_counter()
    for f in frames:
        encode_jpeg(f)
    jpeg_fps = len(frames) / (time.perf_counter() - t0)
    print(f"JPEG encode: {jpeg_fps:7.0f} frames/s")

    with tempfile.TemporaryDirectory() as folder:
        start = datetime(2026, 11, 22)
        t0 = time.perf_counter()
        with RecordingWriter(folder) as writer:
            for i in range(samples):
                writer.write(start + timedelta(milliseconds=67 * i), *frames[3 * i : 3 * i + 3], steering=0.1)
        write_fps = 3 * samples / (time.perf_counter() - t0)
    print(f"JPEG write:  {write_fps:7.0f} frames/s  (RecordingWriter: encode, temp file, rename, CSV row)")

    t0 = time.perf_counter()
    sim.reset()
    for _ in range(samples):
        action = expert.act(sim.car, sim.location.s, dt)
        for cam in CAMERAS:
            sim.render(cam)
        sim.step(*action, dt=dt)
    loop = samples / (time.perf_counter() - t0)
    print(
        f"expert + physics + render: {loop:.0f} samples/s; with writing, recording runs at "
        f"about {1 / (1 / loop + 3 / write_fps):.0f} samples/s"
    )


if __name__ == "__main__":
    main()
