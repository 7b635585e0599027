"""The world as one top-down texture: ground, shoulders, road, edge markings, light and shadow.

The camera renders by perspective-mapping this texture, so everything on the ground lives here,
drawn once per track. A mip pyramid (each level half the size, pre-filtered) lets far rows sample
a smoother level so distant texture does not shimmer. A second pyramid holds the road mask
(255 on the road surface), which tests and metrics can render through the same camera. A label
texture (what each ground point is: off-road, road, road edge or marking) is painted on first use,
for measuring where a model looks (driving/saliency/); worlds that are never asked pay nothing.

Under Conditions (conditions.py) the style's colours shift, its grain and shadow blobs scale,
shadows stretch along the sun's direction (and fade under an overcast sky), and sunlight dims and
tints everything. A track's style name is resolved by driving.sim.looks (a named style or look-N). The texture
holds at most MAX_TEXTURE_PIXELS: a track too large for that is painted at fewer pixels per metre.

Texture pixel (col, row) of world point (x, y): col = (x - x0) * ppm, row = (y1 - y) * ppm
(north up, as in the top-down plots).
"""

from __future__ import annotations

import math
from functools import cached_property

import cv2
import numpy as np

from driving.sim.conditions import Conditions
from driving.sim.looks import style_named
from driving.sim.style import Style
from driving.sim.track import Track

MARGIN_M = 45.0  # ground around the track's bounding box; beyond it the texture is mirrored
MIP_LEVELS = 5
# Painting peaks at about 48 bytes per texture pixel: 12 M pixels (3,460 x 3,460; the built-in
# tracks have 8 to 10 M) stay under 0.6 GB. A larger track is painted at fewer pixels per metre
# (at worst 3.2, for the largest extent a track may have, track.MAX_EXTENT_M).
MAX_TEXTURE_PIXELS = 12_000_000

