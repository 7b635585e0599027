"""Record expert laps in the simulator's exact format: driving_log.csv + IMG/, three cameras at
15 samples per simulated second, timestamps from a simulated clock (same seed, same bytes).

A recording is complete or absent. Arguments are checked before anything is rendered; an expert
that stalls (under STALL_MIN_PROGRESS_M of progress in STALL_WINDOW_S simulated seconds) or runs
past the bound on samples ends in a RecordError; on any error, Ctrl-C included, the files this
run wrote are removed again.

With `vary`, each lap is driven in a fresh world whose style and conditions are drawn from
(seed, lap): one recording holds several looks of the same road. vary=True (or "styles") takes
the named styles in turn; vary="looks" paints each stretch in a generated look drawn from the
training looks (driving/sim/looks.py), vary="faint-looks" in a faint-road one (looks.faint_road:
weak edge markings, a road near its roadside's colour). A track painted in a suite look is refused
before anything is written: those looks are kept for evaluation.

The kind of world (driving/sim/kinds.py: cameras, steering scale) is the track's own unless named;
on a two-lane road the cross-track error reported is the lane's, and a sample off the lane counts.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from driving.config import CAMERAS, CSV_NAME, IMG_DIR, MAX_LAPS, SAMPLE_RATE_HZ
from driving.data.writer import RecordingWriter
from driving.files import MODEL_SUFFIXES, OutputRefused, check_writable_folder, write_json
from driving.sim.conditions import Conditions
from driving.sim.expert import Expert, ExpertConfig
from driving.sim.kinds import WorldKind
from driving.sim.lanes import check_recordable_map
from driving.sim.looks import (
    NEW_LOOK_KINDS,
    NEW_LOOKS_PER_LAP,
    check_recordable,
    look_conditions,
    look_name,
    training_look,
    vary_kind,
)
from driving.sim.plot import save_topdown
from driving.sim.simulator import Simulator
from driving.sim.style import ONE_LANE_STYLES, styles_for
from driving.sim.track import Track
from driving.sim.world import World

CLOCK_START = datetime(2026, 11, 22, 12, 0, 0)  # the simulated clock's first sample
TOPDOWN_NAME = "topdown.png"
LOOKS_NAME = "looks.json"  # with vary: the style and conditions of each stretch of road
# With vary, the look changes this many times a lap, the styles taking turns: a model that learns
# from a recording should see every style, not whichever ones a draw per lap happened to pick.
LOOKS_PER_LAP = 3
STALL_WINDOW_S, STALL_MIN_PROGRESS_M = 30.0, 5.0
# The default bound on samples: the laps at an average of MIN_AVERAGE_MPS, plus START_S to get
# going, and never more than MAX_SAMPLES (about 9 simulated hours, some 1.5 million JPEGs).
MIN_AVERAGE_MPS, START_S = 1.0, 10.0
MAX_SAMPLES = 500_000


class RecordError(RuntimeError):
    """A recording that could not be finished. Nothing of it is left behind."""


@dataclass
class RecordResult:
    folder: Path
    samples: int
    laps: float
    seconds: float  # simulated
    max_abs_cte: float  # from the lane's centre (the centre line on one lane)
    off_road_samples: int  # samples with the car's centre off its lane (off the road on one lane)
    topdown: Path | None
    looks: list[dict] = field(default_factory=list)  # with vary: one entry per lap, as in looks.json


def lap_look(seed: int, index: int, styles: tuple[str, ...] = ONE_LANE_STYLES) -> tuple[str, Conditions, int]:
    """The style, conditions and texture seed of look `index` (the index-th stretch of
    1/LOOKS_PER_LAP of a lap) of a varied recording made with `seed`: `styles` take turns,
    starting from one the seed picks; conditions and textures are drawn from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    style = styles[(seed + index) % len(styles)]
    return style, Conditions.draw(int(rng.integers(2**31)), styles), int(rng.integers(2**31))


def lap_new_look(seed: int, index: int, faint: bool = False) -> tuple[str, Conditions, int]:
    """The style name (look-N, N in TRAINING_LOOKS), conditions (the look's own light) and texture
    seed of stretch `index` of a recording made with `seed` and vary="looks" (or, with `faint`,
    vary="faint-looks": the texture seed is the same, the look a faint-road one)."""
    look = training_look(seed, index, faint)
    rng = np.random.default_rng([seed, index, 1])  # apart from lap_look's stream
    return look_name(look), look_conditions(look), int(rng.integers(2**31))


