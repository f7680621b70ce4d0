"""The face detectors users bring: YuNet, SCRFD and RetinaFace ONNX files.

No real weights are here, so each test builds a small ONNX graph with the exact outputs
(names, shapes, order) of a family and plants a known face in them, encoded by hand with the
family's published convention (YuNet: OpenCV zoo; SCRFD: InsightFace; RetinaFace: biubug6's
Pytorch_Retinaface). The detector must hand the face back where it is in the frame, with its
five landmarks, through the letterbox and the tiles; drop a weak face; merge duplicates; and
``models add`` must record, checksum and refuse files like the face restorers'.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from vsremaster.errors import ChecksumError, ModelError
from vsremaster.faces import FaceDetector, track_faces
from vsremaster.faces.align import align, template_points
from vsremaster.models.store import read_record, resolve_model
from vsremaster.models.user import add_model
from vsremaster.registry import sha256_file

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIDE = 640  # the detectors' input side
FFHQ = template_points("ffhq_512", 1, layout="5point")  # image-left eye first, in [0, 1]

# Faces in detector input pixels: box (x0, y0, x1, y1) and 5 landmarks shaped like the FFHQ
# template (so a 5-point alignment fits them exactly).
FACE = (292.0, 128.0, 356.0, 208.0)
FACE_PTS = FFHQ * 64 + (292.0, 128.0)
DUPLICATE = (296.0, 128.0, 360.0, 208.0)  # the same face, 4 px to the right, weaker
DUPLICATE_PTS = FACE_PTS + (4.0, 0.0)
FAINT = (470.0, 180.0, 590.0, 320.0)  # a far, weak face, decoded from the coarsest stride
FAINT_PTS = FFHQ * 120 + (470.0, 190.0)


# ------------------------------------------------------------------ encoding by hand
def yunet_outputs(faces, size=SIDE):
    """The 12 YuNet outputs for ``faces`` = [(box, points, score, stride, row, col)]."""
    outs = {}
    for s in (8, 16, 32):
        n = (size // s) ** 2
        outs |= {f"cls_{s}": np.zeros((1, n, 1)), f"obj_{s}": np.zeros((1, n, 1)),
                 f"bbox_{s}": np.zeros((1, n, 4)), f"kps_{s}": np.zeros((1, n, 10))}
    for (x0, y0, x1, y1), pts, score, s, row, col in faces:
        i = row * (size // s) + col
        outs[f"cls_{s}"][0, i] = outs[f"obj_{s}"][0, i] = score  # sqrt(cls * obj) = score
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        outs[f"bbox_{s}"][0, i] = [cx / s - col, cy / s - row, math.log((x1 - x0) / s),
                                   math.log((y1 - y0) / s)]
        outs[f"kps_{s}"][0, i] = (np.asarray(pts) / s - (col, row)).reshape(-1)
    order = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    return [(name, outs[name]) for name in order], [f"cls_{s}" for s in (8, 16, 32)]


def scrfd_outputs(faces, size=SIDE, batch=False):
    """The 9 SCRFD outputs (scores, boxes, key points per stride 8/16/32) for
    ``faces`` = [(box, points, score, stride, row, col, anchor)]."""
    scores, boxes, kps = {}, {}, {}
    for s in (8, 16, 32):
        n = 2 * (size // s) ** 2
        scores[s], boxes[s], kps[s] = np.zeros((n, 1)), np.zeros((n, 4)), np.zeros((n, 10))
    for (x0, y0, x1, y1), pts, score, s, row, col, anchor in faces:
        i = (row * (size // s) + col) * 2 + anchor
        cx, cy = col * s, row * s  # anchor centre
        scores[s][i] = score
        boxes[s][i] = [(cx - x0) / s, (cy - y0) / s, (x1 - cx) / s, (y1 - cy) / s]
        kps[s][i] = ((np.asarray(pts) - (cx, cy)) / s).reshape(-1)
    outs = [(f"score_{s}", scores[s]) for s in (8, 16, 32)] + \
        [(f"bbox_{s}", boxes[s]) for s in (8, 16, 32)] + [(f"kps_{s}", kps[s]) for s in (8, 16, 32)]
    if batch:
        outs = [(name, a[None]) for name, a in outs]
    return outs, [f"score_{s}" for s in (8, 16, 32)]


def retina_prior(step, row, col, k, size=SIDE):
    """Index and ``(cx, cy, w, h)`` (fractions of the input) of a RetinaFace prior."""
    levels = {8: (16, 32), 16: (64, 128), 32: (256, 512)}
    offset = sum(2 * math.ceil(size / s) ** 2 for s in levels if s < step)
    index = offset + (row * math.ceil(size / step) + col) * 2 + k
    return index, ((col + 0.5) * step / size, (row + 0.5) * step / size,
                   levels[step][k] / size, levels[step][k] / size)


def retina_outputs(faces, size=SIDE):
    """loc, conf, landms for ``faces`` = [(box, points, score, step, row, col, k)]."""
    n = 2 * sum(math.ceil(size / s) ** 2 for s in (8, 16, 32))
    loc, conf, landms = np.zeros((1, n, 4)), np.zeros((1, n, 2)), np.zeros((1, n, 10))
    conf[0, :, 0] = 1.0  # softmaxed: background everywhere
    for (x0, y0, x1, y1), pts, score, step, row, col, k in faces:
        i, (pcx, pcy, pw, ph) = retina_prior(step, row, col, k, size)
        cx, cy = (x0 + x1) / 2 / size, (y0 + y1) / 2 / size
        loc[0, i] = [(cx - pcx) / (0.1 * pw), (cy - pcy) / (0.1 * ph),
                     math.log((x1 - x0) / size / pw) / 0.2, math.log((y1 - y0) / size / ph) / 0.2]
        conf[0, i] = [1 - score, score]
        landms[0, i] = ((np.asarray(pts) / size - (pcx, pcy)) / (0.1 * np.array([pw, ph]))).reshape(-1)
    return [("loc", loc), ("conf", conf), ("landms", landms)], ["conf"]


# the planted faces in each family's cells: main, duplicate (next cell / other anchor / other
# prior size), faint (stride 32)
ENCODE = {"yunet": yunet_outputs, "scrfd": scrfd_outputs, "retinaface": retina_outputs}
FACES = {
    "yunet": [(FACE, FACE_PTS, 0.95, 16, 10, 20), (DUPLICATE, DUPLICATE_PTS, 0.8, 16, 10, 21),
              (FAINT, FAINT_PTS, 0.5, 32, 7, 16)],
    "scrfd": [(FACE, FACE_PTS, 0.95, 16, 10, 20, 0),
              (DUPLICATE, DUPLICATE_PTS, 0.8, 16, 10, 20, 1),
              (FAINT, FAINT_PTS, 0.5, 32, 8, 16, 1)],
    "retinaface": [(FACE, FACE_PTS, 0.95, 16, 10, 20, 0),
                   (DUPLICATE, DUPLICATE_PTS, 0.8, 16, 10, 20, 1),
                   (FAINT, FAINT_PTS, 0.5, 32, 7, 16, 0)],
}


def encoded(family, *, main_only=False, **kw):
    """``(outputs, names of the score outputs)`` with the family's planted faces."""
    return ENCODE[family](FACES[family][:1] if main_only else FACES[family], **kw)

