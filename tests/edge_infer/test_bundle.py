"""Bundle loading and verification: every way a bundle can be broken is refused, naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_infer.bundle import (
    ENV_VAR,
    FORMAT_VERSION,
    default_bundle_path,
    load_bundle,
    manifest_hash,
    sha256_file,
)
from edge_infer.errors import BundleError
from edge_infer.wafer import CLASS_NAMES


@pytest.fixture()
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, manifest: dict, *, rehash: bool = True) -> None:
    """Write a manifest; with rehash, re-sign files and manifest so only the content is wrong."""
    if rehash:
        manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
        manifest["manifest_sha256"] = manifest_hash(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_default_bundle_loads_and_matches_the_manifest(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.classes == CLASS_NAMES
    assert b.count == 1281 == b.latents.shape[0]
    assert b.latents.shape[1:] == (64, 3, 3) and b.latents.dtype == np.float32
    assert b.labels.dtype == np.int64 and b.outline_ids.shape == (1281,)
    assert b.outlines.dtype == np.bool_ and b.outlines.shape[1:] == (26, 26)
    assert b.class_counts()["Donut"] == 1 and sum(b.class_counts().values()) == 1281
    assert b.latent_std.shape == (64,) and (b.latent_std > 0).all()
    assert b.noise_defaults.strength > 0 and b.noise_defaults.method in ("noise", "mix")
    # Shared between threads, so the arrays must be read-only.
    with pytest.raises(ValueError):
        b.latents[0, 0, 0, 0] = 1.0
    assert b.outlines[b.outline_ids[[0, 1]]].shape == (2, 26, 26)


def test_manifest_hash_is_the_documented_canonical_json(bundle_dir):
    m = _manifest(bundle_dir)
    body = {k: v for k, v in m.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert manifest_hash(m) == hashlib.sha256(text.encode()).hexdigest() == m["manifest_sha256"]


def test_default_path_prefers_the_environment_variable(monkeypatch, tmp_path, bundle_dir):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert (default_bundle_path() / "manifest.json").exists()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    assert default_bundle_path() == tmp_path / "elsewhere"
    with pytest.raises(BundleError, match="elsewhere"):
        load_bundle()


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize(
    "name, damage",
    [
        ("encoder.onnx", _flip_byte),
        ("decoder.onnx", _flip_byte),
        ("decoder.onnx", _truncate),
        ("latent_bank.npz", _flip_byte),
        ("latent_bank.npz", _truncate),
        ("metrics.json", _truncate),
        ("encoder.onnx", lambda p: p.unlink()),
        ("latent_bank.npz", lambda p: p.unlink()),
    ],
)
def test_modified_truncated_or_missing_files_are_refused_by_name(bundle_copy, name, damage):
    damage(bundle_copy / name)
    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        load_bundle(bundle_copy)


def test_an_edited_manifest_is_detected(bundle_copy):
    m = _manifest(bundle_copy)
    m["noise_defaults"]["strength"] = 9.0
    _write_manifest(bundle_copy, m, rehash=False)
    with pytest.raises(BundleError, match=r"manifest\.json.*modified"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format_version=FORMAT_VERSION + 1), "newer"),
        (lambda m: m.update(format_version=1), r"too old \(its class names 5, 6, 7 are wrong.*python -m export"),
        (lambda m: m.update(format_version=2), r"too old \(it has no generator graphs.*python -m export RUN --out"),
        (lambda m: m.pop("classes"), "missing key"),
        (lambda m: m.update(format="something-else"), "not an edge-infer-bundle"),
        (lambda m: m["latent_stats"]["overall"].update(std=[1.0] * 3), "64"),
        (lambda m: m["files"].pop("decoder.onnx"), "not listed"),
        (lambda m: m["files"].pop("generator.onnx"), "generator.onnx is not listed"),
        (lambda m: m["graphs"].pop("generator_core"), "graphs.generator_core needs a file"),
        (lambda m: m.update(noise_defaults={"strength": -1}), "noise_defaults"),
    ],
)
def test_a_signed_but_wrong_manifest_is_refused(bundle_copy, edit, message):
    m = _manifest(bundle_copy)
    edit(m)
    _write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_malformed_json_and_missing_manifest(bundle_copy, tmp_path):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        load_bundle(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(tmp_path / "nothing-here")


def test_a_bank_with_wrong_shapes_is_refused_even_when_signed(bundle_copy):
    bank = dict(np.load(bundle_copy / "latent_bank.npz"))
    bank["latents"] = bank["latents"][:, :32]
    np.savez(bundle_copy / "latent_bank.npz", **bank)
    _write_manifest(bundle_copy, _manifest(bundle_copy))
    with pytest.raises(BundleError, match=r"latent_bank\.npz: malformed latent bank"):
        load_bundle(bundle_copy)


def test_a_bank_holding_pickles_is_refused(bundle_copy):
    bank = dict(np.load(bundle_copy / "latent_bank.npz"))
    bank["labels"] = np.array([object()] * 1281, dtype=object)
    np.savez(bundle_copy / "latent_bank.npz", **bank)
    _write_manifest(bundle_copy, _manifest(bundle_copy))
    with pytest.raises(BundleError, match=r"latent_bank\.npz"):
        load_bundle(bundle_copy)


def test_graph_names_and_shapes_are_checked_against_the_manifest(bundle_copy, capsys):
    """Every graph opens at load and is checked there: a wrong one is refused before any map is made."""
    from edge_infer import WaferGenerator

    m = _manifest(bundle_copy)
    m["graphs"]["encoder"]["input"] = "pixels"
    _write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match=r"encoder\.onnx: inputs wafer, outputs latent are not the format's pixels, latent"):
        WaferGenerator.load(bundle_copy, provider="cpu")
    # encoder and decoder swapped (names fixed up so only the shapes are wrong)
    m = _manifest(bundle_copy)
    m["graphs"]["encoder"].update(file="decoder.onnx", input="latent", output="wafer")
    m["graphs"]["decoder"].update(file="encoder.onnx", input="wafer", output="latent")
    _write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match=r"decoder\.onnx: output shape \(batch, 26, 26, 3\) is not \(batch, 64, 3, 3\)"):
        WaferGenerator.load(bundle_copy, provider="cpu")
    from edge_infer.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--model", str(bundle_copy), "--provider", "cpu"])
    assert exit_info.value.code == 1  # `edge-infer info` opens and checks every graph
    assert "decoder.onnx: output shape" in capsys.readouterr().err
    # the two generator graphs swapped: their inputs are not the format's
    m = _manifest(bundle_copy)
    m["graphs"]["encoder"].update(file="encoder.onnx", input="wafer", output="latent")
    m["graphs"]["decoder"].update(file="decoder.onnx", input="latent", output="wafer")
    m["graphs"]["generator"]["file"], m["graphs"]["generator_core"]["file"] = "generator_core.onnx", "generator.onnx"
    _write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match=r"generator_core\.onnx: inputs .* are not the format's source, seed, row0, strength"):
        WaferGenerator.load(bundle_copy, provider="cpu")
    m["graphs"]["generator"]["file"] = "generator.onnx"  # only the core graph wrong: refused at load too
    _write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match=r"generator\.onnx: inputs .* are not the format's latent, sigma"):
        WaferGenerator.load(bundle_copy, provider="cpu")


def test_a_broken_graph_is_refused_at_load(bundle_copy):
    """Not only the generator graph: a broken encoder, decoder or core graph is refused by load itself."""
    from edge_infer import WaferGenerator

    for name in ("encoder.onnx", "decoder.onnx", "generator_core.onnx"):
        good = (bundle_copy / name).read_bytes()
        (bundle_copy / name).write_bytes(b"not a graph")
        with pytest.raises(BundleError, match=rf"{name.replace('.', r'[.]')}: onnxruntime cannot load this graph"):
            WaferGenerator.load(bundle_copy, provider="cpu", verify=False)
        (bundle_copy / name).write_bytes(good)
    assert WaferGenerator.load(bundle_copy, provider="cpu", verify=False).generate("Loc", 5, seed=0).maps.shape == (5, 26, 26, 3)


def test_an_oversized_or_too_deeply_nested_manifest_is_refused(bundle_copy):
    from edge_infer.bundle import MAX_MANIFEST_BYTES

    m = _manifest(bundle_copy)
    m["padding"] = "x" * MAX_MANIFEST_BYTES
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"manifest\.json: larger than 4 MiB"):
        load_bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)  # 400 kB
    with pytest.raises(BundleError, match=r"manifest\.json: not a manifest \(its JSON is nested too deep\)"):
        load_bundle(bundle_copy)


def test_bundle_files_must_be_regular_files_inside_the_folder(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(bundle_copy / "decoder.onnx", outside)
    (bundle_copy / "decoder.onnx").unlink()
    (bundle_copy / "decoder.onnx").symlink_to(outside)  # same bytes, so the sha256 still matches
    with pytest.raises(BundleError, match=r"decoder\.onnx: outside the bundle folder"):
        load_bundle(bundle_copy)
    shutil.copy(outside, bundle_copy / "real-decoder.onnx")
    (bundle_copy / "decoder.onnx").unlink()
    (bundle_copy / "decoder.onnx").symlink_to("real-decoder.onnx")  # a link inside the folder is followed
    assert load_bundle(bundle_copy).decoder_path.name == "decoder.onnx"
    m = _manifest(bundle_copy)
    m["files"]["../elsewhere.onnx"] = m["files"]["decoder.onnx"]
    m["manifest_sha256"] = manifest_hash(m)  # signed, so only the name is wrong
    _write_manifest(bundle_copy, m, rehash=False)
    with pytest.raises(BundleError, match=r"\.\./elsewhere\.onnx: outside the bundle folder"):
        load_bundle(bundle_copy)


def test_a_bank_whose_header_lies_is_refused_even_when_signed(bundle_copy):
    import io
    import zipfile

    from numpy.lib import format as npy_format

    bank = dict(np.load(bundle_copy / "latent_bank.npz"))
    latents = np.ascontiguousarray(bank.pop("latents"))
    head = io.BytesIO()
    npy_format.write_array_header_1_0(head, {"descr": npy_format.dtype_to_descr(latents.dtype), "fortran_order": False,
                                             "shape": (2 * latents.shape[0], *latents.shape[1:])})  # twice the rows held
    with zipfile.ZipFile(bundle_copy / "latent_bank.npz", "w") as zf:
        for key, value in bank.items():
            buf = io.BytesIO()
            np.save(buf, value)
            zf.writestr(f"{key}.npy", buf.getvalue())
        zf.writestr("latents.npy", head.getvalue() + latents.tobytes())
    _write_manifest(bundle_copy, _manifest(bundle_copy))
    with pytest.raises(BundleError, match=r"latent_bank\.npz: not a readable latent bank .*header declares"):
        load_bundle(bundle_copy)
