"""How cost grows with the work: recording size, parallel drives, one core for serving.

Three parts, each printed beside a reference measured in the same run, as a ratio:

    pipeline  driving.pipeline on synthetic recordings of about 5k, 20k and 80k camera frames
              (bench/pipeline.py's synthetic_recording, 3 cameras a row), with the frame cache in
              memory and on disk (memory-mapped .npy). Per (size, cache), each in a fresh process:
              the first epoch (decode every JPEG once + trace) and its frames/s, images/s after
              the first epoch (time-bounded), peak resident memory (resource.getrusage ru_maxrss)
              and peak anonymous memory (sampled; the part a memory-mapped file's pages are not
              in), and both after epoch 1. References: bench/pipeline.py's classic per-image
              generator on the same recording, and growth against the smallest size (first-epoch
              time ratio vs frame ratio = linearity; memory ratios).
    suite     frames/s of a closed-loop evaluation suite (driving.evaluation.suites) with jobs=1 and
              jobs=2, each in a fresh process, start-up included; the reference is jobs=1.
    serve     per-frame latency (median, p99) of the runtime Predictor (preprocessing + LiteRT)
              for every registered model and every LiteRT precision (float32, float16, int8), with
              threads=1 and with threads=1 pinned to CPU 0; the reference is the same model's
              float32 on every core. Also each file's size.

    python bench/scaling.py [all]                     # every part, default sizes
    python bench/scaling.py pipeline [--sizes 5000 20000 80000] [--cache-dir DIR] [--seconds 5]
    python bench/scaling.py suite [--suite-model FILE] [--suite quick] [--drives N] [--jobs 1 2]
    python bench/scaling.py serve [--models effnet base ...] [--runs 300]
    ... [--workdir DIR] [--json FILE]

The pipeline part writes one recording of the largest size (rows of it give the smaller sizes)
and one disk cache at a time into a temporary folder under --workdir, and removes them after:
80k frames take about 1 GiB of JPEGs and 3.75 GiB of cache. An in-memory cache that would not fit
in the memory available now is skipped, with the reason.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench.pipeline` and `driving`, run as a script from anywhere

PARTS = ("pipeline", "suite", "serve")
CACHES = ("memory", "disk")
CROP_KIB = 48  # one cached uint8 crop, 128 x 128 x 3 (driving.pipeline)
JPEG_KIB = 16  # a synthetic camera frame is about 12 KiB; a margin for the disk check
GIB = 1024**3


# --- Running a measurement in a fresh process ---------------------------------------------------


def _child(conn, fn: Callable, args: tuple) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # everything goes back to the parent, which reports it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def in_fresh_process(fn: Callable, *args) -> dict:
    """fn(*args) in a new 'spawn' process, so its peak memory (ru_maxrss) is its own and no
    TensorFlow state carries over from one configuration to the next. Raises RuntimeError with
    the child's traceback, or its exit code if it died without answering (killed for memory)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # not fork: a forked TensorFlow can deadlock
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, fn, args))
    process.start()
    send.close()  # the child holds the only sending end: recv() sees EOF if it dies
    try:
        status, value = receive.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"{fn.__name__}: the process died (exit code {process.exitcode})") from None
    process.join()
    if status == "error":
        raise RuntimeError(f"{fn.__name__} failed:\n{value}")
    return value


# --- Memory ---------------------------------------------------------------------------------------


