"""Export a trained network to ONNX and check it against PyTorch (shared by the recipes)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

__all__ = ["export_onnx", "export_recipe", "write_card"]


def export_onnx(
    model,
    example,
    path: Path,
    *,
    input_name: str,
    output_name: str,
    dynamic: dict[int, str],
    tolerance: float = 1e-4,
    opset: int = 17,
) -> dict[str, object]:
    """Export ``model`` (eval mode, fp32) to ``path`` and compare ONNX Runtime with PyTorch.

    Args:
        example: one input tensor; the check runs on it and on a second input of another
            size (each dynamic axis plus 8) to prove the dynamic axes work.
        dynamic: input axis -> symbolic name (the output shares the names).
        tolerance: largest allowed absolute difference.

    Returns:
        ``{"sha256", "max_abs_error", "parameters"}``.

    Raises:
        ValueError: ONNX Runtime differs from PyTorch by more than ``tolerance``.
    """
    import onnxruntime as ort
    import torch

    model = model.float().eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter (plain convolutions export exactly) warns it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), str(tmp), input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: dynamic, output_name: dynamic}, opset_version=opset,
            dynamo=False,
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    bigger = list(example.shape)
    for axis in dynamic:
        bigger[axis] += 8
    worst = 0.0
    for x in (example, torch.rand(bigger, generator=torch.Generator().manual_seed(1))):
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {input_name: x.numpy()})[0]
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > tolerance:
        tmp.unlink()
        raise ValueError(f"ONNX export of {path.name} differs from PyTorch by {worst:.2e} "
                         f"(> {tolerance:.0e})")
    tmp.replace(path)
    return {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "max_abs_error": worst,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def write_card(
    path: Path,
    *,
    model_id: str,
    summary: str,
    onnx_file: Path,
    export: dict[str, object],
    recipe: dict[str, object],
    commands: str,
    data: str,
    degradations: str,
    metrics: str,
    limitations: str,
    licence: str,
) -> Path:
    """Write a model card (markdown) beside an exported model: what it does, how it was
    made (data, degradations, recipe and the commands that reproduce it), how it scores, its
    limits and licence, and the file's sha256 and parameter count."""
    recipe_rows = "\n".join(f"| {k} | {v} |" for k, v in recipe.items())
    text = f"""# {model_id}

{summary}

- file: `{onnx_file.name}`, sha256 `{export["sha256"]}`
- parameters: {export["parameters"]:,}; ONNX opset 17, fp32; ONNX Runtime matches PyTorch to
  {export["max_abs_error"]:.1e} (max abs)
- licence: {licence}

## Data
{data}

## Degradations
{degradations}

## Recipe
| setting | value |
|---|---|
{recipe_rows}

Reproduce:

```sh
{commands}
```

## Metrics
{metrics}

## Limitations
{limitations}
"""
    path.write_text(text, encoding="utf-8")
    return path


def export_recipe(
    model,
    recipe: dict,
    checkpoint: Path,
    onnx_path: Path,
    *,
    stage: str,
    channels: int,
    input_name: str,
    output_name: str,
    loss: str,
    device: str,
    scratch: str,
    metrics: str,
    workers: int = 0,
    **card: str,
) -> dict[str, object]:
    """Load ``checkpoint`` into ``model``, export it (checked by :func:`export_onnx` on a
    seeded ``(1, channels, 64, 96)`` input; batch, height and width dynamic) and write the
    model card beside it: the recipe table (with the optimiser the loop runs on ``device``,
    ``loss`` and the steps trained), the commands that reproduce it (``device`` and
    ``workers`` as the shipped model was trained; ``scratch``: the
    checkpoint's file name under ``out/``), ``metrics`` (the benchmark's table, else a
    pointer to ``benchmarks/STAGE.py``) and the ``card`` texts (summary, data, degradations,
    limitations) of :func:`write_card`.

    Returns:
        ``{"step", "sha256", "max_abs_error", "parameters"}``.
    """
    import torch

    from .loop import load_weights

    onnx_path = Path(onnx_path)
    step = load_weights(model, Path(checkpoint))
    example = torch.rand(1, channels, 64, 96, generator=torch.Generator().manual_seed(0))
    result = export_onnx(model, example, onnx_path, input_name=input_name,
                         output_name=output_name, dynamic={0: "n", 2: "h", 3: "w"})
    amp = "bf16 autocast, " if device.startswith("cuda") else ""
    optimiser = (f"AdamW, weight decay 1e-4, {recipe.get('warmup', 500)} warm-up steps, "
                 f"cosine to lr/100, {amp}grad-norm clip 1.0")
    run = "python -m vsremaster.training " + stage
    write_card(
        onnx_path.with_suffix(".md"),
        model_id=recipe["model_id"],
        onnx_file=onnx_path,
        export={**result, "step": step},
        recipe={**recipe, "optimiser": optimiser, "loss": loss, "steps trained": step},
        commands="\n".join((
            f"{run} footage out/footage",
            f"{run} train out/footage out/{scratch} --device {device}"
            + (f" --workers {workers}" if workers else "") + "   # resumable: --seconds S",
            f"{run} export out/{scratch} onnx/{recipe['model_id']}.onnx --metrics TABLE.md",
            f"python benchmarks/{stage}.py --record   # the scores below")),
        metrics=metrics or f"Not measured yet: run `python benchmarks/{stage}.py`.",
        licence="MIT (vsremaster); the training footage's own licences are listed in "
                "`vsremaster.samples` and `vsremaster.training.data`",
        **card,
    )
    return {"step": step, **result}

