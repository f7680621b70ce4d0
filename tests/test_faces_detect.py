"""Face detection and the face pass on real footage: BlazeFace through ONNX Runtime, the
colour/dark normalisation, scene-cut-bounded tracks, the sidecar, the overlay and the CLI.

The carphone clip (a man talking in a car, his face in every one of its 120 frames) is the
real face footage; bikes (cyclists seen from afar and behind) is real footage without a
detectable face.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs
from vsremaster.encode.tools import vspipe_exe
from vsremaster.errors import InputError, ModelError
from vsremaster.faces import (FaceDetector, box_iou, centre_jitter, overlay, read_sidecar,
                              scan_faces, write_sidecar)
from vsremaster.faces.scan import frame_rgb
from vsremaster.runtime.frames import to_rgb24

core = vs.core


@pytest.fixture(scope="module")
def carphone(sample_clip):
    return core.bs.VideoSource(str(sample_clip("carphone")))


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def rgb_frame(clip, n):
    return frame_rgb(to_rgb24(clip, "test").get_frame(n))


def test_finds_the_face_with_its_landmarks_and_nothing_where_there_is_none(carphone, detector, sample_clip):
    frame = rgb_frame(carphone, 60)
    (face,) = detector.detect(frame)
    x0, y0, x1, y1 = face.box
    # the face of the carphone man at frame 60: about 50 px wide, left of centre, upper half
    assert 35 <= x1 - x0 <= 70 and 35 <= y1 - y0 <= 70
    assert 45 <= (x0 + x1) / 2 <= 95 and 50 <= (y0 + y1) / 2 <= 90
    assert face.score > 0.75
    eye_r, eye_l, nose, mouth = face.landmarks[:4]
    assert eye_r[0] < nose[0] < eye_l[0]  # the person's right eye is on the image's left
    assert max(eye_r[1], eye_l[1]) < nose[1] < mouth[1] < y1
    bikes = core.bs.VideoSource(str(sample_clip("bikes")))
    assert all(detector.detect(rgb_frame(bikes, n)) == [] for n in (0, 100, 200))


def test_dim_coloured_stage_light_is_neutralised_for_detection(carphone):
    """A face in deep blue light (a stage gel): found only with the normalisation."""
    rng = np.random.default_rng(0)
    frames = [np.clip(rgb_frame(carphone, n) * np.array([0.02, 0.02, 0.15])
                      + rng.normal(0, 1.5, (144, 176, 3)), 0, 255).astype(np.uint8)
              for n in range(0, 120, 20)]
    plain = FaceDetector(normalise="never")
    helped = FaceDetector(normalise="auto")
    assert sum(bool(plain.detect(f)) for f in frames) == 0
    assert sum(bool(helped.detect(f)) for f in frames) == len(frames)


def test_small_sd_faces_need_the_tiles(carphone, sample_clip):
    """The carphone face shrunk to about 17 px in a busy 720x480 frame (a bikes frame): the
    whole-frame pass (a 256 px input) misses it, the 3x3 tiles find it where it is."""
    import cv2

    bikes = core.bs.VideoSource(str(sample_clip("bikes")))
    background = cv2.resize(rgb_frame(bikes, 50), (720, 480))
    whole, tiled = FaceDetector(tiles=0), FaceDetector(tiles=3)
    found = {0: 0, 3: 0}
    for n in range(0, 120, 20):
        small = cv2.resize(rgb_frame(carphone, n), None, fx=0.35, fy=0.35,
                           interpolation=cv2.INTER_AREA)
        canvas = background.copy()
        canvas[300:300 + small.shape[0], 500:500 + small.shape[1]] = small
        found[0] += len(whole.detect(canvas))
        for face in tiled.detect(canvas):
            cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
            assert 500 <= cx <= 500 + small.shape[1] and 300 <= cy <= 300 + small.shape[0]
            found[3] += 1
    assert found[0] == 0 and found[3] >= 5


def test_face_pass_tracks_within_scenes_and_smooths(carphone, detector, tmp_path):
    # two shots: the clip, then the same clip mirrored (the face framed alike across the cut,
    # the multi-camera case an IoU tracker would bridge)
    clip = carphone[:60] + core.std.FlipHorizontal(carphone[60:])
    scan = scan_faces(clip, detector, keep_detections=True)
    assert scan.cuts == [60]
    assert [(t.start, t.end) for t in scan.tracks] == [(0, 60), (60, 120)]
    for t in scan.tracks:
        raw = np.array([d[0].box for d in scan.detections[t.start:t.end]])
        assert centre_jitter(t.boxes) <= centre_jitter(raw) / 3
        assert np.mean([box_iou(b, r)[0, 0] for b, r in zip(t.boxes, raw)]) >= 0.8
        assert t.landmarks.shape == (t.end - t.start, 6, 2)
    path = write_sidecar(scan, tmp_path / "title.faces.json")
    back = read_sidecar(path)
    assert back.cuts == [60] and len(back.tracks) == 2
    np.testing.assert_allclose(back.tracks[1].boxes, scan.tracks[1].boxes, atol=0.01)
    assert back.stats["frames_with_faces"] == 120


def test_overlay_draws_the_tracks_only_where_they_are(carphone, detector):
    scan = scan_faces(carphone[:20], detector, cuts=[])
    plain = rgb_frame(carphone, 10).astype(int)
    drawn = frame_rgb(overlay(carphone[:20], scan).get_frame(10)).astype(int)
    x0, y0, x1, y1 = (round(v) for v in scan.tracks[0].boxes[10])
    changed = np.abs(drawn - plain).sum(axis=2) > 30
    assert changed[y0:y1 + 1, x0].mean() > 0.8 and changed[y1, x0:x1 + 1].mean() > 0.8
    assert not changed[y1 + 10:, :].any()  # below the box (label and marks sit above)
    with pytest.raises(InputError, match="tracks are for 176x144, 20 frames"):
        overlay(carphone[:30], scan)


def test_sidecar_errors_are_clear(tmp_path):
    bad = tmp_path / "x.faces.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a vsremaster faces file"):
        read_sidecar(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read face tracks"):
        read_sidecar(bad)
    with pytest.raises(ModelError, match="upscale model, not a face detector"):
        FaceDetector("realesr-animevideov3-x2")


def test_faces_track_cli_writes_sidecar_and_preview_for_a_hostile_name(tmp_path, sample_clip):
    src = tmp_path / "car $(touch pwned) 'q\".mp4"
    src.write_bytes(Path(sample_clip("carphone")).read_bytes())
    out = tmp_path / "out dir" / "car.faces.json"
    proc = subprocess.run([sys.executable, "-m", "vsremaster", "faces", "track", str(src), "-o",
                           str(out), "--trim", "10:70", "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["clip"]["num_frames"] == 60 and data["source"]["trim"] == [10, 70]
    assert len(data["tracks"]) == 1 and data["tracks"][0]["end"] == 60
    assert "1 track(s)" in proc.stderr
    vpy = out.with_name("car.faces.vpy")
    info = subprocess.run([str(vspipe_exe()), "--info", vpy.name, "-"], capture_output=True, text=True,
                          cwd=vpy.parent, timeout=300)
    assert info.returncode == 0, info.stderr
    assert "Frames: 60" in info.stdout and "RGB24" in info.stdout
    assert not (tmp_path / "pwned").exists() and not (vpy.parent / "pwned").exists()