def _check_arguments(laps: float, seed: int, max_samples: int | None) -> None:
    if isinstance(laps, bool) or not isinstance(laps, numbers.Real) or not 0 < laps <= MAX_LAPS:
        raise ValueError(f"laps must be a number above 0 and at most {MAX_LAPS:g}, got {laps!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a whole number >= 1, got {max_samples!r}")


def check_out_folder(folder: Path, option: str = "--out") -> Path:
    """Refuse, in one line naming `option` and the folder, a recording folder that holds something
    this recording would be mixed into or written over: a file (a model's name included), a
    recording already, other files, or a place inside a recording. A new folder, an empty one, or
    one holding only an empty driving_log.csv and an empty IMG/ (what a run that recorded nothing
    leaves) is taken. record() itself is laxer for library callers: it keeps other files and
    removes only what it wrote."""
    named = f"{option} {folder}"
    if folder.suffix.lower() in MODEL_SUFFIXES:
        raise OutputRefused(f"{named}: a model file's name; name a folder for the recording")
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise OutputRefused(f"{named}: is a file, not a folder")
    for parent in list(folder.absolute().parents)[:2]:  # a recording, or its IMG/
        if (parent / CSV_NAME).is_file():
            raise OutputRefused(f"{named}: inside the recording {parent}; name a folder outside it")
    if not folder.is_dir():
        return folder
    log, images = folder / CSV_NAME, folder / IMG_DIR
    if log.is_file() and log.stat().st_size > 0:
        raise OutputRefused(f"{named}: {log} already holds a recording; record into a new folder")
    empty = {log} if log.is_file() else set()
    if images.is_dir() and not images.is_symlink() and not any(images.iterdir()):
        empty.add(images)
    others = sorted(p.name for p in folder.iterdir() if p not in empty)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise OutputRefused(
            f"{named}: holds files a recording does not ({shown}); name a new or empty folder"
        )
    return folder


def _contents(folder: Path) -> dict[Path, frozenset[str] | None]:
    """The names in `folder`'s IMG folder and in `folder` (None where absent), inner first."""
    return {d: frozenset(os.listdir(d)) if d.is_dir() else None for d in (folder / IMG_DIR, folder)}


def _restore(folder: Path, before: dict[Path, frozenset[str] | None]) -> None:
    """Undo a failed run: remove what it added to `folder` and its IMG folder (_contents before),
    the folders it made, and empty the CSV again if one was there (it was empty, or the run would
    have been refused). Files that were there before stay."""
    for directory, names in before.items():
        added = set(os.listdir(directory)) - (names or set()) if directory.is_dir() else set()
        for name in added:
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        if names is None:
            with contextlib.suppress(OSError):
                directory.rmdir()
    if CSV_NAME in (before[folder] or ()):
        with contextlib.suppress(OSError):
            (folder / CSV_NAME).write_bytes(b"")


def _paint_look(sim: Simulator, track: Track, seed: int, index: int, sample: int, vary: bool | str) -> dict:
    """Give `sim` look `index` (lap_look, or lap_new_look when `vary` paints generated looks);
    returns its entry for looks.json."""
    if vary in NEW_LOOK_KINDS:
        style, conditions, world_seed = lap_new_look(seed, index, faint=vary == "faint-looks")
    else:
        style, conditions, world_seed = lap_look(seed, index, styles_for(track.lanes))
    world = World(replace(track, style=style), seed=world_seed, conditions=conditions)
    sim.use_world(world, world_seed)
    return {
        "look": index,
        "first_sample": sample,
        "style": style,
        "world_seed": world_seed,
        "conditions": conditions.to_dict(),
    }


