"""Pinhole cameras on the car: perspective-map the world texture, add sky, scenery and bonnet.

Every pixel below the horizon looks at a fixed point of the ground in the car's frame, so the
ground-plane grid (metres forward, metres right) is computed once per camera. Per frame, one
affine (the car's pose) turns the grid into texture coordinates (cv2.transform) and cv2.remap
samples the texture: two C calls per distance band. Rows are grouped into bands by how much ground
one pixel covers; each band samples the mip level whose texels are about that size, so the far
road does not shimmer. Far rows fade into haze; above the horizon a cylindrical panorama of sky
and scenery turns with the heading. The bonnet is a fixed shape drawn last. Sky, scenery, haze
and bonnet take the world's colours and sunlight (world.style, world.conditions.light).

Car frame: forward, right, up (metres) from the car's centre on the ground.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from driving.config import FRAME_HEIGHT, FRAME_WIDTH
from driving.sim.kinds import CameraSpec
from driving.sim.style import Style
from driving.sim.world import CAR, MIP_LEVELS, SKY, World, smooth_noise

FAR_M = 300.0  # ground beyond this is hidden behind the haze at the horizon
FOG_START_M, FOG_SCALE_M = 25.0, 140.0


def ground_grid(spec: CameraSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: (forward, right) metres in the car frame where its ray meets the ground, and
    the ray's ground distance (inf above the horizon). Shapes (H, W, 2) and (H, W)."""
    f, p = spec.focal, spec.pitch
    u = (np.arange(FRAME_WIDTH) + 0.5 - FRAME_WIDTH / 2) / f
    v = (np.arange(FRAME_HEIGHT) + 0.5 - FRAME_HEIGHT / 2) / f
    xc, yc = np.meshgrid(u, v)
    # Ray = axis + xc * right + yc * down, with axis and down tilted by the pitch.
    fwd = math.cos(p) - yc * math.sin(p)
    drop = math.sin(p) + yc * math.cos(p)  # downward component
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(drop > 1e-9, spec.height_m / drop, np.inf)
        forward = spec.forward_m + t * fwd
        right = spec.right_m + t * xc
        dist = np.where(np.isfinite(t), t * np.sqrt(fwd**2 + xc**2), np.inf)
    above = ~np.isfinite(dist)  # sky pixels: never sampled from the ground
    grid = np.stack([np.where(above, 0.0, forward), np.where(above, 0.0, right)], axis=-1)
    return grid.astype(np.float32), dist


def project(spec: CameraSpec, points: np.ndarray) -> np.ndarray:
    """Car-frame points (N, 3: forward, right, up) -> pixel (u, v), for drawing the bonnet."""
    f, p = spec.focal, spec.pitch
    d = points - np.array([spec.forward_m, spec.right_m, spec.height_m])
    z = d[:, 0] * math.cos(p) - d[:, 2] * math.sin(p)
    down = -d[:, 0] * math.sin(p) - d[:, 2] * math.cos(p)
    return np.column_stack([FRAME_WIDTH / 2 + f * d[:, 1] / z, FRAME_HEIGHT / 2 + f * down / z])


