"""The main job, `make demo`: record -> train -> compare -> drive, and one summary table.

    python -m driving.demo            # budget sized for a 2-core CPU (under 25 minutes)
    python -m driving.demo --full     # the original budget: 21 epochs x 128 steps x batch 128 (GPU)

1. record expert laps on the training tracks with the headless simulator (reused when present);
2. train base, effnet, the slim variant and PilotNet (the field's yardstick): train.run;
3. write the slimming report (sizes, MACs, latency, validation error): report.run;
4. drive every model closed-loop through drive.py's server on a training track and on a built-in
   track it never saw, at 9 mph: sim.closed_loop.evaluate;
5. print one table and write it to OUT/summary.md (with the date and the machine).

Every stage is the library function its own command line calls, chained here in one process, so
TensorFlow loads once; the demo runs from any working folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from driving import cli
from driving.config import CSV_NAME

MODELS = ("base", "effnet", "effnet-slim", "pilotnet")


@dataclass(frozen=True)
class Budget:
    epochs: int
    steps: int
    batch: int


# The CPU budget fits the 25-minute target on 2 cores (docs/evaluation.md); --full is the original.
# 11,520 augmented frames per model. Batch 32 rather than 64: the same frames/s on 2 cores
# (effnet: 82.8 vs 82.2 images/s, `python bench/models.py --models effnet --batch-size 32|64`)
# and twice the updates, which a short budget needs most.
CPU_BUDGET = Budget(epochs=2, steps=180, batch=32)
FULL_BUDGET = Budget(epochs=21, steps=128, batch=128)


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    data: Path = Path("data")
    train_tracks: list[str] = field(default_factory=lambda: ["lake", "jungle"])
    unseen_track: str = "desert"
    record_laps: float = 3.0
    models: list[str] = field(default_factory=lambda: list(MODELS))
    budget: Budget = CPU_BUDGET
    full: bool = False
    eval_laps: float = 2.0
    unseen_laps: float = 1.0
    speed: float = 9.0
    seed: int = 0


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def record(tracks: list[str], laps: float, data: Path) -> list[Path]:
    """One recording per track in data/sim-TRACK, reused when a finished one is there."""
    from driving.sim.record import record as record_laps
    from driving.sim.track import get_track

    folders = []
    for i, name in enumerate(tracks):
        folder = data / f"sim-{name}"
        if (folder / CSV_NAME).is_file() and (folder / CSV_NAME).stat().st_size:
            print(f"reusing the recording in {folder} (delete it to record again)")
        else:
            result = record_laps(get_track(name), folder, laps=laps, seed=i)
            print(f"{result.samples} samples ({result.laps:.2f} laps) -> {folder}")
        folders.append(folder)
    return folders


def evaluate_all(
    models_dir: Path, names: list[str], tracks: dict[str, float], speed: float, out: Path
) -> dict:
    """Drive each model on each track through drive.py's server; JSON + PNG per drive."""
    from driving.pilot import PilotConfig
    from driving.sim.closed_loop import DriveOptions, evaluate
    from driving.sim.metrics import TABLE_HEADER, save_cte_plot, table_line, write_report
    from driving.sim.track import get_track

    out.mkdir(parents=True, exist_ok=True)
    results, lines = {}, []
    for track_name, laps in tracks.items():
        track = get_track(track_name)
        for name in names:
            options = DriveOptions(laps=laps, model=name)
            metrics, trace = evaluate(models_dir / f"{name}.h5", track, options, PilotConfig(speed=speed))
            stem = out / f"{name}-{track_name}"
            write_report(metrics, trace, stem.with_suffix(".json"))
            save_cte_plot(
                trace,
                stem.with_suffix(".png"),
                title=f"{name} on {track_name}: {metrics.interventions} interventions, "
                f"autonomy {metrics.autonomy_pct:.1f}%",
            )
            results[name, track_name] = metrics.to_dict()
            lines.append(table_line(metrics))
    print(TABLE_HEADER)
    print("\n".join(lines))
    return results