# What a camera pixel shows (World.labels, Camera.render_labels). EDGE is the band EDGE_BAND_M
# either side of the road's boundary (where the road ends, marked or not) and every painted marking.
OFF_ROAD, ROAD, EDGE, SKY, CAR = 0, 1, 2, 3, 4
LABEL_NAMES = ("off-road", "road", "edge", "sky", "car")
EDGE_BAND_M = 0.5


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """Value noise in about [-1, 1] with features `cell_px` texture pixels across (float32)."""
    h, w = shape
    small = rng.standard_normal((max(2, int(h / cell_px) + 2), max(2, int(w / cell_px) + 2))).astype(
        np.float32
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * np.float32(0.7)


def cast_shadow(
    axes: tuple[int, int], angle_deg: float, length: float, sun_azimuth_deg: float
) -> tuple[tuple[int, int], float]:
    """The ground shadow of a blob with outline ellipse `axes` (texture pixels) at `angle_deg`
    (cv2's convention) that stands as tall as its larger axis, under a sun at `sun_azimuth_deg`
    whose shadows are `length` per unit of height: the blob's silhouette, its outline stretched
    along the sun's direction. As matrices, M = A A^T + (height * length)^2 s s^T; the closed
    form of a 2x2 eigen-decomposition gives its axes and angle."""
    a, b = axes
    t = math.radians(angle_deg)
    sun = math.radians(sun_azimuth_deg)
    sx, sy = math.cos(sun), -math.sin(sun)  # texture rows run south
    stretch = (max(a, b) * length) ** 2
    p = a * a * math.cos(t) ** 2 + b * b * math.sin(t) ** 2 + stretch * sx * sx
    r = a * a * math.sin(t) ** 2 + b * b * math.cos(t) ** 2 + stretch * sy * sy
    q = (a * a - b * b) * math.cos(t) * math.sin(t) + stretch * sx * sy
    mean, spread = (p + r) / 2, math.hypot((p - r) / 2, q)
    major, minor = math.sqrt(mean + spread), math.sqrt(max(mean - spread, 0.0))
    return (int(major), int(minor)), math.degrees(0.5 * math.atan2(2 * q, p - r))


class World:
    """Top-down texture pyramid of one track. Deterministic for a given track, seed and conditions."""

    def __init__(
        self,
        track: Track,
        ppm: float = 10.0,
        seed: int = 0,
        conditions: Conditions = Conditions(),
        style: Style | None = None,
    ):
        """`style` paints the world instead of the one the track names (a look with one of its parts
        changed: driving/evaluation/ablation.py)."""
        if not (isinstance(ppm, (int, float)) and math.isfinite(ppm) and ppm >= 1):
            raise ValueError(f"ppm must be a number of texture pixels per metre >= 1, got {ppm!r}")
        self.track, self.conditions = track, conditions
        self.style = conditions.paint(style if style is not None else style_named(track.style))
        lo = track.points.min(axis=0) - MARGIN_M
        hi = track.points.max(axis=0) + MARGIN_M
        width_m, height_m = hi - lo
        self.ppm = min(float(ppm), math.sqrt(MAX_TEXTURE_PIXELS / (width_m * height_m)))
        self.x0, self.y1 = float(lo[0]), float(hi[1])
        self.shape = (int(height_m * self.ppm), int(width_m * self.ppm))
        rng = np.random.default_rng(seed)
        colour, road = self._paint(rng)
        self.colour = [colour]
        self.road = [road]
        for _ in range(MIP_LEVELS - 1):
            self.colour.append(cv2.pyrDown(self.colour[-1]))
            self.road.append(cv2.pyrDown(self.road[-1]))

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """World metres (..., 2) -> texture pixels (col, row) at level 0."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] - self.x0) * self.ppm, (self.y1 - xy[..., 1]) * self.ppm], axis=-1)

    def _poly(self, xy: np.ndarray) -> np.ndarray:
        # cv2 drawing takes int32 points; 4 fractional bits keep sub-pixel precision.
        return np.round(self.to_px(xy) * 16).astype(np.int32).reshape(-1, 1, 2)

    def _stroke(
        self,
        img: np.ndarray,
        xy: np.ndarray,
        colour,
        width_m: float,
        closed: bool = True,
        smooth: bool = True,
    ) -> None:
        cv2.polylines(
            img,
            [self._poly(xy)],
            closed,
            colour,
            max(1, int(round(width_m * self.ppm))),
            cv2.LINE_AA if smooth else cv2.LINE_8,
            shift=4,
        )

    @cached_property
    def labels(self) -> np.ndarray:
        """uint8 texture (level 0) of OFF_ROAD, ROAD and EDGE, painted on first use. It draws no
        random numbers, so the colour texture is the same whether or not it is asked for."""
        tr, half = self.track, self.track.width / 2
        labels = np.full(self.shape, OFF_ROAD, np.uint8)
        self._stroke(labels, tr.points, ROAD, tr.width, smooth=False)
        for side in (-1, 1):
            self._stroke(labels, tr.edges(side * half), EDGE, 2 * EDGE_BAND_M, smooth=False)
        self._edges(labels, label=EDGE)
        return labels

    def _paint(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        st, tr, ppm = self.style, self.track, self.ppm
        h, w = self.shape
        img = np.empty((h, w, 3), np.uint8)
        img[:] = st.ground
        area = h * w / ppm**2
        for _ in range(int(st.bushes * area / 1e4)):  # ground cover: clumps of darker vegetation
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            axes = (int(rng.uniform(0.8, 3.5) * ppm), int(rng.uniform(0.8, 3.5) * ppm))
            shade = rng.uniform(0.8, 1.2)
            cv2.ellipse(
                img,
                c,
                axes,
                rng.uniform(0, 180),
                0,
                360,
                tuple(int(min(255, v * shade)) for v in st.bush_colour),
                -1,
                cv2.LINE_AA,
            )
        road_w = tr.width
        self._stroke(img, tr.points, st.shoulder, road_w + 2 * st.shoulder_m)
        self._stroke(img, tr.points, st.asphalt, road_w)
        road = np.zeros((h, w), np.uint8)
        self._stroke(road, tr.points, 255, road_w)
        self._edges(img)
        # Grain: multiplicative fine noise plus patches of wear, then light and shadow.
        cond = self.conditions
        noise = rng.standard_normal((h, w), dtype=np.float32)
        grain = noise * np.float32(st.texture_amp * cond.grain / 255)
        if st.ground_texture_amp is not None:  # the ground's own grain beyond road and shoulder
            paved = np.zeros((h, w), np.uint8)
            self._stroke(paved, tr.points, 1, road_w + 2 * st.shoulder_m, smooth=False)
            grain = np.where(paved > 0, grain, noise * np.float32(st.ground_texture_amp * cond.grain / 255))
        grain += smooth_noise(rng, (h, w), st.wear_m * ppm) * np.float32(st.wear)
        light = 1 + smooth_noise(rng, (h, w), st.light_patches_m * ppm) * np.float32(st.light_patches)
        shade = np.ones((h // 4, w // 4), np.float32)  # shadows at a quarter size, blurred up
        for _ in range(int(st.shadows * cond.shadow_density * area / 1e4)):
            c = (int(rng.uniform(0, w // 4)), int(rng.uniform(0, h // 4)))
            r = int(rng.uniform(1.5, 6.0) * ppm / 4)
            axes, angle = (r, int(r * rng.uniform(0.5, 1.0))), rng.uniform(0, 180)
            darkness = float(rng.uniform(0.55, 0.8))
            if cond.overcast:  # diffuse light: shadows fade
                darkness = 1 - (1 - darkness) * (1 - cond.overcast)
            if cond.shadow_length > 0:
                axes, angle = cast_shadow(axes, angle, cond.shadow_length, cond.sun_azimuth_deg)
            cv2.ellipse(shade, c, axes, angle, 0, 360, darkness, -1)
        shade = cv2.GaussianBlur(shade, (0, 0), 0.4 * ppm / 4)
        shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
        factor = (1 + grain) * light * shade
        out = img.astype(np.float32) * factor[..., None] * np.float32(cond.light)
        return np.clip(out, 0, 255).astype(np.uint8), road

    def _edges(self, img: np.ndarray, label: int | None = None) -> None:
        """Edge lines or curbs and centre dashes, in the style's colours, or all in `label`
        (without anti-aliasing: a blended label would be another class)."""
        st, tr = self.style, self.track
        half = tr.width / 2

        def stroke(xy, colour, width_m, closed=True):
            paint = colour if label is None else label
            self._stroke(img, xy, paint, width_m, closed, smooth=label is None)

        if st.edge in ("lines", "dashed"):
            for side in (-1, 1):
                edge = tr.edges(side * (half - st.edge_inset_m))
                if st.edge == "lines":
                    stroke(edge, st.edge_colour, st.edge_width_m)
                else:
                    self._dashes(edge, lambda xy: stroke(xy, st.edge_colour, st.edge_width_m, closed=False))
        elif st.edge == "curbs":  # blocks of the two curb colours in turn, on the road edge
            block = max(1, int(round(st.curb_m / tr.spacing)))
            for side in (-1, 1):
                edge = tr.edges(side * (half - st.edge_inset_m))
                for k, start in enumerate(range(0, len(edge), block)):
                    colour = st.curb_colours[k % 2]
                    stroke(edge[start : start + block + 1], colour, st.curb_width_m, closed=False)
        if st.centre_colour is None:
            return
        if st.centre == "dashed":
            self._dashes(tr.points, lambda xy: stroke(xy, st.centre_colour, st.centre_width_m, closed=False))
        elif st.centre == "solid":
            stroke(tr.points, st.centre_colour, st.centre_width_m)
        else:  # double: two solid lines 0.3 m apart
            for offset in (-0.15, 0.15):
                stroke(tr.edges(offset), st.centre_colour, 0.12)

    def _dashes(self, line: np.ndarray, stroke) -> None:
        """`stroke` each dash of `line` (a closed polyline at the track's spacing): the style's dash
        length, then its gap (3 m every 9 m in the named styles)."""
        st, spacing = self.style, self.track.spacing
        dash, period = max(1, int(st.dash_m / spacing)), max(1, int((st.dash_m + st.dash_gap_m) / spacing))
        for start in range(0, len(line) - dash, period):
            stroke(line[start : start + dash])
