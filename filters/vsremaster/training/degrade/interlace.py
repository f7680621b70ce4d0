"""Interlacing and telecine from progressive footage, with the truth known.

Both generators only reorder and weave whole fields of the source (VapourSynth's
``std.SeparateFields`` / ``std.SelectEvery`` / ``std.DoubleWeave``), so no pixel value is
changed and the result is exactly reproducible; there is nothing random to seed. Every field
of the output is a field of a known progressive frame, which is what a deinterlacer, an IVTC
or the field-order analysis is scored against:

* :func:`interlace` follows the MSU deinterlacer-benchmark protocol (also in
  ``docs/QUALITY.md``): interlaced frame ``k`` weaves the top field of progressive frame
  ``2k`` with the bottom field of frame ``2k + 1`` (TFF), or the bottom field of ``2k`` with
  the top field of ``2k + 1`` (BFF). A bobber fed the result must give back ``p0, p1, p2 …``.
* :func:`telecine` applies 3:2 (2:3) pulldown as done for NTSC film transfers (SMPTE
  practice: 23.976p -> 29.97i): every 4 progressive frames ``A B C D`` become the 10 fields
  ``At Ab | Bt Bb | Bt Cb | Ct Db | Dt Db`` (TFF), i.e. 5 frames of which 2 are combed.
"""

from __future__ import annotations

from collections.abc import Sequence

import vapoursynth as vs

from ...errors import InputError
from ...runtime.frames import check_clip

__all__ = ["interlace", "telecine", "PULLDOWN_FIELDS"]

core = vs.core

PULLDOWN_FIELDS: tuple[int, ...] = (0, 1, 2, 3, 2, 5, 4, 7, 6, 7)
"""3:2 pulldown as field indices into 4 separated progressive frames.

``std.SeparateFields`` turns frames ``A B C D`` into the fields ``0:A1 1:A2 2:B1 3:B2 4:C1
5:C2 6:D1 7:D2`` (``1`` the first field in time, ``2`` the second); these ten indices, woven
in pairs, give ``A1A2 B1B2 B1C2 C1D2 D1D2``: frames 2 and 3 of each cycle are combed, and
frames 2 and 4 repeat a field of the frame before them.
"""


def _check_fields(clip: vs.VideoNode, func: str) -> None:
    """Raise unless ``clip`` is progressive and its height splits into whole fields."""
    fmt = check_clip(clip, func)
    step = 2 << fmt.subsampling_h
    if clip.height % step:
        raise InputError(
            f"{func}: height {clip.height} cannot be split into fields of {fmt.name} "
            f"(needs a multiple of {step}); crop or resize the clip first"
        )
    if clip.num_frames < 2:
        raise InputError(f"{func}: the clip needs at least 2 frames, it has {clip.num_frames}")


def _weave(fields: vs.VideoNode, tff: bool) -> vs.VideoNode:
    """Weave consecutive field pairs (first field, second field) into frames."""
    frames = core.std.DoubleWeave(fields, tff=tff)[::2]
    return core.std.SetFieldBased(frames, 2 if tff else 1)


def interlace(clip: vs.VideoNode, *, tff: bool = True) -> vs.VideoNode:
    """Interlace progressive footage the way the MSU deinterlacer benchmark does.

    Frame ``k`` of the result holds, for TFF, the even lines (top field, rows 0, 2, 4 …) of
    progressive frame ``2k`` and the odd lines (bottom field) of frame ``2k + 1``; for BFF the
    odd lines of ``2k`` and the even lines of ``2k + 1``. The first field of each frame is
    therefore the earlier one in time, as in real interlaced video. Chroma is split by lines
    the same way (interlaced 4:2:0 stores each field's own chroma lines).

    Args:
        clip: progressive clip (its ``_FieldBased`` is ignored), constant format,
            ``N >= 2`` frames at ``F`` fps; its height must be a multiple of
            ``2 << subsampling_h`` (4 for 4:2:0).
        tff: top field first (``_FieldBased=2``) when True, bottom field first (``1``)
            when False.

    Returns:
        ``N // 2`` frames at ``F / 2`` fps (durations doubled), same format and size, with
        ``_FieldBased`` set to 2 (TFF) or 1 (BFF); other frame props are those of frame
        ``2k``. A trailing unpaired frame is dropped.

    Raises:
        InputError: variable format, unsupported depth, height not splittable, < 2 frames.
    """
    _check_fields(clip, "interlace")
    clip = core.std.SetFieldBased(clip[: clip.num_frames // 2 * 2], 0)
    fields = core.std.SeparateFields(clip, tff=tff)  # p0 first, p0 second, p1 first, ...
    return _weave(core.std.SelectEvery(fields, cycle=4, offsets=[0, 3]), tff)


def telecine(
    clip: vs.VideoNode, *, tff: bool = True, pattern: Sequence[int] = PULLDOWN_FIELDS
) -> vs.VideoNode:
    """Apply 3:2 pulldown: 4 progressive frames become 5 interlaced-stored frames.

    With the default :data:`PULLDOWN_FIELDS`, frames ``A B C D`` give
    ``[At Ab] [Bt Bb] [Bt Cb] [Ct Db] [Dt Db]`` (TFF; ``t``/``b`` top/bottom field): the
    classic 2:3 cadence of NTSC film transfers, 2 combed frames in 5. To start the cadence
    at another phase, trim the source or the result (``telecine(clip)[k:]``).

    Args:
        clip: progressive clip (typically 24 or 23.976 fps), ``N >= 2`` frames; its height
            must be a multiple of ``2 << subsampling_h``.
        tff: weave with the top field first (``_FieldBased=2``, the usual flag of NTSC DVD
            film content) or the bottom field first (``1``).
        pattern: one cadence cycle as indices into the separated fields of ``m`` source
            frames (``2i`` the first field of frame ``i``, ``2i + 1`` its second), woven in
            pairs; even positions must hold first fields and odd positions second fields.
            The default is 3:2 pulldown (``m = 4``, 10 fields).

    Returns:
        ``N // m * len(pattern) // 2`` frames at ``F · len(pattern) / (2m)`` fps (30 from 24
        for 3:2), ``_FieldBased`` 2 (TFF) or 1 (BFF). A trailing incomplete cycle is dropped.

    Raises:
        InputError: as :func:`interlace`; also a malformed ``pattern``, or fewer source
            frames than one cycle.
    """
    _check_fields(clip, "telecine")
    if (not pattern or len(pattern) % 2 or min(pattern) < 0
            or any(index % 2 != position % 2 for position, index in enumerate(pattern))):
        raise InputError(f"telecine: pattern {tuple(pattern)} must be an even number of field "
                         "indices >= 0, first fields (even) at even positions")
    frames_in = max(pattern) // 2 + 1
    if clip.num_frames < frames_in:
        raise InputError(f"telecine: the clip needs at least {frames_in} frames for one "
                         f"cadence cycle, it has {clip.num_frames}")
    clip = core.std.SetFieldBased(clip[: clip.num_frames // frames_in * frames_in], 0)
    fields = core.std.SeparateFields(clip, tff=tff)
    return _weave(core.std.SelectEvery(fields, cycle=2 * frames_in, offsets=list(pattern)), tff)
