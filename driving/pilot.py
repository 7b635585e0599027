"""The driving logic of serving, without sockets: one telemetry message in, one command out.

    pilot = Pilot(predictor, PilotConfig(speed=12.0))  # settings: driving/drive_config.py
    session = pilot.new_session()            # one per connected simulator
    command = pilot.drive(payload, session)  # never raises
    emit(command.event, command.payload())   # `steer` with STRING values, or `manual` {}

What a command is made of, following the simulator's protocol (docs/simulator-protocol.md):
- telemetry `null` or `{}` is manual driving (the person holds W or S): answered with `manual`;
- otherwise the base64 JPEG is decoded, checked to be of the frame size the model was trained on,
  preprocessed with the model's own geometry and predicted (driving.runtime.Predictor); throttle
  comes from a PI speed controller (or is fixed);
- anything that cannot be driven from (a broken image, a missing field, a model output that is not
  finite, any error) gets the safe command: the session's last steering, throttle 0, and a
  `problem` saying why. The simulator waits for every reply, so there always is one.
Replies carry STRING values with 4 decimals: the simulator reads them with float.Parse(x.str).
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from driving.config import DEFAULT_PREPROCESSING, TARGET_SPEED_MPH, Preprocessing
from driving.drive_config import MAX_IMAGE_CHARS, PilotConfig
from driving.preprocess import FrameError, check_frame, decode_jpeg

if TYPE_CHECKING:  # a type only: importing the runtime loads TensorFlow wherever a Pilot is named
    from driving.runtime import Predictor

MAX_SPEED_MPH = 200.0  # the simulator tops out near 30 mph: beyond this a speed is nonsense


class BadTelemetry(ValueError):
    """A telemetry message the pilot cannot drive from; the message says what was wrong."""


@dataclass
class Telemetry:
    frame: np.ndarray  # RGB uint8 of the model's frame size
    steering: float
    throttle: float
    speed: float


def _number(payload: dict, key: str) -> float:
    if key not in payload:
        raise BadTelemetry(f"missing field {key!r}")
    value = payload[key]
    # The simulator sends strings ("0.0000"); modern clients may send numbers. Both are fine.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadTelemetry(f"field {key!r} is {type(value).__name__}, not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise BadTelemetry(f"field {key!r} is not a number: {str(value)[:20]!r}") from None
    if not math.isfinite(number):
        raise BadTelemetry(f"field {key!r} is not finite: {str(value)[:20]!r}")
    return number


def decode_image(
    text, geometry: Preprocessing = DEFAULT_PREPROCESSING, max_chars: int = MAX_IMAGE_CHARS
) -> np.ndarray:
    """The telemetry's base64 JPEG -> RGB frame of the geometry's size, or BadTelemetry why not."""
    if not isinstance(text, str):
        raise BadTelemetry(f"field 'image' is {type(text).__name__}, not a base64 string")
    if len(text) > max_chars:
        raise BadTelemetry(f"image of {len(text)} base64 characters exceeds the {max_chars} limit")
    try:
        jpeg = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadTelemetry(f"image is not valid base64 ({e})") from None
    # libjpeg decodes a truncated file as grey and only warns: require the end-of-image marker.
    if jpeg[:2] == b"\xff\xd8" and jpeg[-2:] != b"\xff\xd9":
        raise BadTelemetry(f"image is a truncated JPEG ({len(jpeg)} bytes, no end-of-image marker)")
    try:
        frame = decode_jpeg(jpeg, "image", size=(geometry.frame_width, geometry.frame_height))
        check_frame(frame, "image", geometry)
    except FrameError as e:
        raise BadTelemetry(str(e)) from None
    return frame


def parse_telemetry(
    data, geometry: Preprocessing = DEFAULT_PREPROCESSING, max_image_chars: int = MAX_IMAGE_CHARS
) -> Telemetry | None:
    """The simulator's telemetry payload -> Telemetry, or None for manual driving (null or {})."""
    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise BadTelemetry(f"payload is {type(data).__name__}, not an object")
    if "image" not in data:
        raise BadTelemetry("missing field 'image'")
    speed = _number(data, "speed")
    if not -MAX_SPEED_MPH <= speed <= MAX_SPEED_MPH:
        raise BadTelemetry(f"field 'speed' is {speed:g} mph, not a car's speed")
    return Telemetry(
        frame=decode_image(data["image"], geometry, max_image_chars),
        steering=_number(data, "steering_angle"),
        throttle=_number(data, "throttle"),
        speed=speed,
    )


