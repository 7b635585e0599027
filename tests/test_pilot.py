"""The Pilot without a socket: telemetry payloads in, commands out, with a real tiny Keras model."""

from __future__ import annotations

import base64
import math

import keras
import numpy as np
import pytest

from driving.config import TARGET_SPEED_MPH, Preprocessing
from driving.pilot import Command, Pilot, PilotConfig
from driving.preprocess import encode_jpeg
from driving.runtime import Predictor
from tests.conftest import road_frame
from tests.test_runtime import tiny_model


def payload(frame: np.ndarray, speed: str = "5.0000", **extra) -> dict:
    image = base64.b64encode(encode_jpeg(frame)).decode()
    return {"steering_angle": "0.0000", "throttle": "0.0000", "speed": speed, "image": image, **extra}


@pytest.fixture(scope="module")
def pilot() -> Pilot:
    return Pilot(Predictor.from_keras(tiny_model()), PilotConfig(speed=TARGET_SPEED_MPH))


def test_a_frame_is_driven_with_string_values(pilot):
    session = pilot.new_session()
    frame = road_frame(0.5)
    command = pilot.drive(payload(frame), session)
    from driving.preprocess import decode_jpeg

    want = pilot.predictor(decode_jpeg(encode_jpeg(frame)))
    assert command.event == "steer" and command.problem is None
    assert command.steering == pytest.approx(want) and 0 < command.throttle <= 1  # 5 mph of 9: speed up
    assert command.payload() == {"steering_angle": f"{want:.4f}", "throttle": f"{command.throttle:.4f}"}
    assert command.telemetry.speed == 5.0 and session.steering == command.steering


@pytest.mark.parametrize("data", [None, {}])
def test_manual_telemetry_gets_manual(pilot, data):
    command = pilot.drive(data, pilot.new_session())
    assert command.event == "manual" and command.payload() == {}


@pytest.mark.parametrize(
    "data, problem",
    [
        ([1, 2], "payload is list"),
        ({"speed": "1"}, "missing field 'image'"),
        ({"image": "x", "steering_angle": "0", "throttle": "0", "speed": "1e400"}, "not finite"),
        ({"image": "x", "steering_angle": "0", "throttle": "0", "speed": "999"}, "not a car's speed"),
        ({"image": "@@", "steering_angle": "0", "throttle": "0", "speed": "1"}, "not valid base64"),
        ({"image": 5, "steering_angle": "0", "throttle": "0", "speed": "1"}, "'image' is int"),
    ],
)
def test_anything_undrivable_gets_the_safe_command(pilot, data, problem):
    session = pilot.new_session()
    session.steering = -0.3
    command = pilot.drive(data, session)
    assert command.event == "steer" and problem in command.problem
    assert (command.steering, command.throttle) == (-0.3, 0.0)


def test_frames_are_checked_against_the_models_own_geometry():
    odd = Preprocessing(
        frame_height=120, frame_width=240, crop_top=40, crop_bottom=110, input_height=48, input_width=96
    )
    pilot = Pilot(Predictor.from_keras(tiny_model(odd.input_shape), preprocessing=odd))
    refused = pilot.drive(payload(road_frame(0.0)), pilot.new_session())  # a 320x160 frame
    assert "expected a 240x120" in refused.problem
    import cv2

    small = cv2.resize(road_frame(0.0), (240, 120), interpolation=cv2.INTER_AREA)
    assert pilot.drive(payload(small), pilot.new_session()).problem is None


def test_a_model_that_returns_nan_gets_the_safe_command():
    inputs = keras.Input((128, 128, 3))
    out = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2, 3))[:, None] * math.nan)(inputs)
    pilot = Pilot(Predictor.from_keras(keras.Model(inputs, out)))
    command = pilot.drive(payload(road_frame(0.0)), pilot.new_session())
    assert "model returned nan" in command.problem and command.throttle == 0.0


def test_negative_zero_is_sent_as_zero():
    assert Command("steer", -0.0, -0.0).payload() == {"steering_angle": "0.0000", "throttle": "0.0000"}


@pytest.mark.parametrize(
    "bad", [{"speed": math.nan}, {"speed": -1}, {"throttle": 2.0}, {"turn_slowdown": -1}]
)
def test_nonsense_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PilotConfig(**bad).validate()
