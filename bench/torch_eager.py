"""The PyTorch eager baseline for ``make bench``: the same model, batches and threads.

``edge_infer`` never imports torch, so the baseline lives here and runs in its
own process (``python -m bench.torch_eager``), timed with the very same
:func:`edge_infer.bench.measure` as the onnxruntime side. What is timed, all
under ``torch.inference_mode()`` with ``torch.set_num_threads(threads)``:

* ``encode``: NHWC one-hot maps → permute → encoder → latents;
* ``decode``: latents → decoder → NHWC probabilities (contiguous, like the ONNX output);
* ``generate``: random bank sources + Gaussian noise (strength × per-channel
  latent std) → decoder → argmax → one-hot float32 NHWC maps, i.e. what
  ``WaferGenerator.generate`` does minus its outline lock.

Speed does not depend on the weight values, so without a checkpoint the
baseline uses a seeded random initialisation (and says so in its output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edge_infer.bundle import LATENT_SHAPE
from edge_infer.bench import machine_info, measure, parse_batches
from edge_infer.commands import handle_errors

TASKS = ("encode", "decode", "generate")


def load_model(checkpoint: Optional[Path]) -> tuple[Any, str]:
    """The autoencoder in eval mode, from ``checkpoint`` or seeded random weights; and where it came from."""
    import torch

    from training.model import ConvAutoencoder

    if checkpoint is not None:
        from export.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)
        return ck.model.eval(), str(ck.path)
    torch.manual_seed(0)
    return ConvAutoencoder().eval(), "random init (seed 0): timing does not depend on the weights"


def load_latents(bank: Optional[Path], n: int = 1281) -> np.ndarray:
    """The bundle's latent bank (float32 (N,64,3,3)), or standard-normal stand-ins."""
    if bank is not None and Path(bank).exists():
        with np.load(bank, allow_pickle=False) as z:
            return np.ascontiguousarray(z["latents"], dtype=np.float32)
    return np.random.default_rng(0).standard_normal((n, *LATENT_SHAPE)).astype(np.float32)


def bench_torch(model: Any, latents: np.ndarray, batches: Sequence[int], threads: int, seconds: float,
                tasks: Sequence[str] = TASKS, strength: float = 0.5) -> list[dict[str, Any]]:
    """Rows like :func:`edge_infer.bench.bench_generator`'s, for PyTorch eager on the CPU."""
    import torch

    torch.set_num_threads(threads)
    encoder, decoder = model.encoder, model.decoder
    bank = torch.from_numpy(latents)
    sigma = (strength * bank.std(dim=(0, 2, 3))).view(1, -1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for batch in batches:
            z = bank[torch.arange(batch) % bank.shape[0]].contiguous()
            maps = torch.nn.functional.one_hot(decoder(z).argmax(1), 3).float().contiguous()  # (N,26,26,3)

            def encode(maps=maps):
                return encoder(maps.permute(0, 3, 1, 2))

            def decode(z=z):
                return decoder(z).permute(0, 2, 3, 1).contiguous()

            def generate(batch=batch):
                src = torch.randint(0, bank.shape[0], (batch,), generator=gen)
                noisy = bank[src] + sigma * torch.randn((batch, *bank.shape[1:]), generator=gen)
                # argmax over the contiguous last axis: argmax(1) over NCHW is
                # strided and slower than the decoder itself, which would flatter ONNX.
                states = decoder(noisy).permute(0, 2, 3, 1).contiguous().argmax(-1)
                return torch.nn.functional.one_hot(states, 3).to(torch.float32)

            for task in tasks:
                call = {"encode": encode, "decode": decode, "generate": generate}[task]
                row = {"runtime": "pytorch", "task": task, "variant": "eager" if task != "encode" else "-", "label": "eager",
                       "provider": "cpu", "batch": batch, "threads": threads}
                row.update(measure(call, batch, seconds))
                rows.append(row)
    return rows


@handle_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.torch_eager", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint.pt or run folder (default: random weights)")
    parser.add_argument("--bank", type=Path, help="latent_bank.npz of the bundle (default: random latents)")
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--threads", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    from edge_infer.bench import usable_cores
    from edge_infer.errors import EdgeInferError

    try:
        threads = args.threads or usable_cores()
        model, source = load_model(args.checkpoint)
        rows = bench_torch(model, load_latents(args.bank), parse_batches(args.batches), threads, args.seconds)
    except EdgeInferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    report = {"format": "edge-infer-bench-torch", "machine": {**machine_info(), "torch": torch.__version__},
              "settings": {"weights": source, "threads": threads, "seconds": args.seconds},
              "results": rows}
    from edge_infer.files import json_text

    text = json_text(report, sort_keys=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from edge_infer.files import atomic_path

        with atomic_path(args.out, force=True) as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
