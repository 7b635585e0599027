"""Record expert laps in the simulator's exact format: driving_log.csv + IMG/, three cameras at
15 samples per simulated second, timestamps from a simulated clock (same seed, same bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from driving.config import CAMERAS, CSV_NAME, SAMPLE_RATE_HZ
from driving.data import RecordingWriter
from driving.sim.expert import Expert, ExpertConfig
from driving.sim.plot import save_topdown
from driving.sim.simulator import Simulator
from driving.sim.track import Track

CLOCK_START = datetime(2026, 11, 22, 12, 0, 0)  # the simulated clock's first sample
TOPDOWN_NAME = "topdown.png"


@dataclass
class RecordResult:
    folder: Path
    samples: int
    laps: float
    seconds: float  # simulated
    max_abs_cte: float
    off_road_samples: int
    topdown: Path | None


def record(
    track: Track,
    out: str | Path,
    laps: float = 1.0,
    seed: int = 0,
    config: ExpertConfig = ExpertConfig(),
    progress: bool = True,
    topdown: bool = True,
) -> RecordResult:
    """Drive `laps` expert laps of `track` and write them to a new recording folder `out`."""
    log = Path(out) / CSV_NAME
    if log.exists() and log.stat().st_size:
        raise FileExistsError(f"{log} already holds a recording; record into a new folder")
    sim = Simulator(track, seed=seed)
    expert = Expert(track, seed=seed, config=config)
    dt = 1.0 / SAMPLE_RATE_HZ
    path, ctes, off = [], [], 0
    goal = laps * track.length
    bar = tqdm(total=round(goal), unit="m", desc=f"record {track.name}", disable=not progress)
    with RecordingWriter(out) as writer:
        while sim.progress < goal:
            i = writer.rows
            steering, throttle, brake = expert.act(sim.car, sim.location.s, dt)
            frames = [sim.render(cam) for cam in CAMERAS]
            # Timestamps in whole milliseconds of the simulated clock, as the simulator names files.
            when = CLOCK_START + timedelta(milliseconds=round(i * 1000 / SAMPLE_RATE_HZ))
            writer.write(
                when, *frames, steering=steering, throttle=throttle, brake=brake, speed=round(sim.car.mph, 4)
            )
            path.append((sim.car.x, sim.car.y))
            ctes.append(sim.location.cte)
            off += sim.off_road
            sim.step(steering, throttle, brake, dt)
            bar.update(max(0, min(round(sim.progress), round(goal)) - bar.n))
    bar.close()
    png = (
        save_topdown(
            track,
            np.array(path),
            Path(out) / TOPDOWN_NAME,
            world=sim.world,
            title=f"{track.name}: {laps:g} expert lap(s), seed {seed}",
        )
        if topdown
        else None
    )
    return RecordResult(
        Path(out).absolute(),
        len(path),
        sim.laps,
        len(path) * dt,
        float(np.abs(ctes).max()) if ctes else 0.0,
        off,
        png,
    )
