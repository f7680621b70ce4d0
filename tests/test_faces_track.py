"""Face tracking logic: births, deaths, gaps, scene cuts, smoothing, serialisation.

Detections are synthetic (a face moving on a smooth path, detector noise of 4 % of its size)
so that the truth is known; what is checked is what a viewer would notice: boxes that stop
jittering yet stay on the face, no track across a cut, short losses bridged.
"""

from __future__ import annotations

import numpy as np
import pytest
from vsremaster.faces import Detection, Track, box_iou, centre_jitter, track_faces


def moving_face(n: int, seed: int = 0, noise: float = 0.04, x0: float = 100.0):
    """Truth boxes of a face on a smooth path and noisy per-frame detections of it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    cx, cy = x0 + 60 * np.sin(t / 20), 80 + 20 * np.cos(t / 15)
    size = 50 + 10 * np.sin(t / 30)
    truth = np.stack([cx - size / 2, cy - 0.6 * size, cx + size / 2, cy + 0.6 * size], 1)
    dets = []
    for i in range(n):
        box = truth[i] + rng.normal(0, noise * size[i], 4)
        eyes = np.array([[cx[i] - 10, cy[i] - 5], [cx[i] + 10, cy[i] - 5]])
        dets.append([Detection(tuple(box), 0.9, eyes + rng.normal(0, 1.5, (2, 2)))])
    return truth, dets


def test_tracking_removes_jitter_and_stays_on_the_detections():
    truth, dets = moving_face(90)
    (track,) = track_faces(dets)
    raw = np.array([d[0].box for d in dets])
    assert (track.start, track.end) == (0, 90) and track.detected.all()
    assert centre_jitter(track.boxes) <= centre_jitter(raw) / 3
    assert np.mean([box_iou(track.boxes[i], raw[i])[0, 0] for i in range(90)]) >= 0.8
    # closer to the truth than the raw detections are
    iou_track = np.mean([box_iou(track.boxes[i], truth[i])[0, 0] for i in range(90)])
    iou_raw = np.mean([box_iou(raw[i], truth[i])[0, 0] for i in range(90)])
    assert iou_track > iou_raw
    assert track.landmarks is not None and track.landmarks.shape == (90, 2, 2)


def test_no_track_crosses_a_scene_cut():
    _, dets = moving_face(80)
    tracks = track_faces(dets, cuts=[50])
    assert [(t.start, t.end) for t in tracks] == [(0, 50), (50, 80)]
    assert [t.id for t in tracks] == [0, 1]


@pytest.mark.parametrize(("gap", "bridged"), [(5, True), (6, False)])
def test_short_losses_are_bridged_long_ones_end_the_track(gap, bridged):
    truth, dets = moving_face(60)
    for i in range(30, 30 + gap):
        dets[i] = []
    tracks = track_faces(dets, max_gap=5)
    if bridged:
        (track,) = tracks
        assert not track.detected[30 : 30 + gap].any() and track.detected[: 30].all()
        # the bridged boxes follow the face through the gap
        assert min(box_iou(track.boxes[i], truth[i])[0, 0] for i in range(30, 30 + gap)) > 0.6
    else:
        assert [(t.start, t.end) for t in tracks] == [(0, 30), (30 + gap, 60)]


def test_births_need_consecutive_hits_and_false_positives_never_become_tracks():
    _, dets = moving_face(40)
    dets[10].append(Detection((300, 300, 340, 340), 0.8))  # one-frame false positive
    for i in (20, 21):  # two-frame flicker: below min_hits=3
        dets[i].append(Detection((400, 50, 440, 90), 0.7))
    tracks = track_faces(dets, min_hits=3)
    assert len(tracks) == 1
    assert len(track_faces(dets, min_hits=2)) == 2  # the flicker passes a looser birth rule


def test_two_faces_keep_their_identities():
    _, left = moving_face(60, seed=1, x0=100)
    _, right = moving_face(60, seed=2, x0=400)
    dets = [a + b for a, b in zip(left, right, strict=True)]
    tracks = track_faces(dets)
    assert len(tracks) == 2
    assert all(t.start == 0 and t.end == 60 for t in tracks)
    xs = sorted(t.boxes[:, 0].mean() for t in tracks)
    assert xs[0] < 200 < xs[1]


def test_a_track_ends_at_its_last_detection_and_round_trips_through_json():
    _, dets = moving_face(50)
    for i in range(45, 50):
        dets[i] = []
    (track,) = track_faces(dets)
    assert track.end == 45
    again = Track.from_dict(track.to_dict())
    assert (again.start, again.end) == (track.start, track.end)
    np.testing.assert_allclose(again.boxes, track.boxes, atol=0.01)
    np.testing.assert_array_equal(again.detected, track.detected)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        track_faces([[]], iou_min=0)