# The gate reads the input's first channel: blue for YuNet and RetinaFace (BGR), red for
# SCRFD (RGB). GATE_MID lies between what the family's preprocessing makes of 255 and of the
# grey background (128) in that channel.
GATE_MID = {"yunet": 200.0, "scrfd": 0.6, "retinaface": 100.0}
GATE_GAIN = {"yunet": 0.2, "scrfd": 30.0, "retinaface": 0.3}
FIRST_CHANNEL_RGB = {"yunet": (0, 0, 255), "scrfd": (255, 0, 0), "retinaface": (0, 0, 255)}


def build(path, outputs, *, input_shape=(1, 3, SIDE, SIDE), gate=None):
    """Write an ONNX graph (opset 17) whose outputs are the given arrays.

    ``gate = (family, scored, (x0, y0, x1, y1))``: the outputs named in ``scored`` are
    multiplied by a sigmoid of the mean of the input's first channel over that region, so the
    planted faces score only when the region is full in that channel (a face must be where the
    graph "sees" it, in the colour order the family expects)."""
    nodes, inits = [], []
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))
    family, scored, (gx0, gy0, gx1, gy1) = gate or ("", (), (0, 0, 8, 8))
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("starts", [0, gy0, gx0]), ("ends", [1, gy1, gx1]), ("axes", [1, 2, 3]))]
    nodes += [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["patch"]),
              helper.make_node("ReduceMean", ["patch"], ["mean"], keepdims=0)]
    if gate:
        inits += [numpy_helper.from_array(np.array(GATE_MID[family], np.float32), "mid"),
                  numpy_helper.from_array(np.array(GATE_GAIN[family], np.float32), "gain")]
        nodes += [helper.make_node("Sub", ["mean", "mid"], ["centred"]),
                  helper.make_node("Mul", ["centred", "gain"], ["logit"]),
                  helper.make_node("Sigmoid", ["logit"], ["gate"])]
    else:  # the outputs do not depend on the input (but the graph reads it)
        inits.append(numpy_helper.from_array(np.array(0, np.float32), "zero"))
        nodes += [helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
                  helper.make_node("Add", ["nothing", "zero"], ["gate0"]),
                  helper.make_node("Exp", ["gate0"], ["gate"])]  # exactly 1
    outs = []
    for name, value in outputs:
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_const"))
        if name in scored or not gate:
            nodes.append(helper.make_node("Mul", [f"{name}_const", "gate"], [name]))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_const"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "planted_faces", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def planted(tmp_path, family, **kw):
    return build(tmp_path / f"{family}.onnx", encoded(family, **kw)[0])


