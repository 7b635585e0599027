"""Command line of the headless simulator.

python -m driving.sim tracks
python -m driving.sim record --track lake --laps 3 --out data/sim-lake [--seed N]
                              [--vary] [--new-looks | --faint-looks]
python -m driving.sim record --track two-lane --map-seed 3 --laps 2 --out data/lanes-3 [--vary]
python -m driving.sim drive --track lake --laps 2 [--port 4567] [--realtime]
                               [--report run.json] [--video run.mp4] [--connect-timeout S]
python -m driving.sim eval models/effnet.h5 --track lake [--laps 2] [--report FILE]
drive and eval also take [--fps N] [--view [--view-port P]]: watch the drive in a browser
record, drive and eval take [--style lake|jungle|desert|look-N]: the track painted in that style
record, drive and eval take --track two-lane --map-seed N (a two-lane map, driving/sim/lanes.py;
record takes training maps only) and --world classic|two-lane (cameras and steering scale,
driving/sim/kinds.py; default: the track's own)

Every file an option names is checked before any work (_check_outputs): a folder, a model, a
recording's file or a file of another kind is refused in one line naming the option and the path.

This command line is an app over the simulator: `drive` and `eval` run the closed loop
(driving.evaluation), the pilot and the live view, imported inside their functions once the
arguments are parsed. The simulator package itself imports none of them, and --help stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from driving import cli, tfsetup
from driving.config import DEFAULT_PREPROCESSING, MAX_LAPS, TARGET_SPEED_MPH
from driving.files import OutputRefused, RecordError, check_output_file, check_writable_folder, read_json
from driving.sim.car import MAX_SPEED_MPH
from driving.sim.client import CONNECT_TIMEOUT_S, REPLY_TIMEOUT_S, ProtocolError
from driving.sim.conditions import Conditions
from driving.sim.expert import ExpertConfig
from driving.sim.kinds import KINDS, TWO_LANE
from driving.sim.lanes import LANE_HELD_OUT_SEEDS, LANE_TRAINING_SEEDS, check_training_seed, lane_track
from driving.sim.looks import (
    NEW_LOOKS_PER_LAP,
    STYLE_NAMES,
    SUITE_LOOKS,
    TRAINING_LOOKS,
    check_recordable,
    is_style_name,
    look_conditions,
    look_seed,
)
from driving.sim.style import STYLES
from driving.sim.track import (
    BUILTIN,
    Track,
    TrackError,
    builtin_track,
    get_track,
    save_track,
    track_features,
)

MIN_CRUISE_MPH = 5.0  # slower experts would take hours per lap
MAX_DRIVE_SECONDS = 24 * 3600.0
MAX_WAIT_S = 3600.0  # the longest --connect-timeout or --reply-timeout: beyond an hour, a typo


def cmd_tracks(args: argparse.Namespace) -> int:
    header = f"{'track':8} {'length m':>9} {'width m':>8} {'min radius m':>13} {'hairpins':>9} {'S-bends':>8}"
    print(header + "  style")
    for name in BUILTIN:
        t = builtin_track(name)
        f = track_features(t)
        print(
            f"{name:8} {f['length_m']:9.0f} {t.width:8.1f} {f['min_radius_m']:13.1f} "
            f"{f['hairpins']:9d} {f['s_bends']:8d}  {t.style}"
        )
    print(
        "also: --track random --seed N, or --track FILE.json "
        f'({{"name": ..., "width": metres, "points": [[x, y], ...], "style": "{"|".join(STYLES)}|look-N", '
        '"lanes": 1|2}); look-N: a look generated from seed N; '
        f"or --track two-lane --map-seed N: a two-lane map of tight corners (training maps "
        f"{LANE_TRAINING_SEEDS.start}-{LANE_TRAINING_SEEDS.stop - 1}, held out "
        f"{LANE_HELD_OUT_SEEDS.start}-{LANE_HELD_OUT_SEEDS.stop - 1})"
    )
    return 0


def _style(text: str) -> str:
    """--style: a style name (argparse type)."""
    if not is_style_name(text):
        raise argparse.ArgumentTypeError(f"must be {STYLE_NAMES}, got {text!r}")
    return text


def _recordable_style(text: str) -> str:
    """record --style: a style name a recording may paint (never a suite look)."""
    try:
        check_recordable(_style(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _painted(track: Track, style: str | None) -> tuple[Track, Conditions]:
    """`track` in --style (when given), and the light to paint it in: a generated look's own,
    else the style as designed."""
    if style is None:
        return track, Conditions()
    seed = look_seed(style)
    return replace(track, style=style), Conditions() if seed is None else look_conditions(seed)


def _track(args: argparse.Namespace, recording: bool = False) -> Track:
    """The track the options name: --track two-lane with --map-seed (a training map when
    `recording`), else a built-in, random or file track."""
    if args.track != TWO_LANE.name:
        if args.map_seed is not None:
            raise ValueError(f"--map-seed {args.map_seed}: names a two-lane map, for --track two-lane")
        return get_track(args.track, args.seed)
    seed = 0 if args.map_seed is None else args.map_seed
    return lane_track(check_training_seed(seed, "--map-seed") if recording else seed)


def _kind(args: argparse.Namespace):
    """The kind of world --world names; None: the track's own."""
    return KINDS[args.world] if args.world else None


