"""From measurements to a restoration chain: which stages, which parameters, and why.

Thresholds (on the whole-title summary; sigmas on the 8-bit scale):

============== ======================================================================
stage           recommended when
============== ======================================================================
deinterlace     field order measured TFF/BFF with confidence >= 0.5 and >= 10 % of
                frames combed (parameter: the measured field order)
ivtc            telecine cadence found (inverse telecine, e.g. vivtc VFM + VDecimate)
descratch       scratches on >= 30 % of analysed frames, or dust on >= 70 % of them
                covering >= 0.1 per mille of the picture on average (fast motion makes
                isolated false detections: about 12 % / 50 % of frames on a fast pan)
denoise         luma noise sigma >= 2.0 (parameters: the sigma per plane, capped at 30;
                "compression" mode, sigma 0, when blockiness >= 1.25 or ringing >= 2.0
                and the noise is below that; "both" when both)
upscale         always (the model comes from the preset)
============== ======================================================================

A stage this release does not have yet is still listed, marked ``available: false``, so
the report says what the source needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["recommend"]

_COMBED_SHARE = 0.10
_FIELD_CONFIDENCE = 0.5
_SCRATCH_FRAMES = 0.30
_DUST_FRAMES = 0.70
_DUST_COVERAGE = 1e-4
_NOISE_SIGMA = 2.0
_BLOCKINESS = 1.25
_RINGING = 2.0
_SIGMA_CAP = 30.0  # the denoiser's range


def _get(summary: dict[str, Any], metric: str, key: str, default: Any = None) -> Any:
    value = summary.get(metric, {}).get(key, default)
    return default if value is None else value


def recommend(title: dict[str, Any]) -> list[dict[str, Any]]:
    """Recommended stages for a title, in processing order.

    Args:
        title: the whole-title summary (``Analysis.title`` or ``report["title"]``).

    Returns:
        ``[{"stage", "params", "reason", "available"}]``; ``available`` says whether this
        release of vsremaster has the stage.
    """
    import vsremaster

    recs: list[dict[str, Any]] = []

    def add(stage: str, params: dict[str, Any], reason: str) -> None:
        recs.append({"stage": stage, "params": params, "reason": reason,
                     "available": stage in vsremaster.__all__})

    order = _get(title, "Interlace", "field_order", "undetermined")
    confidence = float(_get(title, "Interlace", "confidence", 0.0))
    combed = float(_get(title, "Interlace", "combed_share", 0.0))
    declared = _get(title, "Interlace", "declared")
    if order == "telecined":
        add("ivtc", {}, f"3:2 pulldown cadence found (confidence {confidence:.2f}); "
            "inverse telecine restores the film frames")
    elif order in ("TFF", "BFF") and confidence >= _FIELD_CONFIDENCE and combed >= _COMBED_SHARE:
        label = "" if not _get(title, "Interlace", "mislabelled", False) else (
            f"; the source declares {declared}, which is wrong")
        add("deinterlace", {"tff": order == "TFF"},
            f"{combed:.0%} of frames are combed; field order {order} measured "
            f"(confidence {confidence:.2f}){label}")

    scratch_frames = float(_get(title, "Scratches", "frames_with", 0.0))
    dust = float(_get(title, "Dust", "coverage", 0.0))
    dust_frames = float(_get(title, "Dust", "frames_with", 0.0))
    if scratch_frames >= _SCRATCH_FRAMES or (
        dust_frames >= _DUST_FRAMES and dust >= _DUST_COVERAGE
    ):
        add("descratch", {}, f"vertical scratches on {scratch_frames:.0%} of analysed frames; "
            f"dust on {dust_frames:.0%} of them, covering {dust * 1000:.2f} per mille")

    sigma = float(_get(title, "Noise", "sigma_y", 0.0))
    block = float(_get(title, "Compression", "blockiness", 1.0))
    ringing = float(_get(title, "Compression", "ringing", 0.0))
    compressed = block >= _BLOCKINESS or ringing >= _RINGING
    if sigma >= _NOISE_SIGMA or compressed:
        noisy = sigma >= _NOISE_SIGMA
        mode = "both" if noisy and compressed else ("compression" if compressed else "noise")
        # per plane, capped at what the model covers; codec damage alone gets sigma 0. No
        # chroma measured (a greyscale source, or chroma too small to measure): one value,
        # which denoise gives every plane the clip has.
        chroma = [_get(title, "Noise", f"sigma_{p}") for p in "uv"]
        planes = [sigma] if chroma == [None, None] else [
            sigma, *(sigma if c is None else float(c) for c in chroma)]
        params = {"sigma": [round(min(s, _SIGMA_CAP), 1) if noisy else 0.0 for s in planes],
                  "mode": mode}
        add("denoise", params, f"luma noise sigma {sigma:.1f} (8-bit scale); blockiness "
            f"{block:.2f}, ringing {ringing:.2f}")

    blur = _get(title, "Blur", "sigma")
    add("upscale", {}, f"the source's edges are blurred by about {float(blur):.1f} px"
        if blur else "super-resolution")
    return recs