def peak_rss_kib() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def available_kib() -> int:
    """MemAvailable: what the machine can give without swapping, other jobs included."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("MemAvailable not in /proc/meminfo")


class PeakSampler:
    """The highest value of a /proc/self/status field, polled on a thread. ru_maxrss counts the
    pages of a memory-mapped file that are resident, so it cannot tell a disk cache from a memory
    one; the anonymous memory (RssAnon) can, but the kernel keeps no peak of it."""

    def __init__(self, field: str = "RssAnon", interval: float = 0.02):
        from bench.pipeline import memory_kib  # a field of /proc/self/status in KiB

        self.field, self.interval, self.peak, self._read = field, interval, 0, memory_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._read(self.field))
            self._stop.wait(self.interval)

    def start(self) -> PeakSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._read(self.field))


# --- Part 1: the input pipeline against recording size -----------------------------------------


def _recording_rows(recording: str, rows: int):
    """The first `rows` rows of the recording: a recording of that size."""
    from driving.data.reader import load_recordings

    return load_recordings([recording], check_images=False).frames.iloc[:rows]


def classic_rate(recording: str, rows: int, batch_size: int, seconds: float) -> dict:
    """bench/pipeline.py's classic per-image generator on `rows` rows: images/s (child process)."""
    from bench.pipeline import classic_batches, rate
    from driving.config import CAMERAS, AugmentConfig

    frames = _recording_rows(recording, rows)
    batches = classic_batches(
        frames[list(CAMERAS)].to_numpy(), frames["steering"].to_numpy(), batch_size, AugmentConfig()
    )
    return {"images_per_s": rate(batches, batch_size, seconds), "peak_rss_kib": peak_rss_kib()}


def pipeline_run(recording: str, rows: int, cache_dir: str | None, batch_size: int, seconds: float) -> dict:
    """One configuration of driving.pipeline, measured in its own process (see in_fresh_process):
    the cache build and first epoch, the rate after it, memory at its peak and after epoch 1."""
    from driving import tfsetup

    tfsetup.setup()

    from bench.pipeline import memory_kib, rate
    from driving.config import AugmentConfig
    from driving.pipeline import build_datasets, cameras_used, steps_per_epoch

    cfg = AugmentConfig()
    frames = _recording_rows(recording, rows)
    images = len(frames) * len(cameras_used(cfg))
    base = {"rss_kib": memory_kib("VmRSS"), "anon_kib": memory_kib("RssAnon")}  # TensorFlow loaded
    anon = PeakSampler("RssAnon").start()

    start = time.perf_counter()
    train, _ = build_datasets(frames, frames.iloc[:0], batch_size, cfg, cache_dir=cache_dir)
    cache_s = time.perf_counter() - start  # every JPEG decoded, cropped and stored once
    batches = iter(train)
    for _ in range(steps_per_epoch(frames, batch_size, cfg)):
        next(batches)
    first_epoch_s = time.perf_counter() - start  # + tracing + one epoch of augmented batches
    after = {"rss_kib": memory_kib("VmRSS"), "anon_kib": memory_kib("RssAnon")}
    peak_after_epoch = {"rss_kib": peak_rss_kib(), "anon_kib": anon.peak}

    steady = rate(batches, batch_size, seconds)
    return {
        "rows": len(frames),
        "images": images,
        "cache_s": cache_s,
        "first_epoch_s": first_epoch_s,
        "first_epoch_frames_per_s": images / first_epoch_s,
        "steady_images_per_s": steady,
        "base": base,
        "after_epoch_1": after,
        "peak_after_epoch_1": peak_after_epoch,
        "peak": {"rss_kib": peak_rss_kib(), "anon_kib": anon.stop()},
    }


def check_disk(folder: Path, frames: int, what: str) -> None:
    need = frames * (CROP_KIB + JPEG_KIB) * 1024 + GIB
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SystemExit(
            f"scaling: {what} {folder} has {free / GIB:.1f} GiB free; {frames:,} frames need about "
            f"{need / GIB:.1f} GiB (JPEGs and one cache). Give smaller --sizes or another folder."
        )


