"""Face restoration: the user brings weights (`models add`: checkpoint -> ONNX, checked), and
`face_enhance` restores tracked faces of real footage (carphone) where they are.

No face-restoration weights ship in a registry package, so two kinds of models stand in:
- architecture-faithful exports: GFPGAN 1.4 and CodeFormer built by spandrel with their
  official hyper-parameters and random weights, saved as checkpoints the way the official
  files are, then converted by our converter (real graph, real I/O, real cost);
- tiny ONNX restorers with known behaviour (identity, "paint it white", contrast = weight),
  so that where and how the crop lands in the frame can be asserted exactly.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import vapoursynth as vs
from onnx import TensorProto, helper
from typer.testing import CliRunner
from vsremaster.cli import app
from vsremaster.encode.tools import ffmpeg_exe, vspipe_exe
from vsremaster.errors import ChecksumError, InputError, ModelError, ModelMissingError
from vsremaster.faces import FaceDetector, face_enhance, installed_face_model, scan_faces
from vsremaster.faces.align import align
from vsremaster.faces.restore import SKIN_REFERENCE, _face_weights, neutralise_colour
from vsremaster.faces.scan import frame_rgb
from vsremaster.models.store import models_dir, resolve_model
from vsremaster.models.user import add_model, random_checkpoint
from vsremaster.runtime.frames import to_rgb24

core = vs.core


def script_luma(script: Path, n: int) -> np.ndarray:
    """Frame ``n``'s luma (10-bit, 352x288) of a generated script, through vspipe."""
    y4m = subprocess.run([vspipe_exe(), "-c", "y4m", "-s", str(n), "-e", str(n), str(script),
                          "-"], capture_output=True, timeout=300)
    assert y4m.returncode == 0, y4m.stderr.decode()
    assert b"W352 H288" in y4m.stdout[:100]
    body = y4m.stdout[y4m.stdout.index(b"FRAME") + 6:]
    return np.frombuffer(body[: 352 * 288 * 2], np.uint16).reshape(288, 352)


