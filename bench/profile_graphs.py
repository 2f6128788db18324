"""Where an ONNX graph's time goes, node by node, and its CPU cost per map.

    python bench/profile_graphs.py models/wafer-cae/encoder.onnx models/wafer-cae/decoder.onnx --batch 1024

For each graph: the graph onnxruntime really runs after its optimisations
(``ORT_ENABLE_ALL``: on x86 the NCHWc layout transformer rewrites Conv nodes),
the per-node kernel time from onnxruntime's profiler (minimum over the runs,
per map), and the whole graph's CPU time per map with one intra-op thread.

CPU time with one thread is used for comparing graphs because, unlike wall
time, it barely moves when other processes share the cores; compare graphs
within one invocation (rounds are interleaved, the best round is kept).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_infer.runtime import open_session
from edge_infer.commands import handle_errors
from edge_infer.errors import InputError


def session(path: str, threads: int, profile: bool = False, optimized: str | None = None) -> ort.InferenceSession:
    """The graph opened the way the runtime opens it (edge_infer.runtime), with profiling options."""
    options: dict = {"log_severity_level": 3}
    if profile:
        options.update(enable_profiling=True, profile_file_prefix=os.path.join(tempfile.gettempdir(), "edge-infer-profile"))
    if optimized:
        options["optimized_model_filepath"] = optimized
    return open_session(path, provider="cpu", threads=threads, options=options)[0]


def example_input(s: ort.InferenceSession, batch: int) -> tuple[str, np.ndarray]:
    inp = s.get_inputs()[0]
    shape = [batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
    return inp.name, np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def node_profile(path: str, batch: int, runs: int, threads: int) -> tuple[list[str], dict[str, float]]:
    """(optimized op types, {node [op]: min µs per map})."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        opt = str(Path(tmp) / "optimized.onnx")
        s = session(path, threads, profile=True, optimized=opt)
        ops = [n.op_type for n in onnx.load(opt).graph.node]
    name, x = example_input(s, batch)
    for _ in range(runs):
        s.run(None, {name: x})
    trace = s.end_profiling()
    events = json.loads(Path(trace).read_text())
    os.remove(trace)
    times: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[f"{e['name'][:-len('_kernel_time')]} [{e['args'].get('op_name', '')}]"].append(e["dur"])
    return ops, {k: min(v) / batch for k, v in times.items()}


def cpu_per_map(paths: list[str], batch: int, rounds: int, seconds: float) -> dict[str, float]:
    """Best-round CPU µs per map with one thread, rounds interleaved across graphs."""
    sessions = {p: session(p, 1) for p in paths}
    inputs = {p: example_input(s, batch) for p, s in sessions.items()}
    best = {p: float("inf") for p in paths}
    for _ in range(rounds):
        for p, s in sessions.items():
            name, x = inputs[p]
            s.run(None, {name: x})
            n, c0, t0 = 0, time.process_time(), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                s.run(None, {name: x})
                n += 1
            best[p] = min(best[p], (time.process_time() - c0) / (n * batch) * 1e6)
    return best


@handle_errors
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=20, help="profiled runs per graph")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved CPU-time rounds")
    ap.add_argument("--seconds", type=float, default=0.4, help="per round and graph")
    ap.add_argument("--threads", type=int, default=1, help="threads for the node profile")
    args = ap.parse_args()
    missing = [p for p in args.graphs if not Path(p).is_file()]
    if missing:  # before onnxruntime's profiler, which logs its own complaint about a graph it never loaded
        raise InputError(f"no such graph: {', '.join(missing)}")
    for path in args.graphs:
        ops, nodes = node_profile(path, args.batch, args.runs, args.threads)
        total = sum(nodes.values())
        print(f"{path}: optimized graph {ops}")
        for k, v in sorted(nodes.items(), key=lambda kv: -kv[1]):
            print(f"  {v:8.2f} us/map {100 * v / total:5.1f}%  {k}")
    cpu = cpu_per_map(args.graphs, args.batch, args.rounds, args.seconds)
    first = cpu[args.graphs[0]]
    print(f"\nCPU time per map, 1 thread, batch {args.batch} (best of {args.rounds} interleaved rounds):")
    for p, v in cpu.items():
        print(f"  {v:8.2f} us/map  {1e6 / v:10,.0f} maps/s/core  x{first / v:5.2f} vs first  {p}")


if __name__ == "__main__":
    main()
