"""vsremaster: AI video restoration for VapourSynth.

Every stage is a plain VapourSynth filter function: it takes a clip and returns a clip.

    import vapoursynth as vs
    import vsremaster as vsr
    clip = vs.core.bs.VideoSource("title.mkv")
    clip = vsr.upscale(clip, model="realesrgan-x4plus", width=2880, height=1920)
    clip = vsr.face_enhance(clip, tracks="title.faces.json", model="gfpgan-1.4")
    clip.set_output()
"""

from .faces.restore import face_enhance
from .stages.upscale import upscale

__all__ = ["face_enhance", "upscale"]
__version__ = "0.1.0"
