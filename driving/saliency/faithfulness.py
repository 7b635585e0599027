"""Does a saliency map show what the steering uses? The deletion check: hide the pixels the map
calls most salient and see whether the steering moves more than when as many pixels are hidden
elsewhere.

For each frame (a model input, as driving.preprocess makes it, where the map lives):

    salient    the top MASKED_SHARE (10%) of the input's pixels by the map, filled with the
               frame's mean colour; |steering(hidden) - steering(frame)|
    moved      the same mask moved to a random place (rolled by a random offset, wrapping round
               the edges), CONTROL_DRAWS seeded draws; the mean effect over the draws
    scattered  as many pixels scattered at random, CONTROL_DRAWS draws; the mean effect

Per model and method: the mean effects over the frames and the salient effect's ratio to each
control, with a bootstrap 95% interval over frames (the frame is the unit: its draws are averaged
first). The rule: a method *earns its place* when the ratio to the moved mask has its lower bound
above EARNS_ITS_PLACE (1.5): hiding what it points at moves the steering clearly more than hiding
the same shape anywhere else.

Why the moved mask judges and the scattered pixels do not: hiding a blob removes everything a
region shows, while pixels scattered one by one leave every neighbourhood mostly intact, and a
network reads through the gaps: on trained EffNets, maps of smoothed noise, which point nowhere,
beat scattered pixels more than 2 to 1 (docs/saliency.md). A map's own mask moved elsewhere
scores what its shape alone earns. The scattered ratio is kept beside it, for reference.

The fill is the frame's own mean colour (per channel, over the model's input): it removes what the
hidden pixels show, their detail and their colour, without painting in anything the frame does not
have (black or white would add an edge of its own on every road), and it is one colour, so nothing
of the hidden region leaks through as it would through a blur. The same fill serves every mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np

MASKED_SHARE = 0.10  # of the model input's pixels
CONTROL_DRAWS = 8  # moved and scattered masks per frame, each
RESAMPLES = 2000  # bootstrap resamples of the frames
EARNS_ITS_PLACE = 1.5  # the lower 95% bound of the ratio to the moved mask must lie above this
BATCH = 64  # hidden inputs per forward pass
CHUNK = 8  # frames hidden at a time: bounds the copies held at once


@dataclass(frozen=True)
class Control:
    """Hiding as many pixels some other way: its mean effect on the steering, and the salient
    mask's ratio to it with a bootstrap 95% interval over frames."""

    effect: float
    ratio: float  # NaN when neither mask moves the steering
    low: float
    high: float
    per_frame: tuple[float, ...]  # each frame's mean over its draws


@dataclass(frozen=True)
class Faithfulness:
    """The deletion check's figures for one model and one saliency method."""

    frames: int
    draws: int  # of each control, per frame
    share: float  # of the input's pixels hidden by every mask
    salient: float  # mean |delta steering| hiding the most salient pixels
    salient_per_frame: tuple[float, ...]
    moved: Control  # the same mask, elsewhere: the verdict's control
    scattered: Control  # as many pixels, scattered at random

    @property
    def earns_its_place(self) -> bool:
        return bool(self.moved.low > EARNS_ITS_PLACE)

    @property
    def verdict(self) -> str:
        if np.isnan(self.moved.ratio):  # neither mask moves it (infinite: only the salient one does)
            return "steering does not move"
        if self.earns_its_place:
            return "earns its place"
        if self.moved.high < 1:
            return "worse than elsewhere"
        return "not clearly better than elsewhere"

    def describe(self) -> str:
        """One line: the ratio to the moved mask, its interval and the verdict."""
        return f"{self.moved.ratio:.2f} [{self.moved.low:.2f}, {self.moved.high:.2f}] {self.verdict}"

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "verdict": self.verdict,
            "earns_its_place": self.earns_its_place,
            "earns_above": EARNS_ITS_PLACE,
        }


