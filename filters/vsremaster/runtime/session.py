"""Inference sessions: backend selection and a session pool.

Models run in ONNX Runtime (TensorRT, CUDA or CPU execution provider); in OpenVINO's CPU
plugin (``backend="openvino"``, when the ``openvino`` package is installed: oneDNN kernels run
our restoration networks 1.13-1.17x as fast as ONNX Runtime's CPU kernels on the same ONNX
file, ``benchmarks/backends.py``); in PyTorch (``backend="torch"``, on CUDA when torch sees a
GPU: the same ONNX graph translated by :mod:`vsremaster.runtime.torch_graph`, for machines
with torch but no onnxruntime-gpu); or, for the models converted from ncnn files (the
upscalers), in ncnn itself on the CPU: ncnn picks Winograd or im2col-GEMM per 3x3
convolution and runs the compact SR networks 1.3-1.7x as fast as ONNX Runtime's CPU kernels
on the same weights (``benchmarks/upscale_vs_mlrt.py``). ``backend="auto"`` tries TensorRT
EP, then CUDA EP, then ncnn (when the model has its ncnn source and runs in fp32), then
OpenVINO (fp32), then ORT on the CPU (``torch`` is never picked by ``auto``: it is asked for
by name); an explicit backend that cannot be met raises
:class:`~vsremaster.errors.BackendError` instead of silently running elsewhere. A
:class:`SessionPool` holds ``num_streams`` sessions of one model so that VapourSynth's
worker threads run frames in parallel (ORT, OpenVINO and ncnn release the GIL while they
compute); more threads than streams simply wait for a free session.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from .. import log
from ..errors import BackendError, InputError
from ..paths import cache_root

__all__ = [
    "Backend", "SessionConfig", "SessionPool", "get_pool", "available_backends", "check_backend",
    "runs_on_ncnn", "stream_count",
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
    """Where a model runs. ``AUTO`` picks the first available of TensorRT, CUDA, ncnn (models
    converted from ncnn only), OpenVINO (CPU plugin), CPU (ONNX Runtime)."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    CUDA = "cuda"
    NCNN = "ncnn"
    OPENVINO = "openvino"
    CPU = "cpu"
    TORCH = "torch"

    @property
    def gpu(self) -> bool:
        """Whether this backend runs on a GPU (CUDA, TensorRT; torch when it sees CUDA)."""
        if self is Backend.TORCH:
            return _torch().cuda.is_available()
        return self in (Backend.CUDA, Backend.TENSORRT)


_PROVIDERS = {
    Backend.TENSORRT: "TensorrtExecutionProvider",
    Backend.CUDA: "CUDAExecutionProvider",
    Backend.CPU: "CPUExecutionProvider",
}
_AUTO_ORDER = (Backend.TENSORRT, Backend.CUDA, Backend.NCNN, Backend.OPENVINO, Backend.CPU)


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendError("the torch backend needs PyTorch: pip install torch") from exc
    return torch


def _ncnn():
    try:
        import ncnn
    except ImportError as exc:
        raise BackendError("the ncnn backend needs the ncnn package: pip install ncnn") from exc
    return ncnn


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise BackendError(
            "the openvino backend needs OpenVINO: pip install 'vsremaster[cpu]' (or openvino)"
        ) from exc
    return openvino


_RUNTIMES = {Backend.NCNN: _ncnn, Backend.OPENVINO: _openvino}  # backends outside ORT


def _have(backend: Backend) -> bool:
    try:
        _RUNTIMES[backend]()
    except BackendError:
        return False
    return True


def available_backends() -> list[Backend]:
    """Backends this machine offers, in ``auto``'s order: the execution providers of this
    ONNX Runtime build, ncnn and OpenVINO when their packages are installed; then torch when
    it is installed (never chosen by ``auto``)."""
    have = set(_ort().get_available_providers())
    found = [
        b for b in _AUTO_ORDER
        if (_have(b) if b in _RUNTIMES else _PROVIDERS[b] in have)
    ]
    if importlib.util.find_spec("torch") is not None:
        found.append(Backend.TORCH)
    return found


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
        hint = {Backend.NCNN: "pip install ncnn", Backend.OPENVINO: "pip install openvino",
                Backend.TORCH: "pip install torch"}.get(backend, "install 'vsremaster[gpu]'")
        raise BackendError(
            f"backend {backend.value!r} is not available here "
            f"(available: {', '.join(b.value for b in available_backends())}); "
            f"{hint} for {backend.value}, or use backend='auto'"
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
            CPU: converted model, slow, for testing; ncnn and OpenVINO: fp32 only).
        threads: CPU threads per session (ORT intra-op, OpenVINO, ncnn); 0 = cores /
            num_streams.
        ncnn: the original ncnn ``(.param, .bin)`` the ONNX was converted from (checked
            against the manifest, :func:`~vsremaster.models.store.ncnn_source`); lets the
            ``ncnn`` backend, and ``auto`` on a CPU, run those instead.
    """

    model: Path
    backend: Backend = Backend.AUTO
    num_streams: int = 1
    fp16: bool = False
    threads: int = 0
    ncnn: tuple[Path, Path] | None = None

    @property
    def cpu_threads(self) -> int:
        """Threads one CPU session uses."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.num_streams)


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


