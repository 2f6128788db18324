"""Checkpoint → verified bundle folder, written all-or-nothing.

Everything is written into a hidden temporary folder beside the target and
checked there (ONNX checker, onnxruntime against PyTorch, bank against
PyTorch, hashes re-read from disk). Only then is it renamed into place; an
existing bundle is replaced only with ``force``, and only after the new one
passed. So a failed or interrupted export never leaves a half bundle and
never destroys the one already there.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_infer.errors import DataFileError, OutputError
from edge_infer.io import DATA_NAME, LABEL_NAME, load_dataset

from . import bank as bank_mod
from . import manifest as manifest_mod
from . import onnx_graphs, verify
from .checkpoint import Checkpoint, load_checkpoint

RUN_EXTRAS = ("loss.png", "metrics.json")


def _note(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    out: Path
    manifest: dict
    decoder_variant: str
    max_abs_diff: dict
    reconstruction_mse: float


def data_hashes(data: "str | Path", labels: "Optional[str | Path]" = None) -> "tuple[str, str]":
    """sha256 of the maps' ``data.npy`` bytes and of the labels' ``label.npy`` bytes.

    Hashing the ``.npy`` members themselves (not the zip or the folder) gives
    the same figure for the same data in every layout -- and the same one
    the training run records (``training/data.py``), so the two can be
    compared. Only called after ``load_dataset`` accepted the same paths.
    """
    p = Path(data)
    if p.is_dir():
        raw_data = (p / DATA_NAME).read_bytes()
        raw_labels = Path(labels).read_bytes() if labels is not None else (p / LABEL_NAME).read_bytes()
    elif zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            names = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
            raw_data = zf.read(names[DATA_NAME])
            raw_labels = Path(labels).read_bytes() if labels is not None else zf.read(names[LABEL_NAME])
    else:
        raw_data = p.read_bytes()
        raw_labels = Path(labels).read_bytes() if labels is not None else b""
    return hashlib.sha256(raw_data).hexdigest(), hashlib.sha256(raw_labels).hexdigest()


def _looks_replaceable(folder: Path) -> bool:
    """True for a bundle folder or an empty one (hidden placeholders such as .keep allowed).

    ``--force`` replaces a whole folder, so it must never be pointed at an
    arbitrary directory by mistake.
    """
    if (folder / manifest_mod.MANIFEST_NAME).exists():
        return True
    return all(child.name.startswith(".") and child.is_file() for child in folder.iterdir())


def check_out(out: Path, force: bool) -> None:
    """Refuse up front: an existing bundle without ``force``, a file, or a non-bundle folder."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder; give another --out")
        if not _looks_replaceable(out):
            raise OutputError(f"{out} is a folder that is not a model bundle; refusing to replace it")
        is_empty = not (out / manifest_mod.MANIFEST_NAME).exists()
        if not is_empty and not force:
            raise OutputError(f"{out} already exists; use --force to replace it")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {parent}: permission denied")


def resolve_data(checkpoint: Checkpoint, data: "Optional[str | Path]") -> Path:
    """``--data`` if given, else the path the run recorded (relative to the current folder)."""
    if data is not None:
        return Path(data)
    recorded = checkpoint.data_path
    if not recorded:
        raise DataFileError(f"{checkpoint.path} records no training-data path; give --data")
    path = Path(recorded)
    if not path.exists():
        raise DataFileError(f"the training data the checkpoint records ({recorded}) is not there; give --data")
    return path