def salient_masks(maps: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """(N, h, w) maps -> boolean masks of each map's top `share` of pixels. Ties (a flat or partly
    zero map) are broken at random, not by position: a flat map gives a random mask."""
    n, h, w = maps.shape
    count = max(1, round(share * h * w))
    masks = np.zeros((n, h * w), bool)
    for i, m in enumerate(maps.reshape(n, -1)):
        order = np.lexsort((rng.random(m.size), -m))  # by saliency, highest first; ties shuffled
        masks[i, order[:count]] = True
    return masks.reshape(n, h, w)


def moved_masks(masks: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(N, h, w) masks -> (N, draws, h, w): each rolled by a random offset, wrapping round the
    edges, so every copy hides as many pixels in the same shape somewhere else."""
    n, h, w = masks.shape
    offsets = rng.integers(0, (h, w), (n, draws, 2))
    return np.stack([[np.roll(m, tuple(o), axis=(0, 1)) for o in frame] for m, frame in zip(masks, offsets)])


def scattered_masks(n: int, shape: tuple[int, int], share: float, draws: int, rng) -> np.ndarray:
    """(n, draws, h, w) masks, each of as many pixels as a salient mask, scattered at random."""
    h, w = shape
    count = max(1, round(share * h * w))
    masks = np.zeros((n, draws, h * w), bool)
    for i in range(n):
        for d in range(draws):
            masks[i, d, rng.choice(h * w, count, replace=False)] = True
    return masks.reshape(n, draws, h, w)


def hide(x: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Inputs (N, h, w, c) with each mask's pixels (N, h, w) set to that input's mean colour."""
    fill = x.mean(axis=(1, 2), keepdims=True)
    return np.where(masks[..., None], fill, x).astype(np.float32)


def steering(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's steering for inputs (N, h, w, c), in batches: (N,) float64."""
    out = [
        keras.ops.convert_to_numpy(model(x[i : i + BATCH], training=False)) for i in range(0, len(x), BATCH)
    ]
    return np.concatenate(out).reshape(len(x)).astype(np.float64)


def ratio_interval(
    salient: np.ndarray, control: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """mean(salient) / mean(control) over frames, and its bootstrap 95% interval (frames
    resampled with replacement). NaN where neither moves the steering."""

    def ratio(s, c):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, s / np.where(c > 0, c, 1), np.where(s > 0, np.inf, np.nan))

    picks = rng.integers(0, len(salient), (resamples, len(salient)))
    spread = ratio(salient[picks].mean(axis=1), control[picks].mean(axis=1))
    whole = float(ratio(salient.mean(), control.mean()))
    if not np.isfinite(whole):
        return whole, whole, whole
    method = "nearest" if np.isinf(spread).any() else "linear"  # never interpolate inf - inf
    low, high = np.nanpercentile(spread, [2.5, 97.5], method=method)
    return whole, float(low), float(high)


def check(
    model: keras.Model,
    x: np.ndarray,
    maps: np.ndarray,
    share: float = MASKED_SHARE,
    draws: int = CONTROL_DRAWS,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Faithfulness:
    """The deletion check of saliency `maps` (N, h, w) over the model inputs `x` (N, h, w, c) they
    were made from. Deterministic given `seed` (the masks drawn, the tie-breaking, the bootstrap)."""
    if maps.shape != x.shape[:3]:
        raise ValueError(f"maps of shape {maps.shape} do not lie over inputs of shape {x.shape}")
    if not 0 < share < 1 or draws < 1 or len(x) == 0:
        raise ValueError("share must lie in (0, 1), draws be at least 1, and there be frames")
    rng = np.random.default_rng(seed)
    n, h, w = maps.shape
    effects = {name: np.zeros(n) for name in ("salient", "moved", "scattered")}
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        frames, k = x[part], len(x[part])
        salient = salient_masks(maps[part], share, rng)
        controls = np.concatenate(
            [moved_masks(salient, draws, rng), scattered_masks(k, (h, w), share, draws, rng)], axis=1
        )  # (k, 2 * draws, h, w)
        hidden = [
            frames,
            hide(frames, salient),
            hide(np.repeat(frames, 2 * draws, axis=0), controls.reshape(-1, h, w)),
        ]
        before, after, at_controls = np.split(steering(model, np.concatenate(hidden)), [k, 2 * k])
        moved_by = np.abs(at_controls.reshape(k, 2 * draws) - before[:, None])
        effects["salient"][part] = np.abs(after - before)
        effects["moved"][part] = moved_by[:, :draws].mean(axis=1)
        effects["scattered"][part] = moved_by[:, draws:].mean(axis=1)

    def against(name: str) -> Control:
        ratio, low, high = ratio_interval(effects["salient"], effects[name], resamples, rng)
        return Control(float(effects[name].mean()), ratio, low, high, tuple(map(float, effects[name])))

    return Faithfulness(
        frames=n,
        draws=draws,
        share=share,
        salient=float(effects["salient"].mean()),
        salient_per_frame=tuple(map(float, effects["salient"])),
        moved=against("moved"),
        scattered=against("scattered"),
    )
