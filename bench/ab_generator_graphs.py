"""Two generator.onnx builds against the bare decoder: maps byte for byte, CPU time, batch-1 p50.

    git show HEAD:models/wafer-cae/generator.onnx > /tmp/old_generator.onnx
    .venv-dev/bin/python bench/ab_generator_graphs.py /tmp/old_generator.onnx [BUNDLE]

"new" is BUNDLE's generator.onnx (default models/wafer-cae). Both must give
the same maps (a faster graph that changes maps is a new noise definition,
not a speed-up). Then, interleaved, best of 7: one-thread CPU time per map at
batch 1024 and 64 (robust to machine load), and p50 at batch 1 on two threads.
"""

from __future__ import annotations

import sys
import time

from typing import Any

import numpy as np

from edge_infer.bundle import load_bundle
from edge_infer.runtime import open_session
from edge_infer.commands import handle_errors


def session(path, threads: int) -> Any:
    """A CPU session opened the way the runtime opens its graphs."""
    return open_session(path, provider="cpu", threads=threads)[0]


@handle_errors
def main() -> None:
    bundle = load_bundle(sys.argv[2] if len(sys.argv) > 2 else "models/wafer-cae")
    paths = {"decoder": bundle.decoder_path, "old": sys.argv[1], "new": bundle.generator_path}

    def feeds(kind: str, n: int) -> dict:
        src = np.arange(n, dtype=np.int64) % bundle.count
        if kind == "decoder":
            return {bundle.decoder_io[0]: np.ascontiguousarray(bundle.latents[src])}
        return {"source": src, "seed": np.array([9], np.int64), "row0": np.array([5], np.int64),
                "strength": np.array([bundle.noise_defaults.strength], np.float32)}

    one = {k: session(p, 1) for k, p in paths.items()}
    for n in (1, 7, 1024):
        old, new = (one[k].run(None, feeds(k, n))[0].tobytes() for k in ("old", "new"))
        if old != new:
            sys.exit(f"the two generator graphs give different maps at batch {n}")
    print("maps byte-identical at batch 1, 7 and 1024")
    for n in (1024, 64):
        best = {k: float("inf") for k in paths}
        for _ in range(7):
            for k, s in one.items():
                f = feeds(k, n)
                s.run(None, f)
                reps = max(1, 4096 // n)
                t = time.process_time()
                for _ in range(reps):
                    s.run(None, f)
                best[k] = min(best[k], (time.process_time() - t) / reps / n * 1e6)
        print(f"batch {n}, 1 thread, CPU us per map:", {k: round(v, 2) for k, v in best.items()},
              f"decoder/old {best['decoder'] / best['old']:.3f}, decoder/new {best['decoder'] / best['new']:.3f}")
    two = {k: session(p, 2) for k, p in paths.items()}
    times: dict = {k: [] for k in paths}
    for _ in range(30):
        for k, s in two.items():
            f = feeds(k, 1)
            for _ in range(20):
                t = time.perf_counter()
                s.run(None, f)
                times[k].append(time.perf_counter() - t)
    p50 = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print("batch 1, 2 threads, p50 ms:", {k: round(v, 4) for k, v in p50.items()},
          f"old/decoder {p50['old'] / p50['decoder']:.2f}, new/decoder {p50['new'] / p50['decoder']:.2f}")


if __name__ == "__main__":
    main()
