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


def cpu_session(model: "bytes | str | Path") -> Any:
    """An onnxruntime session on the CPU provider only, from bytes or a file path."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Small graphs on a shared machine: one intra-op thread is plenty and
    # keeps results independent of how many cores happen to be free.
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    if session.get_providers()[0] != "CPUExecutionProvider":  # pragma: no cover - defensive
        raise VerificationError(f"verification needs the CPU provider, got {session.get_providers()}")
    return session


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

    from edge_infer.errors import EdgeInferError
    from edge_infer.io import load_dataset

    def command(
        bundle: Path = typer.Argument(..., help="Bundle folder holding encoder.onnx and decoder.onnx."),
        data: Path = typer.Option(Path("../shared/data/wafer.zip"), "--data", help="Maps to reconstruct."),
    ) -> None:
        try:
            for name in ("encoder.onnx", "decoder.onnx"):
                if not (bundle / name).is_file():
                    raise VerificationError(f"{bundle} has no {name}")
            maps = load_dataset(data).maps
        except EdgeInferError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        mse = bundle_reconstruction_mse(bundle, maps)
        typer.echo(f"reconstruction MSE of {len(maps)} maps by onnxruntime alone: {mse:.6f}")

    typer.run(command)


if __name__ == "__main__":
    _main()
