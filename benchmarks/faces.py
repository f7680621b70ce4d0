"""Benchmark: face detection + tracking on real faces — recall, box jitter, cuts, speed.

Clips (all real faces; two built from real photographs with a documented camera path):

- ``carphone``: real footage, a man talking in a car (176×144, 120 frames). Truth: his face is
  in every frame (checked by eye); no truth box, so IoU-to-truth is not reported.
- ``portrait``: the ``portrait`` photograph (320×320) moved over a real 720×480 background
  (a vtest frame) by a camera path: scale 0.35-0.75 (face about 45-90 px), centre on
  Lissajous curves (±200, ±80 px), rotation ±6°, Gaussian noise σ 3; frames 60-63 are
  covered by a grey bar (a hand in front of the face: 4 missed frames to bridge). At frame
  150 a cut to a second shot: same photo framed where shot 1 ended (the multi-camera cut an
  IoU tracker would bridge) over another background (a bikes frame), 150 more frames.
- ``messi``: the ``messi`` photograph zoomed out from 1.3 to 0.8 and panned across 720×480
  (his face about 30-48 px, small SD faces), 150 frames, noise σ 3.

Truth boxes of the photo clips are seeded: BlazeFace's box on the still photograph at full
size, its corners mapped through each frame's camera transform (axis-aligned bounding box).

Reported per clip: detection recall (per-frame detections, IoU >= 0.5 with the truth),
track recall (smoothed track boxes), box-centre jitter (mean |c[t+1] - 2c[t] + c[t-1]| /
sqrt(w h)) of the truth, the per-frame detections and the tracks, the same about the truth
(the truth's centre taken out of each box first, so the camera path's own acceleration does
not count: what is left is the jitter the viewer would see), mean IoU of the tracks with
the per-frame detections and with the truth, tracks crossing a scene cut, detector gaps of
<= 5 frames and how many the tracks bridged; then the cost of the face pass on 720×480
street footage (``vtest``, pedestrians seen from above: a few real 14-20 px faces in some
frames, none in most) against a 720×480 → 4× upscale chain (Real-ESRGAN animevideo v3 x4, the fastest 4×
model; the x4plus chain is 20-30× slower still); then the cost per face of ``face_enhance``
with GFPGAN 1.4 and CodeFormer graphs (random weights, see :func:`restore_cost`) at the
source size and pasted into a 4× frame.

    python benchmarks/faces.py --record
"""

from __future__ import annotations

import argparse
import math
import time

import cv2
import numpy as np
import onnxruntime
import vapoursynth as vs

from vsremaster.faces import FaceDetector, box_iou, centre_jitter, scan_faces
from vsremaster.faces.scan import frame_rgb
from vsremaster.runtime.frames import to_rgb24
from vsremaster.samples import sample_path
from vsremaster.stages.upscale import upscale

from _common import record

core = vs.core
W, H = 720, 480


def _frame(clip: vs.VideoNode, n: int, size: tuple[int, int] | None = None) -> np.ndarray:
    img = frame_rgb(to_rgb24(clip, "bench").get_frame(n))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size else img


def _still(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(sample_path(name))), cv2.COLOR_BGR2RGB)


def _seed_box(photo: np.ndarray) -> np.ndarray:
    """The face box on the still photograph (largest detection), the truth's seed."""
    faces = FaceDetector(tiles=2).detect(photo)
    best = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    return np.array(best.box)


