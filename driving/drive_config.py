"""The settings of driving a model, declared once (driving/options.py): the Pilot's (PilotConfig),
the server's (ServeConfig) and the drive command's own (DriveConfig, which holds the other two).
`python drive.py`'s parser, its range checks and the command that remakes a config all come from
these declarations:

    config = DriveConfig(Path("models/effnet.h5"), pilot=PilotConfig(speed=12.0))
    argv = to_argv(config)       # ["models/effnet.h5", "--speed", "12.0"]: drive.py's arguments

Light on purpose: the Pilot (numpy, OpenCV) and the server (Flask, Socket.IO, eventlet) import this
module, not the other way round, so drive.py parses, and answers --help, before any of them loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from driving.config import ASYNC_MODES, TARGET_SPEED_MPH
from driving.options import ConfigError, check_bounds, option

BACKENDS = ("auto", "keras", "litert")  # how a Keras file is run (driving.runtime.Predictor.load)
MAX_SPEED_SETTING_MPH = 30.0  # the simulator's top speed
# A real frame is a 320x160 JPEG of 10-30 KB (base64: 14-40 KB); larger images get a safe reply.
MAX_IMAGE_CHARS = 512 * 1024
HTTP_TIMEOUT_S = 10.0  # a request (headers and body) must arrive within this, or its connection is dropped

# The --help sections, in the order they are shown.
CONNECTION, DRIVING, MODEL, OUTPUT = "the simulator's connection", "driving", "the model", "output"
GROUPS = (CONNECTION, DRIVING, MODEL, OUTPUT)


@dataclass(frozen=True)
class PilotConfig:
    """How the Pilot (driving/pilot.py) turns predictions into commands."""

    speed: float = option(
        TARGET_SPEED_MPH,
        "--speed",
        "target speed in mph for the PI throttle controller, 0 to 30 (default %(default)s)",
        group=DRIVING,
        low=0,
        high=MAX_SPEED_SETTING_MPH,
    )
    throttle: float | None = option(
        None,
        "--throttle",
        "fixed throttle in [-1, 1] instead of the speed controller",
        group=DRIVING,
        low=-1,
        high=1,
    )
    turn_slowdown: float = option(
        0.0,
        "--turn-slowdown",
        "lower the target speed in sharp turns: speed * (1 - K*|steering|), "
        "never below half (default 0: off; 0.5 is a good start)",
        group=DRIVING,
        low=0,
        high=10,
        metavar="K",
    )
    max_image_chars: int = MAX_IMAGE_CHARS

    def validate(self) -> PilotConfig:
        check_bounds(self)
        return self


@dataclass(frozen=True)
class ServeConfig:
    """Where and how the drive server (driving/drive_server.py) listens, and what it keeps."""

    host: str = option(
        "127.0.0.1",
        "--host",
        "address to listen on (default 127.0.0.1, where the simulator connects; "
        "0.0.0.0 opens it to the network on purpose)",
        group=CONNECTION,
    )
    port: int = option(
        4567,
        "--port",
        "port (default 4567, the simulator's; 0 picks a free one)",
        group=CONNECTION,
        low=0,
        high=65535,
    )
    async_mode: str = option(
        "threading",
        "--async-mode",
        "server stack (default threading: about 3x lower round trip than the "
        "classic eventlet, measured in docs/benchmarks.md)",
        group=CONNECTION,
        choices=ASYNC_MODES,
    )
    record: Path | None = option(
        None,
        "--record",
        "save every driven frame as a recording (IMG/ + driving_log.csv) in DIR",
        group=OUTPUT,
        metavar="DIR",
    )
    status_interval: float = 1.0  # seconds between status lines; 0 for none (drive.py --quiet)
    http_timeout: float = HTTP_TIMEOUT_S

    def validate(self) -> ServeConfig:
        check_bounds(self)
        if not 0 <= self.status_interval <= 3600:
            raise ConfigError("status_interval", f"must be 0 to 3600 s, got {self.status_interval!r}")
        if not 0 < self.http_timeout <= 3600:
            raise ConfigError("http_timeout", f"must be above 0, at most 3600 s, got {self.http_timeout!r}")
        return self


@dataclass(frozen=True)
class DriveConfig:
    """Everything `python drive.py` is given: the model, how to run it, the Pilot's and the server's
    settings, and what it shows."""

    model: Path = option(help="a model made by train.py: .h5, .keras or .tflite", metavar="model")
    serve: ServeConfig = field(default_factory=ServeConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)
    backend: str = option(
        "auto",
        "--backend",
        "how to run a .h5/.keras model: auto (default) converts it to LiteRT in "
        "memory, checked against Keras, falling back to Keras; keras runs it "
        "as saved; litert insists on the conversion",
        group=MODEL,
        choices=BACKENDS,
    )
    threads: int | None = option(
        None,
        "--threads",
        "LiteRT interpreter threads (default: every core; fewer leaves room "
        "for a simulator rendering on the same machine)",
        group=MODEL,
        low=1,
        high=256,
        metavar="N",
    )
    quiet: bool = option(False, "--quiet", "no per-second status lines", group=OUTPUT)
    view: bool = option(
        False,
        "--view",
        "serve a live view on 127.0.0.1: the frames, steering, throttle, speed, latency "
        "(the address is logged)",
        group=OUTPUT,
    )
    view_port: int = option(
        0,
        "--view-port",
        "the live view's port (default 0: a free one)",
        group=OUTPUT,
        low=0,
        high=65535,
        metavar="P",
    )

    def validate(self) -> DriveConfig:
        check_bounds(self)
        self.serve.validate()
        self.pilot.validate()
        return self

    def serve_settings(self) -> ServeConfig:
        """The server's settings as this command runs it: --quiet means no status lines."""
        return replace(self.serve, status_interval=0.0) if self.quiet else self.serve
