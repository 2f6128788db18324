"""onnxruntime sessions: the one place that picks providers and runs graphs.

Everything that touches ``onnxruntime`` goes through here:

* :func:`resolve_providers` turns ``"auto" | "cpu" | "cuda" | "tensorrt" |
  "openvino"`` into the provider list handed to onnxruntime;
* :func:`create_session_info` builds a session (all graph optimisations, optional
  thread count, quiet logging) and reports which provider *really* runs it --
  judged by ``session.get_providers()``, never by
  ``get_available_providers()``, because the GPU build lists CUDA and
  TensorRT even on a machine with no GPU or no CUDA libraries;
* :class:`GraphRunner` runs one single-input, single-output graph over a batch,
  in chunks, writing into a caller's buffer where one is given (IO binding),
  so no output is copied twice; a single chunk with no buffer given is a
  plain ``session.run`` (cheapest per call, which matters at batch 1).

Provider policy (the honesty rules):

* an explicit ``cuda``, ``tensorrt`` or ``openvino`` that does not really run
  the graph raises :class:`~edge_infer.errors.ProviderError` naming what is
  missing (the provider in this onnxruntime build, the NVIDIA driver, or the
  first shared library that would not load) -- never a silent fallback;
* ``auto`` takes CUDA when a session really gets it, else the CPU, and says
  why in one line (:attr:`SessionInfo.note`). It never picks TensorRT (its
  engine build takes far longer than a whole small run) or OpenVINO (a
  separate onnxruntime distribution the user chose on purpose, so asked for
  by name);
* probing is free where it cannot work: without an NVIDIA driver (a few file
  checks, see :func:`nvidia_driver`) no CUDA session is attempted, so a
  CPU-only user pays nothing for the GPU build's CUDA listing.

Every session gets graph optimisation level "all": the bundle's graphs are
verified, and other clients reproduce the Python API's maps bit for bit,
under that level (other levels change results at ~1e-5).

Thread safety: ``InferenceSession.run`` is thread-safe; IO-binding objects are
not, so :class:`GraphRunner` makes a fresh one per call and keeps no mutable
state, and one runner may be shared by many threads.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .errors import BundleError, InputError, ProviderError

if TYPE_CHECKING:  # onnxruntime is imported lazily: `edge-infer --help` must not pay for it
    import onnxruntime

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
#: Short names users type → onnxruntime's execution provider names.
EXECUTION_PROVIDERS: dict[str, str] = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "openvino": OPENVINO}
SHORT_NAMES: dict[str, str] = {ep: name for name, ep in EXECUTION_PROVIDERS.items()}
#: How messages name each provider.
DISPLAY_NAMES: dict[str, str] = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT", "openvino": "OpenVINO"}
PROVIDERS: tuple[str, ...] = ("auto", *EXECUTION_PROVIDERS)
#: Providers that need an NVIDIA GPU and its driver.
_NVIDIA = (CUDA, TENSORRT)
#: What to install when a provider is missing from the onnxruntime build.
_INSTALL_HINT = {
    CUDA: 'pip install "edge-infer[cuda]": onnxruntime-gpu with the CUDA and cuDNN libraries',
    TENSORRT: 'pip install "edge-infer[cuda]" and NVIDIA\'s TensorRT libraries (pip install tensorrt)',
    OPENVINO: "README, Install: onnxruntime-openvino with pip install --no-deps edge-infer",
}

#: onnxruntime log severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
#: Errors only by default; fatal-only while probing a GPU provider, whose failure
#: is expected on many machines and would otherwise print a wall of logs.
_LOG_SEVERITY = 3
_PROBE_SEVERITY = 4
# The default logger is process-global in onnxruntime; serialise changes to it.
_LOG_LOCK = threading.Lock()


def _ort() -> Any:
    if "onnxruntime" not in sys.modules:
        # Without this, onnxruntime writes a telemetry device id under ~/.cache and,
        # where HOME is not writable, prints a warning at import that no severity
        # setting can stop. A user's own ORT_DISABLE_TELEMETRY=0 is respected.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def ort_version() -> str:
    """The installed onnxruntime version."""
    return str(_ort().__version__)


def available_providers() -> list[str]:
    """Providers this onnxruntime build *lists* (not necessarily usable)."""
    return list(_ort().get_available_providers())


def listed_short_names() -> list[str]:
    """The providers edge-infer knows that this build lists, e.g. ``["cpu", "cuda", "tensorrt"]``."""
    listed = set(available_providers())
    return [name for name, ep in EXECUTION_PROVIDERS.items() if ep in listed]


# Device files and libraries an NVIDIA driver puts on a machine (Linux, WSL, Windows).
_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg",
                 "/usr/lib/wsl/lib/libcuda.so.1")


@functools.lru_cache(maxsize=1)
def nvidia_driver() -> Optional[str]:
    """None where an NVIDIA driver is present, else why we think it is not.

    Cheap on purpose (a few ``stat`` calls, then one ``dlopen`` attempt of the
    driver library), so ``auto`` costs a CPU-only user nothing measurable.
    """
    if any(os.path.exists(p) for p in _DRIVER_FILES):
        return None
    if sys.platform == "win32":
        system = os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvcuda.dll")
        return None if os.path.exists(system) else "no NVIDIA driver found"
    if sys.platform == "darwin":
        return "no NVIDIA driver on macOS"
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found"
    return None


@functools.lru_cache(maxsize=1)
def _preload_gpu_libraries() -> tuple[str, ...]:
    """Load the CUDA/cuDNN libraries of NVIDIA's pip wheels (the ``cuda`` extra)
    before a GPU session is made; returns the lines onnxruntime printed about
    libraries it could not load (it prints to stdout, which we keep clean)."""
    ort = _ort()
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None:
        return ()
    caught = io.StringIO()
    with contextlib.redirect_stdout(caught), contextlib.suppress(Exception):
        preload()
    return tuple(ln.strip() for ln in caught.getvalue().splitlines() if ln.strip().startswith("Failed to load"))


def _library_problem(ep: str) -> str:
    """The first shared library a GPU provider cannot load, in the loader's words, or ""."""
    if ep not in _NVIDIA or sys.platform != "linux":
        return ""
    import ctypes

    capi = Path(_ort().__file__).parent / "capi"
    lib = capi / f"libonnxruntime_providers_{SHORT_NAMES[ep]}.so"
    if not lib.exists():
        return f"{lib.name} is not in this onnxruntime build"
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(lib))
    except OSError as exc:
        text = str(exc).replace(f"{capi}/", "")
        return re.sub(r"^(\S+): cannot open shared object file.*$", r"\1 is missing", text)
    return ""


