"""Checking exported graphs: onnxruntime against PyTorch, and ORT-only quality.

The exporter trusts nothing it wrote until onnxruntime (CPU provider) has run
it and agreed with PyTorch within :data:`TOLERANCE` (max abs, scaled for outputs beyond ±1:
see :func:`allowed_diff`) at batch sizes
1, 7 and 64 -- encoder, decoder (on real latents and on noisy ones, which is
what generation feeds it) and the two chained. Any mismatch raises
:class:`VerificationError`, so no bundle is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_infer.errors import EdgeInferError

TOLERANCE = 1e-5
BATCH_SIZES = (1, 7, 64)
CRITERION = "max abs diff <= tolerance * max(1, max abs PyTorch output)"


class VerificationError(EdgeInferError):
    """An exported graph disagrees with PyTorch (or fails a quality bar)."""


def cpu_session(model: "bytes | str | Path", threads: int = 1) -> Any:
    """A session on the CPU provider only, from bytes or a file path, opened as the runtime opens graphs.

    One intra-op thread by default: small graphs on a shared machine, and
    results independent of how many cores happen to be free.
    """
    from edge_infer.runtime import open_session

    return open_session(model, provider="cpu", threads=threads)[0]


def run(session: Any, array: np.ndarray) -> np.ndarray:
    """Run a one-input, one-output session on ``array`` (float32)."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(array, dtype=np.float32)})[0]


def batches(arrays: np.ndarray, sizes: Sequence[int] = BATCH_SIZES) -> "list[np.ndarray]":
    """One batch per size, taken from ``arrays`` (repeated if there are fewer rows)."""
    out = []
    for size in sizes:
        index = np.arange(size) % len(arrays)
        out.append(np.ascontiguousarray(arrays[index], dtype=np.float32))
    return out


def _torch_fn(module: Any, nhwc_in: bool, nhwc_out: bool) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def fn(array: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if nhwc_in:
            x = x.permute(0, 3, 1, 2)
        with torch.no_grad():
            y = module(x)
        if nhwc_out:
            y = y.permute(0, 2, 3, 1)
        return y.contiguous().numpy()

    return fn


def allowed_diff(reference: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """The largest max-abs difference accepted against ``reference`` outputs.

    ``tolerance`` absolute for outputs within [-1, 1] (the decoder's
    probabilities: exactly 1e-5), scaled by the output's magnitude beyond
    that. Why: float32 carries ~7 significant digits, so a trained encoder's
    latents of magnitude ~30 differ by a few 1e-5 between *any* two correct
    float32 implementations (PyTorch itself is farther from a float64
    reference than onnxruntime is); an absolute 1e-5 would reject them.
    """
    scale = max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0
    return tolerance * scale


def compare(name: str, reference: Callable[[np.ndarray], np.ndarray], candidate: Callable[[np.ndarray], np.ndarray],
            inputs: Sequence[np.ndarray], tolerance: float = TOLERANCE) -> float:
    """Max abs difference of ``candidate`` against ``reference`` over ``inputs``.

    Raises :class:`VerificationError` where a batch differs by more than
    :func:`allowed_diff` of its reference output.
    """
    worst = 0.0
    for batch in inputs:
        want, got = reference(batch), candidate(batch)
        if want.shape != got.shape:
            raise VerificationError(f"{name}: onnxruntime gives shape {got.shape}, PyTorch {want.shape} (batch {len(batch)})")
        if not np.isfinite(got).all():
            raise VerificationError(f"{name}: onnxruntime output holds NaN/inf at batch {len(batch)}")
        diff = float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64))))
        limit = allowed_diff(want, tolerance)
        if not diff <= limit:
            raise VerificationError(
                f"{name}: onnxruntime differs from PyTorch by {diff:.3g} (max abs) at batch {len(batch)}, "
                f"over the allowed {limit:.3g}; the export is wrong, nothing was written"
            )
        worst = max(worst, diff)
    return worst


