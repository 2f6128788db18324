"""``edge-infer bench``: how fast a bundle encodes, decodes and generates, here.

Plain functions returning JSON-ready dicts, for the CLI verb and ``make bench``. IO binding (outputs bound to a
preallocated buffer) lives here only, until the GPU has measured whether it pays. The load average before and
after is recorded, so a reader can tell a shared machine's noise.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import InputError, ProviderError

TASKS = ("encode", "decode", "generate")
DEFAULT_BATCHES = (1, 64, 1024)
BENCH_FORMAT_VERSION = 1


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_average() -> Optional[list[float]]:
    """1, 5 and 15 minute load averages, or None where the OS has none."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, versions, GPUs."""
    from . import __version__
    from .runtime import available_providers, ort

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.lower().startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        gpus = [ln.strip() for ln in smi.stdout.splitlines() if ln.strip()] if smi.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        gpus = []
    return {"cpu": model, "cpu_flags": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags],
            "logical_cpus": os.cpu_count(), "usable_cores": usable_cores(), "gpus": gpus, "os": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort().__version__,
            "providers_listed": available_providers(), "edge_infer": __version__}


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
    """Time ``call`` (which handles ``batch`` maps) repeatedly for ~``seconds``: maps/s, latency percentiles.

    ``maps_per_s_best`` is the best of ``rounds`` equal slices: on a shared machine, the least disturbed one.
    """
    if seconds <= 0:
        raise InputError(f"seconds must be positive, not {seconds}")
    for _ in range(warmup):  # first runs allocate and pick kernels; not what a steady user sees
        call()
    laps: list[float] = []
    slices: list[float] = []
    rounds = max(1, rounds)
    start = time.perf_counter()
    for r in range(rounds):
        r_start, r_calls = time.perf_counter(), 0
        while True:
            t0 = time.perf_counter()
            call()
            laps.append(time.perf_counter() - t0)
            r_calls += 1
            now = time.perf_counter()
            if r_calls >= -(-min_calls // rounds) and now - start >= seconds * (r + 1) / rounds:
                break
        slices.append(batch * r_calls / (now - r_start))
    total = time.perf_counter() - start
    ms = sorted(x * 1e3 for x in laps)
    p99 = ms[min(len(ms) - 1, int(np.ceil(0.99 * len(ms))) - 1)]
    return {"calls": len(laps), "seconds": round(total, 6),  # 4 decimals of a 0.01 s run: a 0.5 % error in maps/s
            "maps_per_s": round(batch * len(laps) / total, 1), "maps_per_s_best": round(max(slices), 1),
            "latency_ms": {"p50": round(statistics.median(ms), 4), "p99": round(p99, 4),
                           "mean": round(sum(ms) / len(ms), 4)}}


def working_providers(model_path: Union[str, Path], requested: str = "all") -> list[str]:
    """The providers among ``requested`` that really run ``model_path``.

    ``all``: the CPU and every other listed provider a session really gets; one name: only that one (an explicit
    one that does not work raises :class:`ProviderError`).
    """
    from .runtime import EXECUTION_PROVIDERS, PROVIDERS, available_providers, open_session

    name = str(requested).strip().lower()
    if name not in ("all", *PROVIDERS):
        raise InputError(f"unknown provider {requested!r}; choose all, {', '.join(PROVIDERS)}")
    if name == "cpu":
        return ["cpu"]
    if name != "all":
        _, info = open_session(model_path, provider=name)  # raises for an explicit one that does not work
        return [info.actual]
    found = ["cpu"]
    listed = set(available_providers())
    for other in [n for n, ep in EXECUTION_PROVIDERS.items() if ep in listed and n != "cpu"]:
        try:
            _, info = open_session(model_path, provider=other)
        except ProviderError:
            continue
        found.append(info.actual)
    return found


def die_parity(gen: Any, reference: Any, *, n: int = 4096, seed: int = 0) -> dict[str, Any]:
    """How many maps and dies of ``gen`` differ from ``reference`` (the CPU) on the same seeded request.

    Identical die states are the goal; the argmax of two nearly equal probabilities may still flip, so the largest
    probability difference of the raw decoder outputs is reported too.
    """
    maps_differ = dies_differ = 0
    max_prob = 0.0
    per_class = n // len(gen.classes) or 1
    for cls in gen.classes:
        a = gen.generate(cls, per_class, seed=seed)
        b = reference.generate(cls, per_class, seed=seed)
        diff = (a.maps.argmax(-1) != b.maps.argmax(-1))
        dies_differ += int(diff.sum())
        maps_differ += int(diff.any(axis=(1, 2)).sum())
        z = gen.bundle.latents[a.sources]
        max_prob = max(max_prob, float(np.abs(gen.decode(z, raw=True) - reference.decode(z, raw=True)).max()))
    return {"provider": gen.provider, "against": reference.provider, "maps": per_class * len(gen.classes),
            "maps_differ": maps_differ, "dies_differ": dies_differ, "max_abs_probability_diff": max_prob, "seed": seed}


def bench_generator(gen: Any, batches: Sequence[int], seconds: float, *, tasks: Sequence[str] = TASKS,
                    label: str = "", io_binding: Sequence[str] = ("on",)) -> list[dict[str, Any]]:
    """Rows for ``encode``/``decode``/``generate`` of one loaded :class:`WaferGenerator`; ``io_binding``
    ``"on"``/``"off"`` times encode/decode with and without (each gives its own rows)."""
    rows = []
    counts = gen.bundle.class_counts()
    cls = max(counts, key=counts.get)  # the busiest class
    variant = gen.bundle.manifest.get("graphs", {}).get("decoder", {}).get("variant", "unknown")
    gpu = gen.provider in ("cuda", "tensorrt")
    for batch in batches:
        bank_rows = np.arange(batch) % gen.bundle.count
        z = np.ascontiguousarray(gen.bundle.latents[bank_rows])
        for task in tasks:
            for binding in io_binding if task != "generate" else ("-",):
                if task == "encode":
                    maps = gen.bank_maps(bank_rows)  # realistic input: bank maps, with their outlines
                    enc_out = np.empty((batch, *gen.bundle.latents.shape[1:]), dtype=np.float32) if binding == "on" else None
                    call: Callable[[], Any] = lambda m=maps, o=enc_out: run_graph(gen.encoder_session, m, o, gpu)  # noqa: E731
                elif task == "decode":
                    dec_out = np.empty((batch, 26, 26, 3), dtype=np.float32) if binding == "on" else None
                    call = lambda z=z, o=dec_out: run_graph(gen.decoder_session, z, o, gpu)  # noqa: E731
                elif task == "generate":
                    seeds = iter(range(10**9))
                    call = lambda b=batch: gen.generate(cls, b, seed=next(seeds))  # noqa: E731
                else:
                    raise InputError(f"unknown bench task {task!r}; choose from {', '.join(TASKS)}")
                row = {"runtime": "onnxruntime", "task": task, "variant": variant if task != "encode" else "-",
                       "label": label, "provider": gen.provider, "batch": batch, "io_binding": binding}
                row.update(measure(call, batch, seconds))
                rows.append(row)
    return rows


def run_graph(session: Any, x: np.ndarray, out: Optional[np.ndarray], on_gpu: bool) -> np.ndarray:
    """One run of a one-input graph: plain ``session.run`` (``out`` None), or IO binding into ``out``."""
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    if out is None:
        return session.run([name_out], {name_in: x})[0]
    binding = session.io_binding()  # per call: bindings are not thread-safe
    if on_gpu:  # input copied to the device once, output left there and copied back once
        from .runtime import ort

        binding.bind_ortvalue_input(name_in, ort().OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(name_out, "cuda", 0)
        session.run_with_iobinding(binding)
        out[...] = binding.copy_outputs_to_cpu()[0]
        return out
    binding.bind_cpu_input(name_in, x)
    binding.bind_output(name_out, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    session.run_with_iobinding(binding)
    return out


def bench_decoder_graph(path: Union[str, Path], batches: Sequence[int], seconds: float, *, provider: str = "cpu",
                        threads: Optional[int] = None, variant: str = "", label: str = "") -> list[dict[str, Any]]:
    """``decode`` rows for a standalone decoder graph (e.g. the plain export), timed like the bundle's."""
    from .runtime import open_session

    session, info = open_session(path, provider=provider, threads=threads)
    gpu = info.actual in ("cuda", "tensorrt")
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        z = rng.standard_normal((batch, 64, 3, 3)).astype(np.float32)
        out = np.empty((batch, 26, 26, 3), dtype=np.float32)
        row = {"runtime": "onnxruntime", "task": "decode", "variant": variant or Path(path).stem, "label": label,
               "provider": info.actual, "batch": batch, "io_binding": "on"}
        row.update(measure(lambda z=z, o=out: run_graph(session, z, o, gpu), batch, seconds))
        rows.append(row)
    return rows


def _decoder_graph_of(path: Union[str, Path]) -> tuple[Path, str]:
    """A comparison decoder given as a ``.onnx`` file or a bundle folder → (graph path, variant)."""
    from .bundle import load_bundle

    p = Path(path)
    if p.is_dir():
        bundle = load_bundle(p)
        return bundle.decoder_path, str(bundle.manifest.get("graphs", {}).get("decoder", {}).get("variant", p.name))
    if not p.exists():
        raise InputError(f"{p}: no such decoder graph or bundle folder")
    return p, p.stem


def run_bench(model: Optional[Union[str, Path]] = None, *, batches: Sequence[int] = DEFAULT_BATCHES,
              provider: str = "all", threads: Optional[int] = None, seconds: float = 1.0,
              tasks: Sequence[str] = TASKS, compare: Sequence[Union[str, Path]] = (),
              progress: Optional[Callable[[str], None]] = None,
              io_binding: Sequence[str] = ("on",)) -> dict[str, Any]:
    """Benchmark a bundle (and optional comparison decoders) on every working provider: a JSON-ready report."""
    from .bundle import load_bundle
    from .generator import WaferGenerator

    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise InputError(f"unknown bench task {bad[0]!r}; choose from {', '.join(TASKS)}")
    threads = usable_cores() if threads is None else int(threads)
    if threads < 1:
        raise InputError(f"threads must be 1 or more, not {threads}")
    batches = parse_batches(batches)
    bundle = load_bundle(model)
    comparisons = [_decoder_graph_of(c) for c in compare]
    providers = working_providers(bundle.decoder_path, provider)
    say = progress or (lambda _msg: None)
    load_before = load_average()
    results: list[dict[str, Any]] = []
    parity: list[dict[str, Any]] = []
    reference = None
    for prov in providers:
        say(f"timing {bundle.path.name} on {prov}, {threads} threads ...")
        gen = WaferGenerator.load(bundle.path, provider=prov, threads=threads)
        if prov == "cpu":
            reference = gen
        else:  # every other provider is checked against the CPU's die states
            reference = reference or WaferGenerator.load(bundle.path, provider="cpu", threads=threads)
            say(f"die-state parity of {prov} against the CPU ...")
            parity.append(die_parity(gen, reference))
        rows = bench_generator(gen, batches, seconds, tasks=tasks, io_binding=io_binding)
        for path, variant in comparisons:
            say(f"timing decoder {path} on {prov} ...")
            rows += bench_decoder_graph(path, batches, seconds, provider=prov, threads=threads, variant=variant,
                                        label="compare")
        results += [{**row, "threads": threads} for row in rows]
    return {"format": "edge-infer-bench", "format_version": BENCH_FORMAT_VERSION,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(),
            "settings": {"model": str(bundle.path), "batches": list(batches), "threads": threads, "seconds": seconds,
                         "providers": providers, "io_binding": list(io_binding),
                         "compare": [str(p) for p, _ in comparisons],
                         "load_average_before": load_before, "load_average_after": load_average()},
            "results": results, "parity": parity}


def format_table(report: dict[str, Any]) -> str:
    """The results as an aligned text table, with the machine on top."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"machine: {m['cpu']} ({m['usable_cores']} usable cores; {', '.join(m['cpu_flags']) or 'no AVX'}), "
        f"onnxruntime {m['onnxruntime']}" + (f", GPU {', '.join(m['gpus'])}" if m["gpus"] else ""),
        f"bundle: {s['model']}; {s['threads']} threads; ~{s['seconds']:g} s per measurement; "
        f"load average {s['load_average_before']} -> {s['load_average_after']}",
        "",
        f"{'runtime':<11} {'task':<22} {'decoder':<14} {'provider':<8} {'bind':<4} {'batch':>6} {'maps/s':>11} {'best':>11} {'p50 ms':>9} "
        f"{'p99 ms':>9} {'calls':>6}",
    ]
    for r in report["results"]:
        lines.append(f"{r.get('runtime', 'onnxruntime'):<11} {r['task']:<22} {r['variant']:<14} {r['provider']:<8} "
                     f"{r.get('io_binding', '-'):<4} {r['batch']:>6} {r['maps_per_s']:>11,.0f} "
                     f"{r.get('maps_per_s_best', r['maps_per_s']):>11,.0f} "
                     f"{r['latency_ms']['p50']:>9.3f} {r['latency_ms']['p99']:>9.3f} {r['calls']:>6}")
    for p in report.get("parity", []):
        lines.append(f"die states {p['provider']} vs {p['against']}: {p['maps_differ']} of {p['maps']} maps differ "
                     f"({p['dies_differ']} dies); largest probability difference {p['max_abs_probability_diff']:.2e}")
    return "\n".join(lines)
