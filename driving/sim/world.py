"""The world as one top-down texture: ground, shoulders, road, edge markings, light and shadow.

The camera renders by perspective-mapping this texture, so everything on the ground lives here,
drawn once per track. A mip pyramid (each level half the size, pre-filtered) lets far rows sample
a smoother level so distant texture does not shimmer. A second pyramid holds the road mask
(255 on the road surface), which tests and metrics can render through the same camera.

Texture pixel (col, row) of world point (x, y): col = (x - x0) * ppm, row = (y1 - y) * ppm
(north up, as in the top-down plots).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from driving.sim.track import Track

MARGIN_M = 45.0  # ground around the track's bounding box; beyond it the texture is mirrored
MIP_LEVELS = 5


@dataclass(frozen=True)
class Style:
    """How a track looks. Colours are RGB."""

    asphalt: tuple[int, int, int]
    ground: tuple[int, int, int]
    shoulder: tuple[int, int, int]
    shoulder_m: float  # width of the shoulder strip on each side
    edge: str  # "lines" | "curbs" | "none"
    edge_colour: tuple[int, int, int] = (235, 235, 225)
    centre_colour: tuple[int, int, int] | None = None  # dashed centre line, if any
    curb_colours: tuple[tuple[int, int, int], tuple[int, int, int]] = ((200, 30, 30), (240, 240, 240))
    texture_amp: float = 10.0  # fine grain of the asphalt and ground, in grey levels
    shadows: int = 40  # soft shadow blobs per 10,000 m^2
    bushes: int = 0  # dark ground-cover blobs per 10,000 m^2
    bush_colour: tuple[int, int, int] = (40, 80, 35)
    # sky and scenery (used by driving.sim.camera)
    sky_top: tuple[int, int, int] = (90, 140, 210)
    sky_horizon: tuple[int, int, int] = (190, 210, 230)
    scenery: str = "hills"  # "hills" | "forest" | "mesas"
    far_colour: tuple[int, int, int] = (110, 130, 150)  # distant scenery
    near_colour: tuple[int, int, int] = (60, 100, 50)  # near scenery
    haze: tuple[int, int, int] = (170, 180, 185)  # the colour the ground fades into far away


STYLES = {
    "lake": Style(
        asphalt=(105, 105, 108),
        ground=(80, 130, 55),
        shoulder=(120, 140, 80),
        shoulder_m=0.6,
        edge="lines",
        edge_colour=(240, 240, 235),
        centre_colour=(225, 190, 40),
        shadows=25,
        bushes=30,
        scenery="hills",
        far_colour=(105, 125, 150),
        near_colour=(70, 105, 60),
        haze=(165, 180, 185),
    ),
    "jungle": Style(
        asphalt=(62, 60, 62),
        ground=(45, 85, 35),
        shoulder=(80, 70, 50),
        shoulder_m=0.8,
        edge="curbs",
        texture_amp=12.0,
        shadows=120,
        bushes=160,
        bush_colour=(25, 60, 22),
        sky_top=(110, 150, 200),
        sky_horizon=(180, 200, 205),
        scenery="forest",
        far_colour=(45, 80, 45),
        near_colour=(20, 55, 20),
        haze=(120, 140, 120),
    ),
    "desert": Style(
        asphalt=(95, 88, 82),
        ground=(205, 180, 135),
        shoulder=(160, 125, 90),
        shoulder_m=2.5,
        edge="none",
        texture_amp=14.0,
        shadows=8,
        bushes=12,
        bush_colour=(120, 115, 70),
        sky_top=(120, 165, 220),
        sky_horizon=(225, 215, 200),
        scenery="mesas",
        far_colour=(185, 120, 85),
        near_colour=(170, 120, 80),
        haze=(215, 200, 180),
    ),
}


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """Value noise in about [-1, 1] with features `cell_px` texture pixels across (float32)."""
    h, w = shape
    small = rng.standard_normal((max(2, int(h / cell_px) + 2), max(2, int(w / cell_px) + 2))).astype(
        np.float32
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * np.float32(0.7)


class World:
    """Top-down texture pyramid of one track. Deterministic for a given track and seed."""

    def __init__(self, track: Track, ppm: float = 10.0, seed: int = 0):
        self.track, self.ppm = track, float(ppm)
        self.style = STYLES[track.style]
        lo = track.points.min(axis=0) - MARGIN_M
        hi = track.points.max(axis=0) + MARGIN_M
        self.x0, self.y1 = float(lo[0]), float(hi[1])
        self.shape = (int((hi[1] - lo[1]) * ppm), int((hi[0] - lo[0]) * ppm))
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

    def _stroke(self, img: np.ndarray, xy: np.ndarray, colour, width_m: float, closed: bool = True) -> None:
        cv2.polylines(
            img,
            [self._poly(xy)],
            closed,
            colour,
            max(1, int(round(width_m * self.ppm))),
            cv2.LINE_AA,
            shift=4,
        )

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
        grain = rng.standard_normal((h, w), dtype=np.float32) * np.float32(st.texture_amp / 255)
        grain += smooth_noise(rng, (h, w), 1.5 * ppm) * np.float32(0.06)
        light = 1 + smooth_noise(rng, (h, w), 40 * ppm) * np.float32(0.10)
        shade = np.ones((h // 4, w // 4), np.float32)  # shadows at a quarter size, blurred up
        for _ in range(int(st.shadows * area / 1e4)):
            c = (int(rng.uniform(0, w // 4)), int(rng.uniform(0, h // 4)))
            r = int(rng.uniform(1.5, 6.0) * ppm / 4)
            cv2.ellipse(
                shade,
                c,
                (r, int(r * rng.uniform(0.5, 1.0))),
                rng.uniform(0, 180),
                0,
                360,
                float(rng.uniform(0.55, 0.8)),
                -1,
            )
        shade = cv2.GaussianBlur(shade, (0, 0), 0.4 * ppm / 4)
        shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
        factor = (1 + grain) * light * shade
        out = img.astype(np.float32) * factor[..., None]
        return np.clip(out, 0, 255).astype(np.uint8), road

    def _edges(self, img: np.ndarray) -> None:
        st, tr = self.style, self.track
        half = tr.width / 2
        if st.edge == "lines":
            for side in (-1, 1):
                self._stroke(img, tr.edges(side * (half - 0.35)), st.edge_colour, 0.18)
        elif st.edge == "curbs":  # alternating red and white blocks, 1.5 m long, on the road edge
            block = max(1, int(round(1.5 / tr.spacing)))
            for side in (-1, 1):
                edge = tr.edges(side * (half - 0.35))
                for k, start in enumerate(range(0, len(edge), block)):
                    seg = edge[start : start + block + 1]
                    self._stroke(img, seg, st.curb_colours[k % 2], 0.7, closed=False)
        if st.centre_colour is not None:  # dashes 3 m long every 9 m
            dash, period = int(3 / tr.spacing), int(9 / tr.spacing)
            for start in range(0, len(tr.points) - dash, period):
                self._stroke(img, tr.points[start : start + dash], st.centre_colour, 0.15, closed=False)
