"""Exceptions raised by vsremaster.

Every error names what was wrong (clip property, argument, file) and what to do about it.
They derive from :class:`VSRemasterError` so callers and the CLI can tell our errors apart
from bugs.
"""

from __future__ import annotations

__all__ = [
    "VSRemasterError",
    "InputError",
    "ModelError",
    "ModelMissingError",
    "ChecksumError",
    "BackendError",
    "EncodeError",
]


class VSRemasterError(Exception):
    """Base class of every error vsremaster raises on purpose."""


class InputError(VSRemasterError, ValueError):
    """A clip or argument cannot be processed (wrong format, interlaced, bad size...)."""


class ModelError(VSRemasterError):
    """A model is unknown, malformed or failed its verification."""


class ModelMissingError(ModelError):
    """A known model is not installed in the model cache."""


class ChecksumError(ModelError):
    """A file's sha256 differs from the one recorded in the manifest; it is not loaded."""


class BackendError(VSRemasterError):
    """The requested ONNX Runtime backend (execution provider) is not available."""


class EncodeError(VSRemasterError):
    """vspipe, the encoder or the muxer failed; no output file was left under the final name."""
