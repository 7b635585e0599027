"""Recordings to MP4: the center camera's frames in driving_log.csv order, or any RGB frames.

    recording_to_video(folder, out, fps, with_overlay, paint=...)   a recording, each frame
        passed through `paint` first when given: whatever the caller blends in (the command
        line hands in where a model looks, driving/video/__main__.py)
    write_video(frames, path, fps)   RGB frames, e.g. a closed-loop drive's (driving.sim)

Any recording the loader reads works: the simulator's own, `drive.py --record`, `driving.sim record`.
The file is written under a temporary name and renamed when complete, then read back to check it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from driving.config import SAMPLE_RATE_HZ
from driving.data.reader import load_recordings
from driving.files import atomic_path
from driving.preprocess import FrameError, read_frame

FOURCC = "mp4v"  # MPEG-4 Part 2: the encoder opencv-python-headless ships (no H.264 there)


class VideoError(RuntimeError):
    """The video could not be written or does not read back."""


def count_frames(path: str | Path) -> int:
    """Frames that actually decode from a video file (not the header's claim)."""
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.isOpened():
        ok, _ = capture.read()
        if not ok:
            break
        frames += 1
    capture.release()
    return frames


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = SAMPLE_RATE_HZ) -> int:
    """Write RGB uint8 frames (all one size) to an MP4 at `path`; returns the frame count.
    Atomic, and checked before it is renamed into place: the file must read back frame for frame.
    A crash, an empty input or a file that does not read back leaves `path` as it was."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise VideoError(f"{path}: the file name must end in .mp4")
    writer, written = None, 0
    with atomic_path(path) as tmp:  # the temporary name keeps .mp4: the suffix picks the container
        try:
            for rgb in frames:
                if writer is None:
                    height, width = rgb.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
                    if not writer.isOpened():
                        raise VideoError(f"{path}: cannot open a {FOURCC} video writer")
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # VideoWriter takes BGR
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if written == 0:
            raise VideoError(f"{path}: no frames to write")
        readable = count_frames(tmp)
        if readable != written:
            raise VideoError(f"{path}: wrote {written} frames but {readable} read back")
    return written


def draw_hud(rgb: np.ndarray, steering: float, speed: float) -> np.ndarray:
    """The frame with its steering and speed written in the top-left corner."""
    out = rgb.copy()
    text = f"steer {steering:+.3f}  {speed:4.1f} mph"
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def recording_to_video(
    folder: str | Path,
    out: str | Path | None = None,
    fps: float = SAMPLE_RATE_HZ,
    with_overlay: bool = False,
    progress: bool = True,
    paint: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[Path, int, int]:
    """MP4 of a recording's center frames in CSV order, each passed through `paint` first when
    given (e.g. a saliency overlay). Returns (path, frames written, frames skipped as unreadable).
    Raises RecordingError for an unreadable recording, VideoError if the written file does not
    read back frame for frame."""
    folder = Path(folder).absolute()
    out = Path(out) if out else folder.parent / f"{folder.name}.mp4"
    rows = load_recordings([folder]).frames
    skipped = 0

    def frames():
        nonlocal skipped
        shape = None  # a video has one frame size: the first frame's
        for row in tqdm(
            rows.itertuples(), total=len(rows), desc=f"video {out.name}", unit="frame", disable=not progress
        ):
            try:
                rgb = read_frame(row.center)
                shape = shape or rgb.shape
                if rgb.shape != shape:
                    raise FrameError(
                        f"{row.center}: {rgb.shape[1]}x{rgb.shape[0]}, not {shape[1]}x{shape[0]}"
                    )
            except FrameError as e:
                skipped += 1
                tqdm.write(f"skipped: {e}")
                continue
            rgb = paint(rgb) if paint else rgb
            yield draw_hud(rgb, row.steering, row.speed) if with_overlay else rgb

    written = write_video(frames(), out, fps)
    return out, written, skipped
