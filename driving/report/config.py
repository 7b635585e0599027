"""The slimming report's settings, declared once (driving/options.py): `python -m driving.report`'s
parser, its range checks and the library call all come from `ReportConfig`.

    report = stage.run(ReportConfig(Path("models"), drive_precisions="quick"))

Light on purpose (no TensorFlow): the command line parses, and answers --help, before the stage
loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from driving.config import RunConfig
from driving.options import ConfigError, check_bounds, option, same_as
from driving.saliency import METHOD_NAMES

CALIBRATION_FRAMES = 1500  # int8 ranges: 200 frames left effnet-slim at 0.10-0.22 max error, 1500 at 0.07
# Where each model looks, on by default because it costs little: VisualBackProp's section took 5
# to 12 s here (mostly rendering its 18 frames) against the report's 110 s; SmoothGrad (32 passes
# forward and back per frame) adds 20 to 30 s for four models and is asked for by name
# (docs/saliency.md).
SALIENCY_METHODS = ("vbp",)
# The suites --drive-precisions may name (of driving.evaluation.registry.SUITES).
DRIVE_SUITES = ("quick", "unseen")
# An export whose paired autonomy difference to its Keras model lies wholly below minus this many
# points is flagged and never recommended: 1 point is about one intervention in 10 minutes.
MARGIN_POINTS = 1.0
SPLIT = "the split of models without a record (older files)"


@dataclass(frozen=True)
class ReportConfig:
    """What the slimming report measures, of which folder, and how much."""

    folder: Path = option(Path("models"), "--models", "folder of trained models")
    data: list[str] = option(
        list,
        "--data",
        "recordings, only for models that carry no record of their training data (older files)",
        metavar="DIR",
        nargs="+",
    )
    export: str = option(
        "tflite",
        "--export",
        "export NAME.tflite, NAME.float16.tflite, NAME.int8.tflite and time them with LiteRT",
        choices=("tflite", "none"),
    )
    val_fraction: float = same_as(RunConfig, "val_fraction", group=SPLIT)
    seed: int = same_as(RunConfig, "seed", help="seed of the split", group=SPLIT)
    block_seconds: float = same_as(RunConfig, "block_seconds", group=SPLIT)
    val_frames: int = option(512, "--val-frames", "validation frames to score, at most", low=1)
    runs: int = option(200, "--runs", "timed calls per latency figure", low=1)
    calibration_frames: int = option(
        CALIBRATION_FRAMES,
        "--calibration-frames",
        "training frames that calibrate the int8 export",
        low=1,
    )
    saliency: list[str] = option(
        lambda: list(SALIENCY_METHODS),
        "--saliency",
        "where each model looks, scored on frames of unseen tracks and drawn as saliency.png: "
        "vbp, smoothgrad, or none",
        choices=(*METHOD_NAMES, "none"),
        metavar="METHOD",
        nargs="+",
    )
    drive_precisions: str | None = option(
        None,
        "--drive-precisions",
        "drive the Keras model and every exported LiteRT file (float32, float16, int8) over this "
        "suite and tabulate, per file, size, one-core latency, autonomy and its difference to the "
        "Keras model paired by track, with a recommendation of the file to serve (off by default: "
        "minutes per model)",
        choices=DRIVE_SUITES,
        metavar="SUITE",
    )
    jobs: int | None = option(None, "--jobs", "parallel drives (default: cores)", low=1, high=256)

    def validate(self) -> ReportConfig:
        """Refuse, with a ConfigError naming the field, a setting out of range or two that clash."""
        check_bounds(self)
        if "none" in self.saliency and len(self.saliency) > 1:
            raise ConfigError("saliency", "none cannot be combined with a method")
        if self.drive_precisions and self.export == "none":
            raise ConfigError("drive_precisions", "drives the exported files: it needs --export tflite")
        return self

    @property
    def exports(self) -> bool:
        """Whether the LiteRT files are exported (and timed, and checked)."""
        return self.export == "tflite"

    @property
    def saliency_methods(self) -> list[str]:
        """The saliency methods to run (none: an empty list)."""
        return [m for m in self.saliency if m != "none"]