def grey_frame(w=1280, h=720):
    return np.full((h, w, 3), 128, np.uint8)


def assert_face(det, box, pts, scale=2.0, offset=(0.0, 0.0), tol=1.0):
    want = np.array(box) * scale + np.tile(offset, 2)
    np.testing.assert_allclose(det.box, want, atol=tol)
    np.testing.assert_allclose(det.landmarks, np.asarray(pts) * scale + offset, atol=tol)


# ------------------------------------------------------------------ decoding
@pytest.mark.parametrize("family,kw", [("yunet", {}), ("scrfd", {}), ("scrfd", {"batch": True}),
                                       ("retinaface", {})])
def test_planted_face_comes_back_in_frame_pixels_and_duplicates_merge(tmp_path, family, kw):
    det = FaceDetector(str(planted(tmp_path, family, **kw)), tiles=0)
    assert det.family == family and det.input_size == (SIDE, SIDE)
    assert det.landmark_names == ("right_eye", "left_eye", "nose_tip", "right_mouth_corner",
                                  "left_mouth_corner")
    # 1280x720 -> the 640x640 input at half size (letterboxed at the bottom)
    (face,) = det.detect(grey_frame())  # the faint face is dropped, the duplicate merged
    w_main, w_dup = 0.95, 0.8
    merged = (np.array(FACE) * w_main + np.array(DUPLICATE) * w_dup) / (w_main + w_dup)
    merged_pts = (FACE_PTS * w_main + DUPLICATE_PTS * w_dup) / (w_main + w_dup)
    assert_face(face, merged, merged_pts)
    assert face.score == pytest.approx(0.95, abs=1e-3)
    # the faint face is there, only below the threshold; a looser one finds it, not merged
    loose = FaceDetector(str(tmp_path / f"{family}.onnx"), tiles=0, score=0.4, nms_iou=0.3)
    faces = loose.detect(grey_frame())
    assert len(faces) == 2
    assert_face(faces[1], FAINT, FAINT_PTS)
    assert faces[1].score == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("family", ["yunet", "scrfd", "retinaface"])
def test_a_small_face_is_found_through_a_tile_where_it_is(tmp_path, family):
    """The graph sees the face only when the input's first channel (B for YuNet and
    RetinaFace, R for SCRFD) is full over the planted box: in a 1280x720 frame that happens
    only in the right-hand tile of a 2x2 tiling."""
    outputs, scored = encoded(family, main_only=True)
    inset = (FACE[0] + 6, FACE[1] + 6, FACE[2] - 6, FACE[3] - 6)
    path = build(tmp_path / "gated.onnx", outputs,
                 gate=(family, scored, tuple(int(v) for v in inset)))
    # tiles=2: side ceil(2 * 1280 / 3) = 854, windows at x 0 and 426 (y 0: the frame is shorter)
    side, x0 = 854, 426
    scale = side / SIDE
    frame = grey_frame()
    fx0, fy0, fx1, fy1 = (round(v) for v in np.array(FACE) * scale + (x0, 0, x0, 0))
    # the face, where the right-hand tile puts the planted box, in the colour the graph reads
    frame[fy0:fy1, fx0:fx1] = FIRST_CHANNEL_RGB[family]
    tiled = FaceDetector(str(path), tiles=2)
    (face,) = tiled.detect(frame)
    assert_face(face, FACE, FACE_PTS, scale=scale, offset=(x0, 0.0), tol=1.5)
    assert face.score > 0.9
    assert FaceDetector(str(path), tiles=0).detect(frame) == []  # too small for the whole frame


def test_five_point_faces_align_to_the_template_and_track(tmp_path):
    det = FaceDetector(str(planted(tmp_path, "scrfd")), tiles=0)
    frame = grey_frame()
    per_frame = [det.detect(frame) for _ in range(4)]
    (track,) = track_faces(per_frame, min_hits=2)
    assert track.landmarks.shape == (4, 5, 2)
    face = per_frame[0][0]
    crop, m = align(frame, face.landmarks, template="ffhq_512", size=512)
    mapped = face.landmarks @ m[:, :2].T + m[:, 2]
    # planted landmarks have the template's shape: the eyes, nose and mouth corners land on it
    np.testing.assert_allclose(mapped, template_points("ffhq_512", 512, layout="5point"), atol=0.5)
    assert crop.shape == (512, 512, 3)


