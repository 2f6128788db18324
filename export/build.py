"""Checkpoint → verified bundle folder, written all-or-nothing.

Everything is written into a hidden temporary folder beside the target and
checked there (ONNX checker, onnxruntime against PyTorch, bank against
PyTorch, hashes re-read from disk). Only then is it renamed into place; an
existing bundle is replaced only with ``force``, and only after the new one
passed. So a failed or interrupted export never leaves a half bundle and
never destroys the one already there.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_infer.bundle import MANIFEST, sha256_file
from edge_infer.errors import DataFileError, EdgeInferError, InputError
from edge_infer.files import atomic_folder, check_folder_target, json_text, jsonable
from edge_infer.io import load_dataset

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


def _copy_run_extras(checkpoint: Checkpoint, tmp: Path, note: Callable[[str], None]) -> None:
    """Copy the run's loss.png and metrics.json; metrics.json falls back to the checkpoint's metrics."""
    for name in RUN_EXTRAS:
        source = checkpoint.run_dir / name
        if source.is_file():
            shutil.copyfile(source, tmp / name)
        elif name == "metrics.json":
            (tmp / name).write_text(json_text(checkpoint.metrics))
            note(f"note: {source} not found; metrics.json written from the checkpoint's metrics")
        else:
            note(f"note: {source} not found; the bundle has no {name}")


def _epochs(checkpoint: Checkpoint) -> Optional[int]:
    """Epochs trained, as the run recorded them (``training.train`` writes ``metrics["epochs"]``)."""
    value = checkpoint.metrics.get("epochs", checkpoint.recipe.get("epochs"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class _Graphs:
    encoder: bytes
    decoder: bytes
    variant: str
    info: dict


def _export_graphs(checkpoint: Checkpoint, decoder: str, n_maps: int, note: Callable[[str], None]) -> _Graphs:
    """Both graphs with their model cards, checked by the ONNX checker, as bytes."""
    model = checkpoint.model
    encoder_model = onnx_graphs.export_encoder(model.encoder)
    try:
        decoder_model, variant = onnx_graphs.export_decoder(model.decoder, decoder, note=note)
    except EdgeInferError:
        raise
    except Exception as exc:  # the fast rewrite is another module's code; say where it broke
        raise verify.VerificationError(
            f"building the {decoder} decoder failed ({type(exc).__name__}: {exc}); try --decoder plain"
        ) from None
    for kind, graph in (("encoder", encoder_model), ("decoder", decoder_model)):
        onnx_graphs.add_model_card(graph, onnx_graphs.model_card(kind, checkpoint.recipe, checkpoint.metrics, n_maps))
    try:
        encoder_bytes = onnx_graphs.serialize(encoder_model)
        decoder_bytes = onnx_graphs.serialize(decoder_model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise verify.VerificationError(f"the exported graph fails the ONNX checker: {exc}") from None
    info = {}
    for kind, graph in (("encoder", encoder_model), ("decoder", decoder_model)):
        info[kind] = {"nodes": onnx_graphs.count_nodes(graph), "opset": onnx_graphs.opset_of(graph)}
    info["decoder"]["built_by"] = ("export.fast_decoder.build_fast_decoder" if variant == "fast"
                                   else "torch.onnx.export(dynamo=True)")
    info["encoder"]["built_by"] = "torch.onnx.export(dynamo=True)"
    return _Graphs(encoder_bytes, decoder_bytes, variant, info)


@dataclass(frozen=True)
class _Checked:
    latents: np.ndarray
    diffs: dict
    mse: float
    max_abs_latent: float


def _verify_written(folder: Path, model: Any, maps: np.ndarray, tolerance: float) -> _Checked:
    """Run the graphs *as written in* ``folder`` against PyTorch; raises VerificationError."""
    encoder_path, decoder_path = folder / "encoder.onnx", folder / "decoder.onnx"
    latents = verify.encode_all(encoder_path, maps)
    reference = verify.torch_latents(model, maps)
    bank_vs_torch = float(np.max(np.abs(latents.astype(np.float64) - reference)))
    allowed = verify.allowed_diff(reference, tolerance)
    if not bank_vs_torch <= allowed:
        raise verify.VerificationError(
            f"latent bank: onnxruntime encoder differs from PyTorch by {bank_vs_torch:.3g} (max abs), "
            f"over the allowed {allowed:.3g}; nothing was written"
        )
    diffs = verify.verify_parity(model, encoder_path.read_bytes(), decoder_path.read_bytes(),
                                 maps, latents, tolerance=tolerance)
    diffs["latent_bank"] = bank_vs_torch
    mse = verify.reconstruction_mse(encoder_path, decoder_path, maps)
    return _Checked(latents, diffs, mse, float(np.max(np.abs(reference))))


def _provenance(checkpoint: Checkpoint, graphs: _Graphs, checked: _Checked, hashes: "tuple[str, str]",
                n_maps: int, tolerance: float) -> dict:
    metrics = {k: v for k, v in checkpoint.metrics.items() if not isinstance(v, (list, tuple, dict))}
    return {
        "recipe": jsonable(checkpoint.recipe),
        "epochs": _epochs(checkpoint),
        "metrics": jsonable(metrics),  # scalars only: per-epoch histories stay in metrics.json
        "data_sha256": hashes[0],
        "labels_sha256": hashes[1],
        "data_n_maps": int(n_maps),
        "checkpoint_sha256": checkpoint.sha256,
        "training_versions": jsonable(checkpoint.versions),
        "tool_versions": manifest_mod.tool_versions(),
        "graphs": graphs.info,  # per graph: nodes, opset, what built it
        "verification": {
            "provider": "CPUExecutionProvider",
            "tolerance": tolerance,
            "criterion": verify.CRITERION,
            "max_abs_latent": checked.max_abs_latent,
            "batch_sizes": list(verify.BATCH_SIZES),
            "max_abs_diff": checked.diffs,
            "reconstruction_mse": checked.mse,
            "passed": True,
        },
    }


def _std(stats: dict) -> np.ndarray:
    """The per-channel std as the runtime reads it from the manifest (float32)."""
    return np.asarray(stats["overall"]["std"], dtype=np.float32)


def _write_generator(folder: Path, decoder_bytes: bytes, bank: dict, stats: dict) -> dict:
    """``generator.onnx`` and ``generator_core.onnx`` from the decoder and the bank, into ``folder``."""
    import onnx

    from . import generator_graph

    decoder = onnx.load_from_string(decoder_bytes)
    graphs = {
        "generator": generator_graph.build_generator(decoder, bank["latents"], _std(stats), bank["outline_ids"], bank["outlines"]),
        "generator_core": generator_graph.build_core(decoder),
    }
    info = {}
    for kind, model in graphs.items():
        card = {k: v for k, v in onnx_graphs.model_card("decoder", {}, {}, 0).items() if k in ("classes", "channels", "license", "citation")}
        card["description"] = model.doc_string
        onnx_graphs.add_model_card(model, card)
        try:
            data = onnx_graphs.serialize(model)
        except Exception as exc:  # onnx.checker.ValidationError and friends
            raise verify.VerificationError(f"the {kind} graph fails the ONNX checker: {exc}") from None
        (folder / f"{kind}.onnx").write_bytes(data)
        info[kind] = {"nodes": onnx_graphs.count_nodes(model), "opset": onnx_graphs.opset_of(model),
                      "built_by": "export.generator_graph"}
    return info


def export_bundle(
    checkpoint_or_run: "str | Path",
    out: "str | Path",
    *,
    data: "Optional[str | Path]" = None,
    labels: "Optional[str | Path]" = None,
    decoder: str = "fast",
    force: bool = False,
    tolerance: float = verify.TOLERANCE,
    note: Callable[[str], None] = _note,
) -> ExportResult:
    """Export ``checkpoint_or_run`` (run folder or .pt) to a verified bundle folder ``out``.

    ``data`` / ``labels`` default to what the checkpoint records. Raises an
    :class:`EdgeInferError` (nothing written, an existing bundle untouched)
    for a bad checkpoint or data, an existing ``out`` without ``force``, or
    graphs that fail verification.
    """
    out = Path(out)
    if decoder not in onnx_graphs.DECODER_VARIANTS:
        raise InputError(f"unknown decoder variant {decoder!r}; choose one of {', '.join(onnx_graphs.DECODER_VARIANTS)}")
    replace = check_folder_target(out, force=force, marker=MANIFEST, what="a model bundle")
    checkpoint = load_checkpoint(checkpoint_or_run)
    data_path = resolve_data(checkpoint, data)
    if data is None and labels is None and checkpoint.data.get("labels_path"):
        labels = checkpoint.data["labels_path"]
    dataset = load_dataset(data_path, labels, require_labels=True)
    maps, label_ids = dataset.maps, dataset.labels.reshape(-1)
    hashes = (dataset.sha256, dataset.labels_sha256 or "")
    recorded = checkpoint.data.get("sha256")
    if recorded and recorded != hashes[0]:
        note(f"note: {data_path} is not the data the checkpoint was trained on "
             f"(data.npy sha256 {hashes[0][:12]}…, recorded {str(recorded)[:12]}…)")

    graphs = _export_graphs(checkpoint, decoder, len(maps), note)
    with atomic_folder(out, force=replace) as tmp:
        (tmp / "encoder.onnx").write_bytes(graphs.encoder)
        (tmp / "decoder.onnx").write_bytes(graphs.decoder)
        checked = _verify_written(tmp, checkpoint.model, maps, tolerance)
        bank = bank_mod.build_bank(checked.latents, label_ids, maps)
        (tmp / "latent_bank.npz").write_bytes(bank_mod.bank_bytes(bank))
        stats = bank_mod.latent_stats(checked.latents, label_ids)
        generator_info = _write_generator(tmp, graphs.decoder, bank, stats)
        checked.diffs.update(verify.verify_generator(tmp, bank, _std(stats), tolerance))
        graphs.info.update(generator_info)
        _copy_run_extras(checkpoint, tmp, note)
        manifest = manifest_mod.build_manifest(
            name=out.name,
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            decoder_variant=graphs.variant,
            bank_count=len(checked.latents),
            class_counts=bank_mod.class_counts(label_ids),
            class_rows=bank_mod.class_rows(label_ids),
            latent_stats=stats,
            provenance=_provenance(checkpoint, graphs, checked, hashes, len(maps), tolerance),
            files={p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        )
        (tmp / MANIFEST).write_text(manifest_mod.manifest_text(manifest))
    return ExportResult(out=out, manifest=manifest, decoder_variant=graphs.variant,
                        max_abs_diff=checked.diffs, reconstruction_mse=checked.mse)
