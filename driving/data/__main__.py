"""Command line for recordings: check them, look through them, and make new ones from them.

    python -m driving.data summary --data data/track1 [--strict] [--histogram steering.png]
    python -m driving.data view data/track1 [data/track2 ...] [--port P]
    python -m driving.data merge OUT DIR [DIR ...]
    python -m driving.data cut DIR OUT --exclude START:END [...] | --excluded
    python -m driving.data repath DIR OUT

`summary` prints the rows read, used and skipped by reason and writes a steering histogram (PNG);
`view` serves the recording browser on 127.0.0.1 (driving/data/browse.py); merge, cut and repath
write a new recording and never touch their sources (driving/data/tools.py).
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image

from driving import cli
from driving.config import SAMPLE_RATE_HZ
from driving.data import tools
from driving.data.browse import RecordingBrowser
from driving.data.problems import ProblemThresholds
from driving.data.reader import RecordingError, check_decodable, load_recordings
from driving.files import OutputRefused, atomic_path, check_output_file, save_figure
from driving.options import add_options, check_bounds, from_args
from driving.view import browser as chromium


def save_steering_histogram(frames: pd.DataFrame, path: str | Path, bins: int = 51) -> None:
    """PNG histogram of the steering values (log scale: most rows of a real recording are 0)."""
    import matplotlib  # only once the recordings are read: --help and a failed check never load it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(frames["steering"], bins=bins, range=(-1, 1), color="#3465a4")
    ax.set(
        xlabel="steering (1 = 25 degrees, positive = right)",
        ylabel="frames",
        title=f"Steering over {len(frames)} frames",
        yscale="log",
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def time_range(text: str) -> tuple[float, float]:
    """START:END in seconds from the recording's start, 0 <= START <= END."""
    parts = text.split(":")
    seconds = cli.number(low=0)
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range: write START:END in seconds, e.g. 0:4.5")
    start, end = seconds(parts[0]), seconds(parts[1])
    if end < start:
        raise argparse.ArgumentTypeError(f"{text}: the end comes before the start")
    return start, end


def summary(args: argparse.Namespace) -> int:
    try:
        check_output_file(args.histogram, "--histogram", (".png",), overwrite=args.overwrite)
        recordings = load_recordings(args.data, strict=args.strict)
        frames = recordings.frames
        if not args.no_decode:
            frames = check_decodable(frames, recordings.summary, strict=args.strict)
    except (RecordingError, OutputRefused) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(recordings.summary)
    save_steering_histogram(frames, args.histogram)
    straight = (frames["steering"].abs() < 0.01).mean() if len(frames) else 0.0
    seconds = len(frames) / SAMPLE_RATE_HZ
    duration = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
    print(
        f"\n{len(frames)} frames ({duration} of driving), {straight:.0%} with |steering| < 0.01; "
        f"steering histogram: {args.histogram}"
    )
    return 0


def screenshot(page: RecordingBrowser, png: Path, at: float) -> None:
    """The browser's page in headless Chromium (1280 x 820), saved as `png` once its frames show,
    in 256 colours (a third of the size; the page is flat colours but for the camera frames)."""
    with chromium.headless_chromium(1280, 820) as driver:
        driver.get(f"{page.url}#t={at:g}")
        chromium.wait_for(driver, "return document.body.dataset.state === 'ready'", 60)
        chromium.wait_for(driver, "return document.getElementById('center').complete", 30)
        shot = driver.get_screenshot_as_png()
    with atomic_path(png) as tmp, Image.open(io.BytesIO(shot)) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(tmp, optimize=True)