@dataclass(frozen=True, slots=True)
class _Io:
    name: str
    shape: list[int | str | None]
    type: str = "tensor(float)"


class _NcnnSession:
    """An ncnn network (the model's original ``.param``/``.bin``) behind the part of ORT's
    ``InferenceSession`` interface the pool uses: one input, one output, NCHW float32.

    fp32 only (ncnn's fp16/bf16 storage is off: on x86 CPUs without fp16 arithmetic it would
    do nothing), so results match ONNX Runtime within the converter's verification
    tolerance; Vulkan is not used. The batch is run one image at a time through a fresh
    extractor (extractors of one net are independent).
    """

    def __init__(self, param: Path, bin_: Path, threads: int) -> None:
        from ..models.ncnn import read_param

        ncnn = _ncnn()
        graph = read_param(param)
        self._in, self._out = graph.input_blob, graph.output_blob
        net = ncnn.Net()
        opt = net.opt
        opt.use_vulkan_compute = False
        opt.num_threads = threads
        opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = False
        if net.load_param(str(param)) != 0 or net.load_model(str(bin_)) != 0:
            raise BackendError(f"ncnn could not load {param.name} / {bin_.name}")
        self._net, self._mat = net, ncnn.Mat

    def get_inputs(self) -> list[_Io]:
        return [_Io(self._in, [1, None, "height", "width"])]

    def get_outputs(self) -> list[_Io]:
        return [_Io(self._out, [1, None, "height", "width"])]

    def get_providers(self) -> list[str]:
        return ["ncnn"]

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        outs = []
        for image in x:
            ex = self._net.create_extractor()
            ex.input(self._in, self._mat(np.ascontiguousarray(image, dtype=np.float32)))
            status, mat = ex.extract(self._out)
            if status != 0:
                raise BackendError(f"ncnn failed on a {image.shape} input (status {status})")
            outs.append(np.array(mat, dtype=np.float32).reshape(-1, mat.h, mat.w))
        return [np.stack(outs)]


_OV_TYPES = {"f32": "float", "f64": "double", "f16": "float16", "i64": "int64", "i32": "int32"}


@functools.cache
def _ov_core():
    """The process's ``openvino.Core`` (it holds the CPU plugin)."""
    return _openvino().Core()


class _OpenVinoSession:
    """The ONNX file compiled by OpenVINO's CPU plugin behind the pool's session interface.

    The model is compiled once with its dynamic dimensions: a new tile or frame size needs
    no recompile (on the denoiser this ran as fast as a compile for the static shape).
    Latency hint, one stream of ``threads`` threads and the f32 precision hint, so results
    match ONNX Runtime's within about 1e-5 (no bf16/fp16 arithmetic on CPUs that offer it).
    """

    def __init__(self, model: Path, threads: int) -> None:
        compiled = _ov_core().compile_model(str(model), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
        })  # fmt: skip
        self._request = compiled.create_infer_request()

        def io(port) -> _Io:
            dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            kind = _OV_TYPES.get(port.get_element_type().get_type_name(), "float")
            return _Io(port.get_any_name(), dims, f"tensor({kind})")

        self._inputs = [io(p) for p in compiled.inputs]
        self._outputs = [io(p) for p in compiled.outputs]
        self._ports = {o.name: port for o, port in zip(self._outputs, compiled.outputs)}

    def get_inputs(self) -> list[_Io]:
        return self._inputs

    def get_outputs(self) -> list[_Io]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return ["openvino (CPU)"]

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return [result[self._ports[n]] for n in output_names or self._ports]


def _ncnn_can_run(cfg: SessionConfig) -> bool:
    return cfg.ncnn is not None and not cfg.fp16


def runs_on_ncnn(cfg: SessionConfig) -> bool:
    """Whether ``cfg``'s sessions will run on ncnn: asked for, or ``auto``'s choice (no GPU
    provider ahead of it, an ncnn source and fp32), as the first session resolves it."""
    if cfg.backend is Backend.NCNN:
        return True
    if cfg.backend is not Backend.AUTO or not _ncnn_can_run(cfg):
        return False
    return next(b for b in available_backends() if b is not Backend.TORCH) is Backend.NCNN


def _require_fp32(cfg: SessionConfig, backend: Backend) -> None:
    if cfg.fp16:
        raise BackendError(
            f"the {backend.value} backend runs fp32 only; use fp16=False, or backend 'cpu'")


def _require_ncnn_source(cfg: SessionConfig) -> None:
    _require_fp32(cfg, Backend.NCNN)
    if cfg.ncnn is None:
        raise BackendError(
            f"{cfg.model.name} has no ncnn source: the ncnn backend runs only the models "
            "converted from ncnn files (the upscalers of `vsremaster models list`, with their "
            "sources fetched); use backend 'cpu' or 'auto'"
        )


