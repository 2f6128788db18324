"""``edge-infer info``: what bundle is loaded, what it holds, and what runs it."""

from __future__ import annotations

from ._common import ModelOpt, ProviderOpt, handle_errors, say, tell

EPILOG = """\
Examples:

\b
  edge-infer info
  edge-infer info --model models/wafer-cae --provider cpu

"""


@handle_errors
def info(model: ModelOpt = None, provider: ProviderOpt = "auto") -> None:
    """Show the bundle, its classes and what onnxruntime runs on."""
    from ..generator import WaferGenerator
    from ..runtime import available_providers, clash, ort_distribution, ort_version

    gen = WaferGenerator.load(model, provider=provider).open_graphs()  # every graph checked, not only the generator
    b = gen.bundle
    m = b.manifest
    prov = m.get("provenance", {}) if isinstance(m.get("provenance"), dict) else {}
    d = b.noise_defaults
    say(f"bundle: {m.get('name', '?')} at {b.path}")
    say(f"  format version {m['format_version']}, created {m.get('created_utc', '?')}, verified (sha256 of every file, "
        "every graph opened and checked against the format)")
    say(f"  decoder variant: {m['graphs']['decoder'].get('variant', '?')}; trained {prov.get('epochs', '?')} epochs")
    say(f"  latent bank: {b.count} maps, latent {tuple(b.latents.shape[1:])}, {b.outlines.shape[0]} wafer outline(s)")
    say(f"  noise defaults: {d.mode} strength {d.strength:g}, method {d.method}, outline lock {'on' if d.outline_lock else 'off'}")
    say("classes (index name: maps in the bank):")
    for i, (name, count) in enumerate(b.class_counts().items()):
        say(f"  {i} {name}: {count}")
    say(f"onnxruntime {ort_version()} ({ort_distribution() or 'distribution unknown'}); "
        f"providers listed: {', '.join(available_providers())}")
    say(f"running on: {gen.provider_info.describe()}")
    if clash():
        tell(f"warning: {clash()}")