def _gpu_missing(ep: str) -> str:
    """Why a GPU provider cannot run here, as precisely as we can tell, with the fix."""
    if clash():
        return clash()
    driver = nvidia_driver()
    if driver:
        return driver
    problem = _library_problem(ep)
    if "libcuda.so" in problem:
        return f"{problem}: that is the NVIDIA driver's own library; install or repair the driver"
    if problem:
        hint = " (install TensorRT: pip install tensorrt)" if ep == TENSORRT and "nvinfer" in problem else \
            ' (pip install "edge-infer[cuda]" brings the CUDA and cuDNN libraries)'
        return f"{problem}{hint}"
    return "the NVIDIA driver and libraries load, but onnxruntime could not create the session (a driver too old for this CUDA?)"


#: onnxruntime's pip distributions; each installs the same `onnxruntime` package.
_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml")


@functools.lru_cache(maxsize=1)
def ort_distributions() -> tuple[str, ...]:
    """The onnxruntime distributions installed here; more than one is a broken
    environment (they overwrite each other's files), the most common cause of a
    GPU provider that silently is not there. Read only on error paths and by
    ``edge-infer info``: scanning package metadata is not free."""
    from importlib import metadata

    found = []
    for name in _DISTRIBUTIONS:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return tuple(found)


def ort_distribution() -> str:
    """Which onnxruntime distribution is installed (e.g. ``"onnxruntime-openvino"``), or ``""``."""
    found = ort_distributions()
    return found[0] if found else ""


