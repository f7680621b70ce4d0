"""Render per-title ``.vpy`` scripts from the jinja2 templates in ``templates/``.

A file name is data, never code: every ``{{ … }}`` in a template must pass through one of
three filters, and rendering fails if one does not:

- ``py``: a Python literal made by ``repr()`` of str/int/float/bool/None and of lists,
  tuples and dicts of those (a path with quotes, newlines or ``"; import os`` stays a string);
- ``comment``: text for a ``#`` comment, on one line, control characters escaped;
- ``ident``: a Python identifier from our own code (function and argument names).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from .. import __version__
from .._resources import templates_dir

if TYPE_CHECKING:
    from ..chain import Chain, SourceInfo

__all__ = ["render_template", "render_script", "py_literal"]


class _Safe(str):
    """Text a filter has made safe for a Python script."""


def py_literal(value: Any) -> str:
    """``repr()`` of a value made only of str/int/float/bool/None/list/tuple/dict.

    Raises:
        TypeError: any other type (it might not round-trip as a literal).
        ValueError: NaN or infinity (no literal exists).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot render {value!r} as a Python literal")
        return repr(value)
    if isinstance(value, Path):
        return repr(str(value))
    if isinstance(value, (list, tuple)):
        items = ", ".join(py_literal(v) for v in value)
        return f"[{items}]" if isinstance(value, list) else f"({items}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"refusing to render a {type(value).__name__} into a script: {value!r}")


def _py(value: Any) -> _Safe:
    return _Safe(py_literal(value))


def _comment(value: Any) -> _Safe:
    text = str(value)
    return _Safe("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


def _ident(value: Any) -> _Safe:
    text = str(value)
    if not text.isidentifier():
        raise ValueError(f"{text!r} is not a Python identifier")
    return _Safe(text)


def _finalize(value: Any) -> Any:
    if isinstance(value, _Safe):
        return value
    raise TypeError(
        f"template printed {value!r} without a 'py', 'comment' or 'ident' filter; "
        "every value in a script must be a literal"
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters.update(py=_py, comment=_comment, ident=_ident)
    return env


def render_template(template: str, /, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``.

    Raises:
        jinja2.TemplateError / TypeError / ValueError: the template or a value is unsafe.
    """
    return _environment().get_template(template).render(**context)


def render_script(
    source: SourceInfo,
    chain: Chain,
    *,
    preset: str,
    trim: tuple[int, int] | None = None,
    bits: int = 10,
    max_cache_mb: int = 2048,
    analysis: str | None = None,
    template: str = "remaster.vpy.j2",
) -> str:
    """Render the per-title restoration script.

    Args:
        source: the probed source (:func:`vsremaster.chain.probe_source`).
        chain: stage calls and notes (:func:`vsremaster.chain.plan_chain`).
        preset: preset name, for the header comment.
        trim: (first, end) source frames to keep, or None.
        bits: working and output bit depth (integer YUV).
        max_cache_mb: ``core.max_cache_size`` in MiB.
        analysis: the analysis ``report.json`` (relative to the script's folder or
            absolute), named in the script for ``vsremaster encode`` (scene cuts).

    The text depends on these inputs only (no date), so a rerun writes the same bytes and
    an interrupted encode of the script resumes.
    """
    return render_template(
        template,
        version=__version__,
        source=source,
        steps=chain.steps,
        notes=chain.notes,
        preset=preset,
        trim=list(trim) if trim else None,
        bits=bits,
        max_cache_mb=max_cache_mb,
        analysis=analysis,
    )