def view(args: argparse.Namespace) -> int:
    try:
        thresholds = from_args(ProblemThresholds, args)
        check_bounds(thresholds)
        if args.screenshot is not None:
            check_output_file(args.screenshot, "--screenshot", (".png",))
            problem = chromium.missing()
            if problem:
                raise OutputRefused(f"--screenshot: cannot drive headless Chromium: {problem}")
        page = RecordingBrowser(args.dirs, thresholds, args.port)
        page.start()
    except (RecordingError, OutputRefused, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        if args.screenshot is not None:
            screenshot(page, args.screenshot, args.at)
            print(f"screenshot: {args.screenshot}")
            return 0
        print(f"recording browser: {page.url}  ({len(page.recordings)} recording(s); Ctrl-C stops it)")
        threading.Event().wait()  # serve until interrupted
    except KeyboardInterrupt:
        pass
    finally:
        page.stop()
    return 0


def run_tool(args: argparse.Namespace) -> int:
    try:
        if args.command == "merge":
            written = tools.merge(args.out, args.dirs, args.copy)
        elif args.command == "cut":
            if not args.exclude and not args.excluded:
                raise tools.ToolError("nothing to cut: give --exclude START:END or --excluded")
            written = tools.cut(args.dir, args.out, args.exclude or (), args.excluded, args.copy)
        else:
            written = tools.repath(args.dir, args.out, args.copy)
    except (RecordingError, tools.ToolError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"{args.command}: {written}")
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.data",
        description="Check, browse and rework Udacity-simulator recordings (driving_log.csv + IMG/).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "summary",
        help="validate recordings; print rows read, used and skipped by reason",
        description="Read every recording and check each row: its 7 fields, numbers that are finite, "
        "steering within [-1, 1], a center image path, every image it names present; then decode "
        "each image (a readable, complete JPEG) and check that all frames have one size. Print "
        "the rows read, used and skipped by reason (and those left out by an excluded.json), "
        "and write a steering histogram PNG.",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="recording folders (with driving_log.csv), or folders holding several anywhere below them",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) at the first row or image that fails any check above, frames of a "
        "second size included, instead of skipping it",
    )
    p.add_argument(
        "--histogram",
        "--hist",
        default=Path("steering.png"),
        type=Path,
        metavar="PNG",
        help="where to write the steering histogram (default: %(default)s); a file there that is "
        "not a PNG is refused",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --histogram even if it is not a PNG")
    p.add_argument(
        "--no-decode",
        action="store_true",
        help="only check that the image files exist; do not decode them (nor compare frame sizes)",
    )

    p = commands.add_parser(
        "view",
        help="look through recordings in the browser; mark stretches to leave out",
        description="Serve the recording browser on 127.0.0.1: the three camera frames at a cursor, "
        "steering, throttle and speed over time, the steering histogram and the recording's "
        "problems; selected time ranges can be excluded, which writes DIR/excluded.json (the "
        "loader, and so train.py, leaves those rows out). driving_log.csv is never changed.",
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="recordings, or folders holding them")
    p.add_argument(
        "--port", type=cli.port, default=0, help="port on 127.0.0.1 (default 0: a free one, printed)"
    )
    p.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="instead of serving: save the page of the first recording as PNG (headless Chromium)",
    )
    p.add_argument(
        "--at",
        type=cli.number(low=0),
        default=0.0,
        metavar="SECONDS",
        help="with --screenshot: put the cursor this many seconds into the recording",
    )
    add_options(p, ProblemThresholds)

    copy = {"action": "store_true", "help": "copy the images (default: hard links where possible)"}
    p = commands.add_parser(
        "merge",
        help="one new recording from several (rows in time order)",
        description="Write OUT, a new recording holding the usable rows of every DIR, recordings in the "
        "order of their first frame's time; image names two recordings share are made unique. "
        "Excluded ranges are carried over. OUT must be new or an empty folder.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="the new recording's folder")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="recordings, or folders holding them")
    p.add_argument("--copy", **copy)

    p = commands.add_parser(
        "cut",
        help="a new recording without some time ranges",
        description="Write OUT, a copy of the recording DIR without the rows in the given time ranges "
        "(seconds from its first row, as the browser shows them), or without its excluded.json's "
        "ranges. OUT must be new or an empty folder.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the recording")
    p.add_argument("out", type=Path, metavar="OUT", help="the new recording's folder")
    p.add_argument(
        "--exclude",
        type=time_range,
        action="append",
        metavar="START:END",
        help="leave out the rows from START to END seconds (both included); repeat for several",
    )
    p.add_argument("--excluded", action="store_true", help="leave out the ranges of DIR/excluded.json")
    p.add_argument("--copy", **copy)

    p = commands.add_parser(
        "repath",
        help="a new recording whose log points at its own IMG/ (one moved from Windows)",
        description="Write OUT, a copy of the recording DIR whose driving_log.csv names OUT's own "
        "images by absolute path, whatever paths DIR's log names (Windows, another machine).",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the recording")
    p.add_argument("out", type=Path, metavar="OUT", help="the new recording's folder")
    p.add_argument("--copy", **copy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "summary":
        return summary(args)
    if args.command == "view":
        return view(args)
    return run_tool(args)


if __name__ == "__main__":
    sys.exit(main())
