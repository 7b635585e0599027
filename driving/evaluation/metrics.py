"""Scoring a closed-loop drive: what the car did, frame by frame, and the figures that sum it up.

A DriveTrace collects one row per simulated frame (pose, cross-track error, speed, steering,
round-trip latency) and every intervention; `metrics_of()` turns it into DriveMetrics:

- laps and distance actually driven, elapsed simulated time, mean speed;
- mean and max |cross-track error| (metres from the centre line; on a two-lane road, from the
  centre of the car's lane);
- interventions: the car's centre left the road, so it was put back on the centre line (on a
  two-lane road: left its lane, across the centre line or the road edge, and was put back on the
  lane's centre);
- autonomy, as NVIDIA's PilotNet scored it: (1 - interventions x 6 s / elapsed s) x 100,
  floored at 0 (each intervention is charged the 6 s a human would need to take over);
- steering smoothness: the RMS steering rate, in steering units per simulated second
  (0 = perfectly steady; a wheel swinging full left to full right every second is about 3);
- latency: the server's reply time seen by the client (send telemetry -> steer back),
  median and p99 in milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from driving.files import write_json
from driving.run import DriveMetrics
from driving.sim.plot import save_topdown
from driving.sim.track import Track
from driving.sim.world import World

INTERVENTION_PENALTY_S = 6.0  # PilotNet: seconds charged per human intervention
INTERVENTION = {  # what an intervention is, by the road's lanes (the report's definitions)
    1: "the car's centre left the road; it was put back on the centre line",
    2: "the car's centre left its lane (across the centre line or the road edge); it was put back "
    "on the lane's centre",
}


@dataclass
class Intervention:
    time_s: float  # simulated time when the car's centre left the road (or its lane)
    x: float
    y: float
    s: float  # arc length along the centre line where it was put back


@dataclass
class DriveTrace:
    """Everything one drive produced, one entry per frame (appended by the drive loop)."""

    track: Track
    time_s: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    cte: list[float] = field(default_factory=list)
    mph: list[float] = field(default_factory=list)
    steering: list[float] = field(default_factory=list)
    throttle: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    distance_m: float = 0.0  # path length driven, not counting the jumps back onto the road
    _put_back: bool = False

    def add(
        self, time_s: float, x: float, y: float, cte: float, mph: float, steering: float, throttle: float
    ) -> None:
        if self.x and not self._put_back:  # the jump back onto the road is not driven distance
            self.distance_m += float(np.hypot(x - self.x[-1], y - self.y[-1]))
        self._put_back = False
        for name, value in (
            ("time_s", time_s),
            ("x", x),
            ("y", y),
            ("cte", cte),
            ("mph", mph),
            ("steering", steering),
            ("throttle", throttle),
        ):
            getattr(self, name).append(float(value))

    def add_latency(self, seconds: float) -> None:
        self.latency_s.append(seconds)

    def intervene(self, time_s: float, x: float, y: float, s: float) -> None:
        """The last row is where the car left the road; the next one starts where it was put back."""
        self.interventions.append(Intervention(time_s, x, y, s))
        self._put_back = True


def autonomy(interventions: int, elapsed_s: float) -> float:
    """PilotNet's autonomy in percent, floored at 0 (more interventions than time to charge)."""
    if elapsed_s <= 0:
        return 0.0
    return max(0.0, (1.0 - interventions * INTERVENTION_PENALTY_S / elapsed_s) * 100.0)


def steering_rate_rms(time_s: np.ndarray, steering: np.ndarray) -> float:
    """RMS of d(steering)/dt over the drive, per simulated second."""
    if len(steering) < 2:
        return 0.0
    dt = np.diff(time_s)
    ok = dt > 0
    rate = np.diff(steering)[ok] / dt[ok]
    return float(np.sqrt(np.mean(rate**2))) if rate.size else 0.0


def metrics_of(
    trace: DriveTrace, laps_target: float, laps: float, realtime: bool, end_reason: str, model: str = ""
) -> DriveMetrics:
    t = np.asarray(trace.time_s)
    elapsed = float(t[-1]) if t.size else 0.0
    cte = np.abs(np.asarray(trace.cte)) if trace.cte else np.zeros(1)
    latency_ms = np.asarray(trace.latency_s) * 1e3 if trace.latency_s else np.full(1, np.nan)
    return DriveMetrics(
        track=trace.track.name,
        laps_target=laps_target,
        laps=round(laps, 4),
        distance_m=round(trace.distance_m, 2),
        elapsed_s=round(elapsed, 3),
        frames=len(trace.x),
        interventions=len(trace.interventions),
        autonomy_pct=round(autonomy(len(trace.interventions), elapsed), 2),
        mean_abs_cte_m=round(float(cte.mean()), 4),
        max_abs_cte_m=round(float(cte.max()), 4),
        mean_speed_mph=round(float(np.mean(trace.mph)) if trace.mph else 0.0, 3),
        steering_rate_rms=round(steering_rate_rms(t, np.asarray(trace.steering)), 4),
        latency_median_ms=round(float(np.median(latency_ms)), 3),
        latency_p99_ms=round(float(np.percentile(latency_ms, 99)), 3),
        completed=laps >= laps_target,
        realtime=realtime,
        model=model,
        end_reason=end_reason,
    )


# --- Output ---------------------------------------------------------------------------------------


def write_report(metrics: DriveMetrics, trace: DriveTrace, path: str | Path) -> Path:
    """JSON: the summary, plus every intervention. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "metrics": metrics.to_dict(),
        "definitions": {
            "autonomy_pct": f"(1 - interventions x {INTERVENTION_PENALTY_S:g} s / elapsed_s) x 100, "
            "floored at 0 (PilotNet)",
            "intervention": INTERVENTION[trace.track.lanes],
            "steering_rate_rms": "RMS of d(steering)/dt, steering units per simulated second",
            "latency": "telemetry sent -> steer received, at the client (ms)",
        },
        "interventions": [asdict(i) for i in trace.interventions],
    }
    write_json(path, report)
    return path


def save_cte_plot(
    trace: DriveTrace, path: str | Path, world: World | None = None, title: str | None = None
) -> Path:
    """Top-down PNG of the driven path coloured by |cross-track error|."""
    path_xy = np.column_stack([trace.x, trace.y]) if trace.x else np.zeros((1, 2))
    values = np.abs(np.asarray(trace.cte)) if trace.cte else np.zeros(1)
    return save_topdown(
        trace.track, path_xy, path, world=world, values=values, label="|cross-track error| (m)", title=title
    )


TABLE_HEADER = (
    f"{'model':16} {'track':8} {'laps':>5} {'km':>5} {'sim s':>6} {'interv':>6} "
    f"{'autonomy':>8} {'mean|cte|':>9} {'max|cte|':>8} {'mph':>5} {'steer rms/s':>11} "
    f"{'lat p50':>7} {'lat p99':>7}"
)


def table_line(m: DriveMetrics) -> str:
    """One fixed-width line per drive, under TABLE_HEADER."""
    return (
        f"{(m.model or '-')[:16]:16} {m.track[:8]:8} {m.laps:5.2f} {m.distance_m / 1000:5.2f} "
        f"{m.elapsed_s:6.0f} {m.interventions:6d} {m.autonomy_pct:7.1f}% {m.mean_abs_cte_m:8.2f}m "
        f"{m.max_abs_cte_m:7.2f}m {m.mean_speed_mph:5.1f} {m.steering_rate_rms:11.3f} "
        f"{m.latency_median_ms:5.1f}ms {m.latency_p99_ms:5.1f}ms"
    )
