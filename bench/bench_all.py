"""``make bench``: onnxruntime (``edge-infer bench``) against PyTorch eager, one JSON, the ratios.

Run: ``python -m bench.bench_all --out bench-results/bench.json``.

Steps, each timed in its own process so neither runtime's thread pool
disturbs the other:

1. the plain ``torch.onnx`` decoder (``export.onnx_graphs.export_plain_decoder``)
   is written to a temporary folder, from the checkpoint when there is one
   (``runs/wafer-cae``), else from seeded random weights -- speed does not
   depend on the weight values;
2. ``edge-infer bench --model BUNDLE`` times the bundle's encoder, decoder and
   full ``generate`` (public API); ``--plain-decoder`` (this script again) times
   the plain decoder on the same providers, like the bundle's (label "compare");
3. ``python -m bench.torch_eager`` times PyTorch eager on the same batches
   and threads;
4. steps 2 and 3 are repeated ``--rounds`` times, alternating which goes
   first, each with ``--seconds / --rounds`` per measurement; every row keeps
   its best round (highest best-slice maps/s, lowest p50), the same rule for
   both runtimes, so a load spike on this shared machine during one runtime's
   turn does not decide a ratio;
5. everything goes into one JSON with the issue's three ratios and targets,
   and every round's rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from edge_infer.commands import handle_errors

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "models" / "wafer-cae"
DEFAULT_RUN = REPO / "runs" / "wafer-cae"

#: (name, how it is computed, target, whether higher is better)
TARGETS = {
    "decode_over_encode_onnx": ("ONNX decoder / encoder maps/s at the largest batch", 0.6, True),
    "generate_onnx_over_torch": ("ONNX generate / PyTorch eager generate maps/s at the largest batch", 2.0, True),
    "generate_latency_onnx_over_torch_b1": ("ONNX / PyTorch generate p50 latency at batch 1", 0.25, False),
    "decode_fast_over_plain": ("fast / plain ONNX decoder maps/s at the largest batch", None, True),
    "decode_onnx_over_torch": ("ONNX decoder / PyTorch eager decoder maps/s at the largest batch", None, True),
    "generate_over_decode": ("full generate / bare decoder.onnx maps/s at the largest batch (same latents)", 0.9, True),
    "generate_latency_over_decode_b1": ("full generate / bare decoder.onnx p50 latency at batch 1", 2.0, False),
    # What the generator gave up, each measured: >= 1.1 would have kept it.
    "graph_iobind_over_plain_run": ("generator.onnx with IO binding / plain session.run maps/s at the largest batch",
                                    None, True),
    "graph_plain_over_1thread_latency_b1": ("generator.onnx p50 at batch 1: all-threads session / one-thread session",
                                            None, False),
}


def _row(rows: Sequence[dict], **match: Any) -> Optional[dict]:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def compute_ratios(onnx_rows: Sequence[dict], torch_rows: Sequence[dict], big: int, small: int) -> dict[str, Any]:
    """The issue's ratios from the two result lists (CPU rows of the bundle, compared plain decoder, torch)."""
    def rate(rows, **m):
        # Best slice of each measurement: on a shared machine the least disturbed one.
        r = _row(rows, provider="cpu", **m)
        return r.get("maps_per_s_best", r["maps_per_s"]) if r else None

    def p50(rows, **m):
        r = _row(rows, provider="cpu", **m)
        return r["latency_ms"]["p50"] if r else None

    main = [r for r in onnx_rows if r.get("label") != "compare"]
    plain = [r for r in onnx_rows if r.get("label") == "compare"]
    pairs = {
        "decode_over_encode_onnx": (rate(main, task="decode", batch=big), rate(main, task="encode", batch=big)),
        "generate_onnx_over_torch": (rate(main, task="generate", batch=big), rate(torch_rows, task="generate", batch=big)),
        "generate_latency_onnx_over_torch_b1": (p50(main, task="generate", batch=small),
                                                p50(torch_rows, task="generate", batch=small)),
        "decode_fast_over_plain": (rate(main, task="decode", batch=big), rate(plain, task="decode", batch=big)),
        "decode_onnx_over_torch": (rate(main, task="decode", batch=big), rate(torch_rows, task="decode", batch=big)),
        "generate_over_decode": (rate(main, task="generate", batch=big), rate(main, task="decode", batch=big)),
        "generate_latency_over_decode_b1": (p50(main, task="generate", batch=small), p50(main, task="decode", batch=small)),
        "graph_iobind_over_plain_run": (rate(main, task="generate_graph_iobind", batch=big),
                                        rate(main, task="generate_graph", batch=big)),
        "graph_plain_over_1thread_latency_b1": (p50(main, task="generate_graph", batch=small),
                                                p50(main, task="generate_graph_1thread", batch=small)),
    }
    out = {}
    for key, (num, den) in pairs.items():
        what, target, higher = TARGETS[key]
        value = round(num / den, 3) if num and den else None
        met = None if value is None or target is None else (value >= target if higher else value <= target)
        out[key] = {"value": value, "what": what, "target": target, "met": met,
                    "batch": small if key.endswith("_b1") else big}
    return out


