"""export/: checkpoint → verified bundle.

Most tests share one bundle exported from a randomly initialised model and a
small synthetic dataset (two wafer outlines, 40 maps), so the whole file runs
in seconds; one test checks the committed bundle against the real data.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_infer.bundle import FORMAT_VERSION  # noqa: E402
from edge_infer.errors import DataFileError, InputError, OutputError  # noqa: E402
from edge_infer.wafer import CLASS_NAMES, to_onehot  # noqa: E402
from export import bank as bank_mod  # noqa: E402
from export import onnx_graphs, verify  # noqa: E402
from export.build import export_bundle  # noqa: E402
from export.manifest import manifest_hash  # noqa: E402
from training.model import ConvAutoencoder  # noqa: E402

from conftest import REPO  # noqa: E402
N_MAPS = 40
ABSENT_CLASS = 1  # Donut: no synthetic map has it


def synthetic_maps(n: int = N_MAPS, seed: int = 0) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """One-hot maps with two distinct outlines, random defects; labels skip class 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:26, :26]
    r = np.hypot(yy - 12.5, xx - 12.5)
    outlines = np.stack([r > 12.6, r > 11.2])
    which = np.arange(n) % 3 == 2  # every third map has the smaller wafer
    boundary = outlines[which.astype(int)]
    states = np.where(rng.random((n, 26, 26)) < 0.2, 2, 1)
    states[boundary] = 0
    labels = np.array([c for c in range(9) if c != ABSENT_CLASS] * n)[:n].astype(np.int64)
    return to_onehot(states), labels.reshape(-1, 1), which.astype(np.int64)


