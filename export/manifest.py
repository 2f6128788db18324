"""The bundle manifest (``manifest.json``): contents, hashes, provenance.

Implements ``docs/bundle-format.md``: every file's sha256, and the
manifest's own hash over its canonical JSON without the ``manifest_sha256``
key, so an edited manifest is caught like an edited graph.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# The reader (edge_infer.bundle) owns the format: its name, version, file name
# and hashing rules are used here as they are, so writer and reader cannot drift.
from edge_infer.bundle import FORMAT as BUNDLE_FORMAT
from edge_infer.bundle import FORMAT_VERSION, manifest_hash
from edge_infer.sampling import DEFAULT_NOISE_STRENGTH
from edge_infer.wafer import CLASS_NAMES, MAP_SHAPE, STATE_NAMES

HASH_KEY = "manifest_sha256"


def noise_defaults() -> "dict[str, Any]":
    """Default generation settings: the runtime's own default strength."""
    return {"mode": "relative", "strength": float(DEFAULT_NOISE_STRENGTH), "method": "noise", "outline_lock": True}


def tool_versions() -> "dict[str, str]":
    """Versions of the tools that made the bundle."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist, key in (("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "onnxscript"),
                      ("numpy", "numpy"), ("edge-infer", "edge_infer")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "unknown"
    import onnxruntime

    versions["onnxruntime"] = onnxruntime.__version__
    return versions


def graph_entries(decoder_variant: str) -> dict:
    """The ``graphs`` section: file, tensor names and shapes of both graphs."""
    from training.model import LATENT_SHAPE

    map_shape = ["batch", *MAP_SHAPE]
    latent_shape = ["batch", *LATENT_SHAPE]
    return {
        "encoder": {"file": "encoder.onnx", "input": "wafer", "output": "latent",
                    "input_shape": map_shape, "output_shape": latent_shape},
        "decoder": {"file": "decoder.onnx", "input": "latent", "output": "wafer",
                    "input_shape": latent_shape, "output_shape": map_shape, "variant": decoder_variant},
        # Several inputs each: names, types and shapes are the format's (docs/bundle-format.md).
        "generator": {
            "file": "generator.onnx",
            "inputs": {"source": ["int64", ["batch"]], "seed": ["int64", [1]], "row0": ["int64", [1]],
                       "strength": ["float32", [1]]},
            "outputs": {"maps": ["float32", map_shape]},
        },
        "generator_core": {
            "file": "generator_core.onnx",
            "inputs": {"latent": ["float32", latent_shape], "sigma": ["float32", ["batch", LATENT_SHAPE[0]]],
                       "outline": ["bool", ["batch", *MAP_SHAPE[:2]]], "seed": ["int64", [1]],
                       "row": ["int64", ["batch"]], "attempt": ["int64", ["batch"]]},
            "outputs": {"maps": ["float32", map_shape], "probs": ["float32", map_shape]},
        },
    }


def build_manifest(*, name: str, created_utc: str, decoder_variant: str, bank_count: int,
                   class_counts: Mapping[str, int], class_rows: Mapping[str, Sequence[int]], latent_stats: Mapping[str, Any],
                   provenance: Mapping[str, Any], files: Mapping[str, str]) -> "dict[str, Any]":
    """The complete manifest dict, ``manifest_sha256`` included."""
    from training.model import LATENT_SHAPE

    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "created_utc": created_utc,
        "classes": list(CLASS_NAMES),
        "map": {"shape": list(MAP_SHAPE), "layout": "NHWC", "dtype": "float32", "channels": list(STATE_NAMES)},
        "latent": {"shape": list(LATENT_SHAPE), "layout": "NCHW", "dtype": "float32"},
        "graphs": graph_entries(decoder_variant),
        "latent_bank": {"file": "latent_bank.npz", "count": int(bank_count)},
        "class_counts": dict(class_counts),
        "class_rows": {name: [int(i) for i in rows] for name, rows in class_rows.items()},
        "latent_stats": latent_stats,
        "noise_defaults": noise_defaults(),
        "provenance": dict(provenance),
        "files": dict(sorted(files.items())),
    }
    manifest[HASH_KEY] = manifest_hash(manifest)
    return manifest


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """How ``manifest.json`` is written: indented for people, keys in a stable order.

    Not :func:`edge_infer.io.json_text`: that turns NaN into null, which here
    would write a manifest whose own hash no longer matches; a NaN must stop
    the export instead (``allow_nan=False``).
    """
    return json.dumps(manifest, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
