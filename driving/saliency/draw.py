"""Saliency drawn: the heat map blended into the camera frame, the simulator's labels tinted in,
and images written as PNGs or laid out in a grid."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from driving.config import Preprocessing
from driving.files import atomic_path
from driving.sim.world import EDGE, ROAD

OVERLAY_ALPHA = 0.7  # the heat map's weight where saliency is 1 (0 shows the frame itself)
HEAT_MAP = "turbo"
LABEL_TINTS = {ROAD: (40, 110, 255), EDGE: (255, 220, 0)}  # the labels row of a grid


@cache
def _heat_colours() -> np.ndarray:
    return np.round(matplotlib.colormaps[HEAT_MAP](np.arange(256))[:, :3] * 255).astype(np.float32)


def overlay(frame: np.ndarray, saliency: np.ndarray, geometry: Preprocessing) -> np.ndarray:
    """The frame with the heat map blended in where the model looks (the more, the stronger, so
    what it ignores shows as it is) and the crop rows outlined."""
    heat = _heat_colours()[np.round(saliency * 255).astype(np.uint8)]
    # The square root lifts the faint part of a peaky map (VisualBackProp's products are) into view.
    alpha = OVERLAY_ALPHA * np.sqrt(saliency)[..., None]
    out = np.round(frame * (1 - alpha) + heat * alpha).astype(np.uint8)
    bottom_right = (geometry.frame_width - 1, geometry.crop_bottom - 1)
    cv2.rectangle(out, (0, geometry.crop_top), bottom_right, (255, 255, 255), 1)
    return out


def label_overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The frame with road and road-edge pixels tinted (the grids' reference row)."""
    out = frame.astype(np.float32)
    for label, tint in LABEL_TINTS.items():
        out[labels == label] = 0.5 * out[labels == label] + 0.5 * np.float32(tint)
    return np.round(out).astype(np.uint8)


def save_png(rgb: np.ndarray, path: str | Path, colours: int | None = None) -> Path:
    """An RGB uint8 image as a PNG, atomically; with `colours`, as a palette of that many."""
    image = Image.fromarray(rgb)
    if colours:
        image = image.quantize(colours, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(path)


def save_grid(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | Path,
    row_labels: Sequence[str] = (),
    titles: Sequence[Sequence[str]] = (),
) -> Path:
    """Images in a grid, rows top to bottom, at one pixel of PNG per pixel of image; a label left
    of each row and a title over each image (`titles` row by row), where given."""
    matplotlib.use("Agg")
    columns = max(len(row) for row in rows)
    height, width = rows[0][0].shape[:2]
    dpi = 100
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(columns * width / dpi + 0.6, len(rows) * (height / dpi + 0.3)),
        dpi=dpi,
        squeeze=False,
        layout="constrained",
    )
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                ax.imshow(row[j])
            else:
                ax.set_axis_off()
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=9)
            if i < len(titles) and j < len(titles[i]):
                ax.set_title(titles[i][j], fontsize=8)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    # 256 colours are plenty for frames and heat maps, and make the file about a quarter the size.
    return save_png(rgb, path, colours=256)
