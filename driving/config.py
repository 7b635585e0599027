"""The settings of the project in one place: the simulator's fixed facts, how a frame becomes model
input (Preprocessing, stored inside every saved model), the training-only transforms
(AugmentConfig), and everything a training run is made of (RunConfig, saved as OUT/run.json).

Every setting is declared once, with its option, help and bounds (driving/options.py): the command
lines, the range checks and the command recorded in run.json are generated from these dataclasses.
"""

from __future__ import annotations

import hashlib
import math
import shlex
from dataclasses import asdict, dataclass, field, fields, replace

from driving.options import ConfigError, check_bounds, option, to_argv

# The Udacity simulator's camera frames (see docs/simulator-protocol.md).
FRAME_HEIGHT, FRAME_WIDTH = 160, 320
SAMPLE_RATE_HZ = 15  # one sample (three cameras) every 1/15 s
MAX_WHEEL_ANGLE_DEG = 25.0  # steering 1.0 == 25 degrees of wheel angle, positive steers right
CAMERAS = ("center", "left", "right")
CSV_NAME = "driving_log.csv"
IMG_DIR = "IMG"
RUN_JSON = "run.json"

# A side camera sees the road as if the car had drifted; steering this much more brings it back.
# 0.25 is the classic tuned value of the Udacity project (and what the headless simulator's side
# cameras imply, driving/sim/expert.py).
STEERING_CORRECTION = 0.25


# Shared limits and targets, defined once.
TARGET_SPEED_MPH = 9.0  # the Pilot's target speed: drive.py, the simulator's drives, the suites
MAX_LAPS = 100.0  # the most laps one drive or recording may ask for
MAX_BATCH_SIZE = 8192  # a batch is decoded and augmented in memory: beyond this a typo, not a plan
MAX_SEEDS = 1000  # seeds in one study, frames in one saliency grid: beyond this a typo


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(name, message)


def _finite(value, name: str) -> float:
    _check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        name,
        f"must be a finite number, got {value!r}",
    )
    return float(value)


def _from_dict(cls, data: dict, source: str):
    """Build dataclass `cls` from a JSON object, ignoring keys it does not know (newer files)."""
    if not isinstance(data, dict):
        raise ConfigError(source, f"expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


STRATEGIES = ("default", "mirrored", "multiworker")
PREP, AUGMENT = "preprocessing (stored in every model file)", "augmentation (training only)"
BUDGET, SPLIT, HOW = "budget", "split", "how it runs"


@dataclass(frozen=True)
class Preprocessing:
    """How a camera frame becomes model input: rows crop_top:crop_bottom of a frame_height x
    frame_width RGB frame, resized to input_height x input_width, scaled to [-0.5, 0.5].

    Saved inside every model file (driving/modelio.py), so drive.py, the report and the simulator
    preprocess exactly as the model was trained, whatever the defaults are later. The defaults keep
    the road and drop the sky and the bonnet of the Udacity simulator's 320x160 frames."""

    frame_height: int = option(
        FRAME_HEIGHT,
        "--frame-size",
        f"camera frame size (default {FRAME_HEIGHT}x{FRAME_WIDTH}, the Udacity simulator's)",
        group=PREP,
        low=8,
        high=4096,
        metavar="HxW",
        size_with="frame_width",
    )
    frame_width: int = FRAME_WIDTH
    crop_top: int = option(
        80, "--crop-top", "first frame row kept (default %(default)s: drops the sky)", group=PREP, low=0
    )
    crop_bottom: int = option(
        140,
        "--crop-bottom",
        "row after the last one kept (default %(default)s: drops the bonnet)",
        group=PREP,
        low=1,
    )
    # Five halvings (every registered model) need at least 32 pixels each way.
    input_height: int = option(
        128,
        "--input-size",
        "model input size (default 128x128); PilotNet resizes to 66x200 inside",
        group=PREP,
        low=32,
        high=1024,
        metavar="HxW",
        size_with="input_width",
    )
    input_width: int = 128

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.frame_height, self.frame_width, 3)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_height, self.input_width, 3)

    def validate(self) -> Preprocessing:
        check_bounds(self)
        _check(
            self.crop_top < self.crop_bottom <= self.frame_height,
            "crop_bottom",
            f"crop rows {self.crop_top}:{self.crop_bottom} must lie within the frame's "
            f"{self.frame_height} rows, top above bottom",
        )
        return self

    def describe(self) -> str:
        return (
            f"{self.frame_width}x{self.frame_height} frame, rows {self.crop_top}:{self.crop_bottom}, "
            f"resized to {self.input_width}x{self.input_height}"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "preprocessing") -> Preprocessing:
        return _from_dict(cls, data, source).validate()


