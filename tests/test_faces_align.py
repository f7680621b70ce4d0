"""Face alignment round trips: landmarks -> template crop -> back into the frame (also into an
upscaled frame), on a real face (carphone)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import vapoursynth as vs
from vsremaster.faces import FaceDetector
from vsremaster.faces.align import (TEMPLATES, align, feather_mask, invert, paste_back,
                                    similarity, template_points)
from vsremaster.faces.scan import frame_rgb
from vsremaster.runtime.frames import to_rgb24


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def face(sample_clip):
    """A real face at 4x (carphone frame 60, 704x576) and its BlazeFace landmarks."""
    clip = vs.core.bs.VideoSource(str(sample_clip("carphone")))
    frame = frame_rgb(to_rgb24(clip, "test").get_frame(60))
    big = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    (det,) = FaceDetector().detect(big)
    return big, det


def test_similarity_recovers_a_known_transform_and_never_reflects():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 100, (5, 2))
    a, s = np.radians(12), 1.7
    truth = np.array([[s * np.cos(a), -s * np.sin(a), 30.0], [s * np.sin(a), s * np.cos(a), -8.0]])
    moved = pts @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(similarity(pts, moved), truth, atol=1e-9)
    np.testing.assert_allclose(invert(truth) @ np.append(moved[0], 1), pts[0], atol=1e-9)
    mirrored = pts * [-1, 1]
    m = similarity(pts, mirrored)
    assert np.linalg.det(m[:, :2]) > 0  # best rotation, not a mirror
    with pytest.raises(ValueError, match="degenerate"):
        similarity(np.ones((4, 2)), pts[:4])


def test_templates_match_the_published_ffhq_points():
    pts = template_points("ffhq_512", 512, layout="5point")
    np.testing.assert_allclose(pts[0], [192.98, 239.95], atol=0.01)
    assert abs(np.linalg.norm(pts[1] - pts[0]) - 125.9) < 0.1  # inter-ocular distance
    four = template_points("arcface_128", 256)
    assert four.shape == (4, 2) and four[3, 1] > four[2, 1] > four[0, 1]  # mouth below nose below eyes
    with pytest.raises(ValueError, match="unknown face template"):
        template_points("nope", 512)
    assert set(TEMPLATES) >= {"ffhq_512", "arcface_128"}


def test_real_face_lands_on_the_template(face):
    big, det = face
    crop, m = align(big, det.landmarks, template="ffhq_512", size=512)
    mapped = det.landmarks[:4] @ m[:, :2].T + m[:, 2]
    target = template_points("ffhq_512", 512)
    # a real face is not the mean face: the residual stays a few percent of the crop
    assert np.abs(mapped - target).max() < 0.06 * 512
    assert crop.shape == (512, 512, 3)
    # the eyes are level in the crop (the head's roll is removed)
    assert abs(mapped[0, 1] - mapped[1, 1]) < 0.03 * 512


def test_paste_back_of_an_unchanged_crop_is_invisible(face):
    big, det = face
    crop, m = align(big, det.landmarks, size=512)
    out = paste_back(big.astype(np.float32), crop.astype(np.float32), m, feather_mask(512))
    x0, y0, x1, y1 = (round(v) for v in det.box)
    assert psnr(out[y0:y1, x0:x1], big[y0:y1, x0:x1]) > 38
    footprint = cv2.warpAffine(np.ones((512, 512), np.uint8), invert(m), big.shape[1::-1])
    far = cv2.dilate(footprint, np.ones((5, 5), np.uint8)) == 0
    assert far.mean() > 0.3
    assert np.array_equal(out[far], big[far].astype(np.float32))  # nothing outside the crop moves


def test_paste_into_an_upscaled_frame_lines_up(face):
    big, det = face
    src = cv2.resize(big, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # 352x288
    lm = (det.landmarks + 0.5) / 2 - 0.5
    crop, m = align(src, lm, size=256)
    up = cv2.resize(src, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    hires, _ = align(up, (lm + 0.5) * 2 - 0.5, size=256)
    out = paste_back(up, hires.astype(np.float32), m, feather_mask(256), scale=2.0)
    x0, y0, x1, y1 = (round(v) for v in det.box)
    assert psnr(out[y0:y1, x0:x1], up[y0:y1, x0:x1]) > 33
    shifted = paste_back(up, hires.astype(np.float32), m, feather_mask(256), scale=2.0 * 1.01)
    assert psnr(shifted[y0:y1, x0:x1], up[y0:y1, x0:x1]) < psnr(out[y0:y1, x0:x1], up[y0:y1, x0:x1]) - 3