def _is_track(data) -> bool:
    return isinstance(data, dict) and {"name", "width", "points"} <= data.keys()


def _is_report(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("metrics"), dict) and "interventions" in data


def _check_output(
    path: Path,
    option: str,
    suffix: str,
    overwrite: bool,
    ours: Callable[[object], bool] | None = None,
    what: str = "",
) -> None:
    """Refuse (OutputRefused) an output path this command may not write: a folder, a model, a
    recording's file or a file of another kind (driving.files.check_output_file); for JSON, also an
    existing file that is not what this option writes (`ours`), unless `overwrite`."""
    check_output_file(path, option, (suffix,), overwrite)
    if ours is None or overwrite or not path.is_file() or not path.stat().st_size:
        return
    try:
        mine = ours(read_json(path))
    except RecordError:  # unreadable, too large or too deep: not a file this option wrote
        mine = False
    if not mine:
        raise OutputRefused(f"{option} {path}: holds JSON that is not {what}; move it, or pass --overwrite")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, a file option that would replace something this command did not
    write (drive and eval: --report, the PNG beside it, --video; record: --save-track); then make
    the folders they go in and prove them writable."""
    checks = []
    if getattr(args, "save_track", None):
        checks.append((Path(args.save_track), "--save-track", ".json", _is_track, "a track"))
    if getattr(args, "report", None):
        checks.append((args.report, "--report", ".json", _is_report, "a drive report"))
        checks.append((args.report.with_suffix(".png"), "--report", ".png", None, ""))
    if getattr(args, "video", None):
        checks.append((args.video, "--video", ".mp4", None, ""))
    for path, option, suffix, ours, what in checks:
        _check_output(path, option, suffix, args.overwrite, ours, what)
    for path, option, *_ in checks:  # all refusals first: nothing is made for a refused command
        try:
            check_writable_folder(path.parent, f"{option} folder")
        except OSError as e:
            raise OutputRefused(str(e)) from None


def cmd_record(args: argparse.Namespace) -> int:
    from driving.sim import recorder  # the renderer is only needed here

    if args.track == TWO_LANE.name and args.map_seed is not None:
        check_training_seed(args.map_seed, "--map-seed")  # before anything else: one line
    recorder.check_out_folder(Path(args.out), "--out")
    track, conditions = _painted(_track(args, recording=True), args.style)
    check_recordable(track.style, f"--track {args.track}")  # before any folder is made
    _check_outputs(args)
    config = ExpertConfig(cruise_mph=args.speed, weave=not args.no_weave)
    try:
        if args.save_track:
            save_track(track, args.save_track)
        # record() checks --out again (a writable folder, no recording in it yet) before rendering.
        result = recorder.record(
            track,
            args.out,
            laps=args.laps,
            seed=args.seed,
            config=config,
            vary="looks" if args.new_looks else "faint-looks" if args.faint_looks else args.vary,
            conditions=conditions,
            kind=_kind(args),
        )
    except (OSError, recorder.RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: nothing was kept in {args.out}", file=sys.stderr)
        return 130
    print(
        f"{result.samples} samples ({result.seconds:.0f} simulated s, {result.laps:.2f} laps) "
        f"-> {result.folder}"
    )
    where = "lane" if track.lanes == 2 else "road"
    print(
        f"max |cross-track error| {result.max_abs_cte:.2f} m of {track.lane_half_width:.2f} m; "
        f"off-{where} samples: {result.off_road_samples}; top-down view: {result.topdown}"
    )
    if result.looks:
        print("looks: " + ", ".join(f"{look['look']} {look['style']}" for look in result.looks))
    return 0


def _drive_options(args: argparse.Namespace, model: str = "", conditions: Conditions = Conditions()):
    from driving.evaluation.closed_loop import DriveOptions  # the app's layer, after parsing

    return DriveOptions(
        laps=args.laps,
        conditions=conditions,
        realtime=args.realtime,
        seed=args.seed,
        video=args.video,
        max_seconds=args.max_seconds,
        model=model,
        fps=args.fps,
        timeout=args.reply_timeout,
        world=_kind(args),
    ).validate()  # e.g. --fps with --realtime: refused before a model loads


@contextlib.contextmanager
def _live_view(args: argparse.Namespace, options, preprocessing, model: str = "") -> Iterator[None]:
    """With --view: serve the live view while the drive runs (an observer feeds it), print its
    address, and stop it afterwards. Without --view nothing of it is imported or run."""
    if not args.view:
        yield
        return
    from driving.view.server import ViewServer  # the live view: only with --view
    from driving.view.sources import DriveView

    view = ViewServer(port=args.view_port)
    try:
        view.start()
    except OSError as e:
        raise ValueError(f"--view-port {args.view_port}: cannot listen ({e.strerror or e})") from None
    options.observers.append(DriveView(view.state, preprocessing, model))
    print(f"live view: {view.url}  (open it in a browser)", flush=True)
    if not options.realtime and options.fps is None:
        print("  a fixed-step drive runs as fast as it can: --fps 15 shows it at the simulator's pace")
    try:
        yield
    finally:
        view.stop()


def _finish(args: argparse.Namespace, metrics, trace) -> int:
    """Print the table line and write the JSON report and the top-down PNG beside it."""
    # The app's layer, after parsing: driving.sim itself never imports driving.evaluation.
    from driving.evaluation.metrics import TABLE_HEADER, save_cte_plot, table_line, write_report

    print(TABLE_HEADER)
    print(table_line(metrics))
    if metrics.end_reason != "laps done":
        print(f"ended early: {metrics.end_reason}")
    if args.report:
        write_report(metrics, trace, args.report)
        png = save_cte_plot(
            trace,
            args.report.with_suffix(".png"),
            title=f"{metrics.model or 'drive'} on {metrics.track}: "
            f"{metrics.interventions} interventions, autonomy {metrics.autonomy_pct:.1f}%",
        )
        print(f"report: {args.report}; path by cross-track error: {png}")
    if args.video:
        print(f"video: {args.video}")
    return 0


def cmd_drive(args: argparse.Namespace) -> int:
    from driving.evaluation.closed_loop import SocketLink, drive  # the app's layer, after parsing

    _check_outputs(args)
    track, conditions = _painted(_track(args), args.style)
    options = _drive_options(args, conditions=conditions)
    model, preprocessing = "", DEFAULT_PREPROCESSING
    if args.view:  # the view names the served model and outlines its crop rows, as drive.py says
        from driving.view.sources import served_model  # the live view: only with --view

        model, preprocessing = served_model(args.host, args.port)
        model = model or f"drive.py on {args.host}:{args.port}"
    link = SocketLink(args.host, args.port, options.timeout)
    link.client.connect_timeout = args.connect_timeout  # SocketLink takes the reply timeout only
    with _live_view(args, options, preprocessing, model):
        metrics, trace = drive(track, link, options)
    return _finish(args, metrics, trace)


def _stored_preprocessing(model: Path):
    """The preprocessing the model file records (its crop rows), read without TensorFlow."""
    from driving.modelio import info_or_default, load_info  # only with eval --view

    return info_or_default(load_info(model), str(model)).preprocessing


def cmd_eval(args: argparse.Namespace) -> int:
    if not args.model.is_file():
        print(f"error: {args.model}: no such model file", file=sys.stderr)
        return 2
    _check_outputs(args)  # before the model loads
    tfsetup.setup()  # the model is served in this process
    # The app's layer, after parsing: the closed loop, the model file's errors, the pilot.
    from driving.evaluation.closed_loop import drive_model
    from driving.modelio import ModelFileError
    from driving.pilot import PilotConfig

    track, conditions = _painted(_track(args), args.style)
    pilot = PilotConfig(speed=args.speed, throttle=args.throttle)
    options = _drive_options(args, args.model.stem, conditions)
    try:
        preprocessing = _stored_preprocessing(args.model) if args.view else None
        with _live_view(args, options, preprocessing):
            metrics, trace = drive_model(args.model, track, options, pilot)
    except ModelFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _finish(args, metrics, trace)


def _add_drive_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--track",
        default="lake",
        help="lake | jungle | desert | random (with --seed) | two-lane (with --map-seed) | "
        "path/to/track.json (default: lake)",
    )
    p.add_argument(
        "--style",
        type=_style,
        metavar="NAME",
        help="paint the track in this style: lake | jungle | desert | look-N, a look generated from "
        "seed N, in its own light (default: the track's own)",
    )
    p.add_argument(
        "--laps",
        type=cli.number(low=0, low_open=True, high=MAX_LAPS),
        default=2.0,
        help=f"laps to drive, above 0 and at most {MAX_LAPS:g} (default: 2)",
    )
    p.add_argument(
        "--seed", type=cli.seed, default=0, help="seed for textures and random tracks (default: 0)"
    )
    _add_world_options(p)
    p.add_argument(
        "--realtime",
        action="store_true",
        help="advance physics by wall-clock time while the server thinks, as Unity does "
        "(default: a fixed 1/15 s per frame, deterministic)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="FILE.json",
        help="write the metrics as JSON, and FILE.png: the path coloured by cross-track error "
        "(an earlier report there is replaced, any other file refused)",
    )
    p.add_argument(
        "--video",
        type=Path,
        metavar="FILE.mp4",
        help="write the camera view with steering, speed and error overlaid",
    )
    p.add_argument(
        "--max-seconds",
        type=cli.number(low=0, low_open=True, high=MAX_DRIVE_SECONDS),
        default=None,
        help="simulated time limit, at most a day (default: the laps at 1 m/s)",
    )
    p.add_argument(
        "--fps",
        type=cli.number(low=0, low_open=True, high=1000),
        default=None,
        metavar="N",
        help="at most N frames per wall-clock second, to watch a fixed-step drive (15: the "
        "simulator's pace; default: as fast as it goes; not with --realtime)",
    )
    p.add_argument(
        "--view",
        action="store_true",
        help="serve a live view of the drive on 127.0.0.1 (camera, charts, track map); "
        "the address is printed",
    )
    p.add_argument(
        "--view-port",
        type=cli.port,
        default=0,
        metavar="P",
        help="the live view's port (default 0: a free one)",
    )
    p.add_argument(
        "--reply-timeout",
        type=cli.number(low=0, low_open=True, high=MAX_WAIT_S),
        default=REPLY_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for each steer reply, the first (a model's warm-up) included "
        f"(default: {REPLY_TIMEOUT_S:g})",
    )
    _add_overwrite(p, "--report and --video")


def _add_world_options(p: argparse.ArgumentParser, recording: bool = False) -> None:
    first, last = LANE_TRAINING_SEEDS.start, LANE_TRAINING_SEEDS.stop - 1
    which = (
        f"a training map, {first} to {last} (maps {LANE_HELD_OUT_SEEDS.start}-"
        f"{LANE_HELD_OUT_SEEDS.stop - 1} are held out for the two-lane suites)"
        if recording
        else "any map seed"
    )
    p.add_argument(
        "--map-seed",
        type=cli.seed,
        default=None,
        metavar="N",
        help=f"with --track two-lane: which two-lane map, {which} (default: 0)",
    )
    p.add_argument(
        "--world",
        choices=tuple(KINDS),
        default=None,
        help="the kind of world: its cameras and steering scale (docs/worlds.md); default: the "
        "track's own (two-lane for a two-lane road, else classic)",
    )


def _add_overwrite(p: argparse.ArgumentParser, options: str) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"let {options} replace a file of their kind that this command did not write "
        "(never a folder, a model or a recording's file)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driving.sim",
        description=("Headless track simulator: record expert laps in the Udacity simulator's format."),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tracks", help="list the built-in tracks")
    p.set_defaults(func=cmd_tracks)

    p = sub.add_parser(
        "record",
        help="record expert laps: driving_log.csv + IMG/ + topdown.png",
        description="Drive expert laps (with deliberate drifts and recoveries) and write "
        "a recording exactly as the Udacity simulator does.",
    )
    p.add_argument(
        "--track",
        default="lake",
        help="lake | jungle | desert | random (with --seed) | two-lane (with --map-seed) | "
        "path/to/track.json (default: lake)",
    )
    p.add_argument(
        "--laps",
        type=cli.number(low=0, low_open=True, high=MAX_LAPS),
        default=1.0,
        help=f"laps to drive, above 0 and at most {MAX_LAPS:g}; may be fractional (default: 1)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="a new or empty recording folder, e.g. data/sim-lake (a folder holding other files is refused)",
    )
    p.add_argument(
        "--seed",
        type=cli.seed,
        default=0,
        help="seed for the expert, textures and random tracks (default: 0)",
    )
    p.add_argument(
        "--speed",
        type=cli.number(low=MIN_CRUISE_MPH, high=MAX_SPEED_MPH),
        default=ExpertConfig.cruise_mph,
        help=f"expert cruise speed in mph, {MIN_CRUISE_MPH:g} to {MAX_SPEED_MPH:g}, slower in bends "
        f"(default: {ExpertConfig.cruise_mph:g})",
    )
    _add_world_options(p, recording=True)
    p.add_argument(
        "--style",
        type=_recordable_style,
        metavar="NAME",
        help="paint the track in this style: lake | jungle | desert | look-N, a look generated from "
        f"seed N, in its own light (suite looks, N from {SUITE_LOOKS.start} to {SUITE_LOOKS.stop - 1}, "
        "are refused; default: the track's own)",
    )
    p.add_argument("--no-weave", action="store_true", help="follow the centre line (or lane) without drifts")
    p.add_argument(
        "--vary",
        action="store_true",
        help="drive each lap in a fresh look: style and conditions drawn from the seed and the lap",
    )
    generated = p.add_mutually_exclusive_group()
    generated.add_argument(
        "--new-looks",
        action="store_true",
        help=f"vary in generated looks instead of the three styles: each 1/{NEW_LOOKS_PER_LAP} of a lap "
        f"painted in a look drawn from the training looks (seeds {TRAINING_LOOKS.start} to "
        f"{TRAINING_LOOKS.stop - 1}), in its own light",
    )
    generated.add_argument(
        "--faint-looks",
        action="store_true",
        help="as --new-looks, in faint-road training looks only: edges unmarked or sparsely dashed, "
        "and a road close in colour to its roadside (the looks that cost models most)",
    )
    p.add_argument(
        "--save-track",
        metavar="FILE.json",
        help="also save the track's JSON, e.g. a random one (an earlier track file there is replaced, "
        "any other file refused)",
    )
    _add_overwrite(p, "--save-track")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser(
        "drive",
        help="drive laps against a running drive.py, as the Udacity simulator does",
        description="Connect to a running drive.py exactly as the Udacity simulator's "
        "autonomous mode does, drive the simulated car with its replies and "
        "score the drive: laps, cross-track error, interventions (the car is "
        "put back on the road), autonomy, smoothness, latency.",
        epilog="example: python drive.py models/effnet.h5 &  "
        "python -m driving.sim drive --track lake --laps 2 --report runs/lake.json",
    )
    _add_drive_options(p)
    p.add_argument("--host", default="127.0.0.1", help="drive.py's address (default: 127.0.0.1)")
    p.add_argument("--port", type=cli.port, default=4567, help="drive.py's port (default: 4567)")
    p.add_argument(
        "--connect-timeout",
        type=cli.number(low=0, low_open=True, high=MAX_WAIT_S),
        default=CONNECT_TIMEOUT_S,
        metavar="S",
        help="seconds to wait for each step of connecting: the TCP connection, the WebSocket upgrade "
        f"reply, the Engine.IO OPEN packet (default: {CONNECT_TIMEOUT_S:g})",
    )
    p.set_defaults(func=cmd_drive)

    p = sub.add_parser(
        "eval",
        help="serve a model with drive.py's server and drive it: one command",
        description="Start drive.py's server for MODEL on a free loopback port, drive "
        "it around the track, stop it, and print one table line.",
        epilog="example: python -m driving.sim eval models/effnet.h5 --track jungle --laps 1",
    )
    p.add_argument("model", type=Path, help="a model made by train.py: .h5, .keras or .tflite")
    _add_drive_options(p)
    p.add_argument(
        "--speed",
        type=cli.number(0, 30),
        default=TARGET_SPEED_MPH,
        help=f"the server's target speed in mph, 0 to 30 (default: {TARGET_SPEED_MPH:g})",
    )
    p.add_argument(
        "--throttle",
        type=cli.number(-1, 1),
        default=None,
        help="a fixed throttle instead of the server's speed controller",
    )
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TrackError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TimeoutError as e:  # the message names the address and what did not arrive
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ConnectionError as e:
        print(f"error: {e} (is drive.py running on that port?)", file=sys.stderr)
        return 1
    except ProtocolError as e:  # the real simulator would stall here
        print(f"error: the server's reply would stall the simulator: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
