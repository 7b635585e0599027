"""The command line of training: `python train.py` (or `python -m driving.train`).

It parses the options into a RunConfig (driving/config.py) and runs driving/train/stage.py on it;
`command_line` is the way back, the command that makes a RunConfig (recorded in run.json). Nothing
here imports TensorFlow before the arguments are parsed: `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from driving import cli, tfsetup
from driving.config import STRATEGIES, AugmentConfig, ConfigError, Preprocessing, RunConfig
from driving.models import MODELS


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
    try:
        config.validate()  # a nonsense option is refused before TensorFlow loads
    except ConfigError as e:
        parser.error(f"{OPTIONS.get(e.field, e.field)}: {e.message}")
    tfsetup.setup()
    # Imported after parsing and tfsetup.setup(): the stage imports TensorFlow at its top, and
    # driving.data pandas and OpenCV, none of which `--help` needs.
    from driving.data.reader import RecordingError
    from driving.modelio import ModelFileError
    from driving.train import stage

    try:
        results = stage.run(config)
    except ConfigError as e:
        parser.error(f"{OPTIONS.get(e.field, e.field)}: {e.message}")
    except (RecordingError, stage.TrainError, ModelFileError, OSError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "train.py: interrupted; the files saved so far are complete (see OUT/run.json)", file=sys.stderr
        )
        return 130
    print("\n" + stage.summary_table(results))
    print(f"\nmodels, histories and plots in {config.out}/ (loss_overlay.png compares them; run.json: how)")
    if args.report:
        # The report stage, loaded only when --report asks for it.
        from driving.report import stage as report

        report.run(Path(config.out))
    return 1 if any(r.diverged for r in results) else 0
