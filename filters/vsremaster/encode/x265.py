"""x265 settings in one place: presets, the parameter sets for restored footage, colour
signalling, and the command lines of the x265 program and of FFmpeg's libx265.

Every encode (the final one, scene chunks, target-quality probes) builds its command with
:class:`VideoEncoder`, so the probes measure exactly what the final encode will do.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EncodeError, InputError
from .probe import ScriptInfo
from .tools import ffmpeg_file

__all__ = [
    "X265_DEFAULTS",
    "X265_PRESETS",
    "VideoEncoder",
    "check_format",
    "check_settings",
    "ffmpeg_x265_params",
    "parse_x265_params",
    "pix_fmt",
    "x265_cli_args",
]

log = logging.getLogger("vsremaster.encode")

#: Presets understood by both x265 and FFmpeg's libx265.
X265_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


#: Parameter sets for restored footage (``--x265-defaults NAME``); they come after the preset
#: and before the user's ``x265_params``, which override them. A keyframe at least every
#: 10 seconds (``--keyint``) is added to every set.
#:
#: * ``restored`` (default): no SAO and no strong intra smoothing (both blur restored detail,
#:   the encode-group consensus, classic_anchors §4.2), auto-variance AQ biased to dark
#:   scenes (``--aq-mode 3``, concert footage), psycho-visual RD at 2.0 / RDOQ 1.0 to keep
#:   texture, a softer deblock (-1:-1) and closed GOPs (clean chunk and zone boundaries).
#: * ``grain``: as ``restored`` with stronger psy-RDOQ (3.0), gentler AQ (0.8), smaller I/P
#:   and P/B QP steps and deblock -2:-2, for footage whose grain is kept on purpose.
#: * ``animation``: flat areas and hard edges: AQ mode 3, low psy (1.0 / 0.5), stronger
#:   deblock (1:1), up to 8 B-frames.
#: * ``x265``: nothing added; x265's own defaults for the preset.
X265_DEFAULTS: dict[str, str] = {
    "restored": "--no-sao --no-strong-intra-smoothing --aq-mode 3 --psy-rd 2.0 "
    "--psy-rdoq 1.0 --deblock -1:-1 --no-open-gop",
    "grain": "--no-sao --no-strong-intra-smoothing --aq-mode 3 --aq-strength 0.8 "
    "--psy-rd 2.0 --psy-rdoq 3.0 --ipratio 1.2 --pbratio 1.1 --deblock -2:-2 --no-open-gop",
    "animation": "--no-sao --aq-mode 3 --psy-rd 1.0 --psy-rdoq 0.5 --deblock 1:1 "
    "--bframes 8 --no-open-gop",
    "x265": "",
}

_KEYINT_S = 10.0

# H.273 code points each encoder accepts (2 = unspecified is never signalled).
_X265_PRIMARIES = {1, *range(4, 13)}
_X265_TRANSFER = {1, *range(4, 19)}
_X265_MATRIX = {0, 1, *range(4, 15)}
_FF_PRIMARIES = {1, *range(4, 13), 22}
_FF_TRANSFER = {1, *range(4, 19)}
_FF_MATRIX = {0, 1, *range(4, 15)}
_FF_CHROMA_LOC = ("left", "center", "topleft", "top", "bottomleft", "bottom")



def parse_x265_params(text: str) -> list[tuple[str, str | None]]:
    """Parse extra x265 options into ``(name, value)`` pairs.

    Two spellings are accepted:

    * x265 command-line style, split like a shell would (:func:`shlex.split`):
      ``"--aq-mode 3 --no-sao --psy-rd=2.0"``;
    * FFmpeg ``-x265-params`` style: ``"aq-mode=3:no-sao=1"``.

    Args:
        text: The options; empty for none.

    Returns:
        Option names without dashes, with their value or None for a bare flag.

    Raises:
        InputError: the text cannot be split or has a token that is not an option.
    """
    text = text.strip()
    if not text:
        return []
    if not text.startswith("-"):
        pairs: list[tuple[str, str | None]] = []
        for item in re.split(r"(?<!\\):", text):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not name:
                raise InputError(f"x265_params: empty option name in {text!r}.")
            pairs.append((name.strip(), value.replace("\\:", ":") if sep else None))
        return pairs
    try:
        tokens = shlex.split(text)
    except ValueError as err:
        raise InputError(f"x265_params cannot be split like a shell would: {err}") from err
    pairs = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise InputError(
                f"x265_params: {token!r} is not an option; write long options such as "
                "'--aq-mode 3 --no-sao'."
            )
        name, sep, value = token[2:].partition("=")
        if sep:
            pairs.append((name, value))
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            pairs.append((name, tokens[i + 1]))
            i += 1
        else:
            pairs.append((name, None))
        i += 1
    return pairs


def x265_cli_args(text: str | list[tuple[str, str | None]]) -> list[str]:
    """Arguments for the x265 program from :func:`parse_x265_params` syntax or its
    ``(name, value)`` pairs.

    Command-line style text is passed through exactly as :func:`shlex.split` splits it.
    """
    if isinstance(text, str) and text.strip().startswith("-"):
        parse_x265_params(text)  # validate
        return shlex.split(text.strip())
    pairs = parse_x265_params(text) if isinstance(text, str) else text
    args: list[str] = []
    for name, value in pairs:
        args.append(f"--{name}")
        if value is not None:
            args.append(value)
    return args


def ffmpeg_x265_params(text: str | list[tuple[str, str | None]]) -> str:
    """The same options as FFmpeg's ``-x265-params`` value (``name=value:...``).

    Args:
        text: options as :func:`parse_x265_params` takes them, or its ``(name, value)`` pairs.

    Bare flags become ``name=1`` (libx265 reads ``no-sao=1`` as "sao off"). FFmpeg splits the
    value with ``av_get_token``, where a backslash escapes any character, so ``\\ ' : =``
    inside values (paths, zones) are escaped and reach libx265 unchanged.
    """
    pairs = parse_x265_params(text) if isinstance(text, str) else text
    items = []
    for name, value in pairs:
        value = "1" if value is None else re.sub(r"([\\':=])", r"\\\1", value)
        items.append(f"{name}={value}")
    return ":".join(items)




def check_format(info: ScriptInfo) -> None:
    if info.color_family not in ("YUV", "GRAY"):
        raise EncodeError(
            f"Script {info.script} outputs {info.format_name} ({info.color_family}); the "
            "encoder needs YUV or GRAY. Convert at the end of the script, e.g. "
            "core.resize.Bicubic(clip, format=vs.YUV420P10, matrix_s='709')."
        )
    if info.sample_type != "INTEGER" or not 8 <= info.bits <= 16:
        raise EncodeError(
            f"Script {info.script} outputs {info.format_name}; the encoder needs integer "
            "samples of 8 to 16 bits (e.g. format=vs.YUV420P10)."
        )
    if info.color_family == "YUV" and (info.subsampling_w, info.subsampling_h) not in (
        (1, 1),
        (1, 0),
        (0, 0),
    ):
        raise EncodeError(
            f"Script {info.script} outputs {info.format_name}; HEVC supports 4:2:0, 4:2:2 "
            "and 4:4:4 chroma only."
        )


def pix_fmt(info: ScriptInfo, depth: int) -> str:
    suffix = "" if depth == 8 else f"{depth}le"
    if info.color_family == "GRAY":
        return f"gray{suffix}"
    base = {(1, 1): "yuv420p", (1, 0): "yuv422p", (0, 0): "yuv444p"}[
        (info.subsampling_w, info.subsampling_h)
    ]
    return base + suffix


def _signalled(info: ScriptInfo, name: str, allowed: set[int]) -> int | None:
    value = info.prop(name)
    if value is None or value == 2:
        return None
    if value not in allowed:
        log.warning("%s=%d cannot be signalled by this encoder; left unspecified", name, value)
        return None
    return value


def _is_420(info: ScriptInfo) -> bool:
    return info.color_family == "YUV" and (info.subsampling_w, info.subsampling_h) == (1, 1)


def x265_colour_args(info: ScriptInfo) -> list[str]:
    args: list[str] = []
    for option, prop, allowed in (
        ("--colorprim", "_Primaries", _X265_PRIMARIES),
        ("--transfer", "_Transfer", _X265_TRANSFER),
        ("--colormatrix", "_Matrix", _X265_MATRIX),
    ):
        value = _signalled(info, prop, allowed)
        if value is not None:
            args += [option, str(value)]
    if info.color_range is not None:
        args += ["--range", info.color_range]
    chroma = info.prop("_ChromaLocation")
    if chroma is not None and 0 <= chroma <= 5 and _is_420(info):
        args += ["--chromaloc", str(chroma)]
    if info.sar is not None:
        args += ["--sar", f"{info.sar[0]}:{info.sar[1]}"]
    return args


def ffmpeg_colour_args(info: ScriptInfo) -> list[str]:
    """Filters and encoder options that make libx265 signal the script's colour props.

    FFmpeg 7+ takes primaries/transfer/matrix/range from the frames, so they are set with
    the ``setparams`` filter (``-color_primaries`` as an output option is ignored); the
    sample aspect ratio with ``setsar`` (``max`` raised so 128:117 is kept exactly), and the
    chroma location with ``-chroma_sample_location``.
    """
    params = []
    for option, prop, allowed in (
        ("color_primaries", "_Primaries", _FF_PRIMARIES),
        ("color_trc", "_Transfer", _FF_TRANSFER),
        ("colorspace", "_Matrix", _FF_MATRIX),
    ):
        value = _signalled(info, prop, allowed)
        if value is not None:
            params.append(f"{option}={value}")
    if info.color_range is not None:
        params.append("range=" + ("tv" if info.color_range == "limited" else "pc"))
    filters = []
    if params:
        filters.append("setparams=" + ":".join(params))
    if info.sar is not None:
        filters.append(f"setsar=r={info.sar[0]}/{info.sar[1]}:max={max(info.sar) + 1}")
    args = ["-vf", ",".join(filters)] if filters else []
    chroma = info.prop("_ChromaLocation")
    if chroma is not None and 0 <= chroma <= 5 and _is_420(info):
        args += ["-chroma_sample_location", _FF_CHROMA_LOC[chroma]]
    return args


# x265 options vsremaster sets itself, and what to use instead. Passed in x265_params they
# would silently override the rate control (a CRF after ours wins over the per-scene zones)
# or the files the pipeline reads back.
_OWNED_OPTIONS = {
    "crf": "--crf for a fixed CRF, or --target-vmaf",
    "qp": "--crf for a fixed CRF, or --target-vmaf",
    "bitrate": "--crf or --target-vmaf (vsremaster encodes at constant quality)",
    "pass": "--crf or --target-vmaf (vsremaster encodes in one pass)",
    "zones": "--target-vmaf, which writes the zones",
    "zonefile": "--target-vmaf, which writes the zones",
    "preset": "--preset",
    "output-depth": "--depth",
    "input": "the script argument", "output": "-o", "y4m": "nothing (always y4m)",
    "seek": "nothing (set per chunk)", "frames": "nothing (set per chunk)",
    "csv": "nothing (vsremaster reads its own)", "csv-log-level": "nothing",
}


def check_settings(preset: str, defaults: str, depth: int, x265_params: str) -> None:
    """InputError for an unknown preset or parameter set, a bad depth, bad option syntax or
    an option vsremaster sets itself (``--crf``, ``--zones``, ``--preset`` …)."""
    if preset not in X265_PRESETS:
        raise InputError(f"preset must be one of {', '.join(X265_PRESETS)}; got {preset!r}.")
    if defaults not in X265_DEFAULTS:
        raise InputError(
            f"x265 defaults must be one of {', '.join(X265_DEFAULTS)}; got {defaults!r}."
        )
    if depth not in (8, 10, 12):
        raise InputError(f"depth must be 8, 10 or 12; got {depth}.")
    for name, _ in parse_x265_params(x265_params):
        if name in _OWNED_OPTIONS:
            raise InputError(
                f"x265_params: --{name} is set by vsremaster; use {_OWNED_OPTIONS[name]}, and "
                "leave it out of the x265 options."
            )


@dataclass(frozen=True)
class VideoEncoder:
    """How the video of one title is encoded; builds every encoder command line.

    Attributes:
        name: ``"x265"`` (the x265 program, raw HEVC out) or ``"ffmpeg"`` (libx265).
        exe: The program.
        info: The script's description (size, format, colour properties).
        preset: x265 preset.
        depth: Output bit depth (8, 10, 12).
        params: x265 options as ``(name, value)`` pairs: the ``defaults`` set, then the
            user's (later ones win).
    """

    name: str
    exe: Path
    info: ScriptInfo
    preset: str
    depth: int
    params: list[tuple[str, str | None]] = field(default_factory=list)

    @classmethod
    def create(
        cls, name: str, exe: Path, info: ScriptInfo, *, preset: str, depth: int,
        defaults: str, x265_params: str,
    ) -> VideoEncoder:
        """Check the settings and combine the parameter set with the user's options.

        Raises:
            InputError: unknown preset or parameter set, bad depth or ``x265_params``.
        """
        check_settings(preset, defaults, depth, x265_params)
        keyint = max(1, round(float(info.fps) * _KEYINT_S))
        pairs = [("keyint", str(keyint)), *parse_x265_params(X265_DEFAULTS[defaults])]
        pairs += parse_x265_params(x265_params)
        return cls(name, exe, info, preset, depth, pairs)

    @property
    def pix_fmt(self) -> str:
        return pix_fmt(self.info, self.depth)

    def argv(
        self,
        output: Path,
        *,
        crf: float,
        zones: str = "",
        csv: Path | None = None,
        source: Path | None = None,
        seek: int = 0,
        frames: int | None = None,
    ) -> list[str]:
        """Command that encodes y4m from stdin (or ``frames`` frames of the ``.y4m``
        ``source`` from frame ``seek``) at ``crf`` with x265 ``zones``.

        ``output`` ending in ``.hevc`` gets raw HEVC, ``.mkv`` Matroska (FFmpeg only).
        ``csv``: x265's per-frame log (frame type, QP, bits), level 1.
        """
        extra = list(self.params)
        if zones:
            extra.append(("zones", zones))
        if csv is not None:
            extra += [("csv", str(csv)), ("csv-log-level", "1")]
        if self.name == "x265":
            if output.suffix != ".hevc":
                raise ValueError("the x265 program writes raw .hevc")
            return [
                str(self.exe), "--input", str(source) if source else "-", "--y4m",
                *(["--seek", str(seek)] if seek else []),
                *(["--frames", str(frames)] if frames is not None else []),
                "--preset", self.preset, "--crf", f"{float(crf):g}",
                "--output-depth", str(self.depth),
                *(["--dither"] if self.info.bits > self.depth else []),
                *x265_colour_args(self.info),
                *x265_cli_args(extra),
                "--no-progress", "--output", str(output),
            ]  # fmt: skip
        params = ffmpeg_x265_params(extra)
        colour = ffmpeg_colour_args(self.info)
        filters = []
        if "-vf" in colour:
            i = colour.index("-vf")
            filters.append(colour[i + 1])
            colour = colour[:i] + colour[i + 2 :]
        if source is not None and (seek or frames is not None):
            end = f":end_frame={seek + frames}" if frames is not None else ""
            filters.insert(0, f"trim=start_frame={seek}{end},setpts=PTS-STARTPTS")
        fmt = "hevc" if output.suffix == ".hevc" else "matroska"
        return [
            str(self.exe), "-hide_banner", "-nostdin", "-nostats", "-y",
            "-f", "yuv4mpegpipe", "-i", ffmpeg_file(source) if source else "-",
            "-map", "0:v:0",
            *(["-vf", ",".join(filters)] if filters else []),
            *colour,
            "-c:v", "libx265", "-preset", self.preset, "-crf", f"{float(crf):g}",
            "-pix_fmt", self.pix_fmt,
            *(["-x265-params", params] if params else []),
            "-f", fmt, ffmpeg_file(output),
        ]  # fmt: skip
