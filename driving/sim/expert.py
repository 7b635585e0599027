"""The expert driver: pure pursuit on the centre line, speed from the curvature ahead, and
deliberate drifts towards the road edge followed by recoveries, so recordings teach a model how
to come back. Its steering is low-pass filtered and rate-limited, like a person's hands.

Pure pursuit also fixes the side cameras' geometry: a camera SIDE_CAMERA_OFFSET_M to the left sees
the road as if the car were that far left of the line; the steering that brings such a car back
onto the line over a LOOKAHEAD_FOR_CORRECTION_M pure-pursuit arc is implied_correction(...) = 0.25,
the project's STEERING_CORRECTION (another kind of world implies its own: kinds.WorldKind).

On a two-lane road (track.lanes == 2) the expert follows its lane's centre, a quarter width right
of the centre line; its drifts stay inside the lane, and its speed follows the lane's curvature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from driving.config import MAX_WHEEL_ANGLE_DEG
from driving.sim.car import MAX_SPEED_MPH, MPH, WHEELBASE_M, Car
from driving.sim.track import Track

SIDE_CAMERA_OFFSET_M = 0.8
LOOKAHEAD_FOR_CORRECTION_M = 6.16  # the expert's own lookahead at about 12 mph


def pure_pursuit(car: Car, target: np.ndarray) -> float:
    """Steering in [-1, 1] (of the car's own steering scale) that puts the rear axle on a circular
    arc through `target` (x, y)."""
    fx, fy = math.cos(car.heading), math.sin(car.heading)
    rear = np.array([car.x - fx * WHEELBASE_M / 2, car.y - fy * WHEELBASE_M / 2])
    dx, dy = target - rear
    dist = math.hypot(dx, dy)
    alpha = math.atan2(dy, dx) - car.heading  # positive = target to the left
    wheel = math.atan(2 * WHEELBASE_M * math.sin(alpha) / max(dist, 1e-6))
    return max(-1.0, min(1.0, -math.degrees(wheel) / car.max_wheel_deg))


def implied_correction(
    offset_m: float = SIDE_CAMERA_OFFSET_M,
    lookahead_m: float = LOOKAHEAD_FOR_CORRECTION_M,
    max_wheel_deg: float = MAX_WHEEL_ANGLE_DEG,
) -> float:
    """Extra steering (right positive) for a car `offset_m` left of a straight line to reach it
    `lookahead_m` ahead by pure pursuit, in steering units of `max_wheel_deg` at 1.0."""
    return math.degrees(math.atan(2 * WHEELBASE_M * offset_m / lookahead_m**2)) / max_wheel_deg


@dataclass(frozen=True)
class ExpertConfig:
    cruise_mph: float = 20.0
    lateral_accel: float = 2.5  # m/s^2 allowed in bends; sets the cornering speed
    lookahead_s: float = 0.6  # lookahead = lookahead_min_m + lookahead_s * speed
    lookahead_min_m: float = 3.0
    steer_tau_s: float = 0.15  # hands' low-pass time constant
    steer_rate: float = 2.5  # max steering change per second
    weave: bool = True
    drift_every_s: tuple[float, float] = (5.0, 12.0)  # pause between drifts, uniform
    drift_s: tuple[float, float] = (1.5, 3.0)  # time spent drifting away from the line
    drift_edge_margin_m: float = 1.2  # how close to the road edge the car's centre may drift
    # On a two-lane road: how close to its lane's edge (the centre line, or the road edge) it may.
    drift_lane_margin_m: float = 0.8

    def __post_init__(self) -> None:
        """Refuse settings that would stall the car or put NaN into a recording."""
        positive = ("cruise_mph", "lateral_accel", "lookahead_min_m", "steer_rate")
        for name in (*positive, "lookahead_s", "steer_tau_s", "drift_edge_margin_m", "drift_lane_margin_m"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or value < 0 or (value == 0 and name in positive):
                above = "above" if name in positive else "from"
                raise ValueError(f"ExpertConfig.{name} must be a finite number {above} 0, got {value!r}")
        if self.cruise_mph > MAX_SPEED_MPH:
            raise ValueError(f"ExpertConfig.cruise_mph must be at most the car's {MAX_SPEED_MPH:g} mph")
        for name in ("drift_every_s", "drift_s"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"ExpertConfig.{name} must be (low, high) seconds with 0 < low <= high")


class Expert:
    """Drives a Car around a Track. Deterministic for a given seed."""

    def __init__(self, track: Track, seed: int = 0, config: ExpertConfig = ExpertConfig()):
        self.track, self.cfg = track, config
        self.rng = np.random.default_rng(seed)
        self.steering = 0.0
        self.offset = 0.0  # lateral offset (m, right positive) of the line it follows now
        self._phase, self._timer, self._goal = "cruise", self._pause(), 0.0
        self._speed_i = 0.0

    def _pause(self) -> float:
        return float(self.rng.uniform(*self.cfg.drift_every_s))

    def _update_offset(self, dt: float) -> None:
        """cruise -> drift (glide towards an edge) -> recover (back to the line) -> cruise."""
        cfg = self.cfg
        self._timer -= dt
        if cfg.weave and self._timer <= 0:
            if self._phase == "cruise":
                if self.track.lanes == 2:
                    reach = max(0.0, self.track.lane_half_width - cfg.drift_lane_margin_m)
                else:
                    reach = self.track.width / 2 - cfg.drift_edge_margin_m
                self._phase, self._timer = "drift", float(self.rng.uniform(*cfg.drift_s))
                self._goal = float(self.rng.choice([-1, 1]) * self.rng.uniform(0.6, 1.0) * reach)
            elif self._phase == "drift":
                self._phase, self._timer, self._goal = "recover", 2.0, 0.0
            else:
                self._phase, self._timer = "cruise", self._pause()
        # Drifting is slow and careless; recovering is brisk.
        rate = 0.8 if self._phase == "drift" else 2.0
        self.offset += float(np.clip(self._goal - self.offset, -rate * dt, rate * dt))

    def target_speed(self, s: float, speed: float) -> float:
        """Cruise speed, lowered so the tightest bend in the next few seconds stays within the
        lateral acceleration limit (on a two-lane road, the bend of its lane)."""
        tr = self.track
        ahead = (tr.index_at(s) + np.arange(int((10 + 3 * speed) / tr.spacing))) % len(tr.points)
        curvature = tr.curvature[ahead]
        if tr.lane_offset:  # a lane d right of the line bends with radius 1/k + d (k > 0: left)
            curvature = curvature / (1 + curvature * tr.lane_offset)
        kappa = float(np.abs(curvature).max())
        return min(self.cfg.cruise_mph * MPH, math.sqrt(self.cfg.lateral_accel / max(kappa, 1e-4)))

    def act(self, car: Car, s: float, dt: float) -> tuple[float, float, float]:
        """(steering, throttle, brake) for a car whose nearest centre-line point is at arc `s`."""
        cfg = self.cfg
        self._update_offset(dt)
        lookahead = cfg.lookahead_min_m + cfg.lookahead_s * car.speed
        aim = pure_pursuit(car, self.track.point_at(s + lookahead, self.track.lane_offset + self.offset))
        # Hands: first-order lag, then a rate limit.
        wanted = self.steering + (aim - self.steering) * dt / (cfg.steer_tau_s + dt)
        self.steering += float(np.clip(wanted - self.steering, -cfg.steer_rate * dt, cfg.steer_rate * dt))
        error = self.target_speed(s, car.speed) - car.speed
        self._speed_i = float(np.clip(self._speed_i + error * dt, -2, 2))
        command = 0.4 * error + 0.1 * self._speed_i
        throttle = float(np.clip(command, 0.0, 1.0))
        brake = float(np.clip(-command, 0.0, 1.0)) if error < -0.5 else 0.0
        return round(self.steering, 4), round(throttle, 4), round(brake, 4)