def summary_table(report: dict, drives: dict, names: list[str], train_track: str, unseen_track: str) -> str:
    rows = {r["model"]: r for r in report["models"]}
    head = (
        "| model | params | .h5 KB | MACs/frame | Keras ms | LiteRT ms | val MSE | "
        f"{train_track} (trained): laps, interventions, autonomy | "
        f"{unseen_track} (unseen): laps, interventions, autonomy |"
    )
    lines = [head, "|" + "---|" * 9]
    for name in names:
        r = rows[name]
        lite = r.get("tflite", {}).get("float32", {}).get("latency", {}).get("median_ms")
        cells = [
            f"`{name}`",
            f"{r['params']:,}",
            f"{r['h5'] / 1024:,.0f}",
            f"{r['macs'] / 1e6:,.1f} M",
            f"{r['keras_latency']['median_ms']:.2f}",
            f"{lite:.2f}" if lite is not None else "-",
            f"{r['val_mse']:.4f}",
        ]
        for track in (train_track, unseen_track):
            d = drives[name, track]
            cells.append(f"{d['laps']:.2f}, {d['interventions']}, {d['autonomy_pct']:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()}-core {cpu} ({platform.system()}), Python {platform.python_version()}"


def run(config: DemoConfig) -> str:
    """The whole demo; returns the summary (also written to OUT/summary.md)."""
    from driving import report, train
    from driving.config import RunConfig
    from driving.files import check_writable_folder, write_text

    check_writable_folder(config.out, "--out folder")
    check_writable_folder(config.data, "--data folder")
    budget, models_dir = config.budget, config.out / "models"
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step_done(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        print(f"--- {name}: {timings[name] / 60:.1f} min", flush=True)

    t0 = time.perf_counter()
    banner(f"1/5 record {config.record_laps:g} expert laps on {', '.join(config.train_tracks)}")
    folders = record(config.train_tracks, config.record_laps, config.data)
    step_done("record", t0)

    t0 = time.perf_counter()
    size = f"{budget.epochs} epochs x {budget.steps} steps x batch {budget.batch}"
    banner(f"2/5 train {', '.join(config.models)}: {size}")
    run_config = RunConfig(
        data=[str(f) for f in folders],
        models=list(config.models),
        out=str(models_dir),
        seed=config.seed,
        epochs=budget.epochs,
        steps_per_epoch=budget.steps,
        batch_size=budget.batch,
        cache_dir=str(config.out / "cache"),
        tensorboard=False,
    )
    train.run(run_config)
    step_done("train", t0)

    t0 = time.perf_counter()
    banner("3/5 slimming report")
    slimming = report.run(models_dir)
    step_done("report", t0)

    t0 = time.perf_counter()
    train_track = config.train_tracks[0]
    banner(
        f"4/5 drive every model at {config.speed:g} mph: {config.eval_laps:g} laps of {train_track} "
        f"(trained on), {config.unseen_laps:g} of {config.unseen_track} (never seen)"
    )
    drives = evaluate_all(
        models_dir,
        list(config.models),
        {train_track: config.eval_laps, config.unseen_track: config.unseen_laps},
        config.speed,
        config.out / "drives",
    )
    step_done("drive", t0)

    banner("5/5 summary")
    total = time.perf_counter() - started
    table = summary_table(slimming, drives, list(config.models), train_track, config.unseen_track)
    steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in timings.items())
    text = (
        f"# Demo summary\n\n{date.today().isoformat()}, {machine()}; "
        f"{'full' if config.full else 'CPU'} budget {budget.epochs} epochs x {budget.steps} steps x "
        f"batch {budget.batch}; trained on {', '.join(config.train_tracks)} "
        f"({config.record_laps:g} expert laps each); drives at {config.speed:g} mph, fixed 1/15 s "
        f"physics step. Total {total / 60:.1f} min ({steps} min).\n\n{table}\n\n"
        f"One training run per model, one drive per track: see docs/evaluation.md for what that "
        f"can and cannot show. Latency: batch-1 CPU median from the slimming report "
        f"({models_dir / 'report.md'}). Autonomy: (1 - interventions x 6 s / elapsed s) x 100. "
        f"Per-drive JSON and path plots: {config.out / 'drives'}.\n"
    )
    write_text(config.out / "summary.md", text)
    return text


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m driving.demo",
        description="Record laps with the headless simulator, train base / effnet / the slim "
        "variant / PilotNet, write the slimming report, drive every model closed-loop on a "
        "training track and on an unseen one, and print one summary table.",
        epilog="example: python -m driving.demo --out runs/demo   (make demo; make demo GPU=1 adds --full)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"the original training budget: {FULL_BUDGET.epochs} epochs x "
        f"{FULL_BUDGET.steps} steps x batch {FULL_BUDGET.batch} (for a GPU)",
    )
    parser.add_argument("--out", type=Path, default=d.out, help="outputs: models, report, drives, summary.md")
    parser.add_argument(
        "--data", type=Path, default=d.data, help="recordings (DATA/sim-TRACK; reused when present)"
    )
    parser.add_argument(
        "--train-tracks", nargs="+", default=d.train_tracks, help="built-in tracks to train on"
    )
    parser.add_argument("--unseen-track", default=d.unseen_track, help="built-in track never trained on")
    parser.add_argument("--record-laps", type=cli.number(0, 100, low_open=True), default=d.record_laps)
    parser.add_argument("--models", nargs="+", default=d.models, help="models to train and compare")
    parser.add_argument("--epochs", type=cli.integer(1, 10_000), help="override the budget's epochs")
    parser.add_argument("--steps", type=cli.positive_int, help="override the budget's steps per epoch")
    parser.add_argument("--batch-size", type=cli.integer(1, 8192), help="override the budget's batch size")
    parser.add_argument("--eval-laps", type=cli.number(0, 100, low_open=True), default=d.eval_laps)
    parser.add_argument("--unseen-laps", type=cli.number(0, 100, low_open=True), default=d.unseen_laps)
    parser.add_argument("--speed", type=cli.number(0, 30, low_open=True), default=d.speed, help="mph")
    parser.add_argument("--seed", type=cli.seed, default=d.seed)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from driving.models import MODELS as REGISTRY
    from driving.sim.track import BUILTIN

    if args.unseen_track in args.train_tracks:
        parser.error(f"--unseen-track {args.unseen_track} is also a training track")
    for track in [*args.train_tracks, args.unseen_track]:
        if track not in BUILTIN:
            parser.error(f"{track}: not a built-in track ({', '.join(BUILTIN)})")
    for name in args.models:
        if name not in REGISTRY:
            parser.error(f"--models {name}: unknown model; choose from {', '.join(REGISTRY)}")
    budget = FULL_BUDGET if args.full else CPU_BUDGET
    budget = Budget(args.epochs or budget.epochs, args.steps or budget.steps, args.batch_size or budget.batch)
    config = DemoConfig(
        out=args.out,
        data=args.data,
        train_tracks=list(dict.fromkeys(args.train_tracks)),
        unseen_track=args.unseen_track,
        record_laps=args.record_laps,
        models=list(dict.fromkeys(args.models)),
        budget=budget,
        full=args.full,
        eval_laps=args.eval_laps,
        unseen_laps=args.unseen_laps,
        speed=args.speed,
        seed=args.seed,
    )
    from driving.data import RecordingError
    from driving.modelio import ModelFileError
    from driving.report import ReportError
    from driving.train import TrainError

    try:
        text = run(config)
    except (RecordingError, TrainError, ReportError, ModelFileError, OSError, ValueError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(text)
    print(f"wrote {config.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