def record(
    track: Track,
    out: str | Path,
    laps: float = 1.0,
    seed: int = 0,
    config: ExpertConfig = ExpertConfig(),
    progress: bool = True,
    topdown: bool = True,
    vary: bool | str = False,
    max_samples: int | None = None,
    conditions: Conditions = Conditions(),
    kind: WorldKind | None = None,
) -> RecordResult:
    """Drive `laps` expert laps of `track` and write them to a new recording folder `out`, in
    `conditions` (unless `vary` paints every stretch anew).

    Before any rendering: ValueError for bad arguments (a track in a suite look, or a held-out
    two-lane map, included), FileExistsError when `out` already holds a recording, OSError when it
    cannot be written.
    RecordError when the expert stalls or the laps take more than `max_samples` (default: the laps
    at MIN_AVERAGE_MPS); nothing is kept then. `kind`: the kind of world (cameras, steering
    scale); default the track's own."""
    _check_arguments(laps, seed, max_samples)
    vary = vary_kind(vary)
    check_recordable(track.style, f"track {track.name}")
    check_recordable_map(track, f"track {track.name}")
    goal = laps * track.length
    if max_samples is None:
        max_samples = min(MAX_SAMPLES, math.ceil((goal / MIN_AVERAGE_MPS + START_S) * SAMPLE_RATE_HZ))
    folder = Path(out)
    log = folder / CSV_NAME
    if log.exists() and log.stat().st_size:
        raise FileExistsError(f"{log} already holds a recording; record into a new folder")
    before = _contents(folder)
    check_writable_folder(folder, "recording folder")
    bar = tqdm(total=round(goal), unit="m", desc=f"record {track.name}", disable=not progress)
    try:
        return _record(track, folder, laps, seed, config, topdown, vary, max_samples, bar, conditions, kind)
    except BaseException as e:
        _restore(folder, before)
        if isinstance(e, RecordError):
            raise RecordError(f"{e}; nothing was kept in {folder}") from None
        raise
    finally:
        bar.close()


def _record(
    track: Track,
    folder: Path,
    laps: float,
    seed: int,
    config: ExpertConfig,
    topdown: bool,
    vary: str | None,
    max_samples: int,
    bar: tqdm,
    conditions: Conditions,
    kind: WorldKind | None = None,
) -> RecordResult:
    """record()'s drive and writes, once its arguments and folder are checked."""
    sim = Simulator(track, seed=seed, render=not vary, conditions=conditions, kind=kind)
    per_lap = NEW_LOOKS_PER_LAP if vary in NEW_LOOK_KINDS else LOOKS_PER_LAP
    expert = Expert(track, seed=seed, config=config)
    dt = 1.0 / SAMPLE_RATE_HZ
    goal = laps * track.length
    stall_samples = round(STALL_WINDOW_S * SAMPLE_RATE_HZ)
    path, ctes, off, looks = [], [], 0, []
    stall_progress = 0.0
    with RecordingWriter(folder) as writer:
        while sim.progress < goal:
            i = writer.rows
            if i >= max_samples:
                raise RecordError(
                    f"{i} samples and the {laps:g} lap(s) are not done (the expert averaged "
                    f"{sim.progress / (i * dt):.2f} m/s): raise its speed or the bound on samples"
                )
            if vary and len(looks) <= sim.progress // (track.length / per_lap):
                looks.append(_paint_look(sim, track, seed, len(looks), i, vary))
            steering, throttle, brake = expert.act(sim.car, sim.location.s, dt)
            frames = [sim.render(cam) for cam in CAMERAS]
            # Timestamps in whole milliseconds of the simulated clock, as the simulator names files.
            when = CLOCK_START + timedelta(milliseconds=round(i * 1000 / SAMPLE_RATE_HZ))
            writer.write(
                when, *frames, steering=steering, throttle=throttle, brake=brake, speed=round(sim.car.mph, 4)
            )
            path.append((sim.car.x, sim.car.y))
            ctes.append(sim.lane_cte)
            off += sim.off_lane
            sim.step(steering, throttle, brake, dt)
            bar.update(max(0, min(round(sim.progress), round(goal)) - bar.n))
            if writer.rows % stall_samples == 0:
                if sim.progress - stall_progress < STALL_MIN_PROGRESS_M:
                    raise RecordError(
                        f"the expert stalled: under {STALL_MIN_PROGRESS_M:g} m of progress in "
                        f"{STALL_WINDOW_S:g} simulated s at a cruise speed of {config.cruise_mph:g} mph"
                    )
                stall_progress = sim.progress
    png = None
    if topdown:
        looked = f", {len(looks)} looks" if vary else ""
        png = save_topdown(
            track,
            np.array(path),
            folder / TOPDOWN_NAME,
            world=sim.world,
            title=f"{track.name}: {laps:g} expert lap(s), seed {seed}{looked}",
        )
    if vary:
        write_json(folder / LOOKS_NAME, looks)
    return RecordResult(
        folder.absolute(),
        len(path),
        sim.laps,
        len(path) * dt,
        float(np.abs(ctes).max()) if ctes else 0.0,
        off,
        png,
        looks,
    )