def _install(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished ``tmp`` folder to ``out``; the old bundle goes only after the new one is in place."""
    old: Optional[Path] = None
    if out.exists():
        if not force and (out / manifest_mod.MANIFEST_NAME).exists():
            raise OutputError(f"{out} appeared while exporting; use --force to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:  # put the previous bundle back
            os.replace(old / out.name, out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _copy_run_extras(checkpoint: Checkpoint, tmp: Path, note: Callable[[str], None]) -> None:
    """Copy the run's loss.png and metrics.json; metrics.json falls back to the checkpoint's metrics."""
    for name in RUN_EXTRAS:
        source = checkpoint.run_dir / name
        if source.is_file():
            shutil.copyfile(source, tmp / name)
        elif name == "metrics.json":
            (tmp / name).write_text(json.dumps(checkpoint.metrics, indent=2, sort_keys=True, default=str) + "\n")
            note(f"note: {source} not found; metrics.json written from the checkpoint's metrics")
        else:
            note(f"note: {source} not found; the bundle has no {name}")


def _epochs(checkpoint: Checkpoint) -> Optional[int]:
    for source in (checkpoint.metrics, checkpoint.recipe):
        for key in ("epochs", "epochs_run", "epochs_done"):
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _jsonable(value: Any) -> Any:
    """JSON-safe copy of recorded run info (drops long per-epoch histories' non-JSON bits)."""
    return json.loads(json.dumps(value, default=str, allow_nan=True).replace("NaN", "null").replace("Infinity", "null"))


def export_bundle(checkpoint_or_run: "str | Path", out: "str | Path", *, data: "Optional[str | Path]" = None,
                  labels: "Optional[str | Path]" = None, decoder: str = "fast", force: bool = False, tolerance: float = verify.TOLERANCE,
                  note: Callable[[str], None] = _note) -> ExportResult:
    """Export ``checkpoint_or_run`` to a verified bundle at ``out``; see the module doc."""
    out = Path(out)
    check_out(out, force)
    checkpoint = load_checkpoint(checkpoint_or_run)
    data_path = resolve_data(checkpoint, data)
    if data is None and labels is None and checkpoint.data.get("labels_path"):
        labels = checkpoint.data["labels_path"]
    dataset = load_dataset(data_path, labels, require_labels=True)
    maps, label_ids = dataset.maps, dataset.labels.reshape(-1)
    sha, labels_sha = data_hashes(data_path, labels)
    recorded_sha = checkpoint.data.get("sha256")
    if recorded_sha and recorded_sha != sha:
        note(f"note: {data_path} differs from the data the checkpoint was trained on (sha256 {sha[:12]}… vs {str(recorded_sha)[:12]}…)")

    model = checkpoint.model
    card_recipe, card_metrics = checkpoint.recipe, checkpoint.metrics
    encoder = onnx_graphs.export_encoder(model.encoder)
    decoder_model, variant = onnx_graphs.export_decoder(model.decoder, decoder, note=note)
    onnx_graphs.add_model_card(encoder, onnx_graphs.model_card("encoder", card_recipe, card_metrics))
    onnx_graphs.add_model_card(decoder_model, onnx_graphs.model_card("decoder", card_recipe, card_metrics))
    try:
        encoder_bytes = onnx_graphs.serialize(encoder)
        decoder_bytes = onnx_graphs.serialize(decoder_model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise verify.VerificationError(f"the exported graph fails the ONNX checker: {exc}") from None

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        (tmp / "encoder.onnx").write_bytes(encoder_bytes)
        (tmp / "decoder.onnx").write_bytes(decoder_bytes)
        # Everything below runs the graphs as written to disk, not the protos in memory.
        latents = verify.encode_all(tmp / "encoder.onnx", maps)
        reference = verify.torch_latents(model, maps)
        bank_vs_torch = float(np.max(np.abs(latents.astype(np.float64) - reference)))
        if not bank_vs_torch <= verify.allowed_diff(reference, tolerance):
            raise verify.VerificationError(
                f"latent bank: onnxruntime encoder differs from PyTorch by {bank_vs_torch:.3g} (max abs), "
                f"over the allowed {verify.allowed_diff(reference, tolerance):.3g}; nothing was written"
            )
        diffs = verify.verify_parity(model, (tmp / "encoder.onnx").read_bytes(), (tmp / "decoder.onnx").read_bytes(),
                                     maps, latents, tolerance=tolerance)
        diffs["latent_bank"] = bank_vs_torch
        mse = verify.reconstruction_mse(tmp / "encoder.onnx", tmp / "decoder.onnx", maps)

        bank = bank_mod.build_bank(latents, label_ids, maps)
        (tmp / "latent_bank.npz").write_bytes(bank_mod.bank_bytes(bank))
        _copy_run_extras(checkpoint, tmp, note)

        files = {p.name: manifest_mod.sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        provenance = {
            "recipe": _jsonable(checkpoint.recipe),
            "epochs": _epochs(checkpoint),
            "metrics": _jsonable({k: v for k, v in checkpoint.metrics.items() if not isinstance(v, (list, tuple))}),
            "data_sha256": sha,
            "labels_sha256": labels_sha,
            "data_n_maps": int(len(maps)),
            "checkpoint_sha256": checkpoint.sha256,
            "training_versions": _jsonable(checkpoint.versions),
            "tool_versions": manifest_mod.tool_versions(),
            "exporter": {"tool": "torch.onnx.export(dynamo=True)", "opset": onnx_graphs.OPSET,
                         "encoder_nodes": onnx_graphs.count_nodes(encoder),
                         "decoder_nodes": onnx_graphs.count_nodes(decoder_model)},
            "verification": {
                "provider": "CPUExecutionProvider",
                "tolerance": tolerance,
                "criterion": verify.CRITERION,
                "max_abs_latent": float(np.max(np.abs(reference))),
                "batch_sizes": list(verify.BATCH_SIZES),
                "max_abs_diff": diffs,
                "reconstruction_mse": mse,
                "passed": True,
            },
        }
        manifest = manifest_mod.build_manifest(
            name=out.name,
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            decoder_variant=variant,
            bank_count=len(latents),
            class_counts=bank_mod.class_counts(label_ids),
            latent_stats=bank_mod.latent_stats(latents, label_ids),
            provenance=provenance,
            files=files,
        )
        (tmp / manifest_mod.MANIFEST_NAME).write_text(manifest_mod.manifest_text(manifest))
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a bundle is for everyone to read
        _install(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out=out, manifest=manifest, decoder_variant=variant, max_abs_diff=diffs, reconstruction_mse=mse)