def pipeline_part(args: argparse.Namespace) -> dict:
    """Every (size, cache) configuration plus the classic generator per size; see the docstring."""
    from bench.pipeline import synthetic_recording

    row_counts = sorted({max(1, round(frames / 3)) for frames in args.sizes})
    workdir = Path(tempfile.mkdtemp(prefix="scaling-", dir=args.workdir))
    check_disk(workdir, 3 * row_counts[-1], "--workdir")
    if args.cache_dir:
        Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
        check_disk(Path(args.cache_dir), 3 * row_counts[-1], "--cache-dir")
    results: dict = {"load_start": os.getloadavg(), "sizes": []}
    try:
        start = time.perf_counter()
        recording = str(synthetic_recording(workdir / "rec", row_counts[-1]))
        results["recording_s"] = time.perf_counter() - start
        print(
            f"recording: {row_counts[-1]:,} rows x 3 cameras written in {results['recording_s']:.0f} s; "
            f"smaller sizes are its first rows",
            flush=True,
        )
        for rows in row_counts:
            size: dict = {"rows": rows, "frames": 3 * rows}
            size["classic"] = in_fresh_process(classic_rate, recording, rows, args.batch_size, args.seconds)
            print(f"{3 * rows:>7,} frames  classic generator {size['classic']['images_per_s']:7.0f} images/s")
            for cache in CACHES:
                size[cache] = _pipeline_config(recording, rows, cache, workdir, args)
                _print_config(3 * rows, cache, size[cache], size["classic"])
            results["sizes"].append(size)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_end"] = os.getloadavg()
    return results


def _pipeline_config(recording: str, rows: int, cache: str, workdir: Path, args: argparse.Namespace) -> dict:
    """One (size, cache) run in a fresh process; a skip or a failure is recorded, not raised."""
    cache_bytes = 3 * rows * CROP_KIB * 1024
    if cache == "memory":
        # The cache plus room for TensorFlow and a copy while it is filled, within what is free now.
        need_kib = (2 * cache_bytes + 2 * GIB) // 1024
        if available_kib() < need_kib:
            return {
                "skipped": f"needs ~{need_kib / 2**20:.1f} GiB, {available_kib() / 2**20:.1f} GiB available"
            }
        cache_dir = None
    else:
        cache_dir = tempfile.mkdtemp(prefix="cache-", dir=args.cache_dir or workdir)
    try:
        return in_fresh_process(pipeline_run, recording, rows, cache_dir, args.batch_size, args.seconds)
    except RuntimeError as e:
        return {"failed": str(e).strip().splitlines()[-1]}
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)  # one cache on disk at a time


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def _print_config(frames: int, cache: str, r: dict, classic: dict) -> None:
    if "skipped" in r or "failed" in r:
        print(f"{frames:>7,} frames  {cache:6}  {r.get('skipped') or r.get('failed')}", flush=True)
        return
    print(
        f"{frames:>7,} frames  {cache:6}  first epoch {r['first_epoch_s']:6.1f} s "
        f"({r['first_epoch_frames_per_s']:5.0f} frames/s)  after it {r['steady_images_per_s']:6.0f} images/s "
        f"({r['steady_images_per_s'] / classic['images_per_s']:4.1f}x classic)  "
        f"peak RSS {_mib(r['peak']['rss_kib'])} MiB, anon {_mib(r['peak']['anon_kib'])} MiB",
        flush=True,
    )


def _anon_growth(r: dict) -> int:
    """Peak anonymous memory above the process's own before the cache: what the cache cost."""
    return r["peak"]["anon_kib"] - r["base"]["anon_kib"]