DEFAULT_PREPROCESSING = Preprocessing()
# The defaults, as module constants for the code that only ever sees simulator frames.
CROP_TOP, CROP_BOTTOM = DEFAULT_PREPROCESSING.crop_top, DEFAULT_PREPROCESSING.crop_bottom
INPUT_HEIGHT, INPUT_WIDTH = DEFAULT_PREPROCESSING.input_height, DEFAULT_PREPROCESSING.input_width
INPUT_SHAPE = DEFAULT_PREPROCESSING.input_shape


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only random transforms; each one can be switched off (reference values).

    In a world that drives on one side of a marked two-lane road, switch `flip` off: a mirrored
    frame teaches the car the wrong side. The side cameras' correction and the shift's steering
    hold for the classic camera and steering scale; another world implies its own
    (driving.sim.kinds.WorldKind, docs/worlds.md)."""

    side_cameras: bool = option(
        True,
        "--no-side-cameras",
        "switch off the side cameras (with their steering correction)",
        group=AUGMENT,
    )
    steering_correction: float = option(
        STEERING_CORRECTION,
        "--steering-correction",
        "steering added for the left camera's frames, subtracted for the right's "
        "(default %(default)s, the classic tuned value)",
        group=AUGMENT,
        low=0,
        high=1,
    )
    flip: bool = option(
        True,
        "--no-flip",
        "switch off horizontal flips (switch off where the car must keep to one side of the road)",
        group=AUGMENT,
    )
    brightness: bool = option(True, "--no-brightness", "switch off random brightness", group=AUGMENT)
    brightness_range: tuple[float, float] = (0.1, 1.0)
    shadow: bool = option(True, "--no-shadow", "switch off random shadows", group=AUGMENT)
    shift: bool = option(
        True, "--no-shift", "switch off random sideways shifts (with their steering change)", group=AUGMENT
    )
    shift_max_px: float = 40.0  # in pixels of the 320-wide frame
    shift_steering_per_px: float = option(
        0.004,
        "--shift-steering",
        "steering added per pixel a frame is shifted right (320-wide frame; default %(default)s, the "
        "classic tuned value: another camera or steering scale needs its own, docs/worlds.md)",
        group=AUGMENT,
        low=0,
        high=0.1,
    )
    drop_straight: bool = option(
        True, "--no-drop-straight", "switch off dropping most near-straight frames each epoch", group=AUGMENT
    )
    straight_threshold: float = 0.01  # |steering| below this counts as driving straight
    straight_keep: float = 0.2  # keep 20% of near-straight frames each epoch (drop 80%)
    colour: bool = option(
        False, "--colour", "switch on random hue, saturation, light colour and contrast", group=AUGMENT
    )
    hue_deg: float = 20.0
    saturation_range: tuple[float, float] = (0.6, 1.4)
    channel_gain: float = 0.15  # each channel's gain drawn within 1 -+ this
    contrast_range: tuple[float, float] = (0.7, 1.3)
    random_conv: bool = option(
        False,
        "--random-conv",
        "switch on random convolutions: half the frames seen through a random 3x3 filter each (other "
        "colours, contrasts and textures; the same edges); it drove new looks worse in every run "
        "measured here (docs/evaluation.md)",
        group=AUGMENT,
    )
    random_conv_share: float = 0.5  # the share of frames filtered; the rest stay as they are

    SWITCHES = (
        "side_cameras",
        "flip",
        "brightness",
        "shadow",
        "shift",
        "drop_straight",
        "colour",
        "random_conv",
    )

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(**{name: False for name in cls.SWITCHES})

    def validate(self) -> AugmentConfig:
        check_bounds(self)
        low, high = (_finite(v, "brightness_range") for v in self.brightness_range)
        _check(
            0 < low <= high <= 2, "brightness_range", f"must satisfy 0 < low <= high <= 2, got {low}, {high}"
        )
        _check(0 <= _finite(self.shift_max_px, "shift_max_px") <= 160, "shift_max_px", "must be 0 to 160")
        _finite(self.shift_steering_per_px, "shift_steering_per_px")
        _check(0 <= _finite(self.straight_keep, "straight_keep") <= 1, "straight_keep", "must be 0 to 1")
        _check(
            0 <= _finite(self.straight_threshold, "straight_threshold") < 1, "straight_threshold", "0 to 1"
        )
        _check(0 <= _finite(self.hue_deg, "hue_deg") <= 180, "hue_deg", "must be 0 to 180")
        _check(0 <= _finite(self.channel_gain, "channel_gain") < 1, "channel_gain", "must be 0 to 1")
        _check(
            0 <= _finite(self.random_conv_share, "random_conv_share") <= 1,
            "random_conv_share",
            "must be 0 to 1",
        )
        for name in ("saturation_range", "contrast_range"):
            low, high = (_finite(v, name) for v in getattr(self, name))
            _check(0 <= low <= high <= 3, name, f"must satisfy 0 <= low <= high <= 3, got {low}, {high}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "augment") -> AugmentConfig:
        made = _from_dict(cls, data, source)
        ranges = {
            k: tuple(getattr(made, k)) for k in ("brightness_range", "saturation_range", "contrast_range")
        }
        return replace(made, **ranges).validate()


@dataclass(frozen=True)
class Budget:
    """How much training a model gets: epochs x steps of a batch."""

    epochs: int
    steps: int
    batch: int

    @property
    def frames(self) -> int:
        return self.epochs * self.steps * self.batch

    def describe(self) -> str:
        return f"{self.epochs} epochs x {self.steps} steps x batch {self.batch}"


# The CPU budget fits the demo's 25 minutes on 2 cores: 11,520 augmented frames per model. Batch 32
# rather than 64: the same frames/s on 2 cores (effnet: 82.8 vs 82.2 images/s, `python
# bench/models.py --models effnet --batch-size 32|64`) and twice the updates, which a short
# budget needs most. cpu4x trains on 4 times as many frames (46,080): for new looks and the
# two-lane world the CPU budget leaves models under-trained (docs/evaluation.md), at about 4 times
# the training time; cpu8x continues it for 4 more epochs of the same length, so its first 4
# epochs are cpu4x's. The full budget is the original work's (for a GPU).
BUDGETS = {
    "cpu": Budget(epochs=2, steps=180, batch=32),
    "cpu4x": Budget(epochs=4, steps=360, batch=32),
    "cpu8x": Budget(epochs=8, steps=360, batch=32),
    "full": Budget(epochs=21, steps=128, batch=128),
}

# The held-out suites a drive check may drive (driving/evaluation/registry.py defines them; config
# must not import the registry, so a test holds the two together): the classic world's tracks, the
# same tracks in new looks as well, and the two-lane world's maps.
DRIVE_CHECK_SUITES = ("validation", "validation-looks", "two-lane-validation")

TRAIN_PROG = "python train.py"  # how run.json's command starts
ASYNC_MODES = ("threading", "eventlet")  # drive.py's server stacks (driving/drive_server.py)


@dataclass
class RunConfig:
    """Everything a training run is made of. train.run(config) trains from it, and writes it,
    with the package versions it ran on, as OUT/run.json: a run can be repeated from that file,
    and the report reads its split from it."""

    data: list[str] = option(
        list,
        "--data",
        "recording folders (each with driving_log.csv and IMG/), or parents of them",
        metavar="DIR",
        nargs="+",
        required=True,
    )
    models: list[str] = option(
        lambda: ["effnet"],
        "--model",
        "model to train, repeat for several (default effnet; `python -m driving.models` lists them)",
        metavar="NAME",
        repeat=True,
    )
    # budget
    epochs: int = option(10, "--epochs", "maximum epochs", group=BUDGET, low=1, high=100_000)
    batch_size: int = option(
        128, "--batch-size", "frames per batch", group=BUDGET, low=1, high=MAX_BATCH_SIZE
    )
    steps_per_epoch: int | None = option(
        None,
        "--steps-per-epoch",
        "batches per epoch (default: one pass over the kept training rows)",
        group=BUDGET,
        low=1,
        high=10_000_000,
        metavar="S",
    )
    lr: float = option(
        1e-3, "--lr", "Adam learning rate, above 0 and at most 1", group=BUDGET, low=0, low_open=True, high=1
    )
    # 0 makes the budget fixed: on new looks the last checkpoint of such a run drove better than
    # its val-best one (docs/evaluation.md), so a study serves NAME.last.keras then.
    patience: int = option(
        3,
        "--patience",
        "stop after this many epochs without a better val loss (0: never stop early; every "
        "--epochs epoch trains and OUT/NAME.last.keras holds the end of the budget)",
        group=BUDGET,
        low=0,
        high=100_000,
    )
    # Every this many steps, drive the model on a held-out validation suite and keep the best
    # driver as NAME.drive.keras (0: off). Validation loss does not say who drives.
    drive_check_steps: int = option(
        0,
        "--drive-check-steps",
        "every N steps, drive the model on the held-out --drive-check-suite and keep the best "
        "driver as OUT/NAME.drive.keras (default 0: off)",
        group=BUDGET,
        low=0,
        high=10_000_000,
        metavar="N",
    )
    # A checkpoint is chosen by how it drives, so it must drive the world it was trained for.
    drive_check_suite: str = option(
        DRIVE_CHECK_SUITES[0],
        "--drive-check-suite",
        "the held-out suite the drive check drives: 'validation' (classic tracks, default), "
        "'validation-looks' (the same tracks in new looks as well, for a model trained on many "
        "looks) or 'two-lane-validation' (two-lane maps, for a model of the two-lane world)",
        group=BUDGET,
        choices=DRIVE_CHECK_SUITES,
    )
    # BatchNorm's moving statistics follow the augmented training batches (side cameras, shifts),
    # not the clean centre frames it is validated and served on: re-estimate them from clean frames
    # before each validation and drive check (driving/train/batchnorm.py; 0: off).
    bn_refresh_batches: int = option(
        0,
        "--bn-refresh",
        "before every validation and drive check, re-estimate each BatchNormalization layer's "
        "moving mean and variance from N batches of clean training frames (centre camera, no "
        "augmentation; the same frames each time, drawn from --seed); default 0: off",
        group=BUDGET,
        low=0,
        high=100_000,
        metavar="N",
    )
    # split: whole blocks of driving time held out, chosen by `seed`
    seed: int = option(
        0,
        "--seed",
        "seed of the split; each model's weights and augmentation use a seed made of it "
        "and the model's name (default %(default)s)",
        group=SPLIT,
        low=0,
        high=2**31 - 1,
    )
    val_fraction: float = option(
        0.2,
        "--val-fraction",
        "share of time blocks held out for validation",
        group=SPLIT,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    block_seconds: float = option(
        10.0,
        "--block-seconds",
        "the split holds out whole blocks of this many seconds",
        group=SPLIT,
        low=0,
        low_open=True,
        high=86_400,
    )
    # Or whole recordings of their own (another track, looks the training never saw): then the
    # val loss, early stopping and the val-best checkpoint measure how the model carries over to
    # them, not how it fits held-out moments of its own laps.
    val_data: list[str] = option(
        list,
        "--val-data",
        "validate on these recording folders (or parents of them) instead of held-out blocks of "
        "--data; every --data frame then trains, and --val-fraction and --block-seconds are unused",
        group=SPLIT,
        metavar="DIR",
        nargs="+",
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # how it runs: the results do not depend on these, except mixed precision (float16 compute)
    out: str = option("models", "--out", "output folder (default %(default)s/)", group=HOW)
    cache_dir: str | None = option(
        None,
        "--cache-dir",
        "keep the decoded frame cache here (memory-mapped, reused by later runs)",
        group=HOW,
    )
    resume: bool = option(
        False, "--resume", "continue each model from OUT/NAME.last.keras and its history", group=HOW
    )
    mixed_precision: bool = option(
        False,
        "--mixed-precision",
        "float16 compute with float32 weights and output (for GPUs; changes the results)",
        group=HOW,
    )
    strategy: str = option(
        "default",
        "--strategy",
        "'default': one device; 'mirrored': data-parallel over every GPU (MirroredStrategy); "
        "'multiworker': over the processes TF_CONFIG or --workers name (MultiWorkerMirroredStrategy; "
        "--batch-size is global)",
        group=HOW,
        choices=STRATEGIES,
    )
    workers: list[str] = option(
        list,
        "--workers",
        "--strategy multiworker without TF_CONFIG: every worker's address, the same list for all",
        group=HOW,
        nargs="+",
        metavar="HOST:PORT",
    )
    worker_index: int = option(
        0,
        "--worker-index",
        "--strategy multiworker: which of --workers this process is (0, the chief, writes the files)",
        group=HOW,
        low=0,
        high=65_535,
    )
    # A multi-worker run waits this long for every worker to answer before it starts, and as long
    # again for TensorFlow's own start-up; then it stops with one line instead of waiting forever.
    start_timeout: float = option(
        300.0,
        "--start-timeout",
        "--strategy multiworker: seconds to wait for every worker to start",
        group=HOW,
        low=0,
        low_open=True,
        high=86_400,
        metavar="S",
    )
    tensorboard: bool = option(True, "--no-tensorboard", "skip TensorBoard logs", group=HOW)
    versions: dict = field(default_factory=dict)  # filled by train.run

    def validate(self) -> RunConfig:
        check_bounds(self)
        if self.workers:
            _check(self.strategy == "multiworker", "workers", "are for --strategy multiworker")
            for worker in self.workers:
                host, _, port = worker.rpartition(":")
                _check(
                    bool(host) and port.isdigit() and 0 < int(port) < 65536,
                    "workers",
                    f"{worker!r} is not HOST:PORT",
                )
            last = len(self.workers) - 1
            _check(
                self.worker_index <= last,
                "worker_index",
                f"must be a whole number from 0 to {last} (one of the {len(self.workers)} --workers), "
                f"got {self.worker_index}",
            )
        _check(
            self.drive_check_steps > 0 or self.drive_check_suite == DRIVE_CHECK_SUITES[0],
            "drive_check_suite",
            "is for a drive check: set --drive-check-steps N as well",
        )
        _check(
            not self.bn_refresh_batches or self.strategy == "default",
            "bn_refresh_batches",
            "works with --strategy default only (one replica): the refresh is not made across "
            "replicas or workers",
        )
        self.augment.validate()
        self.preprocessing.validate()
        return self

    def command(self) -> str:
        """The train.py command that makes this config (recorded in run.json, to repeat a run):
        every declared option that differs from its default, shell-quoted."""
        return f"{TRAIN_PROG} {shlex.join(to_argv(self))}"

    def split(self) -> dict:
        """What decides which frames are validation frames (val_data only when given, so a run
        recorded before the option existed keeps the same split)."""
        split = {
            "data": list(self.data),
            "val_fraction": self.val_fraction,
            "block_seconds": self.block_seconds,
            "seed": self.seed,
        }
        return {**split, "val_data": list(self.val_data)} if self.val_data else split

    def to_dict(self) -> dict:
        data = asdict(self)
        data["augment"], data["preprocessing"] = self.augment.to_dict(), self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = RUN_JSON) -> RunConfig:
        made = _from_dict(cls, data, source)
        made.augment = AugmentConfig.from_dict(data.get("augment", {}), f"{source}: augment")
        made.preprocessing = Preprocessing.from_dict(
            data.get("preprocessing", {}), f"{source}: preprocessing"
        )
        return made.validate()


def model_seed(seed: int, name: str) -> int:
    """The seed of one model in a run: a function of the run's seed and the model's name only, so
    a model starts from the same weights and sees the same augmented batches whether it is trained
    alone or beside others, in any order."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