def _moving(photo, background, path, seed_box, noise, rng, occlude=()):
    """Frames of ``photo`` warped by ``path`` (list of 2x3 affines) over ``background``."""
    frames, truth = [], []
    x0, y0, x1, y1 = seed_box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]]).T
    mask = np.ones(photo.shape[:2], np.float32)
    for k, m in enumerate(path):
        warped = cv2.warpAffine(photo, m, (W, H), flags=cv2.INTER_AREA)
        alpha = cv2.warpAffine(mask, m, (W, H))[..., None]
        img = background * (1 - alpha) + warped * alpha
        pts = m @ corners
        box = np.array([pts[0].min(), pts[1].min(), pts[0].max(), pts[1].max()])
        if k in occlude:  # a grey bar across the face
            cy = (box[1] + box[3]) / 2
            img[int(cy - 0.45 * (box[3] - box[1])):int(cy + 0.45 * (box[3] - box[1])),
                int(box[0] - 10):int(box[2] + 10)] = 128
        img = img + rng.normal(0, noise, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        truth.append(box)
    return frames, np.array(truth)


def _affine(cx, cy, scale, angle_deg, photo_shape):
    ph, pw = photo_shape[:2]
    m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle_deg, scale)
    m[:, 2] += (cx - pw / 2, cy - ph / 2)
    return m


def _to_clip(frames: list[np.ndarray], fps=(30000, 1001)) -> vs.VideoNode:
    blank = core.std.BlankClip(width=W, height=H, format=vs.RGB24, length=len(frames),
                               fpsnum=fps[0], fpsden=fps[1])

    def put(n, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n][..., p])
        return out

    rgb = core.std.ModifyFrame(blank, blank, put)
    return core.resize.Bicubic(rgb, format=vs.YUV420P8, matrix_s="170m")


def build_portrait(rng):
    photo = _still("portrait")
    seed = _seed_box(photo)
    vt = core.bs.VideoSource(str(sample_path("vtest")))
    bikes = core.bs.VideoSource(str(sample_path("bikes")))
    bg1 = _frame(vt, 100)[48:528, 24:744].astype(np.float32)
    bg2 = _frame(bikes, 120, (W, H)).astype(np.float32)
    t = np.arange(150)
    path1 = [_affine(360 + 200 * math.sin(2 * math.pi * k / 110), 240 + 80 * math.sin(2 * math.pi * k / 70 + 1),
                     0.55 + 0.2 * math.sin(2 * math.pi * k / 150), 6 * math.sin(2 * math.pi * k / 90),
                     photo.shape) for k in t]
    f1, t1 = _moving(photo, bg1, path1, seed, 3.0, rng, occlude=range(60, 64))
    last = path1[-1]  # shot 2 starts framed like shot 1 ended, then moves its own way
    c0 = last @ np.array([photo.shape[1] / 2, photo.shape[0] / 2, 1])
    path2 = [_affine(c0[0] - 120 * math.sin(2 * math.pi * k / 130), c0[1] + 50 * math.sin(2 * math.pi * k / 90),
                     math.hypot(*last[0, :2]) * (1 + 0.15 * math.sin(2 * math.pi * k / 100)),
                     math.degrees(math.atan2(-last[0, 1], last[0, 0])), photo.shape) for k in t]
    f2, t2 = _moving(photo, bg2, path2, seed, 3.0, rng)
    return f1 + f2, np.concatenate([t1, t2]), [150]


def build_messi(rng):
    photo = _still("messi")
    seed = _seed_box(photo)
    ph, pw = photo.shape[:2]
    frames, truth = [], []
    path = []
    for k in range(150):
        s = 1.3 - 0.5 * k / 149
        # keep the face inside the frame while panning: centre the photo's face region
        fx, fy = (seed[0] + seed[2]) / 2, (seed[1] + seed[3]) / 2
        cx = 360 + 150 * math.sin(2 * math.pi * k / 150) - s * (fx - pw / 2)
        cy = 240 + 40 * math.sin(2 * math.pi * k / 75) - s * (fy - ph / 2)
        path.append(_affine(cx, cy, s, 0.0, photo.shape))
    background = np.full((H, W, 3), 40, np.float32)
    frames, truth = _moving(photo, background, path, seed, 3.0, rng)
    return frames, truth, []


def error_jitter(boxes: np.ndarray, truth: np.ndarray) -> float:
    """Jitter about the truth: ``centre_jitter`` of the boxes with the truth's motion taken
    out (each box moved by minus its truth centre, keeping its size), so a camera path's own
    acceleration does not count; rows without a box are skipped."""
    shift = (truth[:, :2] + truth[:, 2:]) / 2
    return centre_jitter(boxes - np.hstack([shift, shift]))


