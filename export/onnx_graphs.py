"""PyTorch encoder/decoder → two clean ONNX graphs with the NHWC layout inside.

Users only ever see the ``data.npy`` layout (NHWC), so each graph is exported
from a thin wrapper that permutes to/from PyTorch's NCHW. The exporter is
torch's ``torch.export``-based ONNX exporter (the default since torch 2.9);
its output is then stripped of per-node debugging metadata (stack traces with
local file paths, FX node names) and intermediate ``value_info`` so that the
graph is minimal and the bytes depend only on the weights: ``make model`` run
twice on one checkpoint writes identical ``.onnx`` files.

(The legacy TorchScript exporter gives the same 6-node encoder and 7-node
decoder, faster, but is deprecated; after cleaning, the two are equally small.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping
from typing import Any

from edge_infer.wafer import CLASS_NAMES, MAP_SHAPE, STATE_NAMES
from training.model import LATENT_SHAPE

OPSET = 18
ENCODER_INPUT, ENCODER_OUTPUT = "wafer", "latent"
DECODER_INPUT, DECODER_OUTPUT = "latent", "wafer"
BATCH = "batch"
DECODER_VARIANTS = ("fast", "plain")


def _wrappers():
    """The NHWC wrappers, built lazily so importing this module needs no torch."""
    from torch import nn

    class NHWCEncoder(nn.Module):
        """wafer (N,26,26,3) NHWC → latent (N,64,3,3)."""

        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, wafer):
            return self.encoder(wafer.permute(0, 3, 1, 2))

    class NHWCDecoder(nn.Module):
        """latent (N,64,3,3) → probabilities (N,26,26,3) NHWC."""

        def __init__(self, decoder: nn.Module) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, latent):
            return self.decoder(latent).permute(0, 2, 3, 1)

    return NHWCEncoder, NHWCDecoder


def _clean(model: Any) -> Any:
    """Drop debugging metadata and intermediate shapes; keep weights and ops."""
    graph = model.graph
    del graph.value_info[:]
    for container in (graph.node, graph.input, graph.output, graph.initializer):
        for item in container:
            if hasattr(item, "metadata_props"):
                del item.metadata_props[:]
            if hasattr(item, "doc_string"):
                item.doc_string = ""
    del graph.metadata_props[:]
    del model.metadata_props[:]
    graph.doc_string = ""
    model.doc_string = ""
    return model


def _export(module: Any, example: Any, input_name: str, output_name: str, graph_name: str) -> Any:
    """Export ``module`` with a dynamic first axis named ``batch``; returns a ModelProto."""
    import torch

    module = module.eval()
    # The exporter announces each stage on stdout and logs that optional
    # torchvision ops are skipped; neither is news to someone exporting this model.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes={input_name: {0: torch.export.Dim(BATCH, min=1)}},
                opset_version=OPSET,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
    finally:
        registration_log.setLevel(old_level)
    model = program.model_proto
    model.graph.name = graph_name
    return _clean(model)


def export_encoder(encoder: Any) -> Any:
    """ONNX graph of ``encoder``: input ``wafer`` (batch,26,26,3) → ``latent`` (batch,64,3,3)."""
    import torch

    nhwc_encoder, _ = _wrappers()
    example = torch.zeros((2, *MAP_SHAPE), dtype=torch.float32)  # batch 2: 1 would be specialised
    return _export(nhwc_encoder(encoder), example, ENCODER_INPUT, ENCODER_OUTPUT, "edge_infer_encoder")


def export_plain_decoder(decoder: Any) -> Any:
    """Straightforward ONNX graph of ``decoder``: ``latent`` → ``wafer`` NHWC probabilities."""
    import torch

    _, nhwc_decoder = _wrappers()
    example = torch.zeros((2, *LATENT_SHAPE), dtype=torch.float32)
    return _export(nhwc_decoder(decoder), example, DECODER_INPUT, DECODER_OUTPUT, "edge_infer_decoder")


def export_decoder(decoder: Any, variant: str = "fast", *, note=print) -> "tuple[Any, str]":
    """ONNX graph of ``decoder`` in the asked ``variant``; returns ``(model, variant used)``.

    ``fast`` is the performance helper's exact rewrite,
    ``export.fast_decoder.build_fast_decoder``; where that does not exist yet
    this falls back to ``plain`` and says so through ``note``. Either way the
    caller verifies the graph against PyTorch before trusting it.
    """
    if variant not in DECODER_VARIANTS:
        from edge_infer.errors import InputError

        raise InputError(f"unknown decoder variant {variant!r}; choose one of {', '.join(DECODER_VARIANTS)}")
    if variant == "fast":
        try:
            from export.fast_decoder import build_fast_decoder  # type: ignore[attr-defined]
        except ImportError:
            note("note: export.fast_decoder.build_fast_decoder is not available; using the plain decoder")
        else:
            model = build_fast_decoder(decoder)
            model.graph.name = model.graph.name or "edge_infer_decoder"
            return _clean(model), "fast"
    return export_plain_decoder(decoder), "plain"


def model_card(kind: str, recipe: Mapping[str, Any], metrics: Mapping[str, Any], n_maps: int) -> "dict[str, str]":
    """A short model card for the ONNX ``metadata_props`` of the ``kind`` graph."""
    recipe_bits = ", ".join(f"{k}={v}" for k, v in sorted(recipe.items()) if isinstance(v, (int, float, str)))
    if kind == "encoder":
        io_text = {
            "input": f"{ENCODER_INPUT}: float32 (batch, 26, 26, 3), one-hot die states NHWC, "
            "channels boundary, normal, defect (exactly the course data.npy)",
            "output": f"{ENCODER_OUTPUT}: float32 (batch, 64, 3, 3) latent code",
        }
    else:
        io_text = {
            "input": f"{DECODER_INPUT}: float32 (batch, 64, 3, 3) latent code",
            "output": f"{DECODER_OUTPUT}: float32 (batch, 26, 26, 3) per-die probabilities (sigmoid), "
            "NHWC, channels boundary, normal, defect",
        }
    mse = metrics.get("train_mse", metrics.get("final_train_mse"))
    return {
        "description": f"edge-infer wafer-map convolutional autoencoder, {kind} half. "
        "Generates WM-811K-style 26x26 wafer maps by adding Gaussian noise to latent codes.",
        "classes": ",".join(CLASS_NAMES),
        "channels": ",".join(STATE_NAMES),
        **io_text,
        "training": f"{str(recipe.get('loss', 'mse')).upper()} reconstruction of {n_maps} labelled "
        f"WM-811K wafer maps; {recipe_bits}" + (f"; train_mse={mse:.5g}" if isinstance(mse, (int, float)) else ""),
        "license": "Model code MIT. Training data: a labelled subset of WM-811K (MIR lab), "
        "distributed without a licence file; cite it wherever this model is used.",
        "citation": "M.-J. Wu, J.-S. R. Jang and J.-L. Chen, 'Wafer Map Failure Pattern Recognition "
        "and Similarity Ranking for Large-Scale Data Sets', IEEE Transactions on Semiconductor "
        "Manufacturing 28(1), 2015.",
    }


def add_model_card(model: Any, card: Mapping[str, str]) -> Any:
    """Replace the ONNX model's ``metadata_props`` with ``card`` (sorted, so bytes are stable)."""
    del model.metadata_props[:]
    for key in sorted(card):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(card[key])
    model.doc_string = card.get("description", "")
    return model


def serialize(model: Any) -> bytes:
    """Check ``model`` with the ONNX checker and return its deterministic bytes."""
    import onnx

    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(deterministic=True)


def opset_of(model: Any) -> int:
    """The default-domain (ai.onnx) opset a model imports."""
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def count_nodes(model: Any) -> int:
    """Number of nodes in the main graph (how 'clean' an export is)."""
    return len(model.graph.node)
