"""Training: `run(config)` fits registered models on recordings and saves the best of each.

    python train.py --data data/track1 --model effnet --model base --epochs 10 --out models/

For each model NAME, under --out:
    NAME.keras          best-by-validation model, with optimizer state (written first: an .h5 save
                        before it would drop the optimizer from it)
    NAME.h5             the same weights in the legacy .h5 format the original comparison used
    NAME.last.keras     the last epoch, with optimizer state: what --resume continues from
    NAME.history.csv    one row per epoch: loss, mae, val_loss, val_mae, epoch_seconds (and .json)
    NAME.loss.png       training and validation loss per epoch
    logs/NAME/          TensorBoard logs (tensorboard --logdir models/logs)
and run.json (the RunConfig, the package versions and the results: how the run was made) and
loss_overlay.png. Every model file carries its preprocessing and run (driving/modelio.py) and is
written atomically, as is every other file (driving/files.py).

Each model's initial weights and augmented batches come from a seed of its own, a function of
--seed and its name only (config.model_seed): `--model effnet --seed 3` gives the same effnet alone
or beside other models. The split depends on --seed alone.

Nothing here imports TensorFlow before the arguments are parsed: `--help` is instant.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from driving import cli
from driving.config import (
    RUN_JSON,
    STRATEGIES,
    AugmentConfig,
    ConfigError,
    Preprocessing,
    RunConfig,
    model_seed,
)
from driving.files import check_writable_folder, remove_stale_temps, write_json
from driving.models import MODELS

COLLECTIVE_TIMEOUT_S = 600  # multi-worker: how long a step may wait for the other workers
PACKAGES = ("tensorflow", "keras", "numpy", "ai-edge-litert", "opencv-python-headless", "pandas")


class TrainError(RuntimeError):
    """A run that cannot start or go on; the message says why in one line, and what to do."""


@dataclass
class TrainResult:
    name: str
    params: int
    epochs: int
    best_val_loss: float
    best_val_mae: float
    seconds_per_epoch: float
    stopped_early: bool
    diverged: str | None = None  # where the loss stopped being finite, if it did


# --- the stage ------------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("driving", *PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _check_models(config: RunConfig) -> None:
    unknown = [m for m in config.models if m not in MODELS]
    if unknown:
        raise ConfigError("models", f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")


def _check_resume(config: RunConfig, out: Path) -> None:
    """--resume must find, for every model, the last checkpoint and its history, and a run.json
    with the same data, split and preprocessing: anything else would overwrite a good model with
    one trained from scratch, or continue on other frames."""
    from driving.history import read_history

    for name in config.models:
        last = out / f"{name}.last.keras"
        if not last.is_file():
            raise TrainError(
                f"--resume: {last} is missing, so {name} cannot continue; train without --resume "
                f"to start {name} afresh (that replaces {out / (name + '.keras')})"
            )
        try:
            history = read_history(out, name)
        except ValueError as e:
            raise TrainError(f"--resume: {e}") from None
        if not len(history) or "val_loss" not in history:
            raise TrainError(f"--resume: {out / (name + '.history.csv')} is missing or empty")
    saved = out / RUN_JSON
    if saved.is_file():
        try:
            import json

            before = RunConfig.from_dict(json.loads(saved.read_text()), str(saved))
        except (ValueError, ConfigError) as e:
            raise TrainError(f"--resume: {saved} is unreadable ({e})") from None
        for what, old, new in (
            ("the split", before.split(), config.split()),
            ("the preprocessing", before.preprocessing, config.preprocessing),
        ):
            if old != new:
                raise TrainError(f"--resume: {what} differs from the run in {saved} ({old} vs {new})")


def _frame_size(frames) -> tuple[int, int] | None:
    """(height, width) of the first readable center image, or None."""
    from driving.preprocess import FrameError, read_frame

    for path in frames["center"].head(20):
        try:
            return read_frame(path).shape[:2]
        except FrameError:
            continue
    return None


def load_split(config: RunConfig):
    """The recordings, checked and split, before anything is decoded: (train, val, summary)."""
    from driving.data.reader import load_recordings, split_by_time

    recordings = load_recordings(config.data)
    train, val = split_by_time(recordings.frames, config.val_fraction, config.block_seconds, config.seed)
    if len(val) == 0 or len(train) == 0:
        raise TrainError(
            f"the split left {len(train)} training and {len(val)} validation frames: record more, or "
            "change --val-fraction / --block-seconds"
        )
    geometry = config.preprocessing
    size = _frame_size(train)
    if size is not None and size != (geometry.frame_height, geometry.frame_width):
        raise TrainError(
            f"the recordings' frames are {size[1]}x{size[0]}, "
            f"not {geometry.frame_width}x{geometry.frame_height}: "
            f"pass --frame-size {size[0]}x{size[1]} with crop rows that fit (--crop-top, --crop-bottom)"
        )
    if config.batch_size > len(train):
        raise TrainError(f"--batch-size {config.batch_size} is more than the {len(train)} training frames")
    return train, val, recordings.summary


def decode(config: RunConfig, train, val, summary):
    """The frame cache of the split (each image decoded once): (cache, train, val), the rows with
    unusable images dropped and counted in `summary`."""
    from driving.pipeline import cache_split

    cache, train, val = cache_split(
        train, val, config.augment, config.preprocessing, config.cache_dir, summary
    )
    print(summary)  # after decoding: broken images are counted in it
    if len(train) < config.batch_size or len(val) == 0:
        raise TrainError(
            f"after skipping unusable images, {len(train)} training and {len(val)} validation frames "
            f"are left (batch size {config.batch_size}): see the summary above"
        )
    return cache, train, val


def run(config: RunConfig, progress: bool = True) -> list[TrainResult]:
    """Train every model of `config`; write its files and OUT/run.json. Raises ConfigError,
    RecordingError, TrainError or ModelFileError with one line for anything that cannot work,
    checked before the long work wherever possible."""
    config.validate()
    _check_models(config)
    out = check_writable_folder(config.out, "--out folder")
    config.data = [os.path.abspath(d) for d in config.data]  # run.json must find them from anywhere
    remove_stale_temps(out)
    if config.resume:
        _check_resume(config, out)
    train_rows, val_rows, summary = load_split(config)

    from driving import tfsetup

    tfsetup.setup()

    import keras

    from driving.history import all_histories, plot_loss_overlay
    from driving.pipeline import steps_per_epoch, train_dataset, val_dataset

    setup_devices(config.mixed_precision)
    strategy = make_strategy(config)  # before any TensorFlow op: a multi-worker one must be first
    chief = is_chief(config)
    cache, train_rows, val_rows = decode(config, train_rows, val_rows, summary)
    config.versions = package_versions()
    steps = config.steps_per_epoch or steps_per_epoch(train_rows, config.batch_size, config.augment)
    replicas = strategy.num_replicas_in_sync
    print(
        f"{len(train_rows)} training rows, {len(val_rows)} validation rows; {steps} steps per epoch "
        f"of {config.batch_size}; {replicas} replica(s)"
    )
    record = config.to_dict()
    if chief:
        write_json(out / RUN_JSON, {**record, "command": command_line(config)})

    val_ds = shard(val_dataset(val_rows, cache, config.batch_size), config)
    if replicas > 1:
        # Replicas must get equal shares of every batch: drop the last < `replicas` val frames.
        import tensorflow as tf

        val_ds = (
            val_ds.unbatch()
            .batch(replicas, drop_remainder=True)
            .unbatch()
            .batch(config.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    results = []
    for name in config.models:
        seed = model_seed(config.seed, name)
        train_ds = train_dataset(
            train_rows, cache, config.batch_size, config.augment, config.preprocessing, seed
        )
        train_ds = shard(train_ds, config)
        results.append(
            train_model(name, config, train_ds, val_ds, steps, strategy, progress and chief, chief)
        )
        keras.backend.clear_session(free_memory=True)
        if chief:
            results_json = {r.name: vars(r) for r in results}
            write_json(out / RUN_JSON, {**record, "command": command_line(config), "results": results_json})
    if chief:
        plot_loss_overlay(all_histories(out), out / "loss_overlay.png")
    return results


def tf_config(config: RunConfig) -> dict | None:
    """The multi-worker cluster: from --workers/--worker-index, or the standard TF_CONFIG."""
    import json

    if config.workers:
        return {
            "cluster": {"worker": list(config.workers)},
            "task": {"type": "worker", "index": config.worker_index},
        }
    text = os.environ.get("TF_CONFIG")
    try:
        return json.loads(text) if text else None
    except ValueError:
        raise ConfigError("strategy", "TF_CONFIG is not valid JSON") from None


def is_chief(config: RunConfig) -> bool:
    """Whether this process writes the run's files: the only one, or in a multi-worker run the
    chief (worker 0 when the cluster names no chief). The others train, and write nothing."""
    cluster = tf_config(config) if config.strategy == "multiworker" else None
    if not cluster:
        return True
    task = cluster.get("task", {})
    if "chief" in cluster.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def shard(dataset, config: RunConfig):
    """Multi-worker: every worker builds the same stream of global batches from the same seed and
    keeps its replicas' share of each (AutoShardPolicy.DATA). There are no files to shard by (the
    frames are in a cache), and this way a step's shards add up to exactly the batch one process
    would train on."""
    if config.strategy != "multiworker":
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def setup_devices(mixed_precision: bool = False) -> None:
    """GPU memory growth on (so a second process can share the GPU); optional mixed float16."""
    import keras
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: too late to change, and harmless
            pass
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")


def make_strategy(config: RunConfig):
    """'default': one device. 'mirrored': data-parallel over every GPU, or over every logical CPU
    device when there is no GPU (how it is tested on a CPU-only machine). 'multiworker':
    MultiWorkerMirroredStrategy over the processes TF_CONFIG (or --workers) names, each with its
    GPUs or its CPU; --batch-size is the global batch."""
    import json

    import tensorflow as tf

    name = config.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        cluster = tf_config(config)
        if not cluster:
            raise ConfigError(
                "strategy", "multiworker needs TF_CONFIG or --workers HOST:PORT ... --worker-index I"
            )
        os.environ["TF_CONFIG"] = json.dumps(cluster)
        # A worker that dies must not leave the others waiting for good: they fail, and the job
        # can be restarted with --resume.
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        _fit_keras_to(strategy)
        return strategy
    raise ConfigError("strategy", f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")


def _fit_keras_to(strategy) -> None:
    """Two mismatches between Keras 3's fit and the collective (multi-worker) strategy, bridged
    here (tests/test_train.py trains two real workers): fit reduces a whole (x, y) batch at once
    to build the model, where the collective strategy's reduce takes one value (MirroredStrategy's
    takes structures): reduce leaf by leaf; and fit averages its scalar logs over `axis=0`, which a
    scalar does not have: average those over the replicas alone."""
    import tensorflow as tf

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


def train_model(
    name: str, config: RunConfig, train_ds, val_ds, steps: int, strategy, progress: bool, chief: bool = True
) -> TrainResult:
    """Fit one registered model; its files land in config.out (see the module docstring)."""
    import keras

    from driving import callbacks, models
    from driving.history import plot_loss, read_history
    from driving.modelio import ModelInfo, load_keras

    out = Path(config.out)
    history = read_history(out, name) if config.resume else None
    info = ModelInfo(
        preprocessing=config.preprocessing,
        model=name,
        augment=config.augment.to_dict(),
        run={k: v for k, v in config.to_dict().items() if k != "resume"},
    )
    with strategy.scope():
        if history is not None:
            model, _ = load_keras(out / f"{name}.last.keras", compile=True)
            print(f"{name}: resuming after epoch {len(history)} from {out / (name + '.last.keras')}")
        else:
            keras.utils.set_random_seed(model_seed(config.seed, name))
            model = models.build(name, input_shape=config.preprocessing.input_shape)
            models.compile_for_training(model, config.lr)
    import pandas as pd

    history = history if history is not None else pd.DataFrame()
    initial_epoch = len(history)
    best = float(history["val_loss"].min()) if len(history) else math.inf

    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
    if len(history):  # carry the patience count across a resume
        early.best = best
        early.wait = len(history) - 1 - int(history["val_loss"].idxmin())
    divergence = callbacks.StopOnDivergence()
    checkpoints = callbacks.Checkpoints(out, name, info, best)
    # Every worker of a multi-worker run stops on the same signals (losses are all-reduced, so
    # they agree); only the chief writes.
    fit_callbacks = [callbacks.EpochTimer(), divergence, early]
    if chief:
        fit_callbacks += [checkpoints, callbacks.HistoryLog(out, name, history)]
        if config.drive_check_steps:
            fit_callbacks.append(
                _drive_check(out, name, info, config.drive_check_steps, initial_epoch * steps)
            )
        if config.tensorboard:
            fit_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs" / name)))
    if progress:
        fit_callbacks.append(callbacks.TqdmProgress(name, config.epochs, steps))
    fitted = None
    if initial_epoch < config.epochs:
        fitted = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=fit_callbacks,
            verbose=0,
            shuffle=False,
        )
    if chief:
        history = read_history(out, name)
    else:  # the chief writes the history file; a worker knows what it trained here
        history = pd.DataFrame(fitted.history if fitted is not None else {})
        history["epoch"] = range(initial_epoch, initial_epoch + len(history))
    if divergence.diverged:
        kept = f"kept {out / (name + '.keras')}" if (out / f"{name}.keras").is_file() else "no model saved"
        print(f"{name}: training diverged at {divergence.diverged}; stopped, {kept}", file=sys.stderr)
    finite = history[history["val_loss"].map(math.isfinite)] if len(history) else history
    if len(history) and chief:
        plot_loss(history, name, out / f"{name}.loss.png")
    best_row = finite.loc[finite["val_loss"].idxmin()] if len(finite) else None
    return TrainResult(
        name=name,
        params=model.count_params(),
        epochs=len(history),
        best_val_loss=float(best_row["val_loss"]) if best_row is not None else math.nan,
        best_val_mae=float(best_row["val_mae"]) if best_row is not None else math.nan,
        seconds_per_epoch=float(history["epoch_seconds"].median())
        if "epoch_seconds" in history
        else math.nan,
        stopped_early=len(history) < config.epochs and not divergence.diverged,
        diverged=divergence.diverged,
    )


def _drive_check(out: Path, name: str, info, every: int, step: int):
    """The DriveCheck callback, carrying on from NAME.drive.csv when a run resumes (so a resumed
    run never replaces the drive-best checkpoint with a worse one)."""
    import pandas as pd

    from driving.callbacks import DriveCheck

    check = DriveCheck(out, name, info, every, step=step)
    log = out / f"{name}.drive.csv"
    if step and log.is_file() and (out / f"{name}.drive.keras").is_file():
        try:
            rows = pd.read_csv(log).to_dict(orient="records")
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            rows = []
        check.rows = [r for r in rows if r.get("step", 0) <= step]
        kept = [r for r in check.rows if r.get("kept") is True]
        if kept:
            check.best = max((r["autonomy"], -r["mean_abs_cte_m"]) for r in kept)
    return check


def summary_table(results: Sequence[TrainResult]) -> str:
    lines = [
        f"{'model':<12} {'params':>9} {'epochs':>7} {'best val MSE':>13} {'val MAE':>8} {'s/epoch':>8}  note"
    ]
    for r in results:
        note = f"diverged at {r.diverged}" if r.diverged else "stopped early" if r.stopped_early else ""
        lines.append(
            f"{r.name:<12} {r.params:>9,} {r.epochs:>7} {r.best_val_loss:>13.5f} "
            f"{r.best_val_mae:>8.4f} {r.seconds_per_epoch:>8.1f}  {note}"
        )
    return "\n".join(lines)


# --- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    defaults, augment, geometry = RunConfig(data=[]), AugmentConfig(), Preprocessing()
    parser = argparse.ArgumentParser(
        prog="python train.py",
        description="Train steering models on Udacity-simulator recordings. Each model's best-by-"
        "validation weights go to OUT/NAME.keras and OUT/NAME.h5, with history, loss plots and "
        "TensorBoard logs beside them, and OUT/run.json records how the run was made.",
        epilog="example: python train.py --data data/track1 --model effnet --model base --epochs 10",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="recording folders (each with driving_log.csv and IMG/), or parents of them",
    )
    parser.add_argument(
        "--model",
        action="append",
        choices=list(MODELS),
        metavar="NAME",
        help=f"model to train, repeat for several (default effnet); one of {', '.join(MODELS)}",
    )
    budget = parser.add_argument_group("budget")
    budget.add_argument(
        "--epochs",
        type=cli.integer(1, 100_000),
        default=defaults.epochs,
        help="maximum epochs (default %(default)s)",
    )
    budget.add_argument(
        "--batch-size",
        type=cli.integer(1, 8192),
        default=defaults.batch_size,
        help="frames per batch (default %(default)s)",
    )
    budget.add_argument(
        "--steps-per-epoch",
        type=cli.positive_int,
        default=None,
        metavar="S",
        help="batches per epoch (default: one pass over the kept training rows)",
    )
    budget.add_argument(
        "--lr",
        type=cli.number(low=0, low_open=True, high=1),
        default=defaults.lr,
        help="Adam learning rate, above 0 and at most 1 (default %(default)s)",
    )
    budget.add_argument(
        "--patience",
        type=cli.positive_int,
        default=defaults.patience,
        help="stop after this many epochs without a better val loss (default %(default)s)",
    )
    split = parser.add_argument_group("split")
    split.add_argument(
        "--seed",
        type=cli.seed,
        default=defaults.seed,
        help="seed of the split; each model's weights and augmentation use a seed made of it "
        "and the model's name (default %(default)s)",
    )
    split.add_argument(
        "--val-fraction",
        type=cli.number(low=0, high=1, low_open=True, high_open=True),
        default=defaults.val_fraction,
        help="share of time blocks held out for validation (default %(default)s)",
    )
    split.add_argument(
        "--block-seconds",
        type=cli.number(low=0, low_open=True, high=86_400),
        default=defaults.block_seconds,
        help="the split holds out whole blocks of this many seconds (default %(default)s)",
    )
    prep = parser.add_argument_group("preprocessing (stored in every model file)")
    prep.add_argument(
        "--frame-size",
        type=cli.size,
        default=None,
        metavar="HxW",
        help=f"camera frame size (default {geometry.frame_height}x{geometry.frame_width}, "
        "the Udacity simulator's)",
    )
    prep.add_argument(
        "--crop-top",
        type=cli.non_negative_int,
        default=geometry.crop_top,
        help="first frame row kept (default %(default)s: drops the sky)",
    )
    prep.add_argument(
        "--crop-bottom",
        type=cli.positive_int,
        default=geometry.crop_bottom,
        help="row after the last one kept (default %(default)s: drops the bonnet)",
    )
    prep.add_argument(
        "--input-size",
        type=cli.size,
        default=None,
        metavar="HxW",
        help=f"model input size (default {geometry.input_height}x{geometry.input_width}); "
        "PilotNet resizes to 66x200 inside",
    )
    aug = parser.add_argument_group("augmentation (training only)")
    aug.add_argument(
        "--no-augment", action="store_true", help="train on center frames as recorded: every switch below off"
    )
    for switch in AugmentConfig.SWITCHES:
        flag, on = switch.replace("_", "-"), getattr(augment, switch)
        aug.add_argument(
            f"--no-{flag}" if on else f"--{flag}",
            dest=switch,
            action="store_false" if on else "store_true",
            default=on,
            help=f"switch {'off' if on else 'on'} {AUGMENT_HELP[switch]}",
        )
    aug.add_argument(
        "--steering-correction",
        type=cli.number(low=0, high=1),
        default=augment.steering_correction,
        help="steering added for the left camera's frames, subtracted for the right's "
        "(default %(default)s, the classic tuned value)",
    )
    budget.add_argument(
        "--drive-check-steps",
        type=cli.non_negative_int,
        default=defaults.drive_check_steps,
        metavar="N",
        help="every N steps, drive the model on the held-out validation suite and keep the best "
        "driver as OUT/NAME.drive.keras (default 0: off)",
    )
    how = parser.add_argument_group("how it runs")
    how.add_argument(
        "--out", type=Path, default=Path(defaults.out), help="output folder (default %(default)s/)"
    )
    how.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep the decoded frame cache here (memory-mapped, reused by later runs)",
    )
    how.add_argument(
        "--resume", action="store_true", help="continue each model from OUT/NAME.last.keras and its history"
    )
    how.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute with float32 weights and output (for GPUs)",
    )
    how.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=defaults.strategy,
        help="'mirrored': data-parallel over every GPU (MirroredStrategy); 'multiworker': over the "
        "processes TF_CONFIG or --workers name (MultiWorkerMirroredStrategy; --batch-size is global)",
    )
    how.add_argument(
        "--workers",
        nargs="+",
        default=[],
        metavar="HOST:PORT",
        help="--strategy multiworker without TF_CONFIG: every worker's address, the same list for all",
    )
    how.add_argument(
        "--worker-index",
        type=cli.non_negative_int,
        default=0,
        help="--strategy multiworker: which of --workers this process is (0, the chief, writes the files)",
    )
    how.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logs")
    how.add_argument(
        "--report", action="store_true", help="afterwards, write the slimming report (driving.report)"
    )
    return parser


AUGMENT_HELP = {
    "side_cameras": "the side cameras (with their steering correction)",
    "flip": "horizontal flips (switch off where the car must keep to one side of the road)",
    "brightness": "random brightness",
    "shadow": "random shadows",
    "shift": "random sideways shifts (with their steering change)",
    "drop_straight": "dropping most near-straight frames each epoch",
    "colour": "random hue, saturation, light colour and contrast",
}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig a parsed command line means."""
    augment = AugmentConfig.off() if args.no_augment else AugmentConfig()
    switches = {s: getattr(args, s) and not args.no_augment for s in AugmentConfig.SWITCHES}
    augment = replace(augment, steering_correction=args.steering_correction, **switches)
    geometry = Preprocessing()
    if args.frame_size:
        geometry = replace(geometry, frame_height=args.frame_size[0], frame_width=args.frame_size[1])
    if args.input_size:
        geometry = replace(geometry, input_height=args.input_size[0], input_width=args.input_size[1])
    geometry = replace(geometry, crop_top=args.crop_top, crop_bottom=args.crop_bottom)
    return RunConfig(
        data=[str(d) for d in args.data],
        models=list(dict.fromkeys(args.model or ["effnet"])),
        out=str(args.out),
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        patience=args.patience,
        val_fraction=args.val_fraction,
        block_seconds=args.block_seconds,
        augment=augment,
        preprocessing=geometry,
        cache_dir=str(args.cache_dir) if args.cache_dir else None,
        resume=args.resume,
        strategy=args.strategy,
        workers=list(args.workers),
        worker_index=args.worker_index,
        mixed_precision=args.mixed_precision,
        tensorboard=not args.no_tensorboard,
        drive_check_steps=args.drive_check_steps,
    )


