"""edge-infer: realistic wafer maps from a torch-free ONNX autoencoder (``docs/api.md``);
``WaferGenerator.load().generate("Scratch", 20, seed=0).maps`` is 20 new one-hot maps ``(20, 26, 26, 3)``."""

__version__ = "0.4.0"

from .bundle import Bundle, default_bundle_path, export_bundle, load_bundle
from .errors import BundleError, DataFileError, EdgeInferError, InputError, OutputError, ProviderError
from .generator import Generated, Streamed, WaferGenerator
from .render import PALETTE, render_grid, save_png
from .sampling import DEFAULT_NOISE_STRENGTH, MixFallback
from .wafer import CLASS_NAMES, ResizeNote

__all__ = [
    "__version__", "Bundle", "BundleError", "CLASS_NAMES", "DEFAULT_NOISE_STRENGTH", "DataFileError", "EdgeInferError",
    "Generated", "InputError", "MixFallback", "OutputError", "PALETTE", "ProviderError", "ResizeNote", "Streamed",
    "WaferGenerator", "default_bundle_path", "export_bundle", "load_bundle", "render_grid", "save_png",
]
