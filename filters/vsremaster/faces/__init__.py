"""Faces: temporal tracking of detected faces (detection and restoration come next).

    from vsremaster.faces import Detection, track_faces
    tracks = track_faces(per_frame_detections, cuts=[120, 300])

See :mod:`vsremaster.faces.track`.
"""

from .track import Detection, Track, box_iou, centre_jitter, track_faces

__all__ = ["Detection", "Track", "box_iou", "centre_jitter", "track_faces"]