def clash() -> str:
    """A warning where two onnxruntime distributions share this environment, else ``""``."""
    found = ort_distributions()
    if len(found) < 2:
        return ""
    return (f"{' and '.join(found)} are both installed here and overwrite each other's files; "
            f"pip uninstall {' '.join(found)}, then install edge-infer again (one of them comes back)")


def _install_hint(ep: str) -> str:
    """How to get ``ep``, never by adding a second onnxruntime distribution to this environment."""
    if clash():
        return clash()
    dist = ort_distribution()
    needs = "onnxruntime-openvino" if ep == OPENVINO else "onnxruntime-gpu"
    if dist and dist != needs:
        return (f"this environment has {dist}; {DISPLAY_NAMES[SHORT_NAMES[ep]]} needs {needs}, "
                f"in a separate environment ({_INSTALL_HINT[ep]})")
    return _INSTALL_HINT[ep]


def resolve_providers(provider: str = "auto") -> list[str]:
    """The provider list to hand onnxruntime for ``provider``.

    ``"cpu"`` → ``[CPU]``; ``"cuda"`` → ``[CUDA, CPU]``; ``"tensorrt"`` →
    ``[TensorRT, CUDA, CPU]`` (TensorRT hands the nodes it cannot build to
    CUDA); ``"openvino"`` → ``[OpenVINO, CPU]``; ``"auto"`` → ``[CUDA, CPU]``
    where the build lists CUDA and an NVIDIA driver is present, else ``[CPU]``.
    An explicit provider this build does not list, or a GPU provider without an
    NVIDIA driver, raises :class:`ProviderError`. Whether it then really works is
    only known once a session exists (see :func:`create_session_info`).
    """
    name = str(provider).strip().lower()
    if name not in PROVIDERS:
        raise InputError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    if name == "cpu":
        return [CPU]
    listed = available_providers()
    if name == "auto":
        return [CUDA, CPU] if CUDA in listed and nvidia_driver() is None else [CPU]
    ep = EXECUTION_PROVIDERS[name]
    if ep not in listed:
        raise ProviderError(
            f"{DISPLAY_NAMES[name]} was asked for, but this onnxruntime ({ort_version()}) has no {ep} "
            f"(it lists: {', '.join(SHORT_NAMES.get(p, p) for p in listed)}); {_install_hint(ep)}"
        )
    if ep in _NVIDIA and nvidia_driver() is not None:
        raise ProviderError(f"{DISPLAY_NAMES[name]} was asked for, but {nvidia_driver()}; use --provider cpu or auto")
    return {CUDA: [CUDA, CPU], TENSORRT: [TENSORRT, CUDA, CPU], OPENVINO: [OPENVINO, CPU]}[ep]


def _auto_note(tried_cuda: bool) -> str:
    """Why ``auto`` ended on the CPU, in a few words."""
    listed = available_providers()
    if CUDA not in listed:
        extra = "; openvino is listed: --provider openvino" if OPENVINO in listed else ""
        return f"auto: this onnxruntime has no CUDA{extra}"
    if not tried_cuda:
        return f"auto: {nvidia_driver()}, so CUDA was not tried"
    return f"auto: CUDA not usable: {_gpu_missing(CUDA)}"


@dataclass(frozen=True)
class SessionInfo:
    """Which provider a session really runs on, and why, in one line.

    ``actual``: ``"cpu"``, ``"cuda"``, ``"tensorrt"`` or ``"openvino"``.
    """

    actual: str
    requested: str
    note: str = ""

    def describe(self) -> str:
        """E.g. ``"cpu (auto: no NVIDIA driver found ..., CUDA not tried)"``."""
        return f"{self.actual} ({self.note})" if self.note else self.actual

    @property
    def on_gpu(self) -> bool:
        """True where inputs and outputs are best bound in GPU memory."""
        return self.actual in ("cuda", "tensorrt")