def verify_parity(model: Any, encoder_onnx: bytes, decoder_onnx: bytes, maps: np.ndarray,
                  bank_latents: np.ndarray, *, tolerance: float = TOLERANCE, seed: int = 0) -> "dict[str, float]":
    """Run every parity check; returns the worst max-abs difference per check.

    ``model`` is the PyTorch ``ConvAutoencoder``; ``maps`` real one-hot maps
    (NHWC); ``bank_latents`` the latents the bank will hold. Raises
    :class:`VerificationError` at the first check past ``tolerance``.
    """
    enc, dec = cpu_session(encoder_onnx), cpu_session(decoder_onnx)
    map_batches = batches(maps)
    rng = np.random.default_rng(seed)
    latent_batches = batches(bank_latents[rng.permutation(len(bank_latents))])
    std = np.sqrt(bank_latents.astype(np.float64).var(axis=0).mean(axis=(1, 2)))[None, :, None, None]
    # Generation adds noise of a few std to bank latents; check that range too.
    noisy = [z + rng.normal(size=z.shape).astype(np.float32) * (2.0 * std).astype(np.float32) for z in latent_batches]
    return {
        "encoder": compare("encoder", _torch_fn(model.encoder, True, False), lambda x: run(enc, x), map_batches, tolerance),
        "decoder": compare("decoder", _torch_fn(model.decoder, False, True), lambda z: run(dec, z), latent_batches, tolerance),
        "decoder_noisy_latents": compare("decoder (noisy latents)", _torch_fn(model.decoder, False, True),
                                         lambda z: run(dec, z), noisy, tolerance),
        "chained": compare("encoder+decoder", _torch_fn(model, True, True), lambda x: run(dec, run(enc, x)),
                           map_batches, tolerance),
    }


def verify_generator(folder: Path, bank: "dict[str, np.ndarray]", std: np.ndarray,
                     tolerance: float = TOLERANCE) -> "dict[str, float]":
    """Check ``generator.onnx`` and ``generator_core.onnx`` as written in ``folder``.

    * the noise (the same nodes, built alone) follows the documented
      definition (:func:`export.generator_graph.reference_noise`) within
      ``tolerance``;
    * ``generator.onnx`` equals, bit for bit, ``decoder.onnx`` on those noisy
      latents followed by ``edge_infer.wafer.lock_outline`` -- at batch 1, 7
      and 64, for any ``row0`` (a request cut into chunks equals it whole),
      and at one and two threads;
    * ``generator_core.onnx`` equals ``generator.onnx`` on the bank's rows,
      its ``probs`` equal the decoder's, and a redraw attempt uses its own
      noise stream.

    Returns the worst noise difference; raises :class:`VerificationError`.
    """
    from edge_infer.wafer import lock_outline

    from . import generator_graph as gg

    gen1 = cpu_session(folder / "generator.onnx")
    gen2 = cpu_session(folder / "generator.onnx", threads=2)
    core = cpu_session(folder / "generator_core.onnx")
    dec = cpu_session(folder / "decoder.onnx")
    probe = cpu_session(gg.noise_probe().SerializeToString())
    latents, outlines = bank["latents"], bank["outlines"][bank["outline_ids"]]
    count = len(latents)
    worst = 0.0
    rng = np.random.default_rng(0)
    for seed, strength in ((0, 0.4), (2**63 - 1, 1.3)):
        for size in BATCH_SIZES:
            source = rng.integers(0, count, size=size).astype(np.int64)
            row0 = int(rng.integers(0, 10_000))
            rows = np.arange(row0, row0 + size, dtype=np.int64)
            sigma = np.broadcast_to(np.float32(strength) * std.astype(np.float32), (size, std.size)).copy()
            feeds = {"source": source, "seed": np.array([seed], np.int64), "row0": np.array([row0], np.int64),
                     "strength": np.array([strength], np.float32)}
            maps = gen1.run(None, feeds)[0]
            noisy_feeds = {"latent": latents[source], "sigma": sigma, "seed": feeds["seed"], "row": rows,
                           "attempt": np.zeros(size, np.int64)}
            noisy = probe.run(None, noisy_feeds)[0]
            want = latents[source] + gg.reference_noise(seed, rows) * sigma[:, :, None, None]
            diff = float(np.max(np.abs(noisy - want)))
            if not diff <= allowed_diff(want, tolerance):
                raise VerificationError(f"generator noise differs from its definition by {diff:.3g} (seed {seed}); nothing was written")
            worst = max(worst, diff)
            probs = run(dec, noisy)
            checks = {
                "equals decoder.onnx + outline lock": np.array_equal(maps, lock_outline(probs, outlines[source])),
                "gives the same maps on two threads": np.array_equal(maps, gen2.run(None, feeds)[0]),
            }
            if size > 1:
                cut = size // 2
                part = gen1.run(None, {**feeds, "source": source[cut:], "row0": np.array([row0 + cut], np.int64)})[0]
                checks["chunk (row0) equals those rows"] = np.array_equal(part, maps[cut:])
            core_feeds = {**noisy_feeds, "outline": outlines[source]}
            core_maps, core_probs = core.run(["maps", "probs"], core_feeds)
            checks["core equals generator"] = np.array_equal(core_maps, maps)
            checks["core probs equal decoder.onnx"] = np.array_equal(core_probs, probs)
            attempt = np.full(size, 3, np.int64)
            redrawn = core.run(["maps"], {**core_feeds, "attempt": attempt, "sigma": sigma * np.float32(1.5**3)})[0]
            noisy3 = probe.run(None, {**noisy_feeds, "attempt": attempt, "sigma": sigma * np.float32(1.5**3)})[0]
            checks["redraw equals its own noise stream"] = np.array_equal(redrawn, lock_outline(run(dec, noisy3), outlines[source]))
            failed = [name for name, ok in checks.items() if not ok]
            if failed:
                raise VerificationError(f"generator graph at batch {size}: not bit-identical where it must be "
                                        f"({'; '.join(failed)}); nothing was written")
    return {"generator_noise": worst}


