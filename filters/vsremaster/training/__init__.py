"""Training support: real footage, degradations, a resumable loop, ONNX export, model cards.

* :mod:`.data` — the training footage (real clips and photographs from registry packages,
  checked by sha256) and :class:`~.data.WindowSampler`, batches of frame windows with real or
  synthetic motion (torch).
* :mod:`.degrade` — degradation generators (interlacing, noise, compression, scratches, dust,
  flashes) as plain VapourSynth/numpy/FFmpeg functions; they make the test and benchmark
  inputs with known ground truth.
* :mod:`.loop` — AdamW + cosine schedule, bf16 on CUDA, checkpoints that resume exactly (a run
  can be split over time-limited calls on a lent GPU).
* :mod:`.export` — ONNX export checked against PyTorch, and the model card writer.
* :mod:`.deinterlace` — the deinterlacer's network and recipe (``vsr-deinterlace-v1``).

``python -m vsremaster.training --help`` lists the recipes. Nothing here imports VapourSynth
except fetching the footage, so training runs on a machine with only torch, numpy and OpenCV
(the ``train`` extra).
"""