def checkpoint_dict(net, data_path: Path, **overrides) -> dict:
    ck = {
        "format": "edge-infer-checkpoint",
        "format_version": 1,
        "model": net.state_dict(),
        "recipe": {"epochs": 2, "lr": 0.001, "batch_size": 8, "seed": 0},
        "metrics": {"train_mse": 0.25, "epochs": 2, "loss_history": [0.3, 0.25]},
        "data": {"path": str(data_path), "sha256": "0" * 64, "n_maps": N_MAPS},
        "versions": {"torch": str(torch.__version__)},
    }
    ck.update(overrides)
    return ck


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic data folder, a run folder with a random-init checkpoint, and its exported bundle."""
    root = tmp_path_factory.mktemp("export")
    maps, labels, outline_which = synthetic_maps()
    data_dir = root / "data"
    data_dir.mkdir()
    np.save(data_dir / "data.npy", maps.astype(np.float64))
    np.save(data_dir / "label.npy", labels)
    torch.manual_seed(0)
    model = ConvAutoencoder().eval()
    run = root / "run"
    run.mkdir()
    torch.save(checkpoint_dict(model, data_dir), run / "checkpoint.pt")
    (run / "metrics.json").write_text('{"train_mse": 0.25}\n')
    (run / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a picture")
    out = root / "models" / "tiny"
    export_bundle(run, out, decoder="plain", note=lambda _msg: None)
    return {"root": root, "maps": maps, "labels": labels[:, 0], "outline_which": outline_which,
            "model": model, "run": run, "data": data_dir, "out": out}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ graphs


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnxruntime_matches_pytorch(workspace, batch):
    model, out = workspace["model"], workspace["out"]
    x = workspace["maps"][np.arange(batch) % N_MAPS]
    z = np.random.default_rng(batch).normal(size=(batch, 64, 3, 3)).astype(np.float32)
    enc, dec = _session(out / "encoder.onnx"), _session(out / "decoder.onnx")
    with torch.no_grad():
        tx = torch.from_numpy(x).permute(0, 3, 1, 2)
        want_latent = model.encoder(tx).numpy()
        want_decoded = model.decoder(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()
        want_chained = model(tx).permute(0, 2, 3, 1).numpy()
    got_latent = enc.run(None, {"wafer": x})[0]
    got_decoded = dec.run(None, {"latent": z})[0]
    got_chained = dec.run(None, {"latent": got_latent})[0]
    assert got_latent.shape == (batch, 64, 3, 3)
    assert got_decoded.shape == got_chained.shape == (batch, 26, 26, 3)
    assert np.abs(got_latent - want_latent).max() <= 1e-5
    assert np.abs(got_decoded - want_decoded).max() <= 1e-5
    assert np.abs(got_chained - want_chained).max() <= 1e-5


def test_graphs_are_clean_with_named_dynamic_batch_and_model_card(workspace):
    for name, inp, outp, in_shape, out_shape in (
        ("encoder", "wafer", "latent", [26, 26, 3], [64, 3, 3]),
        ("decoder", "latent", "wafer", [64, 3, 3], [26, 26, 3]),
    ):
        model = onnx.load(str(workspace["out"] / f"{name}.onnx"))
        onnx.checker.check_model(model, full_check=True)
        graph = model.graph
        assert [i.name for i in graph.input] == [inp] and [o.name for o in graph.output] == [outp]
        for value, shape in ((graph.input[0], in_shape), (graph.output[0], out_shape)):
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            assert dims == ["batch", *shape]
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert len(graph.node) <= 7  # transpose + 3 convs + 2 relus (+ sigmoid)
        assert sum(n.op_type == "Transpose" for n in graph.node) == 1
        card = {p.key: p.value for p in model.metadata_props}
        assert {"description", "classes", "input", "output", "training", "license", "citation"} <= set(card)
        assert card["classes"].split(",") == list(CLASS_NAMES)
        assert "Wu" in card["citation"] and "2015" in card["citation"]
        assert card["training"].startswith(f"MSE reconstruction of {N_MAPS} ") and "train_mse=0.25" in card["training"]
        # No debugging metadata with local paths or timestamps inside the bytes.
        raw = (workspace["out"] / f"{name}.onnx").read_bytes()
        assert b"stack_trace" not in raw and str(workspace["root"]).encode() not in raw


# ------------------------------------------------------------------ manifest and bank


def test_manifest_hashes_classes_counts_and_stats(workspace):
    out = workspace["out"]
    manifest = _manifest(out)
    assert manifest["format"] == "edge-infer-bundle" and manifest["format_version"] == FORMAT_VERSION == 3
    assert manifest["classes"] == list(CLASS_NAMES)
    assert manifest["name"] == "tiny"
    assert manifest["manifest_sha256"] == manifest_hash(manifest)
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert manifest["manifest_sha256"] == hashlib.sha256(canonical).hexdigest()
    on_disk = sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk == sorted(
        ["encoder.onnx", "decoder.onnx", "generator.onnx", "generator_core.onnx", "latent_bank.npz", "loss.png",
         "metrics.json"])
    for name, digest in manifest["files"].items():
        assert _sha(out / name) == digest, name
    assert manifest["classes"] == list(CLASS_NAMES)
    counts = np.bincount(workspace["labels"], minlength=9)
    assert manifest["class_counts"] == {c: int(counts[i]) for i, c in enumerate(CLASS_NAMES)}
    assert manifest["class_counts"]["Donut"] == 0
    assert manifest["latent_bank"] == {"file": "latent_bank.npz", "count": N_MAPS}
    assert manifest["graphs"]["decoder"]["variant"] == "plain"
    assert manifest["graphs"]["encoder"]["input_shape"] == ["batch", 26, 26, 3]
    stats = manifest["latent_stats"]
    assert len(stats["overall"]["mean"]) == len(stats["overall"]["std"]) == 64
    assert set(stats["per_class"]) == {c for i, c in enumerate(CLASS_NAMES) if i != ABSENT_CLASS}
    for entry in stats["per_class"].values():
        assert len(entry["mean"]) == len(entry["std"]) == 64
    noise = manifest["noise_defaults"]
    assert noise["mode"] == "relative" and noise["strength"] > 0 and noise["outline_lock"] is True
    ver = manifest["provenance"]["verification"]
    assert ver["passed"] is True and ver["batch_sizes"] == [1, 7, 64]
    assert set(ver["max_abs_diff"]) >= {"encoder", "decoder", "chained", "latent_bank", "generator_noise"}
    assert set(manifest["graphs"]["generator"]["inputs"]) == {"source", "seed", "row0", "strength"}
    assert set(manifest["graphs"]["generator_core"]["outputs"]) == {"maps", "probs"}
    assert all(0 <= v <= 1e-5 for v in ver["max_abs_diff"].values())
    prov = manifest["provenance"]
    assert prov["epochs"] == 2 and prov["recipe"]["lr"] == 0.001
    assert prov["data_sha256"] == _sha(workspace["data"] / "data.npy")
    assert prov["checkpoint_sha256"] == _sha(workspace["run"] / "checkpoint.pt")
    assert (out / "metrics.json").read_text() == '{"train_mse": 0.25}\n'  # copied from the run


def _class_rows_match_the_bank(bundle: Path) -> None:
    manifest = _manifest(bundle)
    with np.load(bundle / "latent_bank.npz", allow_pickle=False) as npz:
        labels = npz["labels"]
    rows = manifest["class_rows"]
    assert list(rows) == manifest["classes"]  # every class, in label order
    for index, name in enumerate(manifest["classes"]):
        assert rows[name] == np.flatnonzero(labels == index).tolist(), name  # bank order
        assert len(rows[name]) == manifest["class_counts"][name]
    assert sum(manifest["class_counts"].values()) == sum(map(len, rows.values())) == manifest["latent_bank"]["count"]
    assert sorted(i for r in rows.values() for i in r) == list(range(len(labels)))


def test_manifest_names_each_class_rows_of_the_bank(workspace):
    _class_rows_match_the_bank(workspace["out"])
    assert _manifest(workspace["out"])["class_rows"][CLASS_NAMES[ABSENT_CLASS]] == []


def test_committed_manifest_names_each_class_rows_and_the_graphs_tensors(bundle_dir):
    """What a client in another language reads instead of the .npz and the graphs themselves."""
    _class_rows_match_the_bank(bundle_dir)
    manifest = _manifest(bundle_dir)
    onnx_types = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool"}
    for role in ("generator", "generator_core"):
        entry = manifest["graphs"][role]
        session = _session(bundle_dir / entry["file"])
        for declared, actual in ((entry["inputs"], session.get_inputs()), (entry["outputs"], session.get_outputs())):
            assert list(declared) == [t.name for t in actual], role
            for t in actual:
                dtype, shape = declared[t.name]
                assert dtype == onnx_types[t.type] and len(shape) == len(t.shape), (role, t.name)
                assert [d for d in shape if isinstance(d, int)] == [d for d in t.shape if isinstance(d, int)]


def test_bank_holds_encoder_latents_labels_and_outlines(workspace):
    out, maps = workspace["out"], workspace["maps"]
    with np.load(out / "latent_bank.npz", allow_pickle=False) as npz:
        bank = {k: npz[k] for k in npz.files}
    assert set(bank) == {"latents", "labels", "outline_ids", "outlines"}
    assert bank["latents"].dtype == np.float32 and bank["latents"].shape == (N_MAPS, 64, 3, 3)
    assert bank["labels"].dtype == np.int64 and bank["labels"].tolist() == workspace["labels"].tolist()
    assert bank["outline_ids"].dtype == np.int64 and bank["outline_ids"].shape == (N_MAPS,)
    assert bank["outlines"].dtype == np.bool_ and bank["outlines"].shape == (2, 26, 26)
    # Each map's outline is exactly its boundary channel; first-seen outline is row 0.
    np.testing.assert_array_equal(bank["outlines"][bank["outline_ids"]], maps[..., 0] > 0.5)
    np.testing.assert_array_equal(bank["outline_ids"], workspace["outline_which"])
    enc = _session(out / "encoder.onnx")
    np.testing.assert_array_equal(bank["latents"], enc.run(None, {"wafer": maps})[0])
    stats = _manifest(out)["latent_stats"]
    z = bank["latents"].astype(np.float64)
    np.testing.assert_allclose(stats["overall"]["mean"], z.mean(axis=(0, 2, 3)), rtol=1e-9, atol=1e-12)
    # std: map-to-map spread per position, root-mean over the 3×3 positions.
    np.testing.assert_allclose(stats["overall"]["std"], np.sqrt(z.var(axis=0).mean(axis=(1, 2))), rtol=1e-9, atol=1e-12)
    center = z[bank["labels"] == 0]
    np.testing.assert_allclose(stats["per_class"]["Center"]["std"], np.sqrt(center.var(axis=0).mean(axis=(1, 2))),
                               rtol=1e-9, atol=1e-12)
    assert np.all(np.array(stats["overall"]["std"]) > 0)


def test_outline_table_orders_by_first_appearance():
    maps, _, which = synthetic_maps(6)  # outline pattern 0 0 1 0 0 1
    ids, outlines = bank_mod.outline_table(maps[::-1])  # reversed: 1 0 0 1 0 0
    assert ids.tolist() == [0, 1, 1, 0, 1, 1]
    assert outlines.shape == (2, 26, 26) and outlines.dtype == np.bool_
    np.testing.assert_array_equal(outlines[ids], maps[::-1][..., 0] > 0.5)


# ------------------------------------------------------------------ writing safely


def test_refuses_to_overwrite_without_force(workspace):
    out = workspace["out"]
    before = {p.name: _sha(p) for p in out.iterdir()}
    with pytest.raises(OutputError, match="--force"):
        export_bundle(workspace["run"], out, decoder="plain", note=lambda _m: None)
    assert {p.name: _sha(p) for p in out.iterdir()} == before


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(workspace, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="not a model bundle"):
        export_bundle(workspace["run"], precious, decoder="plain", force=True, note=lambda _m: None)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_force_replaces_with_identical_bytes(workspace, tmp_path, monkeypatch):
    """Re-exporting one checkpoint is reproducible: same graphs, same bank, byte for byte.

    Asked for the fast decoder where export.fast_decoder cannot be imported,
    the exporter falls back to the plain one, says so, and records it.
    """
    import shutil

    out = tmp_path / "again"
    shutil.copytree(workspace["out"], out)
    (out / "stale-marker").write_text("x")  # must not survive the replacement
    monkeypatch.setitem(sys.modules, "export.fast_decoder", None)  # import now raises ImportError
    notes = []
    result = export_bundle(workspace["run"], out, decoder="fast", force=True, note=notes.append)
    assert result.decoder_variant == "plain" and _manifest(out)["graphs"]["decoder"]["variant"] == "plain"
    assert any("plain decoder" in n for n in notes)
    assert not (out / "stale-marker").exists()
    for name in ("encoder.onnx", "decoder.onnx", "latent_bank.npz"):
        assert _sha(out / name) == _sha(workspace["out"] / name), name
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary folders left


def test_failed_verification_writes_nothing_and_keeps_old_bundle(workspace, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(workspace["out"], out)
    before = {p.name: _sha(p) for p in out.iterdir()}
    real = onnx_graphs.export_decoder

    def corrupted(decoder, variant="fast", *, note=print):
        model, used = real(decoder, "plain", note=note)
        init = next(i for i in model.graph.initializer if i.name.endswith("t_conv3.bias"))
        values = onnx.numpy_helper.to_array(init).copy()
        values[1] += 1e-3  # a small but real error in the normal-die channel
        init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
        return model, used

    monkeypatch.setattr(onnx_graphs, "export_decoder", corrupted)
    with pytest.raises(verify.VerificationError, match="differs from PyTorch"):
        export_bundle(workspace["run"], out, decoder="plain", force=True, note=lambda _m: None)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    fresh = tmp_path / "fresh"
    with pytest.raises(verify.VerificationError):
        export_bundle(workspace["run"], fresh, decoder="plain", note=lambda _m: None)
    assert not fresh.exists() and [p.name for p in tmp_path.iterdir()] == ["bundle"]


# ------------------------------------------------------------------ bad checkpoints


def _bad_checkpoints(workspace, folder: Path) -> dict:
    model = workspace["model"]
    data = workspace["data"]
    state = model.state_dict()
    wrong_shape = dict(state, **{"encoder.conv1.weight": torch.zeros(8, 3, 3, 3)})
    missing = {k: v for k, v in state.items() if k != "decoder.t_conv3.bias"}
    nan = dict(state, **{"encoder.conv1.bias": torch.full((16,), float("nan"))})
    cases = {
        "missing": (None, "no such checkpoint"),
        "garbage": (b"this is not a checkpoint at all", "not a loadable checkpoint"),
        "tensor": (torch.zeros(3), "not an edge-infer checkpoint"),
        "no-format": ({"model": state}, "not an edge-infer checkpoint"),
        "too-new": (checkpoint_dict(model, data, format_version=2), "format_version 2"),
        "wrong-shape": (checkpoint_dict(model, data, model=wrong_shape), "encoder.conv1.weight has shape"),
        "missing-key": (checkpoint_dict(model, data, model=missing), "missing decoder.t_conv3.bias"),
        "nan-weight": (checkpoint_dict(model, data, model=nan), "not finite"),
        "object": (checkpoint_dict(model, data, recipe={"when": np.datetime64("2026-01-01")}), "other than weights"),
    }
    paths = {}
    for name, (content, message) in cases.items():
        path = folder / f"{name}.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            torch.save(content, path)
        paths[name] = (path, message)
    return paths


def test_bad_checkpoints_give_one_clear_error_and_write_nothing(workspace, tmp_path):
    for name, (path, message) in _bad_checkpoints(workspace, tmp_path).items():
        out = tmp_path / f"out-{name}"
        with pytest.raises(DataFileError, match=message):
            export_bundle(path, out, decoder="plain", note=lambda _m: None)
        assert not out.exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_missing_recorded_data_and_bad_options_are_refused_up_front(workspace, tmp_path):
    ck = torch.load(workspace["run"] / "checkpoint.pt", weights_only=True)
    ck["data"]["path"] = str(tmp_path / "gone.zip")
    torch.save(ck, tmp_path / "moved.pt")
    with pytest.raises(DataFileError, match="give --data"):
        export_bundle(tmp_path / "moved.pt", tmp_path / "out", decoder="plain", note=lambda _m: None)
    with pytest.raises(InputError, match="unknown decoder variant"):
        export_bundle(workspace["run"], tmp_path / "out", decoder="turbo", note=lambda _m: None)
    with pytest.raises(DataFileError, match="no labels"):
        export_bundle(workspace["run"], tmp_path / "out", data=workspace["data"] / "data.npy", note=lambda _m: None)
    assert not (tmp_path / "out").exists()


def test_cli_prints_error_without_traceback_and_exits_1(workspace, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "export", str(bad), "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ the committed bundle


@pytest.mark.needs_data
def test_committed_bundle_reconstructs_the_course_data(bundle_dir, wafer_data):
    """onnxruntime alone, from the two committed graphs: the figure the manifest records."""
    manifest = _manifest(bundle_dir)
    mse = verify.bundle_reconstruction_mse(bundle_dir, wafer_data.maps)
    assert mse == pytest.approx(manifest["provenance"]["verification"]["reconstruction_mse"], abs=1e-6)
    assert mse <= 0.015  # the issue's bar for the shipped bundle
    with np.load(bundle_dir / "latent_bank.npz", allow_pickle=False) as npz:
        outlines, ids, labels = npz["outlines"], npz["outline_ids"], npz["labels"]
    assert outlines.shape == (2, 26, 26)
    assert sorted(np.bincount(ids).tolist()) == [16, 1265]
    assert [int(outlines[k].sum()) for k in np.argsort(np.bincount(ids))[::-1]] == [143, 156]
    np.testing.assert_array_equal(labels, wafer_data.labels[:, 0])
    assert manifest["class_counts"] == {"Center": 90, "Donut": 1, "Edge-Loc": 296, "Edge-Ring": 31, "Loc": 297,
                                        "Random": 74, "Scratch": 72, "Near-full": 16, "None": 404}
    assert manifest["latent_stats"]["per_class"]["Donut"]["std"] == [0.0] * 64
