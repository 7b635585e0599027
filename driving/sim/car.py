"""The car: a kinematic bicycle model with throttle, brake and drag, speeds in mph up to 30.

Steering 1.0 turns the front wheels max_wheel_deg to the right (MAX_WHEEL_ANGLE_DEG, the
simulator's 25 degrees, unless a kind of world says otherwise: driving/sim/kinds.py); negative
throttle brakes, as drive.py's speed controller expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from driving.config import MAX_WHEEL_ANGLE_DEG

MPH = 0.44704  # metres per second in one mph
WHEELBASE_M = 2.6
MAX_SPEED_MPH = 30.0
ENGINE_ACCEL = 4.0  # m/s^2 at full throttle from standstill
BRAKE_DECEL = 8.0  # m/s^2 at full brake
ROLLING_DECEL = 0.3  # m/s^2 when coasting


@dataclass
class Car:
    """Pose of the car's centre (metres, heading radians ccw from +x) and its speed (m/s)."""

    x: float = 0.0
    y: float = 0.0
    heading: float = 0.0
    speed: float = 0.0
    steering: float = 0.0  # last command, [-1, 1]
    max_wheel_deg: float = MAX_WHEEL_ANGLE_DEG  # the wheel angle of steering 1.0

    @property
    def mph(self) -> float:
        return self.speed / MPH

    def step(self, steering: float, throttle: float, brake: float, dt: float) -> None:
        """Advance `dt` seconds. Throttle in [-1, 1] (negative brakes), brake in [0, 1]."""
        self.steering = max(-1.0, min(1.0, float(steering)))
        throttle = max(-1.0, min(1.0, float(throttle)))
        brake = max(brake, -throttle, 0.0)
        drive = max(throttle, 0.0) * ENGINE_ACCEL * (1 - self.speed / (MAX_SPEED_MPH * MPH))
        accel = drive - brake * BRAKE_DECEL - (ROLLING_DECEL if self.speed > 0 else 0.0)
        v0 = self.speed
        self.speed = min(max(v0 + accel * dt, 0.0), MAX_SPEED_MPH * MPH)
        v = 0.5 * (v0 + self.speed)
        # Kinematic bicycle about the centre: slip angle beta, positive wheel angle turns right.
        wheel = math.radians(self.steering * self.max_wheel_deg)
        beta = math.atan(0.5 * math.tan(wheel))
        self.heading -= v * math.cos(beta) * math.tan(wheel) / WHEELBASE_M * dt
        self.heading = math.remainder(self.heading, 2 * math.pi)
        self.x += v * math.cos(self.heading - beta) * dt
        self.y += v * math.sin(self.heading - beta) * dt
