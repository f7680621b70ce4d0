"""Face alignment: a similarity transform from detected landmarks to a restorer's template.

Face restorers (GFPGAN, CodeFormer, GPEN-BFR, RestoreFormer++) expect a square crop with the
eyes, nose and mouth at fixed places. The templates below are the 5-point sets those models
were trained with (left eye, right eye, nose tip, left and right mouth corner, "left" as seen
in the image), normalised to [0, 1] of the crop side: ``ffhq_512`` is facexlib's FFHQ
template (GFPGAN / CodeFormer / RestoreFormer++ / GPEN-BFR-512+), ``arcface_128`` is
InsightFace's ArcFace template as used for GPEN-BFR-256.

BlazeFace gives eyes, nose tip and mouth *centre* (and ears, not used): the mouth centre is
matched to the midpoint of the template's mouth corners, so four point pairs are fitted.
YuNet, SCRFD and RetinaFace give the template's own five points in its order (image-left eye
first), so all five are fitted. :func:`align` tells the two apart by the number of points.

The fit is the least-squares similarity (rotation, uniform scale, translation; Umeyama,
"Least-squares estimation of transformation parameters between two point patterns", TPAMI
1991). Shapes: points ``(K, 2)`` pixels; transforms ``(2, 3)`` affine matrices mapping frame
pixels to crop pixels (OpenCV's ``warpAffine`` convention).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TEMPLATES", "template_points", "similarity", "invert", "template_transform",
           "align", "paste_alpha", "paste_back", "feather_mask"]

# normalised (x, y): left eye, right eye, nose tip, left mouth corner, right mouth corner
TEMPLATES: dict[str, np.ndarray] = {
    "ffhq_512": np.array([[0.37691676, 0.46864664], [0.62285697, 0.46912813],
                          [0.50123859, 0.61331904], [0.39308822, 0.72541100],
                          [0.61150205, 0.72490465]]),
    "arcface_128": np.array([[0.36167656, 0.40387734], [0.63696719, 0.40235469],
                             [0.50019687, 0.56044219], [0.38710391, 0.72160547],
                             [0.61507734, 0.72034453]]),
}


def template_points(template: str, size: int, *, layout: str = "blazeface") -> np.ndarray:
    """Template points in pixels of a ``size`` x ``size`` crop, in the detector's order.

    Args:
        template: a key of :data:`TEMPLATES`.
        size: crop side in pixels.
        layout: ``"blazeface"`` (eyes, nose, mouth centre: 4 points) or ``"5point"``.

    Raises:
        ValueError: unknown template or layout.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown face template {template!r}; known: {', '.join(TEMPLATES)}")
    pts = TEMPLATES[template] * size
    if layout == "5point":
        return pts
    if layout == "blazeface":
        return np.vstack([pts[:3], pts[3:5].mean(axis=0, keepdims=True)])
    raise ValueError(f"unknown landmark layout {layout!r}; use 'blazeface' or '5point'")


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``(2, 3)`` mapping points ``src`` onto ``dst`` (both ``(K, 2)``,
    K >= 2, not all coincident).

    Raises:
        ValueError: mismatched shapes or degenerate points.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum() / len(src)
    if var < 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1  # a reflection is not a similarity
    rot = u @ fix @ vt
    scale = (sig * np.diag(fix)).sum() / var
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def template_transform(landmarks: np.ndarray, *, template: str = "ffhq_512",
                       size: int = 512, sar: float = 1.0) -> np.ndarray:
    """The ``(2, 3)`` transform frame -> template crop that :func:`align` warps with (same
    arguments, no image): a least-squares similarity in square pixels.

    Raises:
        ValueError: landmarks of another shape, or degenerate ones.
    """
    pts = np.asarray(landmarks, dtype=np.float64) * (sar, 1.0)
    if pts.shape not in ((5, 2), (6, 2)):
        raise ValueError(f"landmarks must be (6, 2) BlazeFace or (5, 2) 5-point, not {pts.shape}")
    layout = "5point" if len(pts) == 5 else "blazeface"
    dst = template_points(template, size, layout=layout)
    m = similarity(pts[: len(dst)], dst)
    m[:, 0] *= sar  # frame pixels -> square pixels -> crop
    return m


