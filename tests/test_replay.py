"""Replay against serving drift: fixed simulator frames through every way a model is served must
give the steering the Keras model gives, frame by frame, before a car ever drives on it.

One small registered model (effnet-tiny: its input is pooled to 32x32 inside the model, and its
BatchNormalization folds into the convolutions at export, so those paths are covered too), built
with a fixed seed, is saved as .keras and .h5 and exported to
LiteRT float32, float16 and int8 the way the report does; each file is loaded as drive.py loads it
(driving.runtime.Predictor), and the Keras .keras file is also served by the real Socket.IO drive
server on 127.0.0.1, spoken to as the simulator speaks. The frames are tests/data/replay/
(tests/replay_frames.py makes them). A preprocessing change on one side only (crop rows, resize,
colour order, scaling) or an export that changes the model moves the steering far beyond these
tolerances.
"""

from __future__ import annotations

import hashlib
import json

import keras
import numpy as np
import pandas as pd
import pytest

from driving import models
from driving.config import DEFAULT_PREPROCESSING, TARGET_SPEED_MPH
from driving.drive_config import ServeConfig
from driving.drive_server import DriveServer
from driving.modelio import ModelInfo, export_tflite, save_keras
from driving.pilot import Pilot, PilotConfig
from driving.pipeline import build_cache, val_dataset
from driving.preprocess import decode_jpeg, read_frame
from driving.run import Checkpoint
from driving.runtime import Predictor
from driving.sim.client import SimulatorClient
from tests import replay_frames

MODEL = "effnet-tiny"
SEED = 0
STEERING_SPREAD = 0.25  # the replay steering's standard deviation
# Largest steering difference from Keras accepted on any frame, per serving path, and why.
TOLERANCE = {
    # the same float32 graph, traced once instead of called eagerly: only summation order differs
    "keras .keras": 1e-5,
    "keras .h5": 1e-5,
    # LiteRT's float32 kernels add in another order: float32 rounding only (runtime.AGREEMENT is 1e-3)
    "litert float32": 1e-4,
    "keras->litert": 1e-4,  # drive.py's default: the .keras file converted in memory
    # every weight rounded to float16 (2^-11 relative), times the gain the head needs (measured 4e-4)
    "litert float16": 5e-3,
    # 8-bit weights and activations: each layer rounds to 1/256 of its calibrated range; the
    # report's tolerance for int8 files (docs/models.md; measured here 0.04)
    "litert int8": 0.1,
    # keras->litert, then the reply's string with 4 decimals: rounding adds up to 5e-5
    "drive server": 1.5e-4,
}
INT8_MEAN = 0.04  # and on average over the frames (measured 0.012): an offset or a scale would show


