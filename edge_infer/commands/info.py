"""``edge-infer info``: what bundle is loaded, what it holds, and what runs it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..bundle import load_bundle
from ..errors import EdgeInferError
from ..generator import WaferGenerator
from ..runtime import available_providers, clash, ort, ort_distribution
from ._common import ModelOpt, ProviderOpt, examples, handle_errors, say, tell

EPILOG = examples("info", "info --json", "info --model models/wafer-cae --provider cpu")


@handle_errors
def info(model: ModelOpt = None, provider: ProviderOpt = "auto", as_json: Annotated[bool, typer.Option(
         "--json", help="One JSON object on stdout, for scripts.")] = False) -> None:
    """Show the bundle (verified), its classes, and what onnxruntime runs it on (works without onnxruntime too)."""
    b = load_bundle(model)  # every file's sha256 checked
    try:
        ort_text = f"{ort().__version__} ({ort_distribution() or 'distribution unknown'})"
        listed = [p.replace("ExecutionProvider", "").lower() for p in available_providers()]
        running = WaferGenerator(b, provider=provider).provider_info.describe()  # opens and checks every graph
    except EdgeInferError as exc:
        if "no onnxruntime" not in str(exc):
            raise
        ort_text, listed, running = "not installed", [], str(exc)
    report = {
        "bundle": str(b.path), "name": b.manifest.get("name"), "format_version": b.manifest["format_version"],
        "created_utc": b.manifest.get("created_utc"),
        "classes": [{"index": i, "name": k, "bank_maps": v} for i, (k, v) in enumerate(b.class_counts().items())],
        "bank_maps": b.count, "noise_defaults": {k: v for k, v in b.noise_defaults._asdict().items() if k != "raw"},
        "graphs": {role: g["file"] for role, g in b.manifest["graphs"].items()},
        "onnxruntime": ort_text, "providers_listed": listed, "running_on": running,
    }
    if as_json:
        say(json.dumps(report, indent=2))
    else:  # the same, a line a key
        report["classes"] = [f"{c['index']} {c['name']}: {c['bank_maps']}" for c in report["classes"]]
        for key, value in report.items():
            if isinstance(value, dict):
                value = [f"{k} {v}" for k, v in value.items()]
            if isinstance(value, list):
                value = ", ".join(value) or "none"
            say(f"{key.replace('_', ' ')}: {value}")
    if ort_text != "not installed" and clash():
        tell(f"warning: {clash()}")
