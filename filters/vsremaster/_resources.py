"""Locate data shipped with the package: templates and the model manifest.

In a wheel they live inside the package (``vsremaster/templates``, ``vsremaster/onnx``);
in an editable install or a source checkout, where the package has no such folders, they are
read from the repository's top-level ``templates/`` and ``onnx/``, so edits there take effect
without reinstalling.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["resource_dir", "templates_dir", "manifest_path"]

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent.parent  # filters/vsremaster -> repo root


def resource_dir(name: str) -> Path:
    """Return the folder ``name`` ("templates" or "onnx"): the package's, else the checkout's.

    Raises:
        FileNotFoundError: neither the checkout nor the installed package has it.
    """
    for candidate in (_PACKAGE_DIR / name, _REPO_ROOT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"vsremaster data folder {name!r} not found next to the package ({_PACKAGE_DIR}) "
        f"or in the source checkout ({_REPO_ROOT}); the installation is incomplete"
    )


def templates_dir() -> Path:
    """Folder holding the jinja2 ``*.vpy.j2`` templates."""
    return resource_dir("templates")


def manifest_path() -> Path:
    """Path of the model manifest ``manifest.toml``."""
    return resource_dir("onnx") / "manifest.toml"