def panorama(
    style: Style, rows: int, focal: float, seed: int, light: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """A 360-degree strip of sky and scenery, `rows` high, 2*pi*focal wide (one column per pixel
    of the camera at the image centre), seamless where it wraps, under sunlight of RGB gain `light`."""
    rng = np.random.default_rng(seed + 7)
    width = int(round(2 * math.pi * focal))
    y = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.float32(style.sky_top) + y * np.float32(style.sky_horizon)
    img = np.broadcast_to(sky, (rows, width, 3)).copy()
    # Clouds: tiled noise so the strip wraps without a seam.
    tile = rng.standard_normal((6, 24)).astype(np.float32)
    clouds = cv2.resize(np.tile(tile, (1, 3)), (3 * width, rows), interpolation=cv2.INTER_CUBIC)[
        :, width : 2 * width
    ]
    if style.clouds:  # more cover, lower down, greyer: towards an overcast sky
        c = style.clouds
        cover = np.clip((clouds - 0.6 + 1.4 * c) * 1.2, 0, 0.8 + 0.15 * c)[..., None] * (1 - (1 - c) * y)
        img = img * (1 - cover) + cover * np.float32((245, 245, 248)) * np.float32(1 - 0.25 * c)
    else:
        cover = np.clip((clouds - 0.6) * 1.2, 0, 0.8)[..., None] * (1 - y)
        img = img * (1 - cover) + cover * np.float32((245, 245, 248))
    phase = np.linspace(0, 2 * np.pi, width, endpoint=False)

    def profile(amplitude: float, octaves: int, base_freq: int) -> np.ndarray:
        """Periodic skyline height (pixels above the horizon) as a sum of sines."""
        h = np.zeros(width)
        for k in range(octaves):
            freq = base_freq * 2**k + int(rng.integers(0, 3))
            h += amplitude / 2**k * np.sin(freq * phase + rng.uniform(0, 2 * np.pi))
        return h

    def layer(height: np.ndarray, colour, jitter: float) -> None:
        top = rows - np.clip(height, 0, rows - 1)
        mask = np.arange(rows)[:, None] >= top[None, :]
        grain = 1 + jitter * smooth_noise(rng, (rows, width), 3.0)[..., None]
        shade = 0.85 + 0.15 * (1 - y)  # lit from above
        img[mask] = (np.float32(colour) * grain * shade)[mask]

    if style.scenery == "hills":
        layer(14 + profile(9, 3, 3), style.far_colour, 0.05)
        layer(4 + profile(3, 4, 8), style.near_colour, 0.15)
    elif style.scenery == "forest":
        layer(24 + profile(6, 3, 4), style.far_colour, 0.15)
        canopy = 18 + profile(5, 2, 10) + 6 * np.abs(np.sin(phase * 97 + rng.uniform(0, 6)))
        layer(canopy, style.near_colour, 0.3)
    else:  # mesas: flat tops with steep sides
        raw = profile(1.0, 3, 2)
        layer(
            np.where(raw > 0.4, 20.0, np.where(raw > 0.1, 12.0, 3.0)) + profile(1.5, 2, 20),
            style.far_colour,
            0.08,
        )
        layer(3 + profile(2, 3, 6), style.near_colour, 0.1)
    return np.clip(img * np.float32(light), 0, 255).astype(np.uint8)


class Camera:
    """Renders one camera of the car in one world. Build once, render every frame."""

    def __init__(self, world: World, spec: CameraSpec = CameraSpec(), seed: int = 0):
        self.world, self.spec = world, spec
        grid, dist = ground_grid(spec)
        centre = dist[:, FRAME_WIDTH // 2]
        ground_rows = np.nonzero(centre < FAR_M)[0]
        self.first_ground_row = int(ground_rows[0])
        # Texels one pixel covers: geometric mean of its width and its (foreshortened) depth.
        near = np.minimum(centre, FAR_M)
        depth = np.abs(np.gradient(near))
        footprint = np.sqrt(depth * near / spec.focal) * world.ppm
        level = np.clip(np.floor(np.log2(np.maximum(footprint, 1e-6))), 0, MIP_LEVELS - 1).astype(int)
        self.bands: list[tuple[int, int, int, np.ndarray]] = []  # (row0, row1, level, grid)
        r0 = self.first_ground_row
        for r in range(r0 + 1, FRAME_HEIGHT + 1):
            if r == FRAME_HEIGHT or level[r] != level[r0]:
                self.bands.append((r0, r, int(level[r0]), np.ascontiguousarray(grid[r0:r])))
                r0 = r
        # Haze: per row weights in 1/256 so blending stays in integers.
        fog = 1 - np.exp(-np.maximum(centre - FOG_START_M, 0) / FOG_SCALE_M)
        fog[: self.first_ground_row] = 0
        self.fog_rows = np.nonzero(fog > 0.01)[0]
        self.fog_w = np.round(fog[self.fog_rows] * 256).astype(np.uint16)[:, None, None]
        light = world.conditions.light
        self.haze = np.round(np.array(world.style.haze) * light).astype(np.uint16)
        # Sky: the panorama column each image column looks at, relative to the heading.
        self.pano = panorama(world.style, self.first_ground_row, spec.focal, seed, light)
        offs = spec.focal * np.arctan((np.arange(FRAME_WIDTH) + 0.5 - FRAME_WIDTH / 2) / spec.focal)
        self.pano_shift = float(offs.min())
        offs = np.round(offs - offs.min()).astype(np.float32)
        self.pano_wide = np.concatenate([self.pano, self.pano[:, : int(offs.max()) + 1]], axis=1)
        rows = self.first_ground_row
        self.pano_x = np.ascontiguousarray(np.broadcast_to(offs, (rows, FRAME_WIDTH)))
        self.pano_y = np.ascontiguousarray(
            np.broadcast_to(np.arange(rows, dtype=np.float32)[:, None], (rows, FRAME_WIDTH))
        )
        self.bonnet_mask, self.bonnet = self._bonnet(light)
        self.bonnet_top = int(np.nonzero(self.bonnet_mask.any(axis=1))[0][0])

    def _bonnet(self, light: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """The car's bonnet as seen by this camera: a dark curved panel below the road rows, in
        sunlight of RGB gain `light`."""
        lateral = np.linspace(-0.85, 0.85, 31)
        front = np.column_stack(
            [1.7 - 0.3 * (lateral / 0.85) ** 2, lateral, 0.95 + 0.05 * (1 - (lateral / 0.85) ** 2)]
        )
        back = np.array([[self.spec.forward_m + 0.3, 0.85, 1.0], [self.spec.forward_m + 0.3, -0.85, 1.0]])
        poly = project(self.spec, np.vstack([front, back]))
        mask = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), np.uint8)
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        rows = np.linspace(0, 1, FRAME_HEIGHT, dtype=np.float32)[:, None, None]
        bonnet = np.float32((45, 50, 60)) * (0.9 + 0.4 * rows) * np.ones((1, FRAME_WIDTH, 1), np.float32)
        bonnet *= np.float32(light)
        return mask > 127, np.clip(bonnet, 0, 255).astype(np.uint8)

    def _affine(self, x: float, y: float, heading: float, level: int) -> np.ndarray:
        """2x3 matrix: car-frame (forward, right) metres -> texture pixels at mip `level`."""
        w, k = self.world, 2.0**level
        c, s = math.cos(heading), math.sin(heading)
        # world = (x, y) + forward * (c, s) + right * (s, -c); col = (X - x0) ppm, row = (y1 - Y) ppm
        a = w.ppm / k
        m = np.array([[c * a, s * a, (x - w.x0) * a], [-s * a, c * a, (w.y1 - y) * a]])
        m[:, 2] += 0.5 / k - 0.5  # pixel centres of a pyrDown level
        return m

    def _ground(self, pyramid: list[np.ndarray], out: np.ndarray, x: float, y: float, heading: float) -> None:
        for r0, r1, level, grid in self.bands:
            maps = cv2.transform(grid, self._affine(x, y, heading, level))
            cv2.remap(
                pyramid[level],
                maps,
                None,
                cv2.INTER_LINEAR,
                dst=out[r0:r1],
                borderMode=cv2.BORDER_REFLECT_101,
            )

    def render(self, x: float, y: float, heading: float) -> np.ndarray:
        """RGB uint8 frame (160x320x3) from the car at (x, y) metres with `heading` radians."""
        frame = np.empty((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        self._ground(self.world.colour, frame, x, y, heading)
        if len(self.fog_rows):
            rows = frame[self.fog_rows].astype(np.uint16)
            frame[self.fog_rows] = ((rows * (256 - self.fog_w) + self.haze * self.fog_w) >> 8).astype(
                np.uint8
            )
        start = np.float32(int((-heading * self.spec.focal + self.pano_shift) % self.pano.shape[1]))
        cv2.remap(
            self.pano_wide,
            self.pano_x + start,
            self.pano_y,
            cv2.INTER_NEAREST,
            dst=frame[: self.first_ground_row],
        )
        top = self.bonnet_top
        np.copyto(frame[top:], self.bonnet[top:], where=self.bonnet_mask[top:, :, None])
        return frame

    def render_road_mask(self, x: float, y: float, heading: float) -> np.ndarray:
        """Bool (160x320): True where this camera sees road surface (no sky, no bonnet)."""
        mask = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), np.uint8)
        self._ground(self.world.road, mask, x, y, heading)
        return (mask > 127) & ~self.bonnet_mask

    def render_labels(self, x: float, y: float, heading: float) -> np.ndarray:
        """uint8 (160x320): what each pixel shows, a label of driving.sim.world (OFF_ROAD, ROAD,
        EDGE, SKY, CAR). The ground is sampled at each pixel's centre, nearest texel of the full
        resolution labels (a label cannot be blended); the first call paints the world's labels."""
        labels = np.empty((FRAME_HEIGHT, FRAME_WIDTH), np.uint8)
        texture = self.world.labels
        for r0, r1, _, grid in self.bands:
            maps = cv2.transform(grid, self._affine(x, y, heading, 0))
            cv2.remap(
                texture, maps, None, cv2.INTER_NEAREST, dst=labels[r0:r1], borderMode=cv2.BORDER_REFLECT_101
            )
        labels[: self.first_ground_row] = SKY
        labels[self.bonnet_mask] = CAR
        return labels
