"""``edge-infer bench``: how fast a bundle encodes, decodes and generates here, as JSON-ready dicts."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from . import __version__, runtime
from .bundle import load_bundle
from .errors import InputError, ProviderError
from .generator import WaferGenerator
from .sampling import check_choice
from .wafer import MAP_SHAPE

TASKS = ("encode", "decode", "generate")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, versions, GPUs."""
    cpuinfo: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            cpuinfo.setdefault(key.strip().lower(), value.strip())
    gpus: list[str] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # no nvidia-smi: no NVIDIA GPU to name
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip().splitlines()
    return {"cpu": cpuinfo.get("model name") or platform.processor() or platform.machine(),
            "cpu_flags": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")
                          if f in cpuinfo.get("flags", "").split()],
            "logical_cpus": os.cpu_count(), "usable_cores": usable_cores(), "gpus": gpus, "os": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": runtime.ort().__version__,
            "providers_listed": runtime.available_providers(), "edge_infer": __version__}


def parse_batches(text: Union[str, Iterable[int]]) -> list[int]:
    """``"1,64,1024"`` → ``[1, 64, 1024]``; every batch a positive integer."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        batches = [int(str(b).strip()) for b in items if str(b).strip()]
    except ValueError:
        raise InputError(f"batches must be comma-separated whole numbers, e.g. 1,64,1024 (got {text!r})") from None
    if not batches or min(batches) < 1:
        raise InputError(f"batches must be one or more positive whole numbers (got {text!r})")
    return batches


def measure(call: Callable[[], Any], batch: int, seconds: float, *, min_calls: int = 5,
            warmup: int = 2, rounds: int = 3) -> dict[str, Any]:
    """Time ``call`` (``batch`` maps a call) for ~``seconds``: maps/s, latencies, and the best of ``rounds`` slices."""
    if seconds <= 0:
        raise InputError(f"seconds must be positive, not {seconds}")
    for _ in range(warmup):  # first runs allocate and pick kernels; not what a steady user sees
        call()
    laps: list[float] = []
    start = time.perf_counter()
    while len(laps) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        laps.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    ms = np.array(laps) * 1e3
    best = max(len(part) / max(part.sum(), 1e-6) for part in np.array_split(ms, max(1, rounds))) * batch * 1e3
    return {"calls": len(laps), "seconds": round(total, 6),  # 4 decimals of a 0.01 s run: a 0.5 % error in maps/s
            "maps_per_s": round(batch * len(laps) / total, 1), "maps_per_s_best": round(float(best), 1),
            "latency_ms": {"p50": round(float(np.median(ms)), 4),
                           "p99": round(float(np.percentile(ms, 99, method="inverted_cdf")), 4),
                           "mean": round(float(ms.mean()), 4)}}


def working_providers(model_path: Union[str, Path], requested: str = "all") -> list[str]:
    """Those of ``requested`` that really run ``model_path`` (``all``: the CPU and each other one a session gets)."""
    name = check_choice(requested, ("all", *runtime.PROVIDERS), "provider")
    if name != "all":
        return [runtime.open_session(model_path, provider=name)[1].actual]
    found = ["cpu"]
    for other in [n for n in runtime.EXECUTION_PROVIDERS if n != "cpu"]:  # an unlisted one raises ProviderError
        with contextlib.suppress(ProviderError):
            found.append(runtime.open_session(model_path, provider=other)[1].actual)
    return found


def die_parity(gen: Any, reference: Any, *, n: int = 4096, seed: int = 0) -> dict[str, Any]:
    """How many maps and dies of ``gen`` differ from the CPU ``reference`` on one seeded request, and by how much."""
    per_class = n // len(gen.classes) or 1
    runs = [(gen.generate(c, per_class, seed=seed), reference.generate(c, per_class, seed=seed)) for c in gen.classes]
    diff = np.concatenate([a.maps.argmax(-1) != b.maps.argmax(-1) for a, b in runs])
    z = gen.bundle.latents[np.concatenate([a.sources for a, _ in runs])]
    max_prob = float(np.abs(gen.decode(z, raw=True) - reference.decode(z, raw=True)).max())
    return {"provider": gen.provider, "against": reference.provider, "maps": len(diff),
            "maps_differ": int(diff.any(axis=(1, 2)).sum()), "dies_differ": int(diff.sum()),
            "max_abs_probability_diff": max_prob, "seed": seed}


def bench_generator(gen: Any, batches: Sequence[int], seconds: float, *, tasks: Sequence[str] = TASKS,
                    io_binding: Sequence[str] = ("on",)) -> list[dict[str, Any]]:
    """Rows for ``tasks`` of one loaded :class:`WaferGenerator`; encode and decode once per ``io_binding`` mode."""
    rows = []
    cls = int(np.bincount(gen.bundle.labels).argmax())  # the busiest class
    variant = gen.bundle.manifest.get("graphs", {}).get("decoder", {}).get("variant", "unknown")
    gpu = gen.provider in ("cuda", "tensorrt")
    for batch in batches:
        bank_rows = np.arange(batch) % gen.bundle.count
        z = np.ascontiguousarray(gen.bundle.latents[bank_rows])
        for task in tasks:
            for binding in io_binding if task != "generate" else ("-",):
                if task == "generate":
                    seeds = iter(range(10**9))
                    call: Callable[[], Any] = lambda b=batch: gen.generate(cls, b, seed=next(seeds))  # noqa: E731
                else:  # encode bank maps (realistic input, with their outlines), or decode their latents
                    session, x, shape = ((gen.encoder_session, gen.bank_maps(bank_rows), z.shape) if task == "encode"
                                         else (gen.decoder_session, z, (batch, *MAP_SHAPE)))
                    out = np.empty(shape, dtype=np.float32) if binding == "on" else None
                    call = lambda s=session, x=x, o=out: run_graph(s, x, o, gpu)  # noqa: E731
                row = {"runtime": "onnxruntime", "task": task, "variant": variant if task != "encode" else "-",
                       "label": "", "provider": gen.provider, "batch": batch, "io_binding": binding}
                rows.append({**row, **measure(call, batch, seconds)})
    return rows


def run_graph(session: Any, x: np.ndarray, out: Optional[np.ndarray], on_gpu: bool) -> np.ndarray:
    """One run of a one-input graph: plain ``session.run`` (``out`` None), or IO binding into ``out`` (only bench binds,
    until a GPU has measured whether it pays)."""
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    if out is None:
        return session.run([name_out], {name_in: x})[0]
    binding = session.io_binding()  # per call: bindings are not thread-safe
    if on_gpu:  # input copied to the device once, output left there and copied back once
        binding.bind_ortvalue_input(name_in, runtime.ort().OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(name_out, "cuda", 0)
    else:
        binding.bind_cpu_input(name_in, x)
        binding.bind_output(name_out, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    session.run_with_iobinding(binding)
    if on_gpu:
        out[...] = binding.copy_outputs_to_cpu()[0]
    return out


def run_bench(model: Optional[Union[str, Path]] = None, *, batches: Sequence[int] = (1, 64, 1024),
              provider: str = "all", threads: Optional[int] = None, seconds: float = 1.0,
              tasks: Sequence[str] = TASKS, progress: Optional[Callable[[str], None]] = None,
              io_binding: Sequence[str] = ("on",)) -> dict[str, Any]:
    """Benchmark a bundle on every working provider (die states checked against the CPU): a JSON-ready report."""
    tasks = [check_choice(t, TASKS, "bench task") for t in tasks]
    threads = usable_cores() if threads is None else threads  # open_session checks it
    batches = parse_batches(batches)
    bundle = load_bundle(model)
    providers = working_providers(bundle.decoder_path, provider)
    say = progress or (lambda _msg: None)
    results: list[dict[str, Any]] = []
    parity: list[dict[str, Any]] = []
    reference = WaferGenerator(bundle, provider="cpu", threads=threads)  # what every other provider is checked against
    for prov in providers:
        say(f"timing {bundle.path.name} on {prov}, {threads} threads ...")
        gen = reference if prov == "cpu" else WaferGenerator(bundle, provider=prov, threads=threads)
        if gen is not reference:
            say(f"die-state parity of {prov} against the CPU ...")
            parity.append(die_parity(gen, reference))
        rows = bench_generator(gen, batches, seconds, tasks=tasks, io_binding=io_binding)
        results += [{**row, "threads": threads} for row in rows]
    return {"format": "edge-infer-bench", "format_version": 1,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(),
            "settings": {"model": str(bundle.path), "batches": list(batches), "threads": threads, "seconds": seconds,
                         "providers": providers, "io_binding": list(io_binding)},
            "results": results, "parity": parity}


def format_table(report: dict[str, Any]) -> str:
    """The results as an aligned text table, with the machine on top."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"machine: {m['cpu']} ({m['usable_cores']} usable cores; {', '.join(m['cpu_flags']) or 'no AVX'}), "
        f"onnxruntime {m['onnxruntime']}" + (f", GPU {', '.join(m['gpus'])}" if m["gpus"] else ""),
        f"bundle: {s['model']}; {s['threads']} threads; ~{s['seconds']:g} s per measurement",
        "",
        f"{'runtime':<11} {'task':<22} {'decoder':<14} {'provider':<8} {'bind':<4} {'batch':>6} {'maps/s':>11} "
        f"{'best':>11} {'p50 ms':>9} {'p99 ms':>9} {'calls':>6}",
    ]
    for r in report["results"]:
        lines.append(f"{r['runtime']:<11} {r['task']:<22} {r['variant']:<14} {r['provider']:<8} "
                     f"{r.get('io_binding', '-'):<4} {r['batch']:>6} {r['maps_per_s']:>11,.0f} "
                     f"{r['maps_per_s_best']:>11,.0f} {r['latency_ms']['p50']:>9.3f} {r['latency_ms']['p99']:>9.3f} "
                     f"{r['calls']:>6}")
    for p in report.get("parity", []):
        lines.append(f"die states {p['provider']} vs {p['against']}: {p['maps_differ']} of {p['maps']} maps differ "
                     f"({p['dies_differ']} dies); largest probability difference {p['max_abs_probability_diff']:.2e}")
    return "\n".join(lines)