def evaluate(name, clip, truth, cuts, detector, present=None):
    start = time.perf_counter()
    scan = scan_faces(clip, detector, keep_detections=True)
    seconds = time.perf_counter() - start
    n = clip.num_frames
    dets = scan.detections
    # per-frame detection closest to the truth (or the best-scoring one without a truth box)
    raw = np.full((n, 4), np.nan)
    for i, found in enumerate(dets):
        if not found:
            continue
        if truth is not None:
            ious = box_iou(truth[i], np.array([d.box for d in found]))[0]
            raw[i] = found[int(np.argmax(ious))].box
        else:
            raw[i] = found[0].box
    # per frame, the track box closest to the truth (or to the per-frame detection); tracks
    # that never meet the face are counted as false tracks
    tracked = np.full((n, 4), np.nan)
    best = np.zeros(n)
    ref = truth if truth is not None else raw
    false_tracks = 0
    for t in scan.tracks:
        met = False
        for row, i in enumerate(range(t.start, t.end)):
            iou = box_iou(t.boxes[row], ref[i])[0, 0] if not np.isnan(ref[i, 0]) else 0.0
            met |= iou >= 0.3
            if iou > best[i] or np.isnan(tracked[i, 0]):
                best[i], tracked[i] = iou, t.boxes[row]
        false_tracks += not met
    has_raw, has_track = ~np.isnan(raw[:, 0]), ~np.isnan(tracked[:, 0])
    if truth is not None:
        det_hit = np.array([has_raw[i] and box_iou(raw[i], truth[i])[0, 0] >= 0.5 for i in range(n)])
        trk_hit = np.array([has_track[i] and box_iou(tracked[i], truth[i])[0, 0] >= 0.5 for i in range(n)])
        iou_truth_trk = np.nanmean([box_iou(tracked[i], truth[i])[0, 0] if has_track[i] else np.nan for i in range(n)])
        iou_truth_raw = np.nanmean([box_iou(raw[i], truth[i])[0, 0] if has_raw[i] else np.nan for i in range(n)])
    else:
        det_hit, trk_hit = has_raw, has_track
        iou_truth_trk = iou_truth_raw = float("nan")
    both = has_raw & has_track
    iou_det = float(np.mean([box_iou(tracked[i], raw[i])[0, 0] for i in np.flatnonzero(both)]))
    bounds = [0, *cuts, n]
    jit = {"truth": [], "raw": [], "track": [], "raw_err": [], "track_err": []}
    for a, b in zip(bounds, bounds[1:]):  # jitter within shots only
        if truth is not None:
            jit["truth"].append(centre_jitter(truth[a:b]))
            jit["raw_err"].append(error_jitter(raw[a:b], truth[a:b]))
            jit["track_err"].append(error_jitter(tracked[a:b], truth[a:b]))
        jit["raw"].append(centre_jitter(raw[a:b]))
        jit["track"].append(centre_jitter(tracked[a:b]))
    jit = {k: float(np.mean(v)) if v else float("nan") for k, v in jit.items()}
    crossing = sum(1 for t in scan.tracks for c in cuts if t.start < c < t.end)
    # detector gaps of <= 5 frames inside shots, and whether a track covers them
    gaps = bridged = 0
    for a, b in zip(bounds, bounds[1:]):
        i = a
        while i < b:
            if not has_raw[i]:
                j = i
                while j < b and not has_raw[j]:
                    j += 1
                if i > a and j < b and j - i <= 5:
                    gaps += 1
                    bridged += bool(has_track[i:j].all())
                i = j
            else:
                i += 1
    return {
        "clip": name, "frames": n, "cuts": len(cuts), "found_cuts": scan.cuts,
        "det_recall": det_hit.mean(), "trk_recall": trk_hit.mean(),
        "jit_truth": jit["truth"], "jit_raw": jit["raw"], "jit_track": jit["track"],
        "jit_raw_err": jit["raw_err"], "jit_track_err": jit["track_err"],
        "iou_det": iou_det, "iou_truth_trk": iou_truth_trk, "iou_truth_raw": iou_truth_raw,
        "crossing": crossing, "gaps": gaps, "bridged": bridged, "tracks": len(scan.tracks),
        "false_tracks": false_tracks,
        "fps": n / seconds,
    }