def encode_all(encoder_onnx: "bytes | str | Path", maps: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Latents (N,64,3,3) of ``maps`` by the exported encoder alone."""
    enc = cpu_session(encoder_onnx)
    parts = [run(enc, maps[i:i + batch_size]) for i in range(0, len(maps), batch_size)]
    return np.concatenate(parts, axis=0).astype(np.float32)


def torch_latents(model: Any, maps: np.ndarray) -> np.ndarray:
    """Latents of ``maps`` by PyTorch (to check the exported encoder's bank)."""
    return _torch_fn(model.encoder, True, False)(maps)


def reconstruction_mse(encoder_onnx: "bytes | str | Path", decoder_onnx: "bytes | str | Path",
                       maps: np.ndarray, batch_size: int = 256) -> float:
    """Mean squared error of ``maps`` against decoder(encoder(maps)), by onnxruntime alone.

    The same figure as the training loss (MSE over every die and channel),
    so a bundle can be checked against its run without PyTorch.
    """
    enc, dec = cpu_session(encoder_onnx), cpu_session(decoder_onnx)
    total = 0.0
    for i in range(0, len(maps), batch_size):
        x = np.ascontiguousarray(maps[i:i + batch_size], dtype=np.float32)
        y = run(dec, run(enc, x))
        total += float(np.sum((y.astype(np.float64) - x) ** 2))
    return total / float(np.prod(maps.shape))


def bundle_reconstruction_mse(bundle: "str | Path", maps: np.ndarray) -> float:
    """:func:`reconstruction_mse` of the two graphs in a bundle folder."""
    bundle = Path(bundle)
    return reconstruction_mse(bundle / "encoder.onnx", bundle / "decoder.onnx", maps)


def _main() -> None:
    """``python -m export.verify BUNDLE [--data PATH]``: the bundle's reconstruction MSE by onnxruntime alone."""
    import typer

    from edge_infer.commands import handle_errors
    from edge_infer.io import load_dataset

    @handle_errors
    def command(
        bundle: Path = typer.Argument(..., help="Bundle folder holding encoder.onnx and decoder.onnx."),
        data: Path = typer.Option(Path("../shared/data/wafer.zip"), "--data", help="Maps to reconstruct."),
    ) -> None:
        for name in ("encoder.onnx", "decoder.onnx"):
            if not (bundle / name).is_file():
                raise VerificationError(f"{bundle} has no {name}")
        maps = load_dataset(data).maps
        mse = bundle_reconstruction_mse(bundle, maps)
        typer.echo(f"reconstruction MSE of {len(maps)} maps by onnxruntime alone: {mse:.6f}")

    typer.run(command)


if __name__ == "__main__":
    _main()
