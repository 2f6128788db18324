"""edge-infer: generate realistic wafer maps with a torch-free ONNX autoencoder."""

from __future__ import annotations

__version__ = "0.1.0"