def _session_options(threads: Optional[int], options: Optional[Mapping[str, Any]] = None) -> Any:
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = _LOG_SEVERITY
    if threads is not None:
        if int(threads) < 1:
            raise InputError(f"threads must be 1 or more, not {threads}")
        opts.intra_op_num_threads = int(threads)
        # One graph, run node after node: extra inter-op threads only add overhead.
        opts.inter_op_num_threads = 1
    for name, value in (options or {}).items():
        if name == "graph_optimization_level":  # the bundle's bit-for-bit contract is made under "all"
            raise InputError("graph_optimization_level is fixed at 'all' for edge-infer graphs")
        setattr(opts, name, value)
    return opts


def create_session_info(
    model_path: Union[str, Path, bytes],
    *,
    provider: str = "auto",
    threads: Optional[int] = None,
    options: Optional[Mapping[str, Any]] = None,
) -> tuple["onnxruntime.InferenceSession", SessionInfo]:
    """Open ``model_path`` (a file, or the graph's bytes) as an onnxruntime session.

    The one way the project opens a graph: the runtime, the exporter's
    verification and every benchmark come here. Returns the session and a
    :class:`SessionInfo` saying which provider *really* runs it (judged by
    ``session.get_providers()``) and why. ``threads=None`` keeps
    onnxruntime's default intra-op thread count; ``options`` sets further
    ``SessionOptions`` attributes (``{"enable_profiling": True}``), except
    the optimisation level, which stays "all".
    """
    ort = _ort()
    source = model_path if isinstance(model_path, bytes) else str(model_path)
    path = Path("<graph bytes>") if isinstance(model_path, bytes) else Path(model_path)
    providers = resolve_providers(provider)
    requested = str(provider).strip().lower()
    wanted = providers[0]
    if wanted in _NVIDIA:
        _preload_gpu_libraries()
    opts = _session_options(threads, options)
    try:
        with _LOG_LOCK:
            ort.set_default_logger_severity(_PROBE_SEVERITY if wanted != CPU else _LOG_SEVERITY)
            # onnxruntime's Python layer print()s its provider fallbacks to stdout,
            # which belongs to the user's results: keep it (the outcome is judged below).
            quiet = contextlib.redirect_stdout(io.StringIO()) if wanted != CPU else contextlib.nullcontext()
            try:
                with quiet:
                    session = ort.InferenceSession(source, sess_options=opts, providers=providers)
            finally:
                ort.set_default_logger_severity(_LOG_SEVERITY)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(model_path, bytes) and not path.exists():
            raise BundleError(f"{path}: no such file") from None
        if requested != "auto" and wanted != CPU:
            raise ProviderError(f"{DISPLAY_NAMES.get(requested, requested)} was asked for, but onnxruntime could not "
                                f"open the graph with it ({first})") from None
        raise BundleError(f"{path}: onnxruntime cannot load this graph ({first})") from None
    info = _judge(session, requested, wanted)
    if wanted != CPU:
        # Otherwise a provider failing inside a run prints two lines and silently
        # reruns on the CPU; an error is what an explicit choice deserves.
        session.disable_fallback()
    return session, info


def _judge(session: Any, requested: str, wanted: str) -> SessionInfo:
    """The provider ``session`` really got, or :class:`ProviderError` for an explicit one it did not."""
    got = session.get_providers()
    actual = got[0] if got else CPU
    if actual == wanted:
        note = ""
        if requested == "auto":
            note = _auto_note(tried_cuda=False) if actual == CPU else "auto: an NVIDIA driver is present and a CUDA session really got the GPU"
        return SessionInfo(SHORT_NAMES.get(actual, actual), requested, note)
    if requested != "auto":
        why = _gpu_missing(wanted) if wanted in _NVIDIA else f"onnxruntime fell back to {', '.join(got)}"
        raise ProviderError(f"{DISPLAY_NAMES.get(requested, requested)} was asked for, but onnxruntime could not use it: {why}; "
                            "use --provider cpu or --provider auto")
    return SessionInfo("cpu", requested, _auto_note(tried_cuda=wanted == CUDA))