class _TorchSession:
    """The ONNX graph run by PyTorch (:class:`~vsremaster.runtime.torch_graph.OnnxModule`)
    behind the pool's session interface: on CUDA when torch sees a GPU, else on the CPU.

    ``fp16``: autocast to float16 on CUDA, bfloat16 on the CPU. With
    ``VSREMASTER_TORCH_COMPILE=1`` the module goes through ``torch.compile`` (each new input
    shape compiles once: fixed tiles keep that to the first frame). Sessions of one model
    share one module (inference only, so threads may run it at once).

    On CUDA each session has its own CUDA stream, and its copies go through page-locked host
    memory without blocking: while one session's frame is copied in or out, another
    session's frame computes (a pool's sessions are its frames in flight). Weights and
    4-D inputs are channels-last there. Measured on an H100 (``benchmarks/chain.py
    --backend torch``): the streams took the 720x480 chain from 8.9 to 17.9 fps.
    """

    def __init__(self, model: Path, fp16: bool) -> None:
        torch = _torch()
        self._torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._dtype = (torch.float16 if self.device == "cuda" else torch.bfloat16) if fp16 else None
        self._module, self._forward = _torch_module(model, self.device)
        self._stream = torch.cuda.Stream() if self.device == "cuda" else None
        self._inputs = [_Io(n, shape) for n, shape in self._module.input_shapes]
        self._outputs = [_Io(n, [None]) for n in self._module.output_names]

    def get_inputs(self) -> list[_Io]:
        return self._inputs

    def get_outputs(self) -> list[_Io]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [f"torch ({self.device})"]

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        names = self._module.output_names
        wanted = names if output_names is None else output_names
        cuda = self._stream is not None
        with torch.cuda.stream(self._stream) if cuda else nullcontext(), torch.inference_mode():
            xs = [torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32))
                  for name in self._module.input_names]
            if cuda:
                xs = [_channels_last(x.pin_memory().to(self.device, non_blocking=True))
                      for x in xs]
            with torch.autocast(self.device, dtype=self._dtype or torch.float32,
                                enabled=self._dtype is not None):
                ys = self._forward(*xs)
            outs = [ys[names.index(n)].to(torch.float32, memory_format=torch.contiguous_format)
                    for n in wanted]
            if cuda:
                outs = [torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
                        .copy_(y, non_blocking=True) for y in outs]
        if cuda:
            self._stream.synchronize()
        return [y.numpy() for y in outs]


def _channels_last(x):
    """A 4-D tensor in channels-last memory order (others unchanged)."""
    return x.contiguous(memory_format=_torch().channels_last) if x.dim() == 4 else x


_torch_modules: dict[tuple[Path, str], tuple[object, object]] = {}
_torch_lock = threading.Lock()


def _torch_module(model: Path, device: str):
    """``(module, forward)``: the translated module of ``model`` on ``device`` and what runs
    it (the module, or its ``torch.compile`` wrapper); built once per process."""
    with _torch_lock:
        entry = _torch_modules.get((model, device))
        if entry is None:
            from .torch_graph import OnnxModule

            module = OnnxModule(model).to(device).eval()
            if device == "cuda":
                # channels-last (NHWC) weights and activations: cuDNN's tensor-core kernels
                # run without layout transposes (measured on an H100, model only:
                # realesrgan-x4plus 6.9 -> 9.1 fps, the compact 4x 102 -> 134 fps)
                module = module.to(memory_format=_torch().channels_last)
                # the weights' copies finish before any session's stream runs
                _torch().cuda.synchronize()
            compile_ = os.environ.get("VSREMASTER_TORCH_COMPILE") == "1"
            entry = _torch_modules[(model, device)] = (
                module, _torch().compile(module) if compile_ else module)
        return entry


def _make_session(cfg: SessionConfig, backend: Backend):
    if backend is Backend.TORCH:
        return _TorchSession(cfg.model, cfg.fp16)
    if backend is Backend.NCNN:
        _require_ncnn_source(cfg)
        return _NcnnSession(*cfg.ncnn, cfg.cpu_threads)
    if backend is Backend.OPENVINO:
        _require_fp32(cfg, backend)
        return _OpenVinoSession(cfg.model, cfg.cpu_threads)
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if backend is Backend.CPU:
        opts.intra_op_num_threads = cfg.cpu_threads
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
        if (backend is Backend.TORCH or (backend is Backend.NCNN and not _ncnn_can_run(cfg))
                or (backend is Backend.OPENVINO and cfg.fp16)):
            continue
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
    """The process-wide pool for ``config`` (one set of sessions per model and settings).

    Raises:
        BackendError: backend ``ncnn`` for a model without its ncnn source, or ``ncnn`` /
            ``openvino`` with fp16 (at once, while the graph is built, not at the first
            frame).
    """
    if config.backend is Backend.NCNN:
        _require_ncnn_source(config)
    elif config.backend is Backend.OPENVINO:
        _require_fp32(config, config.backend)
    with _pools_lock:
        pool = _pools.get(config)
        if pool is None:
            pool = _pools[config] = SessionPool(config)
        return pool