def _row_key(r: dict) -> tuple:
    return (r.get("runtime"), r.get("task"), r.get("variant"), r.get("label"), r.get("provider"), r.get("batch"))


def best_of_rounds(rounds: Sequence[Sequence[dict]]) -> list[dict]:
    """One row per measurement over several rounds of the same rows: the round
    with the highest best-slice maps/s, with the lowest p50 of any round."""
    merged: dict[tuple, dict] = {}
    for rows in rounds:
        for r in rows:
            key = _row_key(r)
            have = merged.get(key)
            if have is None or r.get("maps_per_s_best", 0) > have.get("maps_per_s_best", 0):
                p50 = r["latency_ms"]["p50"] if have is None else min(r["latency_ms"]["p50"], have["latency_ms"]["p50"])
                have = merged[key] = {**r, "latency_ms": dict(r["latency_ms"])}
                have["latency_ms"]["p50"] = p50
            else:
                have["latency_ms"]["p50"] = min(have["latency_ms"]["p50"], r["latency_ms"]["p50"])
    return list(merged.values())


def _plain_decoder(checkpoint: Optional[Path], folder: Path) -> tuple[Path, str]:
    import onnx

    from export.onnx_graphs import export_plain_decoder
    from bench.torch_eager import load_model

    model, source = load_model(checkpoint)
    path = folder / "decoder_plain.onnx"
    onnx.save(export_plain_decoder(model.decoder), str(path))
    return path, source


def time_plain_decoder(path: Path, batches: Sequence[int], seconds: float, threads: int,
                       providers: Sequence[str]) -> list[dict]:
    """``decode`` rows of a standalone decoder graph on each provider, timed like the bundle's (label "compare")."""
    import numpy as np

    from edge_infer.bench import measure, run_graph
    from edge_infer.runtime import open_session

    rows = []
    for provider in providers:
        session, info = open_session(path, provider=provider, threads=threads)
        gpu = info.actual in ("cuda", "tensorrt")
        rng = np.random.default_rng(0)
        for batch in batches:
            z = rng.standard_normal((batch, 64, 3, 3)).astype(np.float32)
            out = np.empty((batch, 26, 26, 3), dtype=np.float32)
            row = {"runtime": "onnxruntime", "task": "decode", "variant": path.stem, "label": "compare",
                   "provider": info.actual, "batch": batch, "io_binding": "on"}
            rows.append({**row, **measure(lambda z=z, o=out: run_graph(session, z, o, gpu), batch, seconds),
                         "threads": threads})
    return rows


def _edge_infer() -> list[str]:
    exe = Path(sys.executable).with_name("edge-infer")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_infer.cli"]


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=REPO)
    if done.returncode != 0:
        print(f"error: {cmd[0]} failed (exit {done.returncode})", file=sys.stderr)
        sys.exit(1)


