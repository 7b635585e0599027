"""Top-down PNG of a track with a driven path, optionally coloured by a value (e.g. cross-track error)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from driving.files import save_figure
from driving.sim.track import Track
from driving.sim.world import World


def save_topdown(
    track: Track,
    path_xy: np.ndarray,
    out: str | Path,
    world: World | None = None,
    values: np.ndarray | None = None,
    label: str = "",
    title: str | None = None,
) -> Path:
    """Draw the road (the world texture when given, else its edges) and the path on top.
    With `values` (one per path point) the path is coloured by them with a colour bar. Written
    atomically."""
    fig, ax = plt.subplots(figsize=(8, 8))
    if world is not None:
        img = world.colour[2]  # a quarter of the full resolution is plenty for a page
        h, w = world.shape
        ax.imshow(img, extent=(world.x0, world.x0 + w / world.ppm, world.y1 - h / world.ppm, world.y1))
    else:
        for side in (-1, 1):
            edge = track.edges(side * track.width / 2)
            ax.plot(*np.vstack([edge, edge[:1]]).T, color="0.3", lw=0.8)
    path_xy = np.asarray(path_xy, dtype=float).reshape(-1, 2)
    if values is None:
        ax.plot(path_xy[:, 0], path_xy[:, 1], color="tab:red", lw=1.2, label="driven path")
        ax.legend(loc="upper right")
    else:
        segments = np.stack([path_xy[:-1], path_xy[1:]], axis=1)
        lines = LineCollection(segments, cmap="viridis", linewidths=1.6)
        lines.set_array(np.asarray(values, dtype=float)[1:])
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, shrink=0.7, label=label)
    start = track.points[0]
    ax.plot(start[0], start[1], "w^", ms=9, mec="k", label="start")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title or f"{track.name}: {track.length:.0f} m, {track.width:g} m wide")
    return save_figure(fig, out, dpi=100, bbox_inches="tight")
