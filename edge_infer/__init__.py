"""edge-infer: generate realistic wafer maps with a torch-free ONNX autoencoder.

Quick start::

    from edge_infer import WaferGenerator

    gen = WaferGenerator.load()                   # the default bundle, verified
    new = gen.generate("Scratch", 20, seed=0)     # Generated(maps, labels, sources)
    new.maps.shape                                # (20, 26, 26, 3) float32 one-hot
    more = gen.augment(per_source=5, seed=0)      # 5 new maps per bank map, in order

The public names are imported lazily, so ``import edge_infer`` (and the
``edge-infer --help`` command) do not load numpy or onnxruntime until needed.
This package never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> module that defines it
_LAZY = {
    "WaferGenerator": "generator",
    "Generated": "generator",
    "Streamed": "generator",
    "Bundle": "bundle",
    "load_bundle": "bundle",
    "default_bundle_path": "bundle",
    "render_grid": "render",
    "save_png": "render",
    "PALETTE": "render",
    "EdgeInferError": "errors",
    "InputError": "errors",
    "DataFileError": "errors",
    "BundleError": "errors",
    "ProviderError": "errors",
    "OutputError": "errors",
    "ResizeNote": "wafer",
    "CLASS_NAMES": "wafer",
    "MixFallback": "sampling",
    "DEFAULT_NOISE_STRENGTH": "sampling",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from .bundle import Bundle, default_bundle_path, load_bundle
    from .errors import BundleError, DataFileError, EdgeInferError, InputError, OutputError, ProviderError
    from .generator import Generated, Streamed, WaferGenerator
    from .render import PALETTE, render_grid, save_png
    from .sampling import DEFAULT_NOISE_STRENGTH, MixFallback
    from .wafer import CLASS_NAMES, ResizeNote


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_infer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
