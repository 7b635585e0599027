"""The few constants every module shares. Change a value here and it changes everywhere."""

from __future__ import annotations

from dataclasses import dataclass

# The Udacity simulator's camera frames (see ../shared/udacity-simulator.md).
FRAME_HEIGHT, FRAME_WIDTH = 160, 320
SAMPLE_RATE_HZ = 15  # one sample (three cameras) every 1/15 s
MAX_WHEEL_ANGLE_DEG = 25.0  # steering 1.0 == 25 degrees of wheel angle, positive steers right
CAMERAS = ("center", "left", "right")
CSV_NAME = "driving_log.csv"
IMG_DIR = "IMG"

# Preprocessing: rows 80:140 keep the road and drop the sky and the bonnet.
CROP_TOP, CROP_BOTTOM = 80, 140
INPUT_HEIGHT, INPUT_WIDTH = 128, 128
INPUT_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH, 3)

# A side camera sees the road as if the car had drifted; steering this much more brings it back.
STEERING_CORRECTION = 0.25


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only random transforms; each one can be switched off (reference values)."""

    side_cameras: bool = True
    steering_correction: float = STEERING_CORRECTION
    flip: bool = True
    brightness: bool = True
    brightness_range: tuple[float, float] = (0.1, 1.0)
    shadow: bool = True
    shift: bool = True
    shift_max_px: float = 40.0  # in pixels of the 320-wide frame
    shift_steering_per_px: float = 0.004  # steering change per pixel of shift (320-wide frame)
    drop_straight: bool = True
    straight_threshold: float = 0.01  # |steering| below this counts as driving straight
    straight_keep: float = 0.2  # keep 20% of near-straight frames each epoch (drop 80%)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(
            side_cameras=False, flip=False, brightness=False, shadow=False, shift=False, drop_straight=False
        )
