"""driving.video: a recording becomes an MP4 that reads back frame for frame, in the right colours."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from driving.video.__main__ import main
from driving.video.writer import VideoError, count_frames, recording_to_video, write_video
from tests.conftest import road_frame, write_recording


def test_recording_to_video_reads_back(tmp_path):
    folder = write_recording(tmp_path / "lap", n=20, sides=False)
    out, written, skipped = recording_to_video(folder, fps=15, progress=False)
    assert out == tmp_path / "lap.mp4" and (written, skipped) == (20, 0)
    assert count_frames(out) == 20
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(15)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 160)
    ok, first_bgr = capture.read()
    capture.release()
    assert ok
    # Same picture as the first recorded frame, colours not swapped (sky is blue: B > R).
    source = road_frame(np.sin(0.0))
    first_rgb = first_bgr[..., ::-1]
    assert np.abs(first_rgb.astype(int) - source).mean() < 12
    sky = first_rgb[:40].reshape(-1, 3).mean(axis=0)
    assert sky[2] > sky[0] + 60


def test_unreadable_frames_are_skipped_and_counted(tmp_path):
    folder = write_recording(tmp_path / "lap", n=6, sides=False)
    broken = sorted((folder / "IMG").glob("center_*.jpg"))[2]
    broken.write_bytes(broken.read_bytes()[:300])  # truncated
    out, written, skipped = recording_to_video(folder, out=tmp_path / "x.mp4", progress=False)
    assert (written, skipped) == (5, 1) and count_frames(out) == 5


def test_overlay_changes_the_frames(tmp_path):
    folder = write_recording(tmp_path / "lap", n=3, sides=False)
    plain, _, _ = recording_to_video(folder, out=tmp_path / "plain.mp4", progress=False)
    marked, _, _ = recording_to_video(folder, out=tmp_path / "marked.mp4", with_overlay=True, progress=False)
    _, a = cv2.VideoCapture(str(plain)).read()
    _, b = cv2.VideoCapture(str(marked)).read()
    assert np.abs(a[:24].astype(int) - b[:24]).mean() > 5  # text in the top-left band
    assert np.abs(a[60:].astype(int) - b[60:]).mean() < 3  # the rest untouched


def test_no_frames_leaves_no_file(tmp_path):
    with pytest.raises(VideoError, match="no frames"):
        write_video([], tmp_path / "empty.mp4")
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    folder = write_recording(tmp_path / "rec", n=5, sides=False)
    assert main([str(folder), "--fps", "10", "--out", str(tmp_path / "v.mp4")]) == 0
    assert "5 frames at 10 fps (0.5 s)" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "nowhere: no such folder" in capsys.readouterr().err
