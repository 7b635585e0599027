"""The rows a person left out of a recording: `excluded.json` beside its driving_log.csv.

    {"schema": 1,
     "ranges": [{"first_row": 121, "last_row": 300,
                 "first_center": "center_2016_12_01_13_30_56_287.jpg",
                 "last_center": "center_2016_12_01_13_31_08_220.jpg",
                 "start_s": 8.0, "end_s": 19.93}]}

A range is a span of driving_log.csv's lines (1-based, as the load summary counts them, both ends
included). Lines, not seconds: a line keeps its number whatever else the loader skips, while the
seconds count from the first usable row, which moves when an image goes missing. Each end also
names its center image, so a log that was replaced or edited since is noticed instead of losing
the wrong rows; start_s and end_s are for people reading the file.

The log itself is never edited: the loader (driving/data/reader.py) leaves the ranges out and counts
them; the recording browser (`python -m driving.data view`) writes the file; `cut --excluded`
makes a recording without them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from driving.files import RecordError, read_json, write_json

EXCLUDED_NAME = "excluded.json"
SCHEMA = 1
MAX_RANGES = 100_000  # one per frame of a long recording is already absurd
MAX_BYTES = 32 * 1024 * 1024
MAX_NAME = 255  # a file name's length on every file system the simulator runs on


class ExclusionsError(ValueError):
    """An excluded.json that cannot be used; the message names the file, in one line."""


@dataclass(frozen=True)
class ExcludedRange:
    first_row: int
    last_row: int
    first_center: str
    last_center: str
    start_s: float = 0.0
    end_s: float = 0.0

    def __str__(self) -> str:
        lines = (
            f"line {self.first_row}"
            if self.first_row == self.last_row
            else f"lines {self.first_row}-{self.last_row}"
        )
        return f"{lines} ({self.start_s:.2f}-{self.end_s:.2f} s)"


@dataclass(frozen=True)
class Exclusions:
    """Sorted, disjoint ranges of lines."""

    ranges: tuple[ExcludedRange, ...] = ()

    def ends(self) -> dict[int, str]:
        """line -> the center image name that line must hold: both ends of every range."""
        ends = {}
        for r in self.ranges:
            ends[r.first_row], ends[r.last_row] = r.first_center, r.last_center
        return ends

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "ranges": [asdict(r) for r in self.ranges]}


def _field(source: str, index: int, item: dict, name: str, kind: type):
    value = item.get(name)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ExclusionsError(f"{source}: range {index + 1}: {name} is {value!r:.60}, not a {kind.__name__}")
    return value


def _parse_range(source: str, index: int, item) -> ExcludedRange:
    if not isinstance(item, dict):
        raise ExclusionsError(f"{source}: range {index + 1} is not an object")
    first, last = _field(source, index, item, "first_row", int), _field(source, index, item, "last_row", int)
    if not 1 <= first <= last:
        raise ExclusionsError(f"{source}: range {index + 1}: lines {first}-{last} are no range of lines")
    names = [_field(source, index, item, key, str) for key in ("first_center", "last_center")]
    for name in names:
        if not name or len(name) > MAX_NAME or "/" in name or "\\" in name or "\0" in name:
            raise ExclusionsError(f"{source}: range {index + 1}: {name[:60]!r} is not an image file name")
    start = _field(source, index, item, "start_s", float) if "start_s" in item else 0.0
    end = _field(source, index, item, "end_s", float) if "end_s" in item else 0.0
    return ExcludedRange(first, last, names[0], names[1], float(start), float(end))


def parse_exclusions(data, source: str) -> Exclusions:
    """Exclusions from excluded.json's content; ExclusionsError names `source` for anything else."""
    if not isinstance(data, dict) or "ranges" not in data:
        raise ExclusionsError(f"{source}: not an {EXCLUDED_NAME} (no ranges)")
    if data.get("schema") != SCHEMA:
        raise ExclusionsError(
            f"{source}: schema {data.get('schema')!r:.20}; this version reads schema {SCHEMA}"
        )
    items = data["ranges"]
    if not isinstance(items, list) or len(items) > MAX_RANGES:
        raise ExclusionsError(f"{source}: ranges must be a list of at most {MAX_RANGES:,}")
    ranges = sorted(
        (_parse_range(source, i, item) for i, item in enumerate(items)), key=lambda r: r.first_row
    )
    for before, after in zip(ranges, ranges[1:]):
        if after.first_row <= before.last_row:
            raise ExclusionsError(
                f"{source}: lines {before.first_row}-{before.last_row} and "
                f"{after.first_row}-{after.last_row} overlap"
            )
    return Exclusions(tuple(ranges))


def read_exclusions(recording: str | Path) -> Exclusions | None:
    """The recording's excluded.json, or None when it has none. Refuses, in one line, a file that
    is too large, no regular file (a FIFO would block), not JSON or not of this schema."""
    path = Path(recording) / EXCLUDED_NAME
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_json(path, max_bytes=MAX_BYTES, max_depth=4)
    except RecordError as e:
        raise ExclusionsError(str(e)) from None
    return parse_exclusions(data, str(path))


def write_exclusions(recording: str | Path, exclusions: Exclusions) -> Path:
    """Write the recording's excluded.json atomically. Refuses to replace a file there that this
    module cannot read as one (someone else's file of that name, a FIFO, a folder)."""
    path = Path(recording) / EXCLUDED_NAME
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise ExclusionsError(f"{path}: not a regular file; refusing to replace it")
        read_exclusions(recording)  # raises for a file of another kind: it is left as it is
    return write_json(path, exclusions.to_dict())


# --- between index ranges (rows of one recording's frame table) and line ranges ------------------


def merge_spans(spans: Sequence[Sequence[int]], count: int) -> list[tuple[int, int]]:
    """Index spans [first, last] (both included) clipped to 0..count-1, sorted, and joined where
    they overlap or touch."""
    merged: list[list[int]] = []
    for first, last in sorted((max(int(a), 0), min(int(b), count - 1)) for a, b in spans):
        if first > last:
            continue
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(a, b) for a, b in merged]


def from_spans(frames: pd.DataFrame, spans: Sequence[Sequence[int]]) -> Exclusions:
    """Exclusions covering rows `spans` (index spans of `frames`, one recording's rows in log order,
    as load_recordings gives them with exclusions=False)."""
    rows, times = frames["row"].to_numpy(), frames["time"].to_numpy()
    names = [Path(p).name for p in frames["center"]]
    return Exclusions(
        tuple(
            ExcludedRange(
                int(rows[a]),
                int(rows[b]),
                names[a],
                names[b],
                round(float(times[a]), 3),
                round(float(times[b]), 3),
            )
            for a, b in merge_spans(spans, len(frames))
        )
    )


def to_spans(frames: pd.DataFrame, exclusions: Exclusions | None) -> list[tuple[int, int]]:
    """The index spans of `frames` (one recording, log order) that `exclusions` covers."""
    if not exclusions:
        return []
    rows = frames["row"].to_numpy()
    spans = []
    for r in exclusions.ranges:
        first, last = (
            np.searchsorted(rows, r.first_row, "left"),
            np.searchsorted(rows, r.last_row, "right") - 1,
        )
        if first <= last:
            spans.append((int(first), int(last)))
    return spans


def excluded_mask(frames: pd.DataFrame, exclusions: Exclusions | None) -> np.ndarray:
    """bool [len(frames)]: the rows of one recording's frames inside an excluded range."""
    mask = np.zeros(len(frames), bool)
    for first, last in to_spans(frames, exclusions):
        mask[first : last + 1] = True
    return mask