class GraphRunner:
    """Run one single-input, single-output onnxruntime graph over float32 batches.

    Holds immutable sessions and names only, so one runner may be used from
    many threads at once (each call makes its own IO binding).
    """

    def __init__(
        self,
        session: "onnxruntime.InferenceSession",
        info: Union[SessionInfo, str] = "cpu",
        *,
        input_name: Optional[str] = None,
        output_name: Optional[str] = None,
    ) -> None:
        self.session = session
        self.info = info if isinstance(info, SessionInfo) else SessionInfo(info, info)  # type: ignore[arg-type]
        inputs, outputs = session.get_inputs(), session.get_outputs()
        self.input_name = input_name or inputs[0].name
        self.output_name = output_name or outputs[0].name
        if self.input_name not in [i.name for i in inputs]:
            raise BundleError(
                f"{self._where(session)}has no input named {self.input_name!r} "
                f"(it has: {', '.join(i.name for i in inputs)})"
            )
        out_meta = next((o for o in outputs if o.name == self.output_name), None)
        if out_meta is None:
            raise BundleError(
                f"{self._where(session)}has no output named {self.output_name!r} "
                f"(it has: {', '.join(o.name for o in outputs)})"
            )
        # The fixed per-item output shape, e.g. (26, 26, 3); batch axis is dynamic.
        self.item_shape: tuple[int, ...] = tuple(
            int(d) if isinstance(d, int) else -1 for d in out_meta.shape[1:]
        )

    @staticmethod
    def _where(session: Any) -> str:
        path = getattr(session, "_model_path", None)
        return f"{path}: graph " if path else "the graph "

    @classmethod
    def open(
        cls,
        model_path: Union[str, Path],
        *,
        provider: str = "auto",
        threads: Optional[int] = None,
        input_name: Optional[str] = None,
        output_name: Optional[str] = None,
    ) -> "GraphRunner":
        """Create the session and the runner in one step."""
        session, info = create_session_info(model_path, provider=provider, threads=threads)
        return cls(session, info, input_name=input_name, output_name=output_name)

    @property
    def actual(self) -> str:
        """``"cpu"``, ``"cuda"``, ``"tensorrt"`` or ``"openvino"``: the provider that really runs this graph."""
        return self.info.actual

    def run(
        self,
        x: np.ndarray,
        *,
        out: Optional[np.ndarray] = None,
        chunk: Optional[int] = None,
    ) -> np.ndarray:
        """Run the graph on batch ``x`` and return the output batch (float32).

        ``out``: a C-contiguous float32 array of the output's shape to write
        into (e.g. a slice of a memory-mapped file), filled in place and
        returned. ``chunk``: run at most this many items at a time, bounding
        peak memory for huge batches.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        step = max(1, chunk or n)
        if out is None:
            if 0 < n <= step:
                # One chunk and no caller buffer: plain session.run lets onnxruntime
                # allocate the result, which is what we return -- no copy, and no
                # IO-binding objects (they cost ~5 us a call, a lot at batch 1).
                return self._run_alloc(x)
            if -1 in self.item_shape:
                # Output shape not fixed in the graph: let onnxruntime allocate.
                parts = [self._run_alloc(x[i : i + step]) for i in range(0, n, step)]
                return np.concatenate(parts, axis=0) if parts else self._run_alloc(x)
            out = np.empty((n, *self.item_shape), dtype=np.float32)
        elif out.dtype != np.float32 or not out.flags.c_contiguous or out.shape[0] != n:
            raise InputError("out must be a C-contiguous float32 array with one row per input")
        for i in range(0, n, step):
            self._run_into(x[i : i + step], out[i : i + step])
        return out

    def _run_alloc(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def _run_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """One chunk, output written straight into ``out`` (no extra copy)."""
        session = self.session
        binding = session.io_binding()  # per call: bindings are not thread-safe
        if self.info.on_gpu:
            ort = _ort()
            # Input copied to the device once, output left there and copied back once.
            x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding.bind_ortvalue_input(self.input_name, x_dev)
            binding.bind_output(self.output_name, "cuda", 0)
            session.run_with_iobinding(binding)
            out[...] = binding.copy_outputs_to_cpu()[0]
            return
        binding.bind_cpu_input(self.input_name, x)
        binding.bind_output(
            self.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data
        )
        session.run_with_iobinding(binding)
