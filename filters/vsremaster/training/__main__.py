"""Training recipes: ``python -m vsremaster.training STAGE COMMAND``.

    python -m vsremaster.training STAGE footage DIR      # fetch the training footage
    python -m vsremaster.training STAGE train DIR CKPT [--device cuda] [--seconds S] [--workers N]
    python -m vsremaster.training STAGE export CKPT onnx/vsr-STAGE-v1.onnx [--metrics T.md]

STAGE is ``deinterlace`` (vsr-deinterlace-v1), ``descratch`` (vsr-descratch-v1) or
``denoise`` (vsr-denoise-v1).

``train`` resumes from ``CKPT`` when it exists, so a run can be split across calls with a
time limit (``--seconds``); the schedule is fixed by the recipe's step count. Needs the
``train`` extra (torch); ``footage`` needs network access to PyPI and Debian's archive (and,
for denoise, FFmpeg: it encodes the codec-damage pool there, so the training machine needs
none). ``--workers`` draws batches in that many processes (a GPU otherwise waits on the
CPU-side damage generators of descratch and denoise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vsremaster.training",
        description="Reproduce vsremaster's own models from real footage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    stages = parser.add_subparsers(dest="stage", required=True)
    for stage, what in (("deinterlace", "the field-interpolation network"),
                        ("descratch", "the scratch, dust and line remover"),
                        ("denoise", "the noise and codec-damage remover")):
        cmds = stages.add_parser(stage, help=what).add_subparsers(dest="command", required=True)
        p = cmds.add_parser("footage", help="fetch the training footage (real clips and photos)")
        p.add_argument("dir", type=Path)
        p = cmds.add_parser("train", help="train or resume")
        p.add_argument("footage", type=Path, help="directory made by `footage`")
        p.add_argument("checkpoint", type=Path, help="read to resume, written every 1000 steps")
        p.add_argument("--device", default="cuda", help="torch device (default cuda)")
        p.add_argument("--seconds", type=float, default=None, help="stop (and save) after this")
        p.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
        p.add_argument("--workers", type=int, default=0,
                       help="processes drawing training batches (default 0: in this one)")
        p = cmds.add_parser("export", help="ONNX + check against PyTorch + model card")
        p.add_argument("checkpoint", type=Path)
        p.add_argument("onnx", type=Path)
        p.add_argument("--metrics", type=Path, default=None,
                       help=f"markdown table for the card (benchmarks/{stage}.py's output)")
    args = parser.parse_args(argv)

    import importlib

    recipe = importlib.import_module(f".{args.stage}", __package__)

    if args.command == "footage":
        from .data import fetch_training_footage

        print(fetch_training_footage(args.dir))
        if hasattr(recipe, "pool_file"):
            print(recipe.pool_file(args.dir))
    elif args.command == "train":
        import dataclasses

        from .loop import TrainConfig, train

        r = recipe.RECIPE
        cfg = TrainConfig(steps=args.steps or r["steps"], batch=r["batch"], lr=r["lr"],
                          warmup=r.get("warmup", 500), seed=r["seed"])
        sampler = recipe.make_sampler(args.footage, args.device)
        print("config", dataclasses.asdict(cfg), flush=True)
        step = train(recipe.build(), sampler, recipe.loss, cfg, args.checkpoint,
                     device=args.device, seconds=args.seconds, workers=args.workers,
                     log=lambda line: print(line, flush=True))
        print(f"stopped at step {step} of {cfg.steps}")
    elif args.command == "export":
        metrics = args.metrics.read_text(encoding="utf-8") if args.metrics else ""
        print(recipe.export(args.checkpoint, args.onnx, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