def print_pipeline(results: dict) -> None:
    sizes = results["sizes"]
    print("\nInput pipeline against recording size (each configuration in a fresh process):")
    print(
        f"{'frames':>7} {'cache':6} {'cache s':>8} {'epoch 1 s':>9} {'frames/s':>8} {'img/s':>7} "
        f"{'classic':>7} {'ratio':>6} {'peak RSS':>9} {'peak anon':>9} "
        f"{'RSS ep1':>8} {'anon ep1':>8} {'base RSS':>8}"
    )
    for size in sizes:
        classic = size["classic"]["images_per_s"]
        for cache in CACHES:
            r = size[cache]
            if "first_epoch_s" not in r:
                print(f"{size['frames']:>7,} {cache:6} {r.get('skipped') or r.get('failed')}")
                continue
            print(
                f"{size['frames']:>7,} {cache:6} {r['cache_s']:8.1f} {r['first_epoch_s']:9.1f} "
                f"{r['first_epoch_frames_per_s']:8.0f} {r['steady_images_per_s']:7.0f} {classic:7.0f} "
                f"{r['steady_images_per_s'] / classic:5.1f}x {_mib(r['peak']['rss_kib']):>9} "
                f"{_mib(r['peak']['anon_kib']):>9} {_mib(r['after_epoch_1']['rss_kib']):>8} "
                f"{_mib(r['after_epoch_1']['anon_kib']):>8} {_mib(r['base']['rss_kib']):>8}"
            )
    print("(memory in MiB; base RSS: the process with TensorFlow loaded, before the cache)")

    smallest = sizes[0]
    print(f"\nGrowth against the smallest size ({smallest['frames']:,} frames); linear = the frame ratio:")
    print(
        f"{'frames':>7} {'cache':6} {'frames x':>8} {'cache s x':>9} {'epoch 1 x':>9} "
        f"{'peak RSS x':>10} {'peak anon x':>11} {'anon above base x':>17}"
    )
    for size in sizes[1:]:
        for cache in CACHES:
            r, r0 = size[cache], smallest[cache]
            if "first_epoch_s" not in r or "first_epoch_s" not in r0:
                continue
            print(
                f"{size['frames']:>7,} {cache:6} {size['frames'] / smallest['frames']:8.1f} "
                f"{r['cache_s'] / r0['cache_s']:9.1f} {r['first_epoch_s'] / r0['first_epoch_s']:9.1f} "
                f"{r['peak']['rss_kib'] / r0['peak']['rss_kib']:10.2f} "
                f"{r['peak']['anon_kib'] / r0['peak']['anon_kib']:11.2f} "
                f"{_anon_growth(r) / _anon_growth(r0):17.2f}"
            )


# --- Part 2: an evaluation suite against the number of jobs -------------------------------------


def save_untrained(path: str) -> str:
    """An untrained effnet saved at `path` (child process: keeps TensorFlow out of this one)."""
    from driving.modelio import ModelInfo, save_keras
    from driving.models import build

    save_keras(build("effnet"), path, ModelInfo(model="effnet"), include_optimizer=False)
    return path


def suite_run(model: str, suite_name: str, drives: int | None, jobs: int, speed: float) -> dict:
    """driving.evaluation.suites.run on one model with `jobs` (child process): wall time from the call,
    so loading TensorFlow and the model in each worker counts, as it does for a user."""
    import dataclasses

    from driving.evaluation.registry import SUITES
    from driving.evaluation.suites import run

    suite = SUITES[suite_name]
    if drives:
        suite = dataclasses.replace(suite, drives=suite.drives[:drives])
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    result = run([model], suite, jobs=jobs, speed=speed, progress=False)
    wall = time.perf_counter() - start
    rows = next(iter(result.drives.values()))
    frames = sum(r.frames for r in rows)
    return {
        "jobs": jobs,
        "drives": len(rows),
        "frames": frames,
        "wall_s": wall,
        "frames_per_s": frames / wall,
        "cpu_s": _cpu_seconds() - cpu_start,  # this process and its finished workers
        "per_drive": [(r.drive, r.frames, r.interventions) for r in rows],
    }