def cost_vs_chain(frames: int, args_score: float) -> dict:
    """Face pass vs a 720x480 -> 4x chain on SD street footage (vtest cropped; pedestrians,
    a few small faces in some frames)."""
    src = core.bs.VideoSource(str(sample_path("vtest")))[200:200 + frames]
    src = core.std.Crop(src, 24, 24, 48, 48)
    out = {}
    for tiles in (3, 0):
        start = time.perf_counter()
        scan = scan_faces(src, FaceDetector(score=args_score, tiles=tiles))
        out[f"face_s_per_frame_t{tiles}"] = (time.perf_counter() - start) / frames
        out[f"faces_found_t{tiles}"] = scan.stats["detections"]
    chain = upscale(core.resize.Bicubic(src, format=vs.RGBS, matrix_in_s="470bg"),
                    "realesr-animevideov3-x4", backend="cpu")
    chain.get_frame(0)  # session start
    start = time.perf_counter()
    for i in range(1, min(frames, 4)):
        chain.get_frame(i)
    out["chain_s_per_frame"] = (time.perf_counter() - start) / (min(frames, 4) - 1)
    return out


def restore_cost(clip: vs.VideoNode, detector: FaceDetector, frames: int) -> list[dict]:
    """Cost per face of face_enhance with GFPGAN 1.4 and CodeFormer graphs (official
    architecture and hyper-parameters, random weights: the official weights cannot ship, the
    compute is the same), converted by our converter into a temporary model cache."""
    import os
    import tempfile
    from pathlib import Path

    from vsremaster.faces import face_enhance
    from vsremaster.models.user import add_model, random_checkpoint

    scan = scan_faces(clip, detector)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VSREMASTER_MODELS"] = tmp
        try:
            for model_id, arch in (("gfpgan-1.4", "GFPGAN"), ("codeformer", "CodeFormer")):
                start = time.perf_counter()
                add_model(random_checkpoint(arch, Path(tmp) / f"{arch}.pth"), model_id)
                convert = time.perf_counter() - start
                for scale in (1, 4):
                    src = clip if scale == 1 else core.resize.Spline36(
                        clip, clip.width * scale, clip.height * scale)
                    out = face_enhance(src, scan, model=model_id)
                    out.get_frame(0)  # session start
                    faces = seconds = 0.0
                    start = time.perf_counter()
                    for n in range(1, frames + 1):
                        f = out.get_frame(n)
                        faces += f.props.get("VSRFaces", 0)
                        seconds += f.props.get("VSRFaceSeconds", 0.0)
                    rows.append({"model": model_id, "frame": f"{src.width}x{src.height}",
                                 "faces": int(faces), "s_per_face": seconds / max(faces, 1),
                                 "s_per_frame": (time.perf_counter() - start) / frames,
                                 "convert_s": convert})
        finally:
            del os.environ["VSREMASTER_MODELS"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true", help="append the tables to RESULTS.md")
    ap.add_argument("--cost-frames", type=int, default=30, help="frames for the cost comparison")
    ap.add_argument("--score", type=float, default=FaceDetector.score, help="detector threshold")
    ap.add_argument("--restore-frames", type=int, default=4, help="frames for the restoration cost")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    detector = FaceDetector(score=args.score)
    rows = [evaluate("carphone", core.bs.VideoSource(str(sample_path("carphone"))), None, [], detector)]
    frames, truth, cuts = build_portrait(rng)
    portrait = _to_clip(frames)
    rows.append(evaluate("portrait (path + cut + occlusion)", portrait, truth, cuts, detector))
    frames, truth, cuts = build_messi(rng)
    rows.append(evaluate("messi (small face, zoom + pan)", _to_clip(frames), truth, cuts, detector))
    head = ("| clip | frames | cuts (found) | detection recall | track recall | jitter truth | "
            "jitter per-frame | jitter tracked | tracked / per-frame | jitter about the truth: "
            "per-frame / tracked (ratio) | IoU track vs per-frame | "
            "IoU vs truth: track / per-frame | tracks crossing a cut | gaps <= 5 bridged | tracks (off the face) | face pass fps |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        truth_iou = ("-" if math.isnan(r["iou_truth_trk"])
                     else f"{r['iou_truth_trk']:.3f} / {r['iou_truth_raw']:.3f}")
        jt = "-" if math.isnan(r["jit_truth"]) else f"{r['jit_truth']:.4f}"
        je = ("-" if math.isnan(r["jit_truth"]) else f"{r['jit_raw_err']:.4f} / "
              f"{r['jit_track_err']:.4f} ({r['jit_track_err'] / r['jit_raw_err']:.2f})")
        lines.append(
            f"| {r['clip']} | {r['frames']} | {r['cuts']} ({r['found_cuts']}) | {r['det_recall']:.3f} | "
            f"{r['trk_recall']:.3f} | {jt} | {r['jit_raw']:.4f} | {r['jit_track']:.4f} | "
            f"{r['jit_track'] / r['jit_raw']:.2f} | {je} | {r['iou_det']:.3f} | {truth_iou} | {r['crossing']} | "
            f"{r['bridged']}/{r['gaps']} | {r['tracks']} ({r['false_tracks']}) | {r['fps']:.1f} |")
    table = head + "\n".join(lines) + "\n"
    cost = cost_vs_chain(args.cost_frames, args.score)
    table += (
        "\n| face pass on 720x480 street footage (vtest) | s/frame | faces found | share of a 720x480 -> 4x chain |\n"
        "|---|---|---|---|\n"
        f"| detection, 3x3 tiles + whole frame (default) | {cost['face_s_per_frame_t3']:.4f} | "
        f"{cost['faces_found_t3']} | {100 * cost['face_s_per_frame_t3'] / cost['chain_s_per_frame']:.1f} % |\n"
        f"| detection, whole frame only | {cost['face_s_per_frame_t0']:.4f} | {cost['faces_found_t0']} | "
        f"{100 * cost['face_s_per_frame_t0'] / cost['chain_s_per_frame']:.1f} % |\n"
        f"| chain: Real-ESRGAN animevideo v3 x4 (CPU) | {cost['chain_s_per_frame']:.3f} | | 100 % |\n")
    restore = restore_cost(portrait[:args.restore_frames + 1], detector, args.restore_frames)
    table += ("\n| face_enhance on portrait (one 45-90 px face), CPU | frame | faces | s per face | "
              "s per frame | checkpoint -> ONNX conversion s |\n|---|---|---|---|---|---|\n")
    for r in restore:
        table += (f"| {r['model']} (random weights, official architecture) | {r['frame']} | "
                  f"{r['faces']} | {r['s_per_face']:.2f} | {r['s_per_frame']:.2f} | "
                  f"{r['convert_s']:.0f} |\n")
    print(table)
    if args.record:
        record("face detection + tracking on real faces (CPU)",
               {"vapoursynth": str(core.core_version.release_major),
                "onnxruntime": onnxruntime.__version__, "detector": f"blazeface-back-256, score {args.score}"},
               table,
               "Jitter: mean |c[t+1] - 2c[t] + c[t-1]| / sqrt(w h) of the box centre, within "
               "shots; the truth's own jitter is the camera path's acceleration; 'about the truth': "
               "the same of each box minus its truth centre (the camera's motion taken out). "
               "Recall: IoU >= 0.5 "
               "with the seeded truth box (carphone: a face found at all, the face being in every "
               "frame). 'gaps <= 5 bridged': runs of frames without a detection inside a shot that "
               "a track covered.")


if __name__ == "__main__":
    main()