# RunConfig field -> the option that sets it, for one-line errors that name the option.
OPTIONS = {
    "data": "--data",
    "models": "--model",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "steps_per_epoch": "--steps-per-epoch",
    "lr": "--lr",
    "patience": "--patience",
    "seed": "--seed",
    "val_fraction": "--val-fraction",
    "block_seconds": "--block-seconds",
    "crop_top": "--crop-top",
    "crop_bottom": "--crop-bottom",
    "input_height": "--input-size",
    "input_width": "--input-size",
    "frame_height": "--frame-size",
    "frame_width": "--frame-size",
    "steering_correction": "--steering-correction",
    "strategy": "--strategy",
    "workers": "--workers",
    "worker_index": "--worker-index",
    "drive_check_steps": "--drive-check-steps",
}


def command_line(config: RunConfig) -> str:
    """The train.py command that makes `config` (recorded in run.json, to repeat a run)."""
    d, g, a = RunConfig(data=[]), Preprocessing(), config.augment
    parts = ["python train.py", "--data", *config.data]
    parts += [x for m in config.models for x in ("--model", m)]
    for option, value, default in (
        ("--epochs", config.epochs, d.epochs),
        ("--batch-size", config.batch_size, d.batch_size),
        ("--steps-per-epoch", config.steps_per_epoch, None),
        ("--lr", config.lr, d.lr),
        ("--patience", config.patience, d.patience),
        ("--seed", config.seed, d.seed),
        ("--val-fraction", config.val_fraction, d.val_fraction),
        ("--block-seconds", config.block_seconds, d.block_seconds),
        ("--crop-top", config.preprocessing.crop_top, g.crop_top),
        ("--crop-bottom", config.preprocessing.crop_bottom, g.crop_bottom),
        ("--steering-correction", a.steering_correction, AugmentConfig().steering_correction),
        ("--drive-check-steps", config.drive_check_steps, d.drive_check_steps),
    ):
        if value != default:
            parts += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    p = config.preprocessing
    if (p.frame_height, p.frame_width) != (g.frame_height, g.frame_width):
        parts += ["--frame-size", f"{p.frame_height}x{p.frame_width}"]
    if (p.input_height, p.input_width) != (g.input_height, g.input_width):
        parts += ["--input-size", f"{p.input_height}x{p.input_width}"]
    default = AugmentConfig()
    for s in AugmentConfig.SWITCHES:
        if getattr(a, s) != getattr(default, s):
            parts.append(f"--{'no-' if getattr(default, s) else ''}{s.replace('_', '-')}")
    parts += ["--out", config.out]
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args)
    from driving.data.reader import RecordingError
    from driving.modelio import ModelFileError

    try:
        config.validate()
        results = run(config)
    except ConfigError as e:
        parser.error(f"{OPTIONS.get(e.field, e.field)}: {e.message}")
    except (RecordingError, TrainError, ModelFileError, OSError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "train.py: interrupted; the files saved so far are complete (see OUT/run.json)", file=sys.stderr
        )
        return 130
    print("\n" + summary_table(results))
    print(f"\nmodels, histories and plots in {config.out}/ (loss_overlay.png compares them; run.json: how)")
    if args.report:
        from driving import report

        report.run(Path(config.out))
    return 1 if any(r.diverged for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
