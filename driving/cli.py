"""Argument types shared by every command line, so that bad values are refused in one line by
argparse before any work starts: `--port 70000`, `--speed nan`, `--lr -1`, `--laps 0`.

    parser.add_argument("--port", type=cli.port, default=4567)
    parser.add_argument("--lr", type=cli.number(low=0, low_open=True, high=1), default=1e-3)

Nothing here imports TensorFlow: `--help` stays instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _show(value) -> str:
    return f"{value:d}" if isinstance(value, int) else f"{value:g}"


def range_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        to = "and below" if high_open else "to"
        return f"{'above' if low_open else 'from'} {_show(low)} {to} {_show(high)}"
    if low is not None:
        return f"{'above' if low_open else 'at least'} {_show(low)}"
    if high is not None:
        return f"{'below' if high_open else 'at most'} {_show(high)}"
    return "finite"


def number(
    low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """A finite float within [low, high] (open ends as given): NaN and infinity are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: a number {range_text(low, high, low_open, high_open)}"
            )
        return value

    parse.__name__ = "number"
    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A whole number within [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: a whole number {range_text(low, high, False, False)}"
            )
        return value

    parse.__name__ = "integer"
    return parse


def port(text: str) -> int:
    """A TCP port: 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 to 65535; 0 picks a free one)")
    return value


def size(text: str) -> tuple[int, int]:
    """HEIGHTxWIDTH in pixels, e.g. 66x200 (a single number means a square)."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write HEIGHTxWIDTH, e.g. 66x200") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write HEIGHTxWIDTH, e.g. 66x200")
    return values[0], values[1]


positive_int = integer(low=1)
non_negative_int = integer(low=0)
positive_number = number(low=0, low_open=True)
non_negative_number = number(low=0)
seed = integer(low=0, high=2**31 - 1)
