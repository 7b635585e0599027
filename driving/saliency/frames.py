"""The frames saliency is looked at on: rendered by the headless simulator (with what each pixel
shows, so a map can be scored) or read from a recording (without).

    probe_frames()     the fixed, seeded set from the tracks of an evaluation suite, none of them a
                       track any recording drives: what the slimming report scores every model on
    track_probes()     frames along one track's centre line
    recording_probes() frames spread evenly through a recording
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from driving.data.reader import load_recordings
from driving.evaluation.registry import SUITES
from driving.preprocess import read_frame
from driving.sim.camera import Camera
from driving.sim.kinds import KINDS, kind_for
from driving.sim.track import get_track
from driving.sim.world import World

PROBES_PER_DRIVE = 3  # scoring frames per drive of a suite


@dataclass(frozen=True)
class Probe:
    """One frame to show or score: the camera frame and, from the simulator, what each of its
    pixels shows (None for a recorded frame)."""

    name: str
    frame: np.ndarray  # RGB uint8
    labels: np.ndarray | None = None  # uint8 labels of driving.sim.world, the frame's size


def probe_frames(suite: str = "quick", per_drive: int = PROBES_PER_DRIVE, seed: int = 0) -> list[Probe]:
    """A fixed, seeded set of frames from tracks no recording drives: `per_drive` poses spread
    along each drive of the evaluation suite, somewhere in the lane (up to a quarter of the lane's
    width off its centre: the road's on one lane; up to 0.1 rad off its heading), rendered in that
    drive's world under its conditions by its kind's centre camera. The same frames for every
    model."""
    rng = np.random.default_rng(seed)
    probes = []
    for drive in SUITES[suite].drives:
        track = drive.track()
        world = World(track, seed=drive.conditions_seed, conditions=drive.conditions())
        camera = Camera(world, KINDS[drive.world].camera, drive.conditions_seed)
        for s in (rng.uniform() + np.arange(per_drive)) / per_drive * track.length:
            x, y = track.point_at(s, track.lane_offset + rng.uniform(-0.25, 0.25) * track.width / track.lanes)
            heading = track.heading_at(s) + rng.uniform(-0.1, 0.1)
            name = f"{drive.name} at {s:.0f} m"
            probes.append(Probe(name, camera.render(x, y, heading), camera.render_labels(x, y, heading)))
    return probes


def track_probes(spec: str, count: int, seed: int = 0) -> list[Probe]:
    """`count` frames from a track's centre line (its lane's centre on two lanes), evenly spaced
    from its start, with labels."""
    track = get_track(spec, seed)
    camera = Camera(World(track, seed=seed), kind_for(track).camera, seed)
    probes = []
    for s in np.arange(count) * track.length / count:
        x, y = track.point_at(s, track.lane_offset)
        heading = track.heading_at(s)
        frame, labels = camera.render(x, y, heading), camera.render_labels(x, y, heading)
        probes.append(Probe(f"{track.name} at {s:.0f} m", frame, labels))
    return probes


def recording_probes(folder: Path, count: int) -> list[Probe]:
    """`count` center frames spread evenly through a recording (no labels: nobody knows them)."""
    rows = load_recordings([folder]).frames
    picked = rows.iloc[np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)]
    return [Probe(f"row {r.row}", read_frame(r.center)) for r in picked.itertuples()]
