"""Precise BatchNorm: re-estimate every BatchNormalization layer's moving mean and variance from
clean frames, the distribution the model is validated and served on.

During training a BN layer's moving statistics are an exponential average (Keras' momentum 0.99)
of the batch statistics of augmented frames (side cameras, shifts, shadows...), lagging behind the
weights as they change. A model can then fit its training batches and still predict badly with its
moving statistics (measured on the two-lane recipe: docs/models.md). `refresh` replaces them with
the plain average of the batch statistics of a fixed set of clean batches, computed with the
current weights; train.py's `--bn-refresh N` does it before every validation and drive check
(driving/train/callbacks.py).

    rows = refresh_rows(train_rows, batches=20, batch_size=32, seed=0)
    refresh(model, val_dataset(rows, cache, 32))       # clean centre frames, as served

The refresh changes the moving statistics and nothing else (no weight, no random-seed state), so
training after it goes on exactly as it would have without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import keras
import numpy as np
import pandas as pd

REFRESH_STREAM = 0xB4  # keeps the refresh's draw of rows apart from the other uses of the run seed


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of `model`, nested models included, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += batch_norm_layers(layer)
    return found


def refresh_rows(train: pd.DataFrame, batches: int, batch_size: int, seed: int) -> pd.DataFrame:
    """The training rows whose centre frames refresh the statistics: `batches` whole batches of
    `batch_size` (fewer when the rows run out), drawn without replacement in an order set by
    `seed` alone. Shuffled, so each batch mixes the recordings as a training batch does (batches of
    consecutive frames would understate the variance)."""
    count = min(batches, len(train) // batch_size) * batch_size
    order = np.random.default_rng([seed, REFRESH_STREAM]).permutation(len(train))
    return train.iloc[order[:count]]


def refresh(model: keras.Model, batches: Iterable) -> int:
    """Set each BN layer's moving mean and variance to the mean of its batch statistics over
    `batches` (x, or (x, y) pairs); returns the batches used (0, reading none, when the model has
    no BN layer). A frozen BN layer (trainable False) keeps its statistics, as in training.

    Each batch is one forward pass with the BN layers alone in training mode (normalising by the
    batch's statistics and folding them in) and every other layer as served: Dropout off, so each
    BN layer sees the activations it will see when the model drives (dropout in front of a BN layer
    widens the variance it measures). The k-th batch is folded in with momentum (k-1)/k, which
    makes the moving value the plain average of the k batch values; each layer's own momentum is
    put back afterwards."""
    layers = [layer for layer in batch_norm_layers(model) if layer.trainable]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        with _batch_statistics(layers):
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                used += 1
                for layer in layers:
                    layer.momentum = (used - 1) / used
                model(x, training=False)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return used


@contextlib.contextmanager
def _batch_statistics(layers: list[keras.layers.BatchNormalization]) -> Iterator[None]:
    """`layers` in training mode whatever mode their model is called in: Keras passes one
    `training` flag to every layer of a model, and the refresh needs BN in training mode with the
    rest (Dropout) as served. The layers' own `call` comes back afterwards."""

    def forced(layer):
        def call(inputs, training=None, **kwargs):
            return type(layer).call(layer, inputs, training=True, **kwargs)

        return call

    for layer in layers:
        layer.call = forced(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.call
