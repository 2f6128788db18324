"""onnxruntime sessions: the one place that opens graphs and picks providers, judged by what a session *really* got
(``docs/providers.md``): an explicit provider that does not run raises ProviderError, ``auto`` says what it got."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import re
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

from .errors import BundleError, EdgeInferError, InputError, ProviderError

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
TENSORRT, OPENVINO = "TensorrtExecutionProvider", "OpenVINOExecutionProvider"
#: Names users type → onnxruntime's execution providers.
EXECUTION_PROVIDERS = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "openvino": OPENVINO}
SHORT_NAMES = {ep: name for name, ep in EXECUTION_PROVIDERS.items()}
DISPLAY_NAMES = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT", "openvino": "OpenVINO"}
PROVIDERS = ("auto", *EXECUTION_PROVIDERS)
_NVIDIA = (CUDA, TENSORRT)
_INSTALL_HINT = {
    CUDA: 'pip install "edge-infer[gpu]": onnxruntime-gpu with the CUDA and cuDNN libraries',
    TENSORRT: 'pip install "edge-infer[gpu]" and NVIDIA\'s TensorRT libraries (pip install tensorrt)',
    OPENVINO: "pip install onnxruntime-openvino, then pip install --no-deps edge-infer, in an environment of its own",
}
#: onnxruntime's pip distributions; each installs the same ``onnxruntime`` package.
_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml")
_LOG_LOCK = threading.Lock()  # onnxruntime's default logger is process-wide


def ort() -> Any:
    """The ``onnxruntime`` module, or one line saying which extra installs it."""
    # Without this onnxruntime writes a telemetry id under ~/.cache and warns where HOME is read-only.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        raise EdgeInferError('no onnxruntime is installed; install edge-infer with a runtime: pip install '
                             '"edge-infer[cpu]" (CPU) or pip install "edge-infer[gpu]" (NVIDIA GPU)') from None
    onnxruntime.set_default_logger_severity(3)  # errors only: warnings are ours to give, in one line
    return onnxruntime


def available_providers() -> list[str]:
    """Providers this onnxruntime build *lists* (not necessarily usable)."""
    return list(ort().get_available_providers())


@functools.lru_cache(maxsize=1)
def nvidia_driver() -> Optional[str]:
    """None where the NVIDIA driver's own library loads (one ``dlopen``), else why CUDA cannot run here."""
    try:
        ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found"
    return None


@functools.lru_cache(maxsize=1)
def ort_distributions() -> tuple[str, ...]:
    """The onnxruntime distributions installed beside the imported ``onnxruntime`` (a shadowed one is harmless)."""
    here = Path(ort().__file__).resolve().parent.parent
    found = []
    for name in _DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            if Path(metadata.distribution(name).locate_file("")).resolve() == here:
                found.append(name)
    return tuple(found)


def ort_distribution() -> str:
    """Which onnxruntime distribution is installed (e.g. ``"onnxruntime-gpu"``), or ``""``."""
    return next(iter(ort_distributions()), "")


def clash() -> str:
    """A warning where two onnxruntime distributions share this environment, else ``""``."""
    found = ort_distributions()
    return (f"{' and '.join(found)} are both installed here and overwrite each other's files; pip uninstall "
            f"{' '.join(found)}, then install edge-infer again with one runtime extra") if len(found) > 1 else ""


def _library_problem(ep: str) -> str:
    """The first shared library a GPU provider cannot load, in the loader's words (Linux only), or ``""``."""
    if sys.platform != "linux":
        return ""
    capi = Path(ort().__file__).parent / "capi"
    lib = capi / f"libonnxruntime_providers_{SHORT_NAMES[ep]}.so"
    if not lib.exists():
        return f"{lib.name} is not in this onnxruntime build"
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return re.sub(r"^(\S+): cannot open shared object file.*$", r"\1 is missing", str(exc).replace(f"{capi}/", ""))
    return ""


def gpu_problem(ep: str) -> str:
    """Why a GPU provider cannot run here, as precisely as we can tell, with the fix."""
    problem = clash() or nvidia_driver() or _library_problem(ep)
    if problem.endswith("is missing"):
        return problem + (" (pip install tensorrt)" if "nvinfer" in problem else
                          ' (pip install "edge-infer[gpu]" brings it)')
    return problem or ("the NVIDIA driver and libraries load, but onnxruntime could not create the session "
                       "(a driver too old?)")


