"""The measuring steps of bench/gpu-check.sh; each adds its figures to OUT/results.json.

    python3 bench/gpu_check.py machine OUT                    # card, driver, which onnxruntime got imported
    python3 bench/gpu_check.py placement OUT MODEL_DIR --provider cuda
    python3 bench/gpu_check.py parity OUT --provider cuda -n 65536
    python3 bench/gpu_check.py timed OUT KEY -- COMMAND ...   # wall seconds and peak RSS of COMMAND
    python3 bench/gpu_check.py compare OUT KEY A.npy B.npy
    python3 bench/gpu_check.py absorb OUT KEY FILE.json       # another JSON (a bench run) into results.json
    python3 bench/gpu_check.py summary OUT                    # OUT/summary.md, the figures docs/gpu.md asks for

Only the edge-infer API that stays: ``edge_infer.WaferGenerator`` and
``edge_infer.runtime.open_session`` (``create_session_info`` before issue 20).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GRAPHS = ("encoder", "decoder", "generator", "generator_core")
_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
           "tensor(int32)": np.int32, "tensor(float16)": np.float16}


def record(out: Path, key: str, value: Any) -> None:
    """Set ``key`` in ``out/results.json`` (written whole, atomically)."""
    path = Path(out) / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _feed(session: Any, batch: int) -> dict:
    """Inputs of the declared types: dynamic dimensions ``batch`` (``1`` where the graph says 1)."""
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        dtype = _DTYPES[i.type]
        feed[i.name] = np.full(shape, 0.5, dtype) if dtype in (np.float32, np.float16) else np.zeros(shape, dtype)
    return feed


def placement(out: Path, model_dir: Path, provider: str, batch: int = 64) -> dict:
    """Which provider runs each node of each graph, from onnxruntime's session profile of one run."""
    from edge_infer import runtime

    opener = getattr(runtime, "open_session", None) or runtime.create_session_info
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for graph in GRAPHS:
            path = Path(model_dir) / f"{graph}.onnx"
            session, info = opener(path, provider=provider, options={
                "enable_profiling": True, "profile_file_prefix": str(Path(tmp) / graph)})
            session.run(None, _feed(session, batch))
            events = json.loads(Path(session.end_profiling()).read_text())
            nodes = {}  # node name -> (op, provider); a node runs once per run
            for e in events:
                args = e.get("args", {})
                if e.get("cat") == "Node" and "provider" in args and e.get("name", "").endswith("_kernel_time"):
                    nodes[e["name"][:-len("_kernel_time")]] = (args.get("op_name", "?"), args["provider"])
            per = {}
            for _, ep in nodes.values():
                per[ep] = per.get(ep, 0) + 1
            off = sorted(f"{name} ({op})" for name, (op, ep) in nodes.items() if ep == "CPUExecutionProvider")
            copies = sorted(f"{name} ({op})" for name, (op, _) in nodes.items() if op.startswith("Memcpy"))
            found[graph] = {"session": info.describe(), "nodes_per_provider": per,
                            "cpu_nodes": off if provider != "cpu" else [], "memcpy_nodes": copies}
            print(f"{graph}: {info.describe()}; nodes per provider {per}; "
                  + (f"on the CPU: {', '.join(off) or 'none'}; " if provider != "cpu" else "")
                  + f"copies: {', '.join(copies) or 'none'}")
    record(out, "placement", found)
    return found


def parity(out: Path, provider: str, n: int, seed: int = 0) -> dict:
    """Die states and raw probabilities of ``n`` maps (every class in turn, one seed) on ``provider``
    against the CPU: how many maps and dies differ, and the largest probability difference."""
    from edge_infer import WaferGenerator

    gens = {"test": WaferGenerator.load(provider=provider), "cpu": WaferGenerator.load(provider="cpu")}
    classes = gens["cpu"].classes
    counts = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    maps_differ = dies_differ = 0
    max_diff = 0.0
    for cls, count in zip(classes, counts):
        dies = [np.asarray(g.generate(cls, count, seed=seed)).argmax(-1) for g in gens.values()]
        differ = dies[0] != dies[1]
        maps_differ += int(differ.any(axis=(1, 2)).sum())
        dies_differ += int(differ.sum())
        probs = [np.asarray(g.generate(cls, count, seed=seed, raw=True)) for g in gens.values()]
        max_diff = max(max_diff, float(np.abs(probs[0] - probs[1]).max()))
    result = {"provider": gens["test"].provider, "maps": n, "classes": len(classes), "seed": seed,
              "maps_differ": maps_differ, "dies_differ": dies_differ, "dies": n * 26 * 26,
              "max_abs_prob_diff": max_diff}
    print(f"parity {result['provider']} vs cpu, {n:,} maps ({len(classes)} classes), seed {seed}: {maps_differ} maps "
          f"and {dies_differ} of {result['dies']:,} dies differ; largest probability difference {max_diff:.3g}")
    record(out, "parity", result)
    return result


