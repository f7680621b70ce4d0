"""The wheel carries the templates and the model manifest; the onnx/ folder is no package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_templates_and_manifest(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
         str(ROOT)], capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("vsremaster-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").glob("*.j2"):
        assert f"vsremaster/templates/{template.name}" in names
    assert "vsremaster/onnx/manifest.toml" in names
    assert "vsremaster/cli.py" in names
    assert not any(n.startswith("onnx/") for n in names)  # would shadow the onnx library
    assert not (ROOT / "onnx" / "__init__.py").exists()