def resolve_providers(provider: str = "auto") -> list[str]:
    """The provider list handed to onnxruntime for ``provider`` (an explicit one that cannot work raises)."""
    name = str(provider).strip().lower()
    if name not in PROVIDERS:
        raise InputError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    listed = available_providers()
    if name == "auto":
        return [CUDA, CPU] if CUDA in listed and nvidia_driver() is None else [CPU]
    ep = EXECUTION_PROVIDERS[name]
    if ep not in listed:
        dist = ort_distribution()
        needs = "onnxruntime-openvino" if ep == OPENVINO else "onnxruntime-gpu"
        hint = clash() or (_INSTALL_HINT[ep] if not dist or dist == needs else f"this environment has {dist}; "
                           f"{DISPLAY_NAMES[name]} needs {needs}, in an environment of its own")
        shown = ", ".join(SHORT_NAMES.get(p, p) for p in listed)
        raise ProviderError(f"{DISPLAY_NAMES[name]} was asked for, but this onnxruntime ({ort().__version__}) has no "
                            f"{ep} (it lists: {shown}); {hint}")
    if ep in _NVIDIA and nvidia_driver() is not None:
        raise ProviderError(f"{DISPLAY_NAMES[name]} was asked for, but {nvidia_driver()}; use --provider cpu or auto")
    return {CPU: [CPU], CUDA: [CUDA, CPU], TENSORRT: [TENSORRT, CUDA, CPU], OPENVINO: [OPENVINO, CPU]}[ep]


class SessionInfo(NamedTuple):
    """Which provider a session really runs on (``cpu``, ``cuda``, ``tensorrt``, ``openvino``), and why."""

    actual: str
    note: str = ""

    def describe(self) -> str:
        """E.g. ``"cpu (auto: no NVIDIA driver found, so CUDA was not tried)"``."""
        return f"{self.actual} ({self.note})" if self.note else self.actual


def _auto_note(got: str, tried_cuda: bool) -> str:
    listed = available_providers()
    if got == CUDA:
        return "auto: a CUDA session really got the GPU"
    if CUDA not in listed:
        return "auto: this onnxruntime has no CUDA" + ("; openvino is listed: --provider openvino"
                                                       if OPENVINO in listed else "")
    if not tried_cuda:
        return f"auto: {nvidia_driver()}, so CUDA was not tried"
    return f"auto: CUDA not usable: {gpu_problem(CUDA)}"


def open_session(model: Union[str, Path, bytes], *, provider: str = "auto", threads: Optional[int] = None,
                 options: Optional[dict[str, Any]] = None) -> tuple[Any, SessionInfo]:
    """Open ``model`` (a path, or the graph's bytes): ``(session, SessionInfo)``; ``options``: more SessionOptions."""
    rt = ort()
    providers = resolve_providers(provider)
    requested, wanted = str(provider).strip().lower(), providers[0]
    opts = rt.SessionOptions()
    opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads is not None:
        if type(threads) is not int or threads < 1:
            raise InputError(f"threads must be a whole number of at least 1, not {threads!r}")
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    for name, value in (options or {}).items():
        if name == "graph_optimization_level":
            raise InputError("graph_optimization_level is fixed at 'all' for edge-infer graphs")
        setattr(opts, name, value)
    source = model if isinstance(model, bytes) else str(model)
    where = "<graph bytes>" if isinstance(model, bytes) else source
    if wanted in _NVIDIA and hasattr(rt, "preload_dlls"):  # NVIDIA's pip libraries, onnxruntime-gpu >= 1.21
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            rt.preload_dlls()
    try:
        # onnxruntime print()s provider fallbacks to stdout, which holds the user's results, and logs a GPU
        # provider that cannot load (expected on many machines) as errors: we say why in one line instead.
        with _LOG_LOCK, contextlib.redirect_stdout(io.StringIO()):
            rt.set_default_logger_severity(4 if wanted != CPU else 3)
            try:
                session = rt.InferenceSession(source, sess_options=opts, providers=providers)
            finally:
                rt.set_default_logger_severity(3)
    except Exception as exc:  # onnxruntime raises its own exception types
        if not isinstance(model, bytes) and not Path(source).exists():
            raise BundleError(f"{where}: no such file") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if requested != "auto" and wanted != CPU:
            raise ProviderError(f"{DISPLAY_NAMES[requested]} was asked for, but onnxruntime could not open the graph "
                                f"with it ({first})") from None
        raise BundleError(f"{where}: onnxruntime cannot load this graph ({first})") from None
    got = (session.get_providers() or [CPU])[0]
    if got != wanted and requested != "auto":
        why = gpu_problem(wanted) if wanted in _NVIDIA else f"onnxruntime fell back to {got}"
        raise ProviderError(f"{DISPLAY_NAMES[requested]} was asked for, but onnxruntime could not use it: {why}; "
                            "use --provider cpu or --provider auto")
    note = _auto_note(got, tried_cuda=wanted == CUDA) if requested == "auto" else ""  # auto: CUDA or the CPU
    if wanted != CPU:
        session.disable_fallback()  # a provider failing inside a run is an error, not a silent CPU rerun
    return session, SessionInfo(SHORT_NAMES.get(got, got), note)
