"""One-thread CPU time per map of generator.onnx against the bare decoder.onnx (robust to machine load).

    .venv-dev/bin/python bench/cpu_time_generator.py [BUNDLE] [--batch 1024] [--rounds 5]

Both graphs run in one-thread sessions on the same bank latents (the
generator on their rows, the decoder on the latents themselves),
interleaved, best of ``--rounds``; CPU time (``time.process_time``) rather
than wall time, so other processes on a shared machine barely move it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edge_infer.runtime import open_session
from edge_infer.commands import handle_errors


@handle_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default="models/wafer-cae")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from edge_infer.bundle import load_bundle

    b = load_bundle(args.bundle)
    gen = open_session(b.generator_path, provider="cpu", threads=1)[0]
    dec = open_session(b.decoder_path, provider="cpu", threads=1)[0]
    src = np.arange(args.batch, dtype=np.int64) % b.count
    feeds = {"source": src, "seed": np.array([1], np.int64), "row0": np.array([0], np.int64),
             "strength": np.array([b.noise_defaults.strength], np.float32)}
    z = {b.decoder_io[0]: np.ascontiguousarray(b.latents[src])}
    reps = max(1, 4096 // args.batch)
    best = {"decoder": float("inf"), "generator": float("inf")}
    for _ in range(args.rounds):
        for name, session, f in (("decoder", dec, z), ("generator", gen, feeds)):
            session.run(None, f)
            t = time.process_time()
            for _ in range(reps):
                session.run(None, f)
            best[name] = min(best[name], (time.process_time() - t) / reps / args.batch * 1e6)
    print(f"batch {args.batch}, 1 thread, CPU us per map: decoder {best['decoder']:.2f}, "
          f"generator {best['generator']:.2f}; decoder/generator {best['decoder'] / best['generator']:.3f}")


if __name__ == "__main__":
    main()
