"""Where a training run computes: one device, every local GPU (mirrored), or several worker
processes (multi-worker), and what a multi-worker run needs besides its strategy: how each worker
keeps its share of the data, and a bridge between Keras 3's fit and the collective strategy. Who
the workers are, which one writes, and the wait for them is driving/train/cluster.py.

`make_strategy` must run before any TensorFlow op: a multi-worker strategy has to be the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator

import keras
import tensorflow as tf

from driving.config import STRATEGIES, ConfigError, RunConfig
from driving.train.cluster import cluster_of, wait_for_peers, watchdog

COLLECTIVE_TIMEOUT_S = 600  # multi-worker: how long a step may wait for the other workers


def shard(dataset: tf.data.Dataset, config: RunConfig) -> tf.data.Dataset:
    """Multi-worker: every worker builds the same stream of global batches from the same seed and
    keeps its replicas' share of each (AutoShardPolicy.DATA). There are no files to shard by (the
    frames are in a cache), and this way a step's shards add up to exactly the batch one process
    would train on."""
    if config.strategy != "multiworker":
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def setup_devices(mixed_precision: bool = False) -> None:
    """GPU memory growth on (so a second process can share the GPU); optional mixed float16."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: too late to change, and harmless
            pass
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")


def make_strategy(config: RunConfig) -> tf.distribute.Strategy:
    """'default': one device. 'mirrored': data-parallel over every GPU, or over every logical CPU
    device when there is no GPU (how it is tested on a CPU-only machine). 'multiworker':
    MultiWorkerMirroredStrategy over the processes TF_CONFIG (or --workers) names, each with its
    GPUs or its CPU; --batch-size is the global batch."""
    name = config.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        cluster = cluster_of(config)
        # Every worker answers before TensorFlow starts, or the run ends in one line (cluster.py).
        wait_for_peers(cluster, config.start_timeout)
        os.environ["TF_CONFIG"] = json.dumps(cluster.tf_config())
        # A worker that dies must not leave the others waiting for good: they fail, and the job
        # can be restarted with --resume.
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        stuck = (
            f"train.py: {cluster.name}: TensorFlow's multi-worker start did not finish within "
            f"{config.start_timeout:g} s after every worker had answered (did one stop?); ending this worker"
        )
        with watchdog(config.start_timeout, stuck), _sigterm_kept():
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        _fit_keras_to(strategy)
        return strategy
    raise ConfigError("strategy", f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """TensorFlow's coordination service takes SIGTERM over (its preemption notifier notes it and
    goes on); give it back to whatever handled it before, so `kill` still ends a run."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and before is not None:
            signal.signal(signal.SIGTERM, before)


def _fit_keras_to(strategy: tf.distribute.Strategy) -> None:
    """Two mismatches between Keras 3's fit and the collective (multi-worker) strategy, bridged
    here (tests/test_train.py trains two real workers): fit reduces a whole (x, y) batch at once
    to build the model, where the collective strategy's reduce takes one value (MirroredStrategy's
    takes structures): reduce leaf by leaf; and fit averages its scalar logs over `axis=0`, which a
    scalar does not have: average those over the replicas alone."""
    reduce_to, reduce = strategy.extended._reduce_to, strategy.reduce

    def reduce_each(reduce_op, value, destinations, options):
        return tf.nest.map_structure(lambda v: reduce_to(reduce_op, v, destinations, options), value)

    def reduce_scalars_too(reduce_op, value, axis=None):
        local = strategy.experimental_local_results(value)
        if axis is not None and all(
            getattr(v, "shape", None) is not None and v.shape.rank == 0 for v in local
        ):
            axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.extended._reduce_to = reduce_each
    strategy.reduce = reduce_scalars_too