def replay_index() -> list[dict]:
    return json.loads((replay_frames.FOLDER / replay_frames.INDEX).read_text())["frames"]


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return [(replay_frames.FOLDER / entry["file"]).read_bytes() for entry in replay_index()]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(the Keras steering of every replay frame, the saved files by path name)."""
    folder = tmp_path_factory.mktemp("replay")
    keras.utils.set_random_seed(SEED)
    model = models.build(MODEL)
    # The model's input as training makes it (driving.pipeline's validation stream: the frame
    # cache, then scaling inside tf.data), so every serving path is held against training.
    paths = [str(replay_frames.FOLDER / entry["file"]) for entry in replay_index()]
    cache = build_cache(paths, DEFAULT_PREPROCESSING, workers=1)
    frames = pd.DataFrame({"center": paths, "steering": np.zeros(len(paths), np.float32)})
    x = np.concatenate([batch.numpy() for batch, _ in val_dataset(frames, cache, batch_size=len(paths))])
    replay_frames.steer_along_first_component(model, x, STEERING_SPREAD)
    reference = keras.ops.convert_to_numpy(model(x, training=False)).reshape(-1)
    info = ModelInfo(
        preprocessing=DEFAULT_PREPROCESSING, model=MODEL, checkpoint=Checkpoint(kind="unknown", note="seeded")
    )
    files = {
        "keras .keras": save_keras(model, folder / f"{MODEL}.keras", info),
        "keras .h5": save_keras(model, folder / f"{MODEL}.h5", info),
    }
    for kind in ("float32", "float16", "int8"):
        path = folder / f"{MODEL}.{kind}.tflite"
        files[f"litert {kind}"] = export_tflite(model, path, kind, info, calibration=x)
    return reference, files


@pytest.fixture(scope="module")
def converted(served) -> Predictor:
    """The .keras file as drive.py serves it by default: converted to LiteRT, checked, kept."""
    return Predictor.load(served[1]["keras .keras"])


def test_replay_frames_are_the_indexed_simulator_frames():
    entries = replay_index()
    assert (
        len(entries) == len(replay_frames.TRACKS) * len(replay_frames.CONDITION_SEEDS) * replay_frames.POSES
    )
    for entry in entries:
        data = (replay_frames.FOLDER / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        assert read_frame(replay_frames.FOLDER / entry["file"]).shape == DEFAULT_PREPROCESSING.frame_shape


def test_the_generator_still_makes_these_frames():
    # One track's frames remade; pixels compared, not bytes: another JPEG encoder build may differ
    # in the last bit, but a moved pose, crop or look changes the frame by far more than a level.
    stored = {entry["file"]: entry for entry in replay_index()}
    remade = replay_frames.frames(tracks=replay_frames.TRACKS[:1])
    assert remade and all(entry["file"] in stored for entry, _ in remade)
    for entry, jpeg in remade:
        again = decode_jpeg(jpeg).astype(np.int16)
        kept = read_frame(replay_frames.FOLDER / entry["file"]).astype(np.int16)
        assert np.abs(again - kept).mean() < 1.0, entry["file"]
        assert {k: v for k, v in entry.items() if k != "sha256"} == {
            k: v for k, v in stored[entry["file"]].items() if k != "sha256"
        }


def test_the_reference_steering_differs_from_frame_to_frame(served):
    # Otherwise every path would agree for nothing: the spread must dwarf int8's rounding.
    reference, _ = served
    assert reference.std() > 3 * INT8_MEAN, reference
    assert np.abs(reference).max() < 1.0  # the pilot clips to [-1, 1]; stay inside


@pytest.mark.parametrize(
    "path", ["keras .keras", "keras .h5", "litert float32", "litert float16", "litert int8"]
)
def test_every_model_file_serves_the_keras_steering(served, path):
    reference, files = served
    backend = "keras" if path.startswith("keras") else "auto"
    predictor = Predictor.load(files[path], backend=backend)
    frames = [read_frame(replay_frames.FOLDER / entry["file"]) for entry in replay_index()]
    steering = np.array([predictor(frame) for frame in frames])
    gap = np.abs(steering - reference)
    assert gap.max() <= TOLERANCE[path], f"{path}: off by {gap.max():.2g} at frame {gap.argmax()}"
    if path == "litert int8":
        assert gap.mean() <= INT8_MEAN, f"{path}: off by {gap.mean():.2g} on average"


def test_the_converted_keras_file_serves_the_keras_steering(served, converted, jpegs):
    reference, _ = served
    assert converted.backend == "keras->litert"  # not a silent fall back to Keras
    steering = np.array([converted(decode_jpeg(j)) for j in jpegs])
    gap = np.abs(steering - reference)
    assert gap.max() <= TOLERANCE["keras->litert"], f"off by {gap.max():.2g} at frame {gap.argmax()}"


def test_the_drive_server_replies_the_keras_steering(served, converted, jpegs):
    reference, _ = served
    pilot = Pilot(converted, PilotConfig(speed=TARGET_SPEED_MPH))
    server = DriveServer(pilot, ServeConfig(status_interval=0))
    server.start()
    try:
        with SimulatorClient(port=server.port, timeout=10.0) as sim:
            kind, first = sim.connect(jpegs[0])
            assert kind == "steer"
            replies = [first["steering_angle"]]
            for jpeg in jpegs[1:]:
                sim.send_telemetry(0.0, 0.2, 9.0, jpeg)
                kind, command = sim.receive_reply()
                assert kind == "steer"
                replies.append(command["steering_angle"])
    finally:
        server.stop()
    gap = np.abs(np.array(replies) - reference)
    assert gap.max() <= TOLERANCE["drive server"], f"off by {gap.max():.2g} at frame {gap.argmax()}"
