"""The replay frames of tests/test_replay.py: camera frames of the project's own headless simulator,
stored as the JPEGs a simulator sends, with an index. To remake them (deterministic: the same
bytes on every run of the same simulator):

    PYTHONPATH=. python -m tests.replay_frames            # writes tests/data/replay/

Two looks on each of two built-in tracks (each track's own style, then the same road under drawn
conditions: another sun, shadows and colours), six poses per look spread along the lap, the car
set off the centre line and turned a little so the frames ask for different steering.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from driving.preprocess import encode_jpeg
from driving.sim.conditions import Conditions
from driving.sim.simulator import Simulator
from driving.sim.track import builtin_track

FOLDER = Path(__file__).resolve().parent / "data" / "replay"
INDEX = "index.json"
TRACKS = ("lake", "jungle")
CONDITION_SEEDS = (None, 3)  # None: the style as designed; a number: Conditions.draw(seed)
POSES = 6  # per look
QUALITY = 90  # what the closed loop sends the drive server (driving.preprocess.encode_jpeg)


def steer_along_first_component(model, x: np.ndarray, spread: float) -> None:
    """Give `model`'s zero-initialised "steering" head weights that point along the direction the
    features of frames `x` differ most (their first principal component), scaled so the steering
    over `x` has mean 0 and standard deviation `spread`, as a driver's does. An untrained model
    would answer 0.0 to every frame, and every serving path would agree for nothing."""
    import keras

    steering = model.get_layer("steering")
    features = keras.ops.convert_to_numpy(keras.Model(model.input, steering.input)(x, training=False))
    centred = features - features.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0][:, None]
    projected = features @ direction
    gain = spread / projected.std()
    steering.kernel.assign((direction * gain).astype("float32"))
    steering.bias.assign(np.full(1, -projected.mean() * gain, "float32"))


def frames(tracks: tuple[str, ...] = TRACKS) -> list[tuple[dict, bytes]]:
    """(index entry, JPEG bytes) of the replay frames of `tracks` (of TRACKS), in order. Poses
    come from an RNG seeded by the track's place in TRACKS and the look, so one track's frames
    can be remade alone."""
    out = []
    for track_name in tracks:
        track = builtin_track(track_name)
        for look, condition_seed in enumerate(CONDITION_SEEDS):
            conditions = Conditions() if condition_seed is None else Conditions.draw(condition_seed)
            sim = Simulator(track, seed=look, conditions=conditions)
            rng = np.random.default_rng([TRACKS.index(track_name), look])
            for k in range(POSES):
                s = (k + rng.uniform(0.1, 0.9)) * track.length / POSES
                offset = round(float(rng.uniform(-0.3, 0.3)) * track.width, 3)
                turn = round(float(rng.uniform(-0.15, 0.15)), 4)  # radians off the road's heading
                sim.reset(s=s, offset=offset)
                sim.car.heading += turn
                jpeg = encode_jpeg(sim.render("center"), QUALITY)
                entry = {
                    "file": f"{track_name}-{look}-{k}.jpg",
                    "track": track_name,
                    "conditions_seed": condition_seed,
                    "world_seed": look,
                    "s_m": round(s, 3),
                    "offset_m": offset,
                    "heading_offset_rad": turn,
                    "sha256": hashlib.sha256(jpeg).hexdigest(),
                }
                out.append((entry, jpeg))
    return out


def write(folder: Path = FOLDER) -> list[dict]:
    """Write the frames and index.json into `folder`; returns the index entries."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for entry, jpeg in frames():
        (folder / entry["file"]).write_bytes(jpeg)
        entries.append(entry)
    (folder / INDEX).write_text(json.dumps({"frames": entries}, indent=1) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.replay_frames", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=FOLDER, help=f"folder to write (default {FOLDER})")
    args = parser.parse_args(argv)
    entries = write(args.out)
    total = sum((args.out / e["file"]).stat().st_size for e in entries)
    print(f"wrote {len(entries)} frames ({total / 1024:.0f} KiB) and {INDEX} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