def align(frame: np.ndarray, landmarks: np.ndarray, *, template: str = "ffhq_512",
          size: int = 512, sar: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face at ``landmarks`` into the template crop.

    Args:
        frame: ``(H, W, C)`` image (uint8 or float).
        landmarks: ``(6, 2)`` BlazeFace points or ``(5, 2)`` 5-point landmarks (YuNet,
            SCRFD, RetinaFace), frame pixels.
        template: a key of :data:`TEMPLATES`.
        size: crop side in pixels (the restorer's input size).
        sar: the frame's sample aspect ratio (pixel width / height, e.g. 8/9 for NTSC 4:3
            DVD): the fit is done in square pixels, so anamorphic faces are not distorted.

    Returns:
        ``(crop, m)``: the ``(size, size, C)`` crop (bicubic, edges replicated) and the
        ``(2, 3)`` transform frame -> crop (:func:`template_transform`; a similarity when
        ``sar`` is 1).

    Raises:
        ValueError: landmarks of another shape, or degenerate ones.
    """
    import cv2

    m = template_transform(landmarks, template=template, size=size, sar=sar)
    crop = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def feather_mask(size: int, *, margin: float = 0.06, blur: float = 0.05) -> np.ndarray:
    """``(size, size)`` float32 paste mask in the crop: 1 inside, 0 at the border, with a
    Gaussian edge (``margin`` and ``blur`` are fractions of the side)."""
    import cv2

    mask = np.zeros((size, size), np.float32)
    edge = max(1, round(margin * size))
    mask[edge:-edge, edge:-edge] = 1.0
    sigma = max(0.5, blur * size)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def paste_alpha(m: np.ndarray, mask: np.ndarray, shape: tuple[int, int], *,
                scale: float = 1.0) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Where a crop pasted through the inverse of ``m`` lands in a frame of ``shape``
    ``(H, W)``: ``(rows, cols, roi, alpha)`` — the frame's region, the ``(2, 3)`` transform
    crop -> region, and ``mask`` (``(S, S)``, 0-1) warped there (0 outside the crop) — or
    None when it lands outside the frame. ``m`` and ``scale`` as in :func:`paste_back`."""
    import cv2

    inv = invert(m)
    if scale != 1.0:  # crop -> source pixels -> upscaled pixels (pixel centres kept aligned)
        inv = np.vstack([inv * scale, [0, 0, 1]])[:2]
        inv[:, 2] += 0.5 * (scale - 1)
    # Only the part of the frame the crop lands on is warped and blended (the mask is 0
    # outside it): the cost follows the size of the face, not of the frame.
    s = mask.shape[0]
    corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], np.float64) @ inv.T
    h, w = shape
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in corners.min(0))
    x1 = min(w, int(np.ceil(corners[:, 0].max())) + 2)
    y1 = min(h, int(np.ceil(corners[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    roi = inv.copy()
    roi[:, 2] -= (x0, y0)
    alpha = cv2.warpAffine(mask.astype(np.float32), roi, (x1 - x0, y1 - y0),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return slice(y0, y1), slice(x0, x1), roi, alpha


def paste_back(frame: np.ndarray, crop: np.ndarray, m: np.ndarray, mask: np.ndarray,
               *, scale: float = 1.0) -> np.ndarray:
    """Blend ``crop`` back into ``frame`` through the inverse of ``m``.

    Args:
        frame: ``(H, W, C)`` float image the crop goes into (may be an upscaled frame).
        crop: ``(S, S, C)`` restored crop, same value scale as ``frame``.
        m: the ``(2, 3)`` transform used by :func:`align`, in *source* frame pixels.
        mask: ``(S, S)`` weights in the crop (see :func:`feather_mask`), 0-1.
        scale: ``frame``'s size / the source frame's size (paste into an upscaled frame).

    Returns:
        A new float32 frame.
    """
    import cv2

    out = frame.astype(np.float32, copy=True)
    landed = paste_alpha(m, mask, frame.shape[:2], scale=scale)
    if landed is None:
        return out
    rows, cols, roi, alpha = landed
    back = cv2.warpAffine(crop.astype(np.float32), roi, alpha.shape[::-1],
                          flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if back.ndim == 3:
        alpha = alpha[..., None]
    region = out[rows, cols]
    region += alpha * (back - region)
    return out
