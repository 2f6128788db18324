"""onnxruntime sessions: the one place that picks providers and runs graphs.

Everything that touches ``onnxruntime`` goes through here:

* :func:`resolve_providers` turns ``"auto" | "cpu" | "cuda"`` into the
  provider list handed to onnxruntime;
* :func:`create_session` builds a session (all graph optimisations, optional
  thread count, quiet logging) and reports which provider *really* runs it --
  judged by ``session.get_providers()``, never by
  ``get_available_providers()``, because the GPU build lists CUDA even on a
  machine with no GPU or no CUDA libraries;
* :class:`GraphRunner` runs one single-input, single-output graph over a batch,
  in chunks, writing into a caller's buffer where one is given (IO binding),
  so no output is copied twice; a single chunk with no buffer given is a
  plain ``session.run`` (cheapest per call, which matters at batch 1).

Provider policy: ``auto`` takes CUDA only when a session actually gets it and
otherwise runs on the CPU without complaint (the reason is kept in
:attr:`SessionInfo.note`); ``cuda`` where CUDA does not work raises
:class:`~edge_infer.errors.ProviderError` -- never a silent fallback.

Every session gets graph optimisation level "all": the bundle's graphs are
verified, and other clients reproduce the Python API's maps bit for bit,
under that level (other levels change results at ~1e-5).

Thread safety: ``InferenceSession.run`` is thread-safe; IO-binding objects are
not, so :class:`GraphRunner` makes a fresh one per call and keeps no mutable
state, and one runner may be shared by many threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import numpy as np

from .errors import BundleError, InputError, ProviderError

if TYPE_CHECKING:  # onnxruntime is imported lazily: `edge-infer --help` must not pay for it
    import onnxruntime

PROVIDERS: tuple[str, ...] = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

#: onnxruntime log severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
#: Errors only by default; fatal-only while probing CUDA, whose failure on a
#: machine without a GPU is expected and would otherwise print a wall of logs.
_LOG_SEVERITY = 3
_PROBE_SEVERITY = 4
# The default logger is process-global in onnxruntime; serialise changes to it.
_LOG_LOCK = threading.Lock()


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def ort_version() -> str:
    """The installed onnxruntime version."""
    return str(_ort().__version__)


def available_providers() -> list[str]:
    """Providers this onnxruntime build *lists* (not necessarily usable)."""
    return list(_ort().get_available_providers())


def resolve_providers(provider: str = "auto") -> list[str]:
    """The provider list to hand onnxruntime for ``provider``.

    ``"cpu"`` → ``[CPU]``; ``"cuda"`` / ``"auto"`` → ``[CUDA, CPU]`` when the
    build lists CUDA, else ``[CPU]`` for auto and :class:`ProviderError` for
    cuda. Whether CUDA then really works is only known once a session exists
    (see :func:`create_session`).
    """
    name = str(provider).strip().lower()
    if name not in PROVIDERS:
        raise InputError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    if name == "cpu":
        return [CPU]
    listed = available_providers()
    if CUDA in listed:
        return [CUDA, CPU]
    if name == "cuda":
        raise ProviderError(
            "CUDA was asked for, but this onnxruntime build has no CUDAExecutionProvider "
            f"(it lists: {', '.join(listed)}); install onnxruntime-gpu or use --provider cpu"
        )
    return [CPU]


@dataclass(frozen=True)
class SessionInfo:
    """Which provider a session really runs on, and why, in one line."""

    actual: Literal["cpu", "cuda"]
    requested: str
    note: str = ""

    def describe(self) -> str:
        """E.g. ``"cpu (auto: CUDA listed but not usable here)"``."""
        return f"{self.actual} ({self.note})" if self.note else self.actual


def _session_options(threads: Optional[int], spin_after_run: bool = True) -> Any:
    ort = _ort()
    opts = ort.SessionOptions()
    if not spin_after_run:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = _LOG_SEVERITY
    if threads is not None:
        if int(threads) < 1:
            raise InputError(f"threads must be 1 or more, not {threads}")
        opts.intra_op_num_threads = int(threads)
        # One graph, run node after node: extra inter-op threads only add overhead.
        opts.inter_op_num_threads = 1
    return opts


def create_session(
    model_path: Union[str, Path, bytes],
    *,
    provider: str = "auto",
    threads: Optional[int] = None,
) -> tuple["onnxruntime.InferenceSession", str]:
    """Open ``model_path`` as an onnxruntime session.

    ``model_path``: a file, or the graph's bytes. Returns ``(session, actual)`` where ``actual`` is ``"cpu"`` or ``"cuda"``:
    the provider the session really got. ``threads=None`` keeps onnxruntime's
    default intra-op thread count. See :func:`create_session_info` for the
    reason behind a CPU fallback.
    """
    session, info = create_session_info(model_path, provider=provider, threads=threads)
    return session, info.actual


def create_session_info(
    model_path: Union[str, Path, bytes],
    *,
    provider: str = "auto",
    threads: Optional[int] = None,
    spin_after_run: bool = True,
) -> tuple["onnxruntime.InferenceSession", SessionInfo]:
    """Like :func:`create_session`, returning a :class:`SessionInfo` instead of a name.

    ``spin_after_run=False``: onnxruntime's intra-op threads stop spinning as
    soon as a run returns (they still spin between the nodes of a run),
    leaving the cores to the caller's own work between runs. Measured here:
    the same decoder time; it paid only while numpy work ran on threads
    around the decoder (commit 35d8daa); the generator graphs leave none.
    """
    ort = _ort()
    source = model_path if isinstance(model_path, bytes) else str(model_path)
    path = Path("<graph bytes>") if isinstance(model_path, bytes) else Path(model_path)
    providers = resolve_providers(provider)
    requested = str(provider).strip().lower()
    opts = _session_options(threads, spin_after_run)
    wants_cuda = providers[0] == CUDA
    try:
        with _LOG_LOCK:
            ort.set_default_logger_severity(_PROBE_SEVERITY if wants_cuda else _LOG_SEVERITY)
            try:
                session = ort.InferenceSession(source, sess_options=opts, providers=providers)
            finally:
                ort.set_default_logger_severity(_LOG_SEVERITY)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(model_path, bytes) and not path.exists():
            raise BundleError(f"{path}: no such file") from None
        raise BundleError(f"{path}: onnxruntime cannot load this graph ({first})") from None
    got = session.get_providers()
    if wants_cuda and got and got[0] == CUDA:
        return session, SessionInfo("cuda", requested)
    if requested == "cuda":
        raise ProviderError(
            "CUDA was asked for, but onnxruntime could not use it (no GPU, or the CUDA/cuDNN "
            "libraries it needs are missing); use --provider cpu or --provider auto"
        )
    note = "auto: CUDA listed but not usable here" if wants_cuda else ""
    if requested == "auto" and not wants_cuda:
        note = "auto: no CUDA in this onnxruntime build"
    return session, SessionInfo("cpu", requested, note)


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
        """``"cpu"`` or ``"cuda"``: the provider that really runs this graph."""
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
        if self.info.actual == "cuda":
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