# ------------------------------------------------------------------ layouts that do not fit
def test_a_file_of_no_known_layout_is_refused_with_the_layouts(tmp_path):
    junk = build(tmp_path / "junk.onnx", [("out", np.zeros((1, 100, 7)))])
    with pytest.raises(ModelError, match=r"no known face detector layout.*cls_8.*loc"):
        FaceDetector(str(junk))
    no_kps, _ = scrfd_outputs([])
    six = build(tmp_path / "scrfd_nokps.onnx", no_kps[:6])
    with pytest.raises(ModelError, match="without key points"):
        FaceDetector(str(six), family="scrfd")


# ------------------------------------------------------------------ models add
@pytest.fixture
def private_models(tmp_path, monkeypatch):
    cache = tmp_path / "models"
    cache.mkdir()
    monkeypatch.setenv("VSREMASTER_MODELS", str(cache))
    return cache


def test_models_add_records_checks_and_refuses_an_altered_detector(private_models, tmp_path):
    outputs, _ = encoded("yunet")
    src = build(tmp_path / "face_detection_yunet_2023mar.onnx", outputs)
    with pytest.raises(ModelError, match="models add face_detection_yunet_2023mar.onnx"):
        FaceDetector("yunet-2023mar")  # not added yet: says what to bring
    report = add_model(src, "yunet-2023mar")
    assert report.status == "installed"
    record = read_record("yunet-2023mar")
    assert record["source"]["user"] == {"file": src.name, "sha256": sha256_file(src)}
    assert record["onnx_sha256"] == sha256_file(resolve_model("yunet-2023mar").path)
    assert record["verification"]["family"] == "yunet"
    det = FaceDetector("yunet-2023mar", tiles=0)
    assert det.family == "yunet"
    (face,) = det.detect(grey_frame())
    assert face.landmarks.shape == (5, 2)
    with (private_models / "yunet-2023mar.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumError, match="models add"):
        FaceDetector("yunet-2023mar")


def test_models_add_refuses_a_detector_of_another_layout(private_models, tmp_path):
    outputs, _ = encoded("retinaface")
    retina = build(tmp_path / "FaceDetector.onnx", outputs)
    with pytest.raises(ModelError, match=r"YuNet detector.*cls_8, cls_16, cls_32, obj_8.*"
                                         r"kps_32.*the file has.*loc"):
        add_model(retina, "yunet-2023mar")
    assert not (private_models / "yunet-2023mar.onnx").exists()
    assert add_model(retina, "retinaface-resnet50").status == "installed"
    # right names, wrong grid: outputs made for a 320 px input in a 640 px graph
    small, _ = yunet_outputs([], size=320)
    wrong = build(tmp_path / "yunet320.onnx", small)
    with pytest.raises(ModelError, match=r"cls_8 has shape \[1, 1600, 1\].*6400, 1600, 400"):
        add_model(wrong, "yunet-2023mar")
    # SCRFD with a dynamic input runs at the manifest's 640
    dyn, _ = encoded("scrfd")
    dynamic = build(tmp_path / "det_10g.onnx", dyn, input_shape=(1, 3, "h", "w"))
    assert add_model(dynamic, "scrfd-10g").status == "installed"
    assert FaceDetector("scrfd-10g").input_size == (SIDE, SIDE)
    pth = tmp_path / "det_10g.pth"
    pth.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="ONNX file"):
        add_model(pth, "scrfd-10g")


def test_faces_track_uses_the_added_detector(private_models, tmp_path, sample_clip):
    from typer.testing import CliRunner
    from vsremaster.cli import app

    outputs, _ = encoded("yunet", main_only=True)
    add_model(build(tmp_path / "face_detection_yunet_2023mar.onnx", outputs), "yunet-2023mar")
    out = tmp_path / "car.faces.json"
    result = CliRunner().invoke(app, [
        "faces", "track", str(sample_clip("carphone")), "-o", str(out), "--detector",
        "yunet-2023mar", "--tiles", "0", "--trim", "0:6", "--scenes", "none", "--no-preview",
        "--no-progress"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["detector"]["model"] == "yunet-2023mar" and data["detector"]["family"] == "yunet"
    assert data["detector"]["landmarks"][3:] == ["right_mouth_corner", "left_mouth_corner"]
    (track,) = data["tracks"]
    assert (track["start"], track["end"]) == (0, 6)
    # carphone is 176x144: the 640 input holds it at 640/176, so the face is FACE * 176/640
    np.testing.assert_allclose(track["boxes"][0], np.array(FACE) * 176 / SIDE, atol=1.0)
    assert np.array(track["landmarks"]).shape == (6, 5, 2)
