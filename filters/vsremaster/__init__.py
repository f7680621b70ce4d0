"""vsremaster: AI video restoration for VapourSynth.

Every stage is a plain VapourSynth filter function: it takes a clip and returns a clip.

    import vapoursynth as vs
    import vsremaster as vsr
    clip = vs.core.bs.VideoSource("title.mkv")
    clip = vsr.deinterlace(clip)
    clip = vsr.denoise(clip, sigma=[6.0, 3.0, 3.0])
    clip = vsr.descratch(clip)
    clip = vsr.upscale(clip, model="realesrgan-x4plus", width=2880, height=1920)
    clip = vsr.face_enhance(clip, tracks="title.faces.json", model="gfpgan-1.4")
    clip.set_output()

The stage functions are imported on first use, so ``vsremaster.training`` runs where
VapourSynth is not installed (a GPU training machine).
"""

from importlib import import_module

__all__ = ["deinterlace", "denoise", "descratch", "face_enhance", "mark_scene_changes", "upscale"]
__version__ = "0.1.0"

_STAGES = {
    "deinterlace": ".stages.deinterlace",
    "denoise": ".stages.denoise",
    "descratch": ".stages.descratch",
    "face_enhance": ".faces.restore",
    "mark_scene_changes": ".analysis.scenes",
    "upscale": ".stages.upscale",
}


def __getattr__(name: str):
    if name in _STAGES:
        value = getattr(import_module(_STAGES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vsremaster' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
