"""Does a saliency map show what the steering uses? The deletion check: hide the pixels the map
calls most salient and see whether the steering moves more than when as many random pixels are
hidden.

For each frame (a model input, as driving.preprocess makes it, where the map lives):

    salient  the top MASKED_SHARE (10%) of the input's pixels by the map, filled with the frame's
             mean colour; |steering(masked) - steering(frame)|
    random   as many pixels drawn at random (RANDOM_DRAWS seeded draws per frame), filled alike;
             the mean |steering(masked) - steering(frame)| over the draws

Per model and method: the mean salient effect over the frames, the mean random effect, their
ratio, and a bootstrap 95% interval of the ratio over frames (the frame is the unit: its random
draws are averaged first). The rule: a method *earns its place* when the interval's lower bound is
above EARNS_ITS_PLACE (1.5): hiding what it points at moves the steering clearly more than hiding
pixels at random.

The fill is the frame's own mean colour (per channel, over the model's input): it removes what the
hidden pixels show, their detail and their colour, without painting in anything the frame does not
have (black or white would add an edge of its own on every road). The same fill serves both masks,
so they differ only in which pixels they hide. It is not neutral to a network: a scattered random
mask draws many small flat specks, a salient mask a few blobs, and specks may stir edge features
more. That makes the control, if anything, harder to beat: the check errs towards "not shown".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np

MASKED_SHARE = 0.10  # of the model input's pixels
RANDOM_DRAWS = 8  # random masks per frame
RESAMPLES = 2000  # bootstrap resamples of the frames
EARNS_ITS_PLACE = 1.5  # the ratio's lower 95% bound must lie above this
BATCH = 64  # masked inputs per forward pass
CHUNK = 16  # frames masked at a time


@dataclass(frozen=True)
class Faithfulness:
    """The deletion check's figures for one model and one saliency method."""

    frames: int
    draws: int  # random masks per frame
    share: float  # of the input's pixels hidden by each mask
    salient: float  # mean |delta steering| hiding the most salient pixels
    random: float  # mean |delta steering| hiding as many random pixels
    ratio: float  # salient / random (NaN when neither moves the steering)
    low: float  # bootstrap 95% interval of the ratio, over frames
    high: float
    salient_per_frame: tuple[float, ...]
    random_per_frame: tuple[float, ...]  # each the mean over its draws

    @property
    def earns_its_place(self) -> bool:
        return bool(self.low > EARNS_ITS_PLACE)

    @property
    def verdict(self) -> str:
        if not np.isfinite(self.ratio):
            return "steering does not move"
        if self.earns_its_place:
            return "earns its place"
        if self.high < 1:
            return "worse than random"
        return "not clearly better than random"

    def describe(self) -> str:
        """One line: the ratio, its interval and the verdict."""
        return f"{self.ratio:.2f} [{self.low:.2f}, {self.high:.2f}] {self.verdict}"

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
    flat = maps.reshape(n, -1)
    masks = np.zeros((n, h * w), bool)
    for i, m in enumerate(flat):
        order = np.lexsort((rng.random(m.size), -m))  # by saliency, highest first; ties shuffled
        masks[i, order[:count]] = True
    return masks.reshape(n, h, w)


def random_masks(n: int, shape: tuple[int, int], share: float, draws: int, rng) -> np.ndarray:
    """(n, draws, h, w) boolean masks, each of as many pixels as a salient mask, drawn at random."""
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
    salient: np.ndarray, random: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """mean(salient) / mean(random) over frames, and its bootstrap 95% interval (frames
    resampled with replacement). NaN where the random effect is zero."""

    def ratio(s, r):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r > 0, s / np.where(r > 0, r, 1), np.where(s > 0, np.inf, np.nan))

    picks = rng.integers(0, len(salient), (resamples, len(salient)))
    spread = ratio(salient[picks].mean(axis=1), random[picks].mean(axis=1))
    whole = float(ratio(salient.mean(), random.mean()))
    if not np.isfinite(whole):
        return whole, whole, whole
    low, high = np.nanpercentile(spread, [2.5, 97.5])
    return whole, float(low), float(high)


def check(
    model: keras.Model,
    x: np.ndarray,
    maps: np.ndarray,
    share: float = MASKED_SHARE,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Faithfulness:
    """The deletion check of saliency `maps` (N, h, w) over the model inputs `x` (N, h, w, c) they
    were made from. Deterministic given `seed` (the random masks, the tie-breaking, the bootstrap)."""
    if maps.shape != x.shape[:3]:
        raise ValueError(f"maps of shape {maps.shape} do not lie over inputs of shape {x.shape}")
    if not 0 < share < 1 or draws < 1 or len(x) == 0:
        raise ValueError("share must lie in (0, 1), draws be at least 1, and there be frames")
    rng = np.random.default_rng(seed)
    n, h, w = maps.shape
    moved, moved_at_random = np.zeros(n), np.zeros(n)
    for start in range(0, n, CHUNK):  # a chunk's masked copies at a time: bounded memory
        part = slice(start, min(start + CHUNK, n))
        frames, k = x[part], len(x[part])
        salient = hide(frames, salient_masks(maps[part], share, rng))
        shuffled = random_masks(k, (h, w), share, draws, rng).reshape(k * draws, h, w)
        random = hide(np.repeat(frames, draws, axis=0), shuffled)
        before, after, at_random = np.split(
            steering(model, np.concatenate([frames, salient, random])), [k, 2 * k]
        )
        moved[part] = np.abs(after - before)
        moved_at_random[part] = np.abs(at_random.reshape(k, draws) - before[:, None]).mean(axis=1)
    ratio, low, high = ratio_interval(moved, moved_at_random, resamples, rng)
    return Faithfulness(
        frames=n,
        draws=draws,
        share=share,
        salient=float(moved.mean()),
        random=float(moved_at_random.mean()),
        ratio=ratio,
        low=low,
        high=high,
        salient_per_frame=tuple(map(float, moved)),
        random_per_frame=tuple(map(float, moved_at_random)),
    )
