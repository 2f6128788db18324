"""Generate latency of two checkouts of edge-infer, alternating, on the same machine.

    python bench/ab_generate.py /path/to/old/checkout /path/to/new/checkout [--rounds 3]

Each checkout runs in its own process (its own ``edge_infer`` and
``models/wafer-cae``), one after the other, ``--rounds`` times, so slow
drifts of a shared machine hit both alike. Each process times
``WaferGenerator.generate('None', n, seed=i)`` with a new seed per call, at
batch 1 and 1024, 2 onnxruntime threads, and prints the best and median
per-call time of 7 timed slices.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from edge_infer.commands import handle_errors

CHILD = r"""
import sys, time
import numpy as np
root = sys.argv[1]
sys.path.insert(0, root)
import edge_infer
assert edge_infer.__file__.startswith(root), edge_infer.__file__
from edge_infer import WaferGenerator
gen = WaferGenerator.load(root + "/models/wafer-cae", threads=2)
seeds = iter(range(10**9))
parts = []
for batch, calls in ((1, 2000), (1024, 10)):
    for _ in range(2):
        gen.generate("None", batch, seed=next(seeds))
    laps = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(calls):
            gen.generate("None", batch, seed=next(seeds))
        laps.append((time.perf_counter() - t) / calls * 1e3)
    parts.append(f"batch {batch}: best {min(laps):.3f} ms, median {float(np.median(laps)):.3f} ms")
print(f"{root}: " + "; ".join(parts), flush=True)
"""


@handle_errors
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for _ in range(args.rounds):
        for checkout in args.checkouts:
            subprocess.run([sys.executable, "-c", CHILD, str(checkout.resolve())], check=True)


if __name__ == "__main__":
    main()