def timed(out: Path, key: str, command: list[str]) -> int:
    """Run ``command``; record its wall time, peak resident memory and exit status."""
    t0 = time.perf_counter()
    rc = subprocess.run(command).returncode
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux; the only child
    print(f"{key}: exit {rc}, {wall:.1f} s wall, peak RSS {peak_mib:.0f} MiB")
    record(out, key, {"command": " ".join(command), "exit": rc, "wall_s": round(wall, 2),
                      "peak_rss_mib": round(peak_mib, 1)})
    return rc


def compare(out: Path, key: str, a: Path, b: Path, block: int = 65536) -> dict:
    """Whether two .npy map files are equal, and how many maps differ."""
    x, y = np.load(a, mmap_mode="r"), np.load(b, mmap_mode="r")
    if x.shape != y.shape:
        result = {"same": False, "why": f"shapes {x.shape} and {y.shape}"}
    else:
        differ = sum(int((x[i:i + block] != y[i:i + block]).reshape(len(x[i:i + block]), -1).any(1).sum())
                     for i in range(0, len(x), block))
        result = {"same": differ == 0, "maps": len(x), "maps_differ": differ}
    print(f"{key}: {a} vs {b}: {result}")
    record(out, key, result)
    return result


def machine(out: Path) -> dict:
    """The card, driver, CPU and the onnxruntime / edge-infer that really got imported."""
    import platform

    import edge_infer
    import onnxruntime

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True) if shutil.which("nvidia-smi") else None
    result = {"gpu": smi.stdout.strip() if smi and smi.returncode == 0 else "none (no nvidia-smi answer)",
              "cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                           if ln.startswith("model name")), platform.machine()), "cores": os.cpu_count(),
              "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
              "onnxruntime_from": str(Path(onnxruntime.__file__).parent),
              "providers_listed": onnxruntime.get_available_providers(),
              "edge_infer_from": str(Path(edge_infer.__file__).parent)}
    print("\n".join(f"{k}: {v}" for k, v in result.items()))
    record(out, "machine", result)
    return result


def absorb(out: Path, key: str, path: Path) -> None:
    record(out, key, json.loads(Path(path).read_text()))


def _rows(bench: dict) -> list[str]:
    rows = []
    for r in bench.get("results", []):
        lat = r.get("latency_ms", {})
        rows.append(f"| {r.get('task')} | {r.get('variant', '')} | {r.get('provider')} | {r.get('io_binding', '')} "
                    f"| {r.get('threads', '')} | {r.get('batch')} | {r.get('maps_per_s', 0):,.0f} | {lat.get('p50', '')} |")
    return rows


def summary(out: Path) -> str:
    """OUT/summary.md: the figures docs/gpu.md's table asks for, from results.json and the bench JSON."""
    out = Path(out)
    res = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    lines = ["# edge-infer GPU check", ""]
    m = res.get("machine", {})
    if m:
        lines += [f"- card (name, driver, memory): {m['gpu']}",
                  f"- CPU: {m['cpu']}, {m['cores']} cores; Python {m['python']}; onnxruntime {m['onnxruntime']} "
                  f"from {m['onnxruntime_from']}; edge-infer from {m['edge_infer_from']}"]
    if "parity" in res:
        lines.append(f"- parity: {json.dumps(res['parity'])}")
    for graph, p in res.get("placement", {}).items():
        lines.append(f"- placement {graph}: {p['nodes_per_provider']}; CPU nodes: {', '.join(p['cpu_nodes']) or 'none'}; "
                     f"copies: {len(p['memcpy_nodes'])}")
    for key in sorted(k for k in res if k.startswith(("million", "same"))):
        lines.append(f"- {key}: {json.dumps(res[key])}")
    head = ["| task | variant | provider | io binding | threads | batch | maps/s | p50 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for bench in sorted(out.glob("bench-*.json")):
        lines += ["", f"## {bench.name}", ""] + head + _rows(json.loads(bench.read_text()))
    for key in sorted(k for k in res if k.startswith("cpu_threads_")):
        lines += ["", f"## {key}", ""] + head + _rows(res[key])
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("machine")
    p.add_argument("out", type=Path)
    p = sub.add_parser("placement")
    p.add_argument("out", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("--provider", default="cuda")
    p = sub.add_parser("parity")
    p.add_argument("out", type=Path)
    p.add_argument("--provider", default="cuda")
    p.add_argument("-n", type=int, default=65536)
    p = sub.add_parser("timed")
    p.add_argument("out", type=Path)
    p.add_argument("key")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("compare")
    p.add_argument("out", type=Path)
    p.add_argument("key")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p = sub.add_parser("absorb")
    p.add_argument("out", type=Path)
    p.add_argument("key")
    p.add_argument("file", type=Path)
    p = sub.add_parser("summary")
    p.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.verb == "machine":
            machine(a.out)
        elif a.verb == "placement":
            placement(a.out, a.model, a.provider)
        elif a.verb == "parity":
            parity(a.out, a.provider, a.n)
        elif a.verb == "timed":
            return timed(a.out, a.key, a.command[1:] if a.command[:1] == ["--"] else a.command)
        elif a.verb == "compare":
            compare(a.out, a.key, a.a, a.b)
        elif a.verb == "absorb":
            absorb(a.out, a.key, a.file)
        else:
            print(summary(a.out), end="")
    except Exception as exc:  # a step of a measurement script: one line, and the next step runs
        print(f"error: {a.verb}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
