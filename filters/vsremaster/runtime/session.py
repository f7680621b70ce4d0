"""ONNX Runtime sessions: backend (execution provider) selection and a session pool.

``backend="auto"`` tries TensorRT EP, then CUDA EP, then the CPU; an explicit backend that
cannot be met raises :class:`~vsremaster.errors.BackendError` instead of silently running
elsewhere. A :class:`SessionPool` holds ``num_streams`` sessions of one model so that
VapourSynth's worker threads run frames in parallel (ORT releases the GIL inside ``run``);
more threads than streams simply wait for a free session.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from .. import log
from ..errors import BackendError, InputError
from ..paths import cache_root

__all__ = [
    "Backend", "SessionConfig", "SessionPool", "get_pool", "available_backends", "check_backend",
    "stream_count",
]


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            "ONNX Runtime is not installed: pip install 'vsremaster[cpu]' "
            "(or 'vsremaster[gpu]' for NVIDIA GPUs)"
        ) from exc
    return onnxruntime


class Backend(StrEnum):
    """Where a model runs. ``AUTO`` picks the first available of TensorRT, CUDA, CPU."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    CUDA = "cuda"
    CPU = "cpu"

    @property
    def gpu(self) -> bool:
        """Whether this backend runs on a GPU (CUDA or TensorRT)."""
        return self in (Backend.CUDA, Backend.TENSORRT)


_PROVIDERS = {
    Backend.TENSORRT: "TensorrtExecutionProvider",
    Backend.CUDA: "CUDAExecutionProvider",
    Backend.CPU: "CPUExecutionProvider",
}
_AUTO_ORDER = (Backend.TENSORRT, Backend.CUDA, Backend.CPU)


def available_backends() -> list[Backend]:
    """Backends whose execution provider this ONNX Runtime build offers."""
    have = set(_ort().get_available_providers())
    return [b for b in _AUTO_ORDER if _PROVIDERS[b] in have]


def check_backend(backend: str | Backend) -> Backend:
    """Parse ``backend`` and make sure this ONNX Runtime build offers it.

    Raises:
        BackendError: unknown name, or an explicit backend this build does not offer.
    """
    try:
        backend = Backend(backend)
    except ValueError:
        raise BackendError(
            f"unknown backend {backend!r}; choose one of {', '.join(b.value for b in Backend)}"
        ) from None
    if backend is not Backend.AUTO and backend not in available_backends():
        raise BackendError(
            f"backend {backend.value!r} is not available in this ONNX Runtime build "
            f"(available: {', '.join(b.value for b in available_backends())}); "
            "install 'vsremaster[gpu]' for cuda/tensorrt, or use backend='auto'"
        )
    return backend


