"""Faces: detection, temporal tracking, a preview of the tracks, alignment to restorer
templates, and restoration along the tracks.

    from vsremaster.faces import FaceDetector, scan_faces, write_sidecar, overlay
    scan = scan_faces(clip)                      # detect every frame, cuts, tracks
    write_sidecar(scan, "title.faces.json")      # what `vsremaster faces track` writes
    overlay(clip, "title.faces.json").set_output()
    face_enhance(clip, "title.faces.json", model="gfpgan-1.4")   # after `models add`

See :mod:`vsremaster.faces.detect`, :mod:`~vsremaster.faces.track`,
:mod:`~vsremaster.faces.scan`, :mod:`~vsremaster.faces.overlay`,
:mod:`~vsremaster.faces.align` and :mod:`~vsremaster.faces.restore`.
"""

from .detect import DEFAULT_DETECTOR, FaceDetector, normalise_for_detection
from .overlay import overlay
from .restore import FaceRestorer, face_enhance, installed_face_model, neutralise_colour
from .scan import FaceScan, read_sidecar, scan_faces, write_sidecar
from .track import Detection, Track, box_iou, centre_jitter, track_faces

__all__ = [
    "DEFAULT_DETECTOR", "Detection", "FaceDetector", "FaceRestorer", "FaceScan", "Track",
    "box_iou", "centre_jitter", "face_enhance", "installed_face_model", "neutralise_colour",
    "normalise_for_detection", "overlay", "read_sidecar", "scan_faces", "track_faces",
    "write_sidecar",
]
