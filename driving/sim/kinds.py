"""Kinds of world: where the cameras sit, what steering 1.0 means, and how many lanes the roads have.

A recording is only as useful as its match to the world a model will drive, and users bring
worlds unlike the Udacity simulator's: a camera higher or lower, pitched and zoomed otherwise, a
car whose full lock is another wheel angle, roads where it keeps to a lane. A WorldKind names those
facts once; the car, the expert's steering, the simulator's cameras, the recorder and the closed
loop take them from it.

    CLASSIC   the Udacity simulator's layout (camera 1.5 m up, 80 degrees wide, horizon at row
              62, side cameras 0.8 m out, steering 1.0 = 25 degrees, one lane, crop rows 80:140):
              today's worlds, byte for byte.
    TWO_LANE  a small two-lane world (driving/sim/lanes.py): a camera 2 m up, 100 degrees wide,
              pitched down 16.6 degrees so the horizon sits at row 40, side cameras 0.6 m out,
              steering 1.0 = 20 degrees, keep to the right lane, crop rows 54:140.

What training must be told about a kind (docs/worlds.md): its crop rows, its side cameras' steering
correction (steering_correction()), the steering of a sideways image shift
(shift_steering_per_px()), and, on two lanes, no mirror images.

A track carries its lanes; kind_for(track) is the kind a track drives in unless one is named.
CameraSpec (where a camera sits and how it looks) lives here, without OpenCV, so that the command
lines can name the kinds and still answer --help at once; driving/sim/camera.py renders with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from driving.config import FRAME_HEIGHT, FRAME_WIDTH, MAX_WHEEL_ANGLE_DEG
from driving.sim.expert import LOOKAHEAD_FOR_CORRECTION_M, SIDE_CAMERA_OFFSET_M, implied_correction
from driving.sim.track import Track


@dataclass(frozen=True)
class CameraSpec:
    """Where a camera sits on the car and how it looks. Defaults: the real simulator's layout
    (horizon in the upper half, road in rows 80:140, bonnet below row 140)."""

    right_m: float = 0.0  # sideways offset from the car's centre line, positive = right
    forward_m: float = 0.6  # ahead of the car's centre (windscreen)
    height_m: float = 1.5
    fov_deg: float = 80.0  # horizontal field of view
    horizon_row: float = 62.0  # where a level road's horizon appears (sets the pitch)

    @property
    def focal(self) -> float:
        return (FRAME_WIDTH / 2) / math.tan(math.radians(self.fov_deg) / 2)

    @property
    def pitch(self) -> float:
        """Downward tilt, radians."""
        return math.atan((FRAME_HEIGHT / 2 - self.horizon_row) / self.focal)


# The classic tuned steering per pixel of a sideways shift of the 320-wide frame (AugmentConfig).
CLASSIC_SHIFT_STEERING_PER_PX = 0.004


@dataclass(frozen=True)
class WorldKind:
    """The fixed facts of one kind of world (module docstring)."""

    name: str
    camera: CameraSpec  # the centre camera
    side_camera_m: float  # the left and right cameras sit this far either side of it
    max_wheel_deg: float  # steering 1.0 turns the wheels this far (right)
    lanes: int  # the lanes of the roads its maps have (1: drive on the centre line)
    # The expert's pure-pursuit lookahead at its typical speed in this world: what the side
    # cameras' steering correction is computed over (driving.sim.expert.steering_correction).
    correction_lookahead_m: float
    # The frame rows a model keeps (a Preprocessing's crop): the road from about 16 to 20 m ahead
    # down to just above the bonnet, no sky.
    crop_rows: tuple[int, int]

    def camera_specs(self) -> dict[str, CameraSpec]:
        """The three cameras: centre, and the side cameras beside it."""
        return {
            "center": self.camera,
            "left": replace(self.camera, right_m=self.camera.right_m - self.side_camera_m),
            "right": replace(self.camera, right_m=self.camera.right_m + self.side_camera_m),
        }

    def steering_correction(self) -> float:
        """The side cameras' steering correction this world implies: a car its side-camera offset
        left of the line, brought back by pure pursuit over its lookahead, in its steering units
        (classic: 0.250, the project's STEERING_CORRECTION)."""
        return implied_correction(self.side_camera_m, self.correction_lookahead_m, self.max_wheel_deg)

    def shift_steering_per_px(self) -> float:
        """Steering per pixel of sideways image shift (training's shift augmentation): the classic
        tuned 0.004 rescaled by what a pixel means here. A shift of p pixels turns the view by
        about p / focal radians; pure pursuit answers a heading error psi with about 2 L psi / D of
        wheel angle (lookahead D), divided by full lock in steering units. So the value goes as
        1 / (focal x D x full lock); classic gives 0.004 exactly."""
        return CLASSIC_SHIFT_STEERING_PER_PX * (_per_px(CLASSIC) / _per_px(self))


CLASSIC = WorldKind(
    "classic",
    CameraSpec(),
    SIDE_CAMERA_OFFSET_M,
    MAX_WHEEL_ANGLE_DEG,
    lanes=1,
    correction_lookahead_m=LOOKAHEAD_FOR_CORRECTION_M,
    crop_rows=(80, 140),  # 16 m to 4.1 m ahead
)
TWO_LANE = WorldKind(
    "two-lane",
    CameraSpec(forward_m=0.6, height_m=2.0, fov_deg=100.0, horizon_row=40.0),
    side_camera_m=0.6,
    max_wheel_deg=20.0,
    lanes=2,
    correction_lookahead_m=6.8,  # 3 m + 0.6 s x 6.3 m/s, the expert's mean speed on its maps
    crop_rows=(54, 140),  # 20 m to 2.9 m ahead: rows 80:140 would see no further than 7 m
)
KINDS = {kind.name: kind for kind in (CLASSIC, TWO_LANE)}


def _per_px(kind: WorldKind) -> float:
    """Focal length x lookahead x full lock: steering per pixel of shift goes as its inverse."""
    return kind.camera.focal * kind.correction_lookahead_m * kind.max_wheel_deg


def kind_for(track: Track) -> WorldKind:
    """The kind a track drives in unless one is named: two-lane for a two-lane road."""
    return TWO_LANE if track.lanes == 2 else CLASSIC