def stream_count(backend: Backend, num_streams: int | None, func: str) -> tuple[int, Backend]:
    """``(sessions, backend)`` for a stage: ``num_streams``, else 1 on the CPU and 2 on a GPU
    (frames in flight), and the backend ``AUTO`` resolves to.

    Raises:
        InputError: ``num_streams < 1`` (the message names ``func``).
    """
    effective = available_backends()[0] if backend is Backend.AUTO else backend
    streams = num_streams or (2 if effective.gpu else 1)
    if streams < 1:
        raise InputError(f"{func}: num_streams must be >= 1, got {streams}")
    return streams, effective


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything that changes how a model's sessions are built (a pool cache key).

    Attributes:
        model: path of the ONNX file.
        backend: requested backend (``AUTO`` resolves when the first session is made).
        num_streams: sessions in the pool (parallel frames).
        fp16: run in half precision (CUDA: converted model; TensorRT: fp16 engine;
            CPU: converted model, slow, for testing).
        threads: ORT intra-op threads per session (CPU); 0 = cores / num_streams.
    """

    model: Path
    backend: Backend = Backend.AUTO
    num_streams: int = 1
    fp16: bool = False
    threads: int = 0


def _fp16_model(path: Path) -> Path:
    """Half-precision copy of ``path`` (fp32 I/O kept; Resize stays fp32), cached beside it."""
    target = path.with_name(path.stem + ".fp16.onnx")
    if target.is_file() and target.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return target
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model16 = convert_float_to_float16(
        onnx.load(str(path)), keep_io_types=True, op_block_list=["Resize", "Upsample"]
    )
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    onnx.save(model16, str(partial))
    os.replace(partial, target)
    return target


def _provider_entry(backend: Backend, fp16: bool) -> tuple[str, dict[str, str]]:
    if backend is Backend.TENSORRT:
        engines = cache_root() / "trt-engines"
        engines.mkdir(parents=True, exist_ok=True)
        return _PROVIDERS[backend], {
            "trt_fp16_enable": str(fp16),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(engines),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(engines),
        }
    if backend is Backend.CUDA:
        return _PROVIDERS[backend], {
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "cudnn_conv_use_max_workspace": "1",
            "arena_extend_strategy": "kSameAsRequested",
        }
    return _PROVIDERS[Backend.CPU], {}


def _make_session(cfg: SessionConfig, backend: Backend):
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if backend is Backend.CPU:
        cores = os.cpu_count() or 1
        opts.intra_op_num_threads = cfg.threads or max(1, cores // cfg.num_streams)
    else:
        # Shapes are fixed per tile; the pattern planner only gets in the way of CUDA graphs.
        opts.enable_mem_pattern = False
    model = cfg.model
    if cfg.fp16 and backend is not Backend.TENSORRT:
        model = _fp16_model(cfg.model)
    providers = [_provider_entry(backend, cfg.fp16)]
    if backend is Backend.TENSORRT:  # nodes TensorRT cannot take run on CUDA
        providers.append(_provider_entry(Backend.CUDA, cfg.fp16))
    sess = ort.InferenceSession(str(model), sess_options=opts, providers=providers)
    got = sess.get_providers()[0]
    if got != _PROVIDERS[backend]:
        raise BackendError(f"ONNX Runtime fell back from {_PROVIDERS[backend]} to {got}")
    return sess


def _open(cfg: SessionConfig):
    """First session of a pool: resolve ``auto`` by trying providers in order."""
    if cfg.backend is not Backend.AUTO:
        check_backend(cfg.backend)
        try:
            return _make_session(cfg, cfg.backend), cfg.backend
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"backend {cfg.backend.value!r} failed to start: {exc}") from exc
    errors = []
    for backend in available_backends():
        try:
            return _make_session(cfg, backend), backend
        except Exception as exc:  # try the next provider
            errors.append(f"{backend.value}: {exc}")
    raise BackendError("no ONNX Runtime backend could load the model: " + "; ".join(errors))


@dataclass(eq=False)
class SessionPool:
    """``num_streams`` ONNX Runtime sessions of one model, handed out one per caller.

    Sessions are created lazily (the first on the first :meth:`run`), so building a
    VapourSynth graph (``vspipe --info``, a previewer opening the script) stays cheap.
    """

    config: SessionConfig
    backend: Backend | None = None
    _idle: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    _created: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _names: tuple[str, str] = ("", "")

    @contextmanager
    def _session(self) -> Iterator[object]:
        try:
            sess = self._idle.get_nowait()
        except queue.Empty:
            sess = None
            with self._lock:
                if self._created < self.config.num_streams:
                    if self.backend is None:
                        sess, self.backend = _open(self.config)
                        log.info(
                            f"{self.config.model.name}: running on {self.backend.value} "
                            f"with {self.config.num_streams} stream(s)"
                            f"{', fp16' if self.config.fp16 else ''}"
                        )
                    else:
                        sess = _make_session(self.config, self.backend)
                    self._names = (sess.get_inputs()[0].name, sess.get_outputs()[0].name)
                    self._created += 1
            if sess is None:
                sess = self._idle.get()
        try:
            yield sess
        finally:
            self._idle.put(sess)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the model on one NCHW float32 batch and return its first output."""
        with self._session() as sess:
            return sess.run([self._names[1]], {self._names[0]: x})[0]

    def inputs(self) -> list[tuple[str, list[int | str | None], str]]:
        """``(name, shape, type)`` of each input the graph declares (opens the first session)."""
        with self._session() as sess:
            return [(i.name, list(i.shape), i.type) for i in sess.get_inputs()]

    def input_shape(self) -> list[int | str | None]:
        """The model's first input shape as its graph declares it."""
        return self.inputs()[0][1]

    def run_all(self, x: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Run the model on ``x`` (its first input; ``extra`` feeds other inputs by name) and
        return every output, in graph order."""
        with self._session() as sess:
            return sess.run(None, {self._names[0]: x, **(extra or {})})


_pools: dict[SessionConfig, SessionPool] = {}
_pools_lock = threading.Lock()


def get_pool(config: SessionConfig) -> SessionPool:
    """The process-wide pool for ``config`` (one set of sessions per model and settings)."""
    with _pools_lock:
        pool = _pools.get(config)
        if pool is None:
            pool = _pools[config] = SessionPool(config)
        return pool
