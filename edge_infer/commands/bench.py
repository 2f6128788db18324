"""``edge-infer bench``: throughput and latency of encode, decode and generate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from ..bench import format_table, parse_batches, run_bench
from ..files import atomic_path, check_targets, json_text
from ._common import ModelOpt, examples, handle_errors, say, tell

EPILOG = examples("bench", "bench --threads 2 --seconds 2 --out bench.json",
                  "bench --provider cuda --batches 1,1024,65536 --io-binding both")


@handle_errors
def bench(
    model: ModelOpt = None,
    batches: Annotated[str, typer.Option("--batches", help="Comma-separated batch sizes.")] = "1,64,1024",
    provider: Annotated[str, typer.Option(
        "--provider", help="all: the CPU and every other provider that really runs here, with die-state parity "
        "against the CPU. auto, cpu, cuda, tensorrt, openvino: only that one (an error if it does not run).")] = "all",
    io_binding: Annotated[Literal["on", "off", "both"], typer.Option(
        "--io-binding", case_sensitive=False, help="encode/decode timed with outputs bound to a preallocated "
        "buffer (on), with plain session.run (off), or both.")] = "on",
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="onnxruntime intra-op threads. Default: the cores this process may use.")] = None,
    seconds: Annotated[float, typer.Option("--seconds", help="About how long each measurement runs.")] = 1.0,
    tasks: Annotated[str, typer.Option("--tasks", help="What to time, comma-separated.")] = "encode,decode,generate",
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Also write the results as JSON to this file.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing --out file.")] = False,
) -> None:
    """Time encode, decode and generate (maps/s, p50/p99 latency) on this machine."""
    if out is not None:
        check_targets([out], force=force)  # before minutes of measuring, not after
    report = run_bench(model, batches=parse_batches(batches), provider=provider, threads=threads, seconds=seconds,
                       io_binding=("on", "off") if io_binding == "both" else (io_binding,),
                       tasks=[t.strip() for t in tasks.split(",") if t.strip()], progress=tell)
    say(format_table(report))
    if out is not None:
        with atomic_path(out, force=force) as tmp:
            tmp.write_text(json_text(report, sort_keys=False))
        say(f"wrote {out}")
