"""Faces: detection, temporal tracking, a preview of the tracks, and alignment to restorer
templates (restoration itself comes next).

    from vsremaster.faces import FaceDetector, scan_faces, write_sidecar, overlay
    scan = scan_faces(clip)                      # detect every frame, cuts, tracks
    write_sidecar(scan, "title.faces.json")      # what `vsremaster faces track` writes
    overlay(clip, "title.faces.json").set_output()

See :mod:`vsremaster.faces.detect`, :mod:`~vsremaster.faces.track`,
:mod:`~vsremaster.faces.scan`, :mod:`~vsremaster.faces.overlay` and
:mod:`~vsremaster.faces.align`.
"""

from .detect import DEFAULT_DETECTOR, FaceDetector, normalise_for_detection
from .overlay import overlay
from .scan import FaceScan, read_sidecar, scan_faces, write_sidecar
from .track import Detection, Track, box_iou, centre_jitter, track_faces

__all__ = [
    "DEFAULT_DETECTOR", "Detection", "FaceDetector", "FaceScan", "Track", "box_iou",
    "centre_jitter", "normalise_for_detection", "overlay", "read_sidecar", "scan_faces",
    "track_faces", "write_sidecar",
]
