"""Generated scripts: names are data never code, and the scripts run under vspipe."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vsremaster.chain import plan_chain, probe_source
from vsremaster.render import py_literal, render_script

VSPIPE = Path(sys.executable).with_name("vspipe")
HOSTILE = [
    'quote " and \' apostrophe.mp4',
    'new\nline.mp4',
    '"; import os; os.system("touch PWNED") #.mp4',
    "''' triple {{ jinja }} ${HOME} $(touch PWNED2) ünïcødé 映像.mp4",
    "back\\slash\\\\ \t tab.mp4",
]


@pytest.mark.parametrize("value", [
    "plain", 'q"uo\'te', "a\nb\r\x00c", "ünï 映像", -3, 2.5, True, None,
    [1, "two", (3, 4.0)], {"k": ["v", None]}, (1,),
])
def test_py_literal_round_trips(value):
    assert ast.literal_eval(py_literal(value)) == value


def test_py_literal_refuses_what_is_not_plain_data():
    with pytest.raises(TypeError):
        py_literal(object())
    with pytest.raises(ValueError):
        py_literal(float("nan"))


def test_template_values_without_a_filter_are_refused(tmp_path, monkeypatch):
    import vsremaster.render as render

    (tmp_path / "bad.vpy.j2").write_text("SOURCE = {{ source }}\n")
    monkeypatch.setattr(render, "templates_dir", lambda: tmp_path)
    with pytest.raises(TypeError, match="without a 'py'"):
        render.render_template("bad.vpy.j2", source="x.mp4")
    with pytest.raises(ValueError, match="not a Python identifier"):
        (tmp_path / "id.vpy.j2").write_text("{{ name|ident }}\n")
        render.render_template("id.vpy.j2", name="os.system")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_source_name_opens_exactly_that_file_and_runs_nothing(tmp_path, sample_clip, name):
    src = tmp_path / name
    shutil.copy(sample_clip("carphone"), src)
    info = probe_source(src)
    text = render_script(info, plan_chain(info, preset="fast"), preset="fast", trim=(0, 5))
    tree = ast.parse(text)  # valid Python whatever the name
    sources = [
        node.value.value for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SOURCE"
    ]
    assert sources == [str(src.resolve())]
    script = tmp_path / "title.vpy"
    script.write_text(text, encoding="utf-8")
    # vspipe --info on output 1 (the source, trimmed to 5 frames): the script opened that file
    run = subprocess.run([str(VSPIPE), "--info", "-o", "1", str(script)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Frames: 5" in run.stdout and "Width: 176" in run.stdout
    assert not list(tmp_path.glob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_generated_script_renders_frames_under_vspipe(tmp_path, sample_clip, model):
    model("waifu2x-photo-x2-noise1")
    info = probe_source(sample_clip("carphone"))
    text = render_script(info, plan_chain(info, preset="fast"), preset="fast", trim=(10, 13))
    script = tmp_path / "carphone.vpy"
    script.write_text(text, encoding="utf-8")
    info_run = subprocess.run([str(VSPIPE), "--info", str(script)], capture_output=True,
                              text=True, timeout=120)
    assert info_run.returncode == 0, info_run.stderr
    assert "Width: 352" in info_run.stdout and "Height: 288" in info_run.stdout
    assert "Frames: 3" in info_run.stdout and "YUV420P10" in info_run.stdout
    y4m = tmp_path / "out.y4m"
    run = subprocess.run([str(VSPIPE), "-c", "y4m", str(script), str(y4m)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    frame_bytes = 352 * 288 * 3 // 2 * 2  # 4:2:0, 2 bytes per 10-bit sample
    header = y4m.read_bytes().split(b"\n", 1)[0]
    assert header.split()[:4] == [b"YUV4MPEG2", b"C420p10", b"W352", b"H288"]
    assert y4m.stat().st_size == len(header) + 1 + 3 * (len(b"FRAME\n") + frame_bytes)


def test_interlaced_source_gets_a_deinterlace_step_first(tmp_path, sample_clip):
    from vsremaster.encode.tools import ffmpeg_exe

    src = tmp_path / "interlaced.mkv"
    subprocess.run(
        [str(ffmpeg_exe()), "-v", "error", "-i", str(sample_clip("carphone")), "-frames:v", "10",
         "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264opts", "tff=1", str(src)],
        check=True, timeout=120,
    )
    info = probe_source(src)
    assert info.field_based in (1, 2)  # BestSource reads the stream's field flags
    chain = plan_chain(info, preset="fast")
    assert [s.function for s in chain.steps] == ["deinterlace", "upscale"]
    assert chain.steps[0].kwargs == {"tff": info.field_based == 2}
    assert "_FieldBased property says" in chain.steps[0].reason
    progressive = plan_chain(info, preset="fast", field_order="progressive")
    assert [s.function for s in progressive.steps] == ["upscale"]


def test_corrupt_or_missing_source_is_a_clear_error(tmp_path):
    from vsremaster.errors import InputError

    bad = tmp_path / "corrupt.mkv"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40)
    with pytest.raises(InputError, match="cannot open"):
        probe_source(bad)
    with pytest.raises(InputError, match="does not exist"):
        probe_source(tmp_path / "absent.mkv")
