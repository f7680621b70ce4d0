"""A small, resumable training loop shared by the stage recipes (deinterlace, descratch,
denoise).

It owns what every recipe needs and nothing model-specific: AdamW with a cosine learning-rate
schedule, bf16 autocast on CUDA, gradient clipping, a fixed validation batch, progress lines
with steps/s and ETA, and a checkpoint (model, step, RNG state; the optimiser state in a
second file) written atomically every ``save_every`` steps and at the end, so a run split over
several time-limited calls (``seconds``) continues where it stopped (exactly, where the batch
sampler is torch's; a numpy-side sampler such as descratch's damage restarts its own stream).
With ``workers`` the batches are drawn in that many processes, each on its own random stream
(the sampler's ``reseed(stream)``), so the run is reproducible for a given worker count (a
resumed run starts those streams again).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TrainConfig", "train", "load_weights"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one run.

    Attributes:
        steps: total optimiser steps of the run (the schedule's length).
        batch: samples per step.
        lr: peak learning rate (after ``warmup`` steps), cosine decay to ``lr / 100``.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        clip: gradient-norm clip.
        seed: seeds torch (the sampler has its own seed).
        save_every: checkpoint period in steps.
        log_every: progress-line period in steps.
    """

    steps: int = 20000
    batch: int = 16
    lr: float = 4e-4
    warmup: int = 500
    weight_decay: float = 1e-4
    clip: float = 1.0
    seed: int = 0
    save_every: int = 1000
    log_every: int = 200


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _save(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _opt_path(checkpoint: Path) -> Path:
    """The optimiser state lives beside the checkpoint (two files, each small enough to
    carry back from a time-limited training machine)."""
    return checkpoint.with_name(checkpoint.name + ".opt")


def load_weights(model, checkpoint: Path) -> int:
    """Load a checkpoint's model weights (``weights_only=True``); return its step."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return int(state["step"])


def _batches(sample, batch: int, workers: int):
    """An endless iterator of ``sample(batch)``: in this process, or in ``workers`` forked
    processes (torch's DataLoader), each reseeded to its own stream first."""
    import torch

    if not workers:
        while True:
            yield sample(batch)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            torch.set_num_threads(1)
            sample.reseed(torch.utils.data.get_worker_info().id + 1)
            while True:
                yield sample(batch)

    yield from torch.utils.data.DataLoader(Stream(), batch_size=None, num_workers=workers,
                                           prefetch_factor=4,
                                           pin_memory=torch.cuda.is_available())


def train(
    model,
    sample: Callable[[int], object],
    loss: Callable[[object, object], object],
    cfg: TrainConfig,
    checkpoint: Path,
    *,
    device: str = "cpu",
    seconds: float | None = None,
    val_batches: int = 4,
    workers: int = 0,
    log: Callable[[str], None] = print,
) -> int:
    """Train ``model`` until ``cfg.steps`` or ``seconds`` of wall time, whichever is first.

    Args:
        model: a ``torch.nn.Module``; moved to ``device``.
        sample: ``sample(batch) -> x`` gives one training batch (on ``device``).
        loss: ``loss(model, x) -> scalar tensor``.
        cfg: hyper-parameters; ``cfg.steps`` fixes the schedule, so a resumed run follows
            the same curve.
        checkpoint: read if it exists (resume), rewritten every ``cfg.save_every`` steps and
            when the run stops.
        seconds: wall-time budget of this call (None: no limit).
        val_batches: batches drawn once (after seeding) and scored at every log line.
        workers: processes drawing batches (0: this one); the sampler needs a
            ``reseed(stream)`` method and must give CPU tensors.

    Returns:
        The step reached (``cfg.steps`` when the run is complete).
    """
    import torch

    torch.manual_seed(cfg.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    with torch.no_grad():
        val = [sample(cfg.batch) for _ in range(val_batches)]
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(torch.load(_opt_path(checkpoint), map_location="cpu",
                                       weights_only=False))
        step = int(state["step"])
        torch.set_rng_state(state["rng"])
        log(f"resumed from {checkpoint} at step {step}")
    amp = device.startswith("cuda")
    start, done_here = time.monotonic(), 0

    def save() -> None:
        _save(_opt_path(checkpoint), opt.state_dict())
        _save(checkpoint, {"model": model.state_dict(), "step": step,
                           "rng": torch.get_rng_state(), "config": asdict(cfg)})

    running = 0.0
    batches = _batches(sample, cfg.batch, workers)
    while step < cfg.steps:
        if seconds is not None and time.monotonic() - start > seconds:
            break
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        model.train()
        x = next(batches)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            value = loss(model, x)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        done_here += 1
        running += float(value.detach())
        if step % cfg.log_every == 0 or step == cfg.steps:
            model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                v = sum(float(loss(model, xv)) for xv in val) / len(val)
            rate = done_here / (time.monotonic() - start)
            eta = (cfg.steps - step) / rate
            log(f"step {step}/{cfg.steps}  loss {running / cfg.log_every:.5f}  val {v:.5f}  "
                f"lr {_lr(cfg, step):.2e}  {rate:.1f} steps/s  ETA {eta / 60:.1f} min")
            running = 0.0
        if step % cfg.save_every == 0:
            save()
    save()
    return step