def tiny_restorer(path: Path, kind: str, size: int = 512) -> Path:
    """A restorer ONNX with FaceFusion's I/O: 'identity', 'white' (every pixel 1.0), 'grey'
    (every pixel 0.5) or 'contrast' (output = input * weight, with a float64 'weight' input
    like CodeFormer)."""
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])
    inputs, inits = [image], []
    if kind == "identity":
        nodes = [helper.make_node("Identity", ["input"], ["output"])]
    elif kind in ("white", "grey"):
        inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                 helper.make_tensor("one", TensorProto.FLOAT, [], [1.0 if kind == "white" else 0.5])]
        nodes = [helper.make_node("Mul", ["input", "zero"], ["z"]),
                 helper.make_node("Add", ["z", "one"], ["output"])]
    else:
        inputs.append(helper.make_tensor_value_info("weight", TensorProto.DOUBLE, [1]))
        nodes = [helper.make_node("Cast", ["weight"], ["w"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["input", "w"], ["output"])]
    graph = helper.make_graph(nodes, kind, inputs, [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture
def private_models(tmp_path, monkeypatch):
    """A model cache with no face restorer, with the installed BlazeFace and animevideov3-x2."""
    cache = tmp_path / "models"
    cache.mkdir()
    for model_id in ("blazeface-back-256", "realesr-animevideov3-x2"):
        for suffix in (".onnx", ".json"):
            os.link(models_dir() / f"{model_id}{suffix}", cache / f"{model_id}{suffix}")
    monkeypatch.setenv("VSREMASTER_MODELS", str(cache))
    return cache


@pytest.fixture(scope="module")
def carphone(sample_clip):
    """12 frames of real footage with one face (176x144) and its tracks."""
    clip = core.bs.VideoSource(str(sample_clip("carphone")))[50:62]
    scan = scan_faces(clip, FaceDetector(tiles=0), cuts=[])
    assert len(scan.tracks) == 1 and (scan.tracks[0].start, scan.tracks[0].end) == (0, 12)
    return clip, scan


def planes(clip, n):
    f = clip.get_frame(n)
    return np.dstack([np.asarray(f[p], np.float64) for p in range(f.format.num_planes)]) \
        if f.format.color_family == vs.RGB else np.asarray(f[0], np.float64)


def psnr(a, b, peak=255.0):
    return 10 * np.log10(peak**2 / max(np.mean((a - b) ** 2), 1e-12))


# ------------------------------------------------------------------ geometry and colour
def test_identity_restorer_is_invisible_at_source_size_and_after_upscaling(carphone, tmp_path):
    clip, scan = carphone
    model = tiny_restorer(tmp_path / "id.onnx", "identity")
    rgb = to_rgb24(clip, "test")
    out = face_enhance(rgb, scan, model=model, strength=1.0)
    assert out.format.name == "RGB24" and out.num_frames == 12
    assert psnr(planes(out, 6), planes(rgb, 6)) > 38
    up = core.resize.Spline36(rgb, 352 * 2, 288 * 2)  # 4x the 176x144 source
    out_up = face_enhance(up, scan, model=model, strength=1.0)
    assert psnr(planes(out_up, 6), planes(up, 6)) > 38


@pytest.mark.parametrize("scale", [1, 4])
def test_restored_face_lands_on_the_tracked_face(carphone, tmp_path, scale):
    clip, scan = carphone
    model = tiny_restorer(tmp_path / "white.onnx", "white")
    src = core.resize.Spline36(clip, clip.width * scale, clip.height * scale)
    out = face_enhance(src, scan, model=model, strength=1.0, fade=0)
    changed = np.abs(planes(out, 6) - planes(src, 6)) > 8
    ys, xs = np.nonzero(changed)
    x0, y0, x1, y1 = scan.tracks[0].boxes[6]
    cx, cy, side = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale, (x1 - x0) * scale
    # the whole face is restored; the FFHQ crop is centred on it sideways and reaches up
    # to the hair (its centre is above the face's)
    inside = changed[int(y0 * scale):int(y1 * scale), int(x0 * scale):int(x1 * scale)]
    assert inside.mean() > 0.97
    assert abs(xs.mean() - cx) < 0.15 * side and cy - 0.5 * side < ys.mean() < cy
    assert xs.min() > cx - 1.6 * side and xs.max() < cx + 1.6 * side
    # the parts of the frame far from the face are untouched
    assert not changed[:, : max(1, int(cx - 1.6 * side))].any()


def test_yuv_frame_outside_the_pasted_face_stays_bit_exact(carphone, tmp_path):
    clip, scan = carphone  # YUV420P8: the model works in RGB float
    out = face_enhance(clip, scan, model=tiny_restorer(tmp_path / "id.onnx", "identity"),
                       strength=1.0)
    x0, y0, x1, y1 = scan.tracks[0].boxes[6]
    reach = 1.7 * (x1 - x0)  # the FFHQ crop around the face, and a margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    src, got = clip.get_frame(6), out.get_frame(6)
    for p, sub in ((0, 1), (1, 2), (2, 2)):
        changed = np.asarray(src[p]) != np.asarray(got[p])
        ys, xs = np.nonzero(changed)
        assert changed.any()  # the face area did take the round trip
        assert (np.abs(xs * sub - cx) < reach).all() and (np.abs(ys * sub - cy) < reach).all()


def test_strength_min_face_and_fade(carphone, tmp_path):
    clip, scan = carphone
    model = tiny_restorer(tmp_path / "white.onnx", "white")

    def change(node, n):
        return np.abs(planes(node, n) - planes(clip, n)).mean()

    full = face_enhance(clip, scan, model=model, strength=1.0, fade=0)
    half = face_enhance(clip, scan, model=model, strength=0.5, fade=0)
    assert change(half, 6) == pytest.approx(change(full, 6) / 2, rel=0.1)
    side = scan.tracks[0].boxes[:, 2] - scan.tracks[0].boxes[:, 0]
    skipped = face_enhance(clip, scan, model=model, min_face=float(side.max()) + 10)
    assert skipped is clip  # nothing to do: the very same clip
    # a track born inside a shot fades in (one that starts at a cut would appear at once)
    track = scan.tracks[0]
    late = replace(scan, tracks=[replace(track, start=1, end=13)], num_frames=13, cuts=[])
    longer = clip[0] + clip
    faded = face_enhance(longer, late, model=model, strength=1.0, fade=4)
    steps = [np.abs(planes(faded, n) - planes(longer, n)).mean() for n in (0, 1, 2, 6)]
    assert steps[0] == 0 and 0 < steps[1] < steps[2] < steps[3]


def test_fidelity_reaches_the_weight_input_and_is_refused_without_one(carphone, tmp_path):
    clip, scan = carphone
    rgb = to_rgb24(clip, "test")
    model = tiny_restorer(tmp_path / "w.onnx", "contrast")
    one = face_enhance(rgb, scan, model=model, fidelity=1.0, strength=1.0, neutralise=False)
    low = face_enhance(rgb, scan, model=model, fidelity=0.2, strength=1.0, neutralise=False)
    assert psnr(planes(one, 6), planes(rgb, 6)) > 38  # w = 1 is the identity here
    assert psnr(planes(low, 6), planes(rgb, 6)) < 25
    with pytest.raises(InputError, match="no fidelity input"):
        face_enhance(rgb, scan, model=tiny_restorer(tmp_path / "i.onnx", "identity"), fidelity=0.5)


def test_stage_light_is_neutralised_for_the_restorer_and_put_back(carphone, tmp_path):
    clip, scan = carphone
    rgb = frame_rgb(to_rgb24(clip, "test").get_frame(6)).astype(np.float32) / 255
    red = rgb * np.array([1.0, 0.25, 0.2], np.float32)  # a face under deep red light
    crop, _ = align(red, scan.tracks[0].landmarks[6], size=512)
    neutral, gains = neutralise_colour(np.clip(crop, 0, 1), _face_weights(512))
    w = _face_weights(512)[..., None]
    mean = (neutral * w).sum((0, 1)) / w.sum()
    assert np.allclose(mean / mean[0], SKIN_REFERENCE, rtol=0.1)  # what the restorer sees
    assert gains[1] > 2 and gains[2] > 2
    # and the red comes back: an identity restorer leaves the red face as it was
    node = core.std.BlankClip(format=vs.RGBS, width=176, height=144, length=12)

    def put(n, f):
        g = f.copy()
        for p in range(3):
            np.copyto(np.asarray(g[p]), red[..., p])
        return g

    red_clip = core.std.ModifyFrame(node, node, put)
    out = face_enhance(red_clip, scan, model=tiny_restorer(tmp_path / "id.onnx", "identity"),
                       strength=1.0)
    got = planes(out, 6)
    assert np.abs(got - red).max() < 0.02


# ------------------------------------------------------------------ models the user brings
def test_colour_gains_follow_the_light_not_its_flicker(carphone, tmp_path):
    clip, scan = carphone
    rgb = core.resize.Point(to_rgb24(clip, "test"), format=vs.RGBS)
    warm = [1.0 + (0.15 if n % 2 else -0.15) for n in range(rgb.num_frames)]  # strobing red

    def strobe(n, f):
        g = f.copy()
        np.asarray(g[0])[...] *= warm[n]
        return g

    lit = core.std.ModifyFrame(rgb, rgb, strobe)
    # A restorer that paints the crop grey shows the gains: the pasted face is 0.5 / gains.
    out = face_enhance(lit, scan, model=tiny_restorer(tmp_path / "g.onnx", "grey"),
                       strength=1.0, fade=0)
    x0, y0, x1, y1 = scan.tracks[0].boxes[6].astype(int)

    def red_share(node, n):
        face = planes(node, n)[y0 + 4:y1 - 4, x0 + 4:x1 - 4]
        return face[..., 0].mean() / face[..., 1].mean()

    frames = range(3, 9)
    lit_ratio = [red_share(lit, n) for n in frames]
    out_ratio = [red_share(out, n) for n in frames]
    lit_flicker = np.std(lit_ratio) / np.mean(lit_ratio)
    out_flicker = np.std(out_ratio) / np.mean(out_ratio)
    assert lit_flicker > 0.1
    assert out_flicker < 0.25 * lit_flicker  # per-frame gains would flicker like the light
    # ... while a steady cast still sets the gains: more red light, more red put back
    steady = core.std.ModifyFrame(rgb, rgb, lambda n, f: strobe(1, f))
    tinted = face_enhance(steady, scan, model=tiny_restorer(tmp_path / "g.onnx", "grey"),
                          strength=1.0, fade=0)
    assert red_share(tinted, 6) > 1.1 * np.mean(out_ratio)


def test_no_face_model_installed_says_what_to_bring(private_models, carphone):
    with pytest.raises(ModelMissingError, match=r"GFPGANv1\.4\.pth.*models add"):
        installed_face_model()
    with pytest.raises(ModelMissingError, match="models add GFPGANv1.4.pth --as gfpgan-1.4"):
        face_enhance(carphone[0], carphone[1], model="gfpgan-1.4")


def test_onnx_restorer_is_added_checked_recorded_and_tamper_refused(private_models, tmp_path):
    model = tiny_restorer(tmp_path / "gfpgan_1.4.onnx", "identity")
    report = add_model(model, "gfpgan-1.4")
    assert report.status == "installed"
    assert installed_face_model() == "gfpgan-1.4"
    path = resolve_model("gfpgan-1.4").path
    with pytest.raises(ModelError, match="256, 256"):  # GPEN-256 needs a 256 crop
        add_model(model, "gpen-bfr-256")
    assert not (private_models / "gpen-bfr-256.onnx").exists()
    with pytest.raises(ModelError, match="registry package"):
        add_model(model, "realesrgan-x4plus")
    with path.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumError, match="models add"):
        resolve_model("gfpgan-1.4")


def test_hostile_checkpoints_are_refused(private_models, tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    evil = tmp_path / "GFPGANv1.4.pth"
    evil.write_bytes(pickle.dumps({"params_ema": Payload()}))
    with pytest.raises(ModelError, match="weights_only"):
        add_model(evil, "gfpgan-1.4")
    assert not Path("pwned").exists() and not (private_models / "gfpgan-1.4.onnx").exists()
    junk = tmp_path / "codeformer.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        add_model(junk, "codeformer")


def test_script_uses_the_face_path_when_a_face_model_is_installed(private_models, tmp_path,
                                                                  sample_clip):
    src = str(sample_clip("carphone"))
    vpy = tmp_path / "car's $(x).vpy"
    args = ["script", src, "-o", str(vpy), "--no-analysis", "--model", "realesr-animevideov3-x2",
            "--trim", "50:74", "--no-progress"]
    without = CliRunner().invoke(app, args)
    assert without.exit_code == 0, without.output
    assert "no face-restoration model is installed" in without.output
    assert "clip = vsr.face_enhance(" not in vpy.read_text()
    add_model(tiny_restorer(tmp_path / "gfpgan_1.4.onnx", "white"), "gfpgan-1.4")
    found = CliRunner().invoke(app, args)
    assert found.exit_code == 0, found.output
    text = vpy.read_text()
    sidecar = vpy.with_suffix(".faces.json")
    assert "clip = vsr.face_enhance(" in text and repr(str(sidecar.resolve())) in text
    assert "1 track(s)" in found.output and json.loads(sidecar.read_text())["tracks"]
    # the script runs: faces restored (here: painted white) in the 2x upscaled frames
    with_faces = script_luma(vpy, 10)
    other = CliRunner().invoke(app, [*args, "--face-detector", "blazeface-front-128"])
    assert other.exit_code == 0 and "blazeface-front-128" in other.output  # not installed here
    assert "clip = vsr.face_enhance(" not in vpy.read_text()
    off = CliRunner().invoke(app, [*args, "--faces", "off"])
    assert off.exit_code == 0 and "clip = vsr.face_enhance(" not in vpy.read_text()
    plain = script_luma(vpy, 10)
    box = json.loads(sidecar.read_text())["tracks"][0]["boxes"][10]
    x0, y0, x1, y1 = (int(v * 2) for v in box)
    assert with_faces[y0:y1, x0:x1].mean() > plain[y0:y1, x0:x1].mean() + 100


def test_interlaced_sources_get_the_face_path_on_the_bobbed_frames(private_models, tmp_path,
                                                                   sample_clip):
    """The script bobs an interlaced source to double rate; the face pass scans it bobbed, so
    the tracks number the deinterlaced frames and face_enhance lands on the face."""
    from vsremaster.training.degrade.interlace import interlace

    clip = interlace(core.bs.VideoSource(str(sample_clip("carphone")))[40:88], tff=True)
    src = tmp_path / "car interlaced.mkv"  # 24 frames of TFF fields, lossless
    raw = b"".join(np.asarray(f[p]).tobytes() for f in clip.frames() for p in range(3))
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "rawvideo",
                    "-pix_fmt", "yuv420p", "-s", "176x144", "-r", "15", "-i", "-",
                    "-c:v", "ffv1", "-field_order", "tt", str(src)], input=raw, check=True)
    add_model(tiny_restorer(tmp_path / "gfpgan_1.4.onnx", "white"), "gfpgan-1.4")
    vpy = tmp_path / "car.vpy"
    args = ["script", str(src), "-o", str(vpy), "--no-analysis", "--field-order", "tff",
            "--model", "realesr-animevideov3-x2", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "clip = vsr.deinterlace(" in vpy.read_text()
    assert "clip = vsr.face_enhance(" in vpy.read_text() and "(bobbed frames)" in result.output
    data = json.loads(vpy.with_suffix(".faces.json").read_text())
    assert data["clip"]["num_frames"] == 48 and data["source"]["bob"] == "tff"
    assert len(data["tracks"]) == 1 and data["tracks"][0]["end"] == 48
    with_faces = script_luma(vpy, 31)  # an odd frame: the bottom field's picture
    # a rerun keeps the tracks of the same source file, field order and detector
    made = vpy.with_suffix(".faces.json").stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "faces: reusing" in again.output
    assert vpy.with_suffix(".faces.json").stat().st_mtime_ns == made
    assert "faces: reusing" not in CliRunner().invoke(app, [*args, "--fresh"]).output
    assert CliRunner().invoke(app, [*args, "--faces", "off"]).exit_code == 0
    plain = script_luma(vpy, 31)
    x0, y0, x1, y1 = (int(v * 2) for v in data["tracks"][0]["boxes"][31])
    assert with_faces[y0:y1, x0:x1].mean() > plain[y0:y1, x0:x1].mean() + 100
    # `faces track --field-order tff` makes the same tracks, and its preview bobs to match
    sidecar = tmp_path / "by hand.faces.json"
    result = CliRunner().invoke(app, ["faces", "track", str(src), "-o", str(sidecar),
                                      "--field-order", "tff", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(sidecar.read_text())["tracks"] == data["tracks"]
    info = subprocess.run([vspipe_exe(), "--info", str(sidecar.with_suffix(".vpy")), "-"],
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0, info.stderr
    assert "Frames: 48" in info.stdout


@pytest.mark.slow
def test_checkpoints_convert_and_restore_real_footage(private_models, tmp_path, carphone):
    clip, scan = carphone
    gfpgan = random_checkpoint("GFPGAN", tmp_path / "GFPGANv1.4.pth")
    with pytest.raises(ModelError, match="is a GFPGAN network, not CodeFormer"):
        add_model(gfpgan, "codeformer")
    result = CliRunner().invoke(app, ["models", "add", str(gfpgan), "--as", "gfpgan-1.4"])
    assert result.exit_code == 0, result.output
    report = add_model(random_checkpoint("CodeFormer", tmp_path / "codeformer.pth"), "codeformer")
    assert report.max_abs_error is not None and report.max_abs_error <= 1e-3
    record = json.loads((private_models / "gfpgan-1.4.json").read_text())
    assert record["verification"]["architecture"] == "GFPGAN"
    assert record["verification"]["max_abs_error"] <= 1e-3
    assert len(record["source"]["user"]["sha256"]) == 64
    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--json"]).stdout)
    assert {r["id"] for r in listed if r["installed"]} >= {"gfpgan-1.4", "codeformer"}
    # the real GFPGAN graph restores the tracked face of real footage, and only there
    out = face_enhance(clip, scan, model="gfpgan-1.4")
    f = out.get_frame(6)
    assert f.props["VSRFaces"] == 1 and f.props["VSRFaceSeconds"] > 0
    diff = np.abs(np.asarray(f[0], np.float64) - planes(clip, 6))
    x0, y0, x1, y1 = scan.tracks[0].boxes[6]
    assert diff[int(y0):int(y1), int(x0):int(x1)].mean() > 5  # random weights: a changed face
    white = face_enhance(clip, scan, model=tiny_restorer(tmp_path / "w.onnx", "white"), fade=0)
    ys, xs = np.nonzero(np.abs(planes(white, 6) - planes(clip, 6)))
    outside = np.ones_like(diff, bool)
    outside[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = False
    assert diff[outside].max() == 0  # same paste geometry: nothing outside the face's crop
    # CodeFormer's fidelity input is live in the export
    cf = face_enhance(clip, scan, model="codeformer", fidelity=0.0)
    cf1 = face_enhance(clip, scan, model="codeformer", fidelity=1.0)
    assert np.abs(planes(cf, 6) - planes(cf1, 6)).mean() > 0.5


@pytest.mark.slow
def test_restoreformer_checkpoint_converts_and_restores_the_tracked_face(private_models,
                                                                         tmp_path, carphone):
    clip, scan = carphone
    ckpt = random_checkpoint("RestoreFormer", tmp_path / "RestoreFormer.pth")
    with pytest.raises(ModelError, match="is a RestoreFormer network, not GFPGAN"):
        add_model(ckpt, "gfpgan-1.4")
    report = add_model(ckpt, "restoreformer")
    assert report.max_abs_error is not None and report.max_abs_error <= 1e-3
    f = face_enhance(clip, scan, model="restoreformer").get_frame(6)
    assert f.props["VSRFaces"] == 1
    diff = np.abs(np.asarray(f[0], np.float64) - planes(clip, 6))
    x0, y0, x1, y1 = (int(v) for v in scan.tracks[0].boxes[6])
    assert diff[y0:y1, x0:x1].mean() > 5  # random weights: the face changed
    assert diff[:, : max(x0 - 40, 1)].max() == 0  # and nothing far from it
