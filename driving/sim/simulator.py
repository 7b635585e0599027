"""One simulated car on one track: physics, lap progress, road checks and the three cameras.

This is the object a drive loop uses: reset(), step(steering, throttle, brake, dt), render(camera),
and the queries location / off_road / progress / laps. use_world() swaps the look (another style,
seed or conditions around the same road) without touching the car.

The kind of world (driving/sim/kinds.py: cameras, steering scale) is the track's own unless named.
On a two-lane road lane_cte is the error from the lane's centre and off_lane says the car's centre
crossed the centre line or the road edge; on one lane they are cte and off_road.
"""

from __future__ import annotations

import math

import numpy as np

from driving.config import CAMERAS
from driving.sim.camera import Camera, CameraSpec
from driving.sim.car import Car
from driving.sim.conditions import Conditions
from driving.sim.kinds import CLASSIC, WorldKind, kind_for
from driving.sim.style import Style
from driving.sim.track import Track
from driving.sim.world import World

PHYSICS_HZ = 60.0  # physics substeps per second, whatever the sample rate

CAMERA_SPECS: dict[str, CameraSpec] = CLASSIC.camera_specs()  # the classic world's cameras


class Simulator:
    """Car + track (+ world and cameras when `render`). Deterministic: no clocks, no threads."""

    def __init__(
        self,
        track: Track,
        seed: int = 0,
        render: bool = True,
        ppm: float = 10.0,
        conditions: Conditions = Conditions(),
        kind: WorldKind | None = None,
        style: Style | None = None,  # paints the world instead of the track's named style
    ):
        self.track = track
        self.kind = kind or kind_for(track)
        self.world: World | None = None
        self.cameras: dict[str, Camera] = {}
        if render:
            self.use_world(World(track, ppm=ppm, seed=seed, conditions=conditions, style=style), seed)
        self.car = Car()
        self.reset()

    def use_world(self, world: World, seed: int) -> None:
        """Render from now on in `world` (painted around this track's road), with the sky drawn
        from `seed`. The car, its progress and the physics are untouched."""
        if not np.array_equal(world.track.points, self.track.points):
            raise ValueError(f"world of track {world.track.name!r} does not fit track {self.track.name!r}")
        self.world = world
        specs = self.kind.camera_specs()
        self.cameras = {name: Camera(world, specs[name], seed) for name in CAMERAS}

    def reset(
        self, s: float = 0.0, offset: float = 0.0, speed: float = 0.0, keep_progress: bool = False
    ) -> None:
        """Put the car on the track at arc length `s`, `offset` m right of its lane's centre (the
        centre line on one lane), facing along it. With keep_progress (after an intervention) the
        lap count continues."""
        x, y = self.track.point_at(s, self.track.lane_offset + offset)
        heading = self.track.heading_at(s)
        self.car = Car(float(x), float(y), heading, speed, max_wheel_deg=self.kind.max_wheel_deg)
        self.location = self.track.locate((x, y))
        if not keep_progress:
            self.progress = 0.0  # metres driven along the centre line since the start
            self._start_s = self.location.s
        self._last_s = self.location.s

    def step(self, steering: float, throttle: float, brake: float = 0.0, dt: float = 1 / 15) -> None:
        """Advance the car `dt` seconds under constant controls, in physics substeps."""
        n = max(1, math.ceil(dt * PHYSICS_HZ - 1e-9))
        for _ in range(n):
            self.car.step(steering, throttle, brake, dt / n)
        self.location = self.track.locate((self.car.x, self.car.y), hint=self.location.index)
        delta = self.location.s - self._last_s
        length = self.track.length
        self.progress += (delta + length / 2) % length - length / 2  # unwrap across the start line
        self._last_s = self.location.s

    @property
    def laps(self) -> float:
        return self.progress / self.track.length

    @property
    def off_road(self) -> bool:
        """True when the car's centre has left the road surface."""
        return abs(self.location.cte) > self.track.width / 2

    @property
    def lane_cte(self) -> float:
        """Signed error from the centre of the car's lane, metres (positive: right of it)."""
        return self.location.cte - self.track.lane_offset

    @property
    def off_lane(self) -> bool:
        """True when the car's centre has left its lane: across the centre line or the road edge
        of a two-lane road; off the road on one lane."""
        return abs(self.lane_cte) > self.track.lane_half_width

    def render(self, camera: str = "center") -> np.ndarray:
        """The named camera's 160x320 RGB frame from the current pose."""
        if not self.cameras:
            raise RuntimeError("this Simulator was built with render=False")
        return self.cameras[camera].render(self.car.x, self.car.y, self.car.heading)