def startup_run(model: str) -> dict:
    """What each suite process pays before its first frame (child process): importing TensorFlow
    and loading the model as a suite worker does (Predictor.load on one thread: a Keras file is
    converted to LiteRT and checked)."""
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    from driving.runtime import Predictor

    Predictor.load(model, threads=1)
    return {"wall_s": time.perf_counter() - start, "cpu_s": _cpu_seconds() - cpu_start}


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def suite_part(args: argparse.Namespace) -> dict:
    results: dict = {"load_start": os.getloadavg(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="scaling-suite-", dir=args.workdir) as tmp:
        # A copy: the run reads a file nothing else can rewrite while the suite drives it.
        if args.suite_model:
            model = str(Path(tmp) / Path(args.suite_model).name)
            shutil.copyfile(args.suite_model, model)
        else:
            model = in_fresh_process(save_untrained, str(Path(tmp) / "effnet-untrained.keras"))
        results["model"] = args.suite_model or "untrained effnet"
        results["startup"] = in_fresh_process(startup_run, model)
        for jobs in args.jobs:
            run = in_fresh_process(suite_run, model, args.suite, args.drives, jobs, args.speed)
            results["runs"].append(run)
            print(
                f"suite {args.suite}, jobs={jobs}: {run['frames']:,} frames in {run['wall_s']:.1f} s "
                f"= {run['frames_per_s']:.0f} frames/s",
                flush=True,
            )
    results["load_end"] = os.getloadavg()
    return results


def print_suite(results: dict) -> None:
    runs = results["runs"]
    ref = runs[0]
    print(f"\nEvaluation suite ({ref['drives']} drives, model: {results['model']}), start-up included:")
    versus = f"vs jobs={ref['jobs']}"
    print(f"{'jobs':>4} {'frames':>7} {'wall s':>7} {'frames/s':>9} {versus:>10} {'CPU s':>7}")
    for r in runs:
        print(
            f"{r['jobs']:>4} {r['frames']:>7,} {r['wall_s']:7.1f} {r['frames_per_s']:9.0f} "
            f"{r['frames_per_s'] / ref['frames_per_s']:9.2f}x {r['cpu_s']:7.0f}"
        )
    startup = results["startup"]
    print(
        f"start-up of one process (TensorFlow import + model load), paid once per job: "
        f"{startup['wall_s']:.1f} s wall, {startup['cpu_s']:.1f} s CPU"
    )
    same = all(r["per_drive"] == ref["per_drive"] for r in runs)
    print(f"same drives (frames, interventions) whatever the jobs: {'yes' if same else 'NO'}")


# --- Part 3: serving on one core ------------------------------------------------------------------


@contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Run the calling thread on `cpu` only, then restore. A one-thread LiteRT interpreter runs on
    the thread that calls it, so for it this is `taskset -c CPU` without a new process, and the
    pinned and unpinned figures can be taken side by side under the same load."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def serve_run(models: list[str], runs: int, calibration_frames: int, cpu: int, folder: str) -> list[dict]:
    """Export every model at every precision and time its Predictor (child process)."""
    from driving import tfsetup

    tfsetup.setup()

    import numpy as np

    from bench.drive_latency import render_frames
    from driving.modelio import TFLITE_KINDS, ModelInfo, export_tflite
    from driving.models import build
    from driving.preprocess import decode_jpeg, preprocess
    from driving.report.measure import time_calls
    from driving.runtime import Predictor, litert_threads

    # Simulator frames: the timed inputs (as the server decodes them) and int8's calibration.
    frames = [decode_jpeg(jpeg) for jpeg in render_frames("lake", max(calibration_frames, 50))]
    calibration = preprocess(np.stack(frames[:calibration_frames]))

    def latency(predictor: Predictor) -> dict:
        i = iter(range(10**9))
        return time_calls(lambda: predictor(frames[next(i) % len(frames)]), runs)

    rows = []
    for name in models:
        model = build(name)  # untrained: the cost of a forward pass does not depend on the weights
        row: dict = {"model": name, "all_threads": litert_threads(), "kinds": {}}
        for kind in TFLITE_KINDS:
            path = Path(folder) / f"{name}.{kind}.tflite"
            try:
                export_tflite(model, path, kind, ModelInfo(model=name), calibration)
            except Exception as e:  # the converter raises many types; the other files still count
                row["kinds"][kind] = {"failed": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
                continue
            if kind == "float32":
                row["reference"] = latency(Predictor.load(path))  # every core, drive.py's default
            one = latency(Predictor.load(path, threads=1))
            with pinned(cpu):
                one_pinned = latency(Predictor.load(path, threads=1))
            row["kinds"][kind] = {"kib": path.stat().st_size / 1024, "threads_1": one, "pinned": one_pinned}
            path.unlink()
        rows.append(row)
        print(f"serve: {name} timed", flush=True)
    return rows


def serve_part(args: argparse.Namespace) -> dict:
    from driving.models import MODELS  # the registry; no TensorFlow until a model is built

    models = args.models or list(MODELS)
    results: dict = {"load_start": os.getloadavg(), "cpu": args.cpu}
    with tempfile.TemporaryDirectory(prefix="scaling-serve-", dir=args.workdir) as tmp:
        results["models"] = in_fresh_process(
            serve_run, models, args.runs, args.calibration_frames, args.cpu, tmp
        )
    results["load_end"] = os.getloadavg()
    return results


def _versus(timing: dict, ref: dict | None) -> str:
    return f"{timing['median_ms'] / ref['median_ms']:5.2f}x" if ref else "  -  "


def print_serve(results: dict) -> None:
    rows = results["models"]
    threads = rows[0]["all_threads"] if rows else 0
    print(
        f"\nServing one frame (Predictor: preprocess + LiteRT), median / p99 ms; reference = float32 "
        f"on all {threads} threads; 'x ref' = median latency / the reference's:"
    )
    pinned_ms = f"pinned cpu{results['cpu']} ms"
    print(
        f"{'model':<12} {'precision':<9} {'KiB':>7} {'size x':>6} {'ref ms':>13} "
        f"{'1 thread ms':>13} {'x ref':>6} {pinned_ms:>15} {'x ref':>6}"
    )
    for row in rows:
        ref = row.get("reference")
        f32_kib = row["kinds"].get("float32", {}).get("kib")
        for kind, k in row["kinds"].items():
            if "failed" in k:
                print(f"{row['model']:<12} {kind:<9} export failed: {k['failed']}")
                continue
            one, pin = k["threads_1"], k["pinned"]
            ref_text = f"{ref['median_ms']:.2f} / {ref['p99_ms']:.2f}" if ref and kind == "float32" else ""
            print(
                f"{row['model']:<12} {kind:<9} {k['kib']:7.0f} "
                f"{k['kib'] / f32_kib if f32_kib else float('nan'):5.2f}x {ref_text:>13} "
                f"{one['median_ms']:6.2f} / {one['p99_ms']:<5.2f} {_versus(one, ref)} "
                f"{pin['median_ms']:8.2f} / {pin['p99_ms']:<5.2f} {_versus(pin, ref)}"
            )
    timed = [(row["model"], kind, k) for row in rows for kind, k in row["kinds"].items() if "failed" not in k]
    if timed:
        small = min(timed, key=lambda t: t[2]["kib"])
        fast = min(timed, key=lambda t: t[2]["pinned"]["median_ms"])
        print(
            f"smallest file: {small[0]} {small[1]} ({small[2]['kib']:.0f} KiB); fastest pinned to one "
            f"core: {fast[0]} {fast[1]} ({fast[2]['pinned']['median_ms']:.2f} ms median)"
        )


# --- The command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from driving.cli import integer, number  # light: no TensorFlow behind these three
    from driving.evaluation.registry import SUITES
    from driving.models import MODELS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir", help="folder for temporary recordings, caches, models (default: system temp)"
    )
    common.add_argument("--json", type=Path, help="also write every figure here, as JSON")

    pipeline = argparse.ArgumentParser(add_help=False)
    pipeline.add_argument(
        "--sizes",
        type=integer(3),
        nargs="+",
        default=[5000, 20000, 80000],
        metavar="FRAMES",
        help="recording sizes in camera frames, 3 a row (default 5000 20000 80000)",
    )
    pipeline.add_argument("--batch-size", type=integer(1), default=128)
    pipeline.add_argument(
        "--seconds",
        type=number(0, low_open=True),
        default=5.0,
        help="how long to time each rate after epoch 1 (default 5)",
    )
    pipeline.add_argument("--cache-dir", help="where the disk caches go (default: inside the work folder)")

    suite = argparse.ArgumentParser(add_help=False)
    suite.add_argument("--suite-model", help="model file to drive, read only (default: an untrained effnet)")
    suite.add_argument(
        "--suite", default="quick", choices=list(SUITES), help="a driving.evaluate suite (default quick)"
    )
    suite.add_argument("--drives", type=integer(1), help="only the suite's first N drives (default: all)")
    suite.add_argument("--jobs", type=integer(1), nargs="+", default=[1, 2], help="job counts (default 1 2)")
    suite.add_argument(
        "--speed", type=number(0, low_open=True), default=9.0, help="target speed in mph (default 9)"
    )

    serve = argparse.ArgumentParser(add_help=False)
    serve.add_argument(
        "--models", nargs="+", choices=list(MODELS), help="registered models (default: every one)"
    )
    serve.add_argument(
        "--runs", type=integer(1), default=300, help="timed calls per latency figure (default 300)"
    )
    serve.add_argument(
        "--calibration-frames",
        type=integer(1),
        default=200,
        help="simulator frames calibrating int8 (default 200)",
    )
    serve.add_argument(
        "--cpu", type=integer(0), default=0, help="the CPU the pinned figures run on (default 0)"
    )

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parts = parser.add_subparsers(dest="part", metavar="{pipeline,suite,serve,all}")
    parts.add_parser("pipeline", parents=[common, pipeline], help="pipeline cost against recording size")
    parts.add_parser("suite", parents=[common, suite], help="evaluation suite frames/s against jobs")
    parts.add_parser("serve", parents=[common, serve], help="serving latency on one core, every model")
    parts.add_parser("all", parents=[common, pipeline, suite, serve], help="all three (the default)")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*PARTS, "all", "-h", "--help"):
        argv = ["all", *argv]  # `python bench/scaling.py` (as `make bench` runs it) does everything
    parser = build_parser()
    args = parser.parse_args(argv)
    parts = PARTS if args.part == "all" else (args.part,)
    if "serve" in parts and args.cpu not in os.sched_getaffinity(0):
        parser.error(f"--cpu {args.cpu}: this process may run on CPUs {sorted(os.sched_getaffinity(0))}")
    if args.json and (args.json.is_dir() or not args.json.parent.is_dir()):
        parser.error(f"--json {args.json}: not a file in an existing folder")
    if args.workdir and not Path(args.workdir).is_dir():
        parser.error(f"--workdir {args.workdir}: no such folder")
    cache_dir = getattr(args, "cache_dir", None)
    if cache_dir and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        parser.error(f"--cache-dir {args.cache_dir}: a file, not a folder")
    if getattr(args, "suite_model", None) and not Path(args.suite_model).is_file():
        parser.error(f"--suite-model {args.suite_model}: no such file")

    from driving.report.measure import machine_description

    print(f"{machine_description()}; {time.strftime('%Y-%m-%d %H:%M')}; load {_load()}", flush=True)
    results: dict = {"machine": machine_description(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    run = {"pipeline": pipeline_part, "suite": suite_part, "serve": serve_part}
    show = {"pipeline": print_pipeline, "suite": print_suite, "serve": print_serve}
    for part in parts:
        results[part] = run[part](args)
    for part in parts:
        show[part](results[part])
        start, end = results[part]["load_start"], results[part]["load_end"]
        print(f"(load average at start {_load(start)}, at end {_load(end)})")
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if args.json:
        from driving.files import write_json

        write_json(args.json, results)
        print(f"wrote {args.json}")


def _load(load: tuple[float, float, float] | None = None) -> str:
    return " ".join(f"{x:.2f}" for x in (load or os.getloadavg()))


if __name__ == "__main__":
    main()