@dataclass
class SpeedController:
    """PI controller from speed error to throttle, updated once per frame like the classic drive.py
    (kp 0.1, ki 0.002). Per frame rather than per second so a simulator stepped faster than real
    time gets the same throttle. The integral is clamped so a long stop cannot wind it up.

    turn_slowdown > 0 lowers the target in sharp turns: target = speed * (1 - k |steering|), at
    least half the set speed."""

    speed: float = TARGET_SPEED_MPH
    kp: float = 0.1
    ki: float = 0.002
    turn_slowdown: float = 0.0
    integral: float = 0.0

    def target(self, steering: float) -> float:
        return self.speed * max(0.5, 1.0 - self.turn_slowdown * abs(steering))

    def update(self, speed: float, steering: float = 0.0) -> float:
        error = self.target(steering) - speed
        self.integral = min(max(self.integral + error, -1.0 / self.ki), 1.0 / self.ki)
        return min(max(self.kp * error + self.ki * self.integral, -1.0), 1.0)


@dataclass
class Session:
    """What the pilot remembers about one connected simulator."""

    controller: SpeedController
    steering: float = 0.0  # last steering sent: the safe command keeps it


@dataclass
class Command:
    """One reply: `steer` (steering, throttle) or `manual`. `problem` is set when this is the safe
    command sent instead of a prediction; `telemetry` is what a `steer` was driven from."""

    event: str
    steering: float = 0.0
    throttle: float = 0.0
    problem: str | None = None
    telemetry: Telemetry | None = field(default=None, repr=False)
    seconds: float = 0.0  # time the pilot took

    def payload(self) -> dict:
        """The event's data as the simulator reads it: STRING values ("-0.0312"), or {}."""
        if self.event != "steer":
            return {}
        steering, throttle = self.steering + 0.0, self.throttle + 0.0  # -0.0 would print "-0.0000"
        return {"steering_angle": f"{steering:.4f}", "throttle": f"{throttle:.4f}"}


class Pilot:
    """Predictor + speed control + safe fallbacks: the part of serving that decides."""

    def __init__(self, predictor: Predictor, config: PilotConfig | None = None):
        self.predictor = predictor
        self.config = (config or PilotConfig()).validate()

    @property
    def name(self) -> str:
        return self.predictor.name

    def new_session(self) -> Session:
        return Session(SpeedController(self.config.speed, turn_slowdown=self.config.turn_slowdown))

    def fallback(self, session: Session, problem: str) -> Command:
        """The safe command: keep the last steering, no throttle."""
        return Command("steer", session.steering, 0.0, problem=problem)

    def drive(self, data, session: Session) -> Command:
        """The command for one telemetry payload. Never raises: whatever goes wrong is answered
        with the safe command, its `problem` saying what."""
        start = time.perf_counter()
        try:
            telemetry = parse_telemetry(data, self.predictor.preprocessing, self.config.max_image_chars)
            if telemetry is None:
                return Command("manual", seconds=time.perf_counter() - start)
            steering = self.predictor(telemetry.frame)
            if not math.isfinite(steering):
                return self.fallback(session, f"model returned {steering}")
            steering = min(max(steering, -1.0), 1.0)
            throttle = (
                self.config.throttle
                if self.config.throttle is not None
                else session.controller.update(telemetry.speed, steering)
            )
            session.steering = steering
            seconds = time.perf_counter() - start
            return Command("steer", steering, throttle, telemetry=telemetry, seconds=seconds)
        except BadTelemetry as e:
            return self.fallback(session, f"bad telemetry: {e}")
        except Exception as e:  # nothing a client sends, and no model fault, may stall the simulator
            return self.fallback(session, f"internal error {type(e).__name__}: {str(e)[:100]}")