@handle_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default models/wafer-cae)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint for the plain decoder and PyTorch (default: runs/wafer-cae if present)")
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--threads", type=int, default=None, help="both runtimes (default: the usable cores)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ONNX/PyTorch rounds (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "bench.json")
    # Step 2's second half, in a process of its own: time this decoder graph on these providers, rows to --out.
    parser.add_argument("--plain-decoder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--providers", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from edge_infer.bench import format_table, parse_batches, usable_cores
    from training.run import CHECKPOINT

    batches = parse_batches(args.batches)
    threads = args.threads or usable_cores()
    if args.plain_decoder is not None:
        rows = time_plain_decoder(args.plain_decoder, batches, args.seconds, threads, args.providers.split(","))
        args.out.write_text(json.dumps(rows))
        return
    checkpoint = args.checkpoint
    if checkpoint is None and (DEFAULT_RUN / CHECKPOINT).exists():
        checkpoint = DEFAULT_RUN
    rounds = max(1, args.rounds)
    common = ["--batches", ",".join(map(str, batches)), "--threads", str(threads),
              "--seconds", str(round(args.seconds / rounds, 3))]
    onnx_rounds: list[list[dict]] = []
    torch_rounds: list[list[dict]] = []
    with tempfile.TemporaryDirectory(prefix="edge-infer-bench-") as tmp_name:
        tmp = Path(tmp_name)
        plain, weights = _plain_decoder(checkpoint, tmp)
        onnx_cmd = [*_edge_infer(), "bench", "--model", str(args.model), "--provider", "all",
                    *common, "--out", str(tmp / "onnx.json"), "--force"]
        torch_cmd = [sys.executable, "-m", "bench.torch_eager", *common, "--out", str(tmp / "torch.json"),
                     "--bank", str(args.model / "latent_bank.npz")]
        if checkpoint is not None:
            torch_cmd += ["--checkpoint", str(checkpoint)]
        for k in range(rounds):
            print(f"round {k + 1} of {rounds}", file=sys.stderr, flush=True)
            for cmd in ((onnx_cmd, torch_cmd) if k % 2 == 0 else (torch_cmd, onnx_cmd)):
                _run(cmd)
            onnx_report = json.loads((tmp / "onnx.json").read_text())
            _run([sys.executable, "-m", "bench.bench_all", "--plain-decoder", str(plain), *common,
                  "--providers", ",".join(onnx_report["settings"]["providers"]), "--out", str(tmp / "plain.json")])
            torch_report = json.loads((tmp / "torch.json").read_text())
            onnx_rounds.append(onnx_report["results"] + json.loads((tmp / "plain.json").read_text()))
            torch_rounds.append(torch_report["results"])
    onnx_rows, torch_rows = best_of_rounds(onnx_rounds), best_of_rounds(torch_rounds)
    ratios = compute_ratios(onnx_rows, torch_rows, max(batches), min(batches))
    report = {
        "format": "edge-infer-bench-all",
        "machine": {**onnx_report["machine"], "torch": torch_report["machine"].get("torch")},
        "settings": {**onnx_report["settings"], "seconds": args.seconds, "rounds": rounds, "compare": [str(plain)],
                     "plain_decoder_weights": weights,
                     "torch_weights": torch_report["settings"]["weights"]},
        "onnxruntime": onnx_rows,
        "pytorch": torch_rows,
        "ratios": ratios,
        "rounds": [{"onnxruntime": o, "pytorch": t} for o, t in zip(onnx_rounds, torch_rounds)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edge_infer.files import atomic_path, json_text

    with atomic_path(args.out, force=True) as tmp_out:
        tmp_out.write_text(json_text(report, sort_keys=False))
    table = {**onnx_report, "results": onnx_rows + torch_rows, "ratios": {}}
    print(format_table(table))
    print()
    for key, r in ratios.items():
        target = "" if r["target"] is None else f"  (target {'>=' if TARGETS[key][2] else '<='} {r['target']}: " \
                                                  f"{'met' if r['met'] else 'NOT met'})"
        print(f"{key:<38} {r['value'] if r['value'] is not None else 'n/a':>8}{target}")
    print(f"wrote {args.out}")
    if os.environ.get("EDGE_INFER_BENCH_STRICT") and any(r["met"] is False for r in ratios.values()):
        sys.exit(2)


if __name__ == "__main__":
    main()
