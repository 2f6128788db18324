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
    b = load_bundle(model)
    m = b.manifest
    try:
        ort_text = f"{ort().__version__} ({ort_distribution() or 'distribution unknown'})"
        listed = [p.replace("ExecutionProvider", "").lower() for p in available_providers()]
        running = WaferGenerator(b, provider=provider).provider_info.describe()  # opens and checks every graph
    except EdgeInferError as exc:
        if "no onnxruntime" not in str(exc):
            raise
        ort_text, listed, running = "not installed", [], str(exc)
    d = b.noise_defaults
    report = {
        "bundle": str(b.path), "name": m.get("name"), "format_version": m["format_version"],
        "created_utc": m.get("created_utc"),
        "classes": [{"index": i, "name": k, "bank_maps": v} for i, (k, v) in enumerate(b.class_counts().items())],
        "bank_maps": b.count,
        "noise_defaults": {"mode": d.mode, "strength": d.strength, "method": d.method, "outline_lock": d.outline_lock},
        "graphs": {role: g["file"] for role, g in m["graphs"].items()},
        "onnxruntime": ort_text, "providers_listed": listed, "running_on": running,
    }
    if as_json:
        say(json.dumps(report, indent=2))
    else:
        say(f"bundle: {report['name'] or '?'} at {b.path}")
        say(f"  format version {report['format_version']}, created {report['created_utc'] or '?'}, verified "
            "(sha256 of every file, every graph opened and checked against the format)")
        say(f"  graphs: {', '.join(report['graphs'].values())}")
        say(f"  latent bank: {b.count} maps, latent {tuple(b.latents.shape[1:])}, "
            f"{b.outlines.shape[0]} wafer outline(s)")
        say(f"  noise defaults: {d.mode} strength {d.strength:g}, method {d.method}, "
            f"outline lock {'on' if d.outline_lock else 'off'}")
        say("classes (index name: maps in the bank):")
        for c in report["classes"]:
            say(f"  {c['index']} {c['name']}: {c['bank_maps']}")
        say(f"onnxruntime {ort_text}; providers listed: {', '.join(listed) or 'none'}")
        say(f"running on: {running}")
    if ort_text != "not installed" and clash():
        tell(f"warning: {clash()}")
