"""The edge-infer CLI, run in-process through ``main`` (exactly what the console script calls)."""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, one_error_line as _one_error_line
from edge_infer.wafer import CLASS_NAMES, to_onehot, to_states


def test_generate_writes_maps_labels_and_picture(run, tmp_path):
    code, out, err = run("generate", "--class", "None", "-n", "5", "--out", str(tmp_path), "--seed", "0")
    assert code == 0, err
    data = np.load(tmp_path / "gen_data.npy")
    labels = np.load(tmp_path / "gen_label.npy")
    assert data.shape == (5, 26, 26, 3) and data.dtype == np.float32
    assert labels.shape == (5, 1) and labels.dtype == np.int64 and (labels == 8).all()
    with Image.open(tmp_path / "generated.png") as img:
        assert img.format == "PNG" and img.width > 5 * 181 and img.height > 2 * 181
    for name in ("gen_data.npy", "gen_label.npy", "generated.png"):
        assert name in out
    assert "provider: cpu" in err


def test_same_seed_same_files_and_force(run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("generate", "-c", "loc", "-n", "4", "-o", str(a), "-s", "3")[0] == 0
    assert run("generate", "-c", "4", "-n", "4", "-o", str(b), "-s", "3")[0] == 0
    np.testing.assert_array_equal(np.load(a / "gen_data.npy"), np.load(b / "gen_data.npy"))
    before = (a / "gen_data.npy").read_bytes()
    code, _, err = run("generate", "-c", "loc", "-n", "4", "-o", str(a), "-s", "4")
    assert code == 1 and "already exists; use --force" in _one_error_line(err)
    assert (a / "gen_data.npy").read_bytes() == before
    assert run("generate", "-c", "loc", "-n", "4", "-o", str(a), "-s", "4", "--force")[0] == 0
    assert (a / "gen_data.npy").read_bytes() != before


def test_existing_picture_alone_blocks_every_write(run, tmp_path):
    (tmp_path / "generated.png").write_bytes(b"mine")
    code, _, err = run("generate", "-c", "None", "-n", "2", "-o", str(tmp_path))
    assert code == 1 and "generated.png already exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated.png"]


def test_unknown_class_lists_the_valid_names(run, tmp_path):
    code, _, err = run("generate", "--class", "Scrach", "-o", str(tmp_path))
    line = _one_error_line(err)
    assert code == 1 and "unknown class 'Scrach'" in line
    assert all(name in line for name in CLASS_NAMES)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", ["0", "-3"])
def test_non_positive_n(run, tmp_path, n):
    code, _, err = run("generate", "--class", "None", "-n", n, "-o", str(tmp_path))
    assert code == 1 and "n must be a whole number, at least 1" in _one_error_line(err)


def test_usage_errors_are_one_line_too(run):
    code, _, err = run("generate", "--bogus")
    assert code == 1 and "No such option" in _one_error_line(err)
    code, _, err = run("generate", "-n", "many")
    assert code == 1 and _one_error_line(err)


def test_missing_and_broken_bundles(run, tmp_path, bundle_dir):
    code, _, err = run("generate", "-c", "None", "--model", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), model=False)
    assert code == 1 and "nope" in _one_error_line(err)
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    with open(broken / "decoder.onnx", "r+b") as fh:
        fh.truncate(1000)
    code, _, err = run("info", "--model", str(broken), model=False)
    assert code == 1 and "decoder.onnx" in _one_error_line(err)


def test_unwritable_output_folder(run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run("generate", "-c", "None", "-n", "2", "-o", str(blocker / "out"))
    assert code == 1 and "cannot" in _one_error_line(err)
    assert blocker.read_text() == "x"


def test_cuda_asked_for_but_absent(run, tmp_path):
    from edge_infer.runtime import open_session

    _, info = open_session(REPO / "models" / "wafer-cae" / "decoder.onnx")
    if info.actual == "cuda":
        pytest.skip("CUDA works here")
    code, _, err = run("generate", "-c", "None", "-o", str(tmp_path), "--provider", "cuda")
    assert code == 1 and "CUDA" in _one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_source_index(run, tmp_path, bundle_dir):
    from edge_infer.bundle import load_bundle

    labels = load_bundle(bundle_dir).labels
    i = int(np.flatnonzero(labels == 6)[0])  # a Scratch source
    code, out, err = run("generate", "--source-index", str(i), "-n", "3", "-o", str(tmp_path / "a"))
    assert code == 0, err
    assert (np.load(tmp_path / "a" / "gen_label.npy") == 6).all()
    code, _, err = run("generate", "-c", "Center", "--source-index", str(i), "-o", str(tmp_path / "b"))
    assert code == 1 and "is class Scratch, not Center" in _one_error_line(err)


def test_generate_writes_block_by_block_with_the_same_result(run, tmp_path, monkeypatch, bundle_dir):
    """The files the CLI streams out hold exactly the maps the in-memory API makes, whatever the block size."""
    import edge_infer.generator as generator
    from edge_infer import WaferGenerator

    want = WaferGenerator.load(bundle_dir, provider="cpu").generate("Random", 6, seed=1)
    assert run("generate", "-c", "Random", "-n", "6", "-o", str(tmp_path / "one"), "-s", "1")[0] == 0
    monkeypatch.setattr(generator, "BLOCK_ROWS", 4)  # 6 maps in two blocks
    assert run("generate", "-c", "Random", "-n", "6", "-o", str(tmp_path / "two"), "-s", "1")[0] == 0
    for folder in ("one", "two"):
        np.testing.assert_array_equal(np.load(tmp_path / folder / "gen_data.npy"), want.maps)
        np.testing.assert_array_equal(np.load(tmp_path / folder / "gen_label.npy"), want.labels)


def test_interrupt_exits_130_and_leaves_no_files(run, tmp_path, monkeypatch):
    import edge_infer.npy

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edge_infer.npy.NpyWriter, "write", boom)  # Ctrl-C while the maps are being written
    code, _, err = run("generate", "-c", "None", "-o", str(tmp_path))
    assert code == 130 and err.strip().endswith("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_augment_bank_default_order_and_picture(run, tmp_path, bundle_dir):
    from edge_infer.bundle import load_bundle

    code, out, err = run("augment", "--per-source", "1", "-o", str(tmp_path), "--seed", "0")
    assert code == 0, err
    labels = np.load(tmp_path / "gen_label.npy")
    np.testing.assert_array_equal(labels[:, 0], load_bundle(bundle_dir).labels)
    assert np.load(tmp_path / "gen_data.npy", mmap_mode="r").shape == (1281, 26, 26, 3)
    with Image.open(tmp_path / "augment.png") as img:
        assert img.height > 9 * 181  # one row per class


def test_augment_user_maps(run, tmp_path, bundle_dir):
    from edge_infer import WaferGenerator

    gen = WaferGenerator.load(bundle_dir, provider="cpu")
    idx = np.array([0, 1, 2, 3, 4, 5])
    states = to_states(gen.bank_maps(idx))
    np.save(tmp_path / "maps.npy", states)
    np.save(tmp_path / "labels.npy", gen.bundle.labels[idx].reshape(-1, 1))
    code, out, err = run(
        "augment", "--data", str(tmp_path / "maps.npy"), "--labels", str(tmp_path / "labels.npy"),
        "-k", "3", "-o", str(tmp_path / "out"), "--method", "mix",
    )
    assert code == 0, err
    labels = np.load(tmp_path / "out" / "gen_label.npy")[:, 0]
    np.testing.assert_array_equal(labels, np.repeat(gen.bundle.labels[idx], 3))
    assert "18 maps" in out
    code, _, err = run("augment", "--data", str(tmp_path / "maps.npy"), "-o", str(tmp_path / "o2"))
    assert code == 1 and "labels" in _one_error_line(err)


def test_reconstruct_metrics_outputs_and_resize_note(run, tmp_path, bundle_dir, monkeypatch):
    from edge_infer import WaferGenerator

    monkeypatch.chdir(tmp_path)  # runs without --out write out/reconstruct-N here

    gen = WaferGenerator.load(bundle_dir, provider="cpu")
    maps = gen.bank_maps(np.arange(12))
    np.save(tmp_path / "maps.npy", maps)
    code, out, err = run("reconstruct", "--data", str(tmp_path / "maps.npy"), "-o", str(tmp_path / "r"))
    assert code == 0, err
    assert "mse:" in out and "die-state accuracy:" in out and "defect recall:" in out
    rec = np.load(tmp_path / "r" / "reconstructed.npy")
    assert rec.shape == (12, 26, 26, 3) and rec.dtype == np.float32
    assert (tmp_path / "r" / "reconstructed.png").exists()
    big = np.repeat(np.repeat(to_states(maps), 2, axis=1), 2, axis=2)
    np.save(tmp_path / "big.npy", big)
    code, out, err = run("reconstruct", "--data", str(tmp_path / "big.npy"))
    assert code == 0 and "note: resized 12 map(s) from 52×52" in err
    code, _, err = run("reconstruct", "--data", str(tmp_path / "absent.npy"))
    assert code == 1 and "absent.npy" in _one_error_line(err)


def test_reconstruction_metrics_by_hand():
    from edge_infer.commands.reconstruct import metric_sums

    truth = to_onehot(np.array([[[0, 1], [2, 2]]]))
    probs = truth.copy()
    probs[0, 1, 1] = [0.0, 0.6, 0.4]  # one defect die lost
    squared, dies, right, defects, found = metric_sums(truth, probs)
    assert right / dies == pytest.approx(0.75)
    assert found / defects == pytest.approx(0.5)
    assert squared / (dies * 3) == pytest.approx((0.36 + 0.36) / 12)


def test_info(run):
    code, out, err = run("info")
    assert code == 0, err
    assert "Donut: 1" in out and "None: 404" in out
    assert "onnxruntime" in out and ("running on: cpu" in out or "running on: cuda" in out)


def test_help_and_version(run):
    code, out, _ = run("--help", model=False)
    assert code == 0
    for verb in ("generate", "augment", "reconstruct", "info"):
        assert verb in out
    code, out, _ = run("generate", "--help", model=False)
    assert code == 0 and "Examples" in out and "--source-index" in out
    code, out, _ = run("--version", model=False)
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert code == 0 and out.strip() == f"edge-infer {declared}"


def test_absurd_n_is_refused_with_the_size_it_needs(run, tmp_path):
    code, _, err = run("generate", "-c", "None", "-n", str(10**13), "-o", str(tmp_path))
    assert code == 1 and "GiB" in _one_error_line(err) and "free" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option, message",
    [(["--strength", "0"], "strength must be"), (["--method", "blend"], "noise, mix"), (["--noise-mode", "x"], "relative, course")],
)
def test_bad_noise_options_fail_before_any_model_loads(run, tmp_path, option, message):
    code, _, err = run("generate", "-c", "None", "-o", str(tmp_path), *option)
    assert code == 1 and message in _one_error_line(err)
    assert "provider:" not in err  # refused before the bundle was opened


def test_interrupt_while_writing_the_picture_leaves_no_output_at_all(run, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    code, _, err = run("generate", "-c", "None", "-n", "3", "-o", str(tmp_path))
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []  # not even the .npy files written before the picture


def test_full_disk_while_writing_is_one_error_and_keeps_old_outputs(run, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "out"
    assert run("generate", "--class", "None", "-n", "3", "--seed", "1", "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    import edge_infer.npy

    monkeypatch.setattr(edge_infer.npy.NpyWriter, "write", full)  # the maps' file, block by block
    code, _, err = run("generate", "--class", "None", "-n", "3", "--seed", "2", "--out", str(out), "--force")
    assert code == 1
    assert "No space left on device" in _one_error_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost, no temporaries


def test_augment_recipes_balance_and_symmetries(run, tmp_path, bundle_dir):
    from edge_infer import WaferGenerator

    gen = WaferGenerator.load(bundle_dir, provider="cpu")
    idx = np.concatenate([np.flatnonzero(gen.bundle.labels == 8)[:5], np.flatnonzero(gen.bundle.labels == 6)[:2]])
    np.save(tmp_path / "maps.npy", gen.bank_maps(idx))
    np.save(tmp_path / "labels.npy", gen.bundle.labels[idx].reshape(-1, 1))
    data = ["--data", str(tmp_path / "maps.npy"), "--labels", str(tmp_path / "labels.npy"), "--seed", "0"]
    code, out, err = run("augment", *data, "--recipe", "symmetries+balanced-copies", "-o", str(tmp_path / "a"))
    assert code == 0, err
    labels = np.load(tmp_path / "a" / "gen_label.npy")[:, 0]
    assert np.bincount(labels, minlength=9)[[6, 8]].tolist() == [40 - 2, 40 - 5]  # both classes at 8 × 5
    assert "recipe symmetries+balanced-copies" in out
    code, out, err = run("augment", *data, "--recipe", "balanced", "--balance", "9", "-o", str(tmp_path / "b"))
    assert code == 0, err
    labels = np.load(tmp_path / "b" / "gen_label.npy")[:, 0]
    assert np.bincount(labels, minlength=9)[[6, 8]].tolist() == [7, 4]  # topped up to 9, more per rare source
    maps = np.load(tmp_path / "b" / "gen_data.npy")
    assert maps.shape == (11, 26, 26, 3)
    for args, words in ((("--recipe", "sideways"), "unknown recipe"), (("--balance", "most"), "balance target"),
                        (("-k", "0"), "per-source"), (("--strength", "0.5"), "would do nothing")):
        code, _, err = run("augment", *data, *args, "-o", str(tmp_path / "bad"))
        assert code == 1 and words in _one_error_line(err), err
    assert not (tmp_path / "bad").exists()


def test_console_script_is_main_with_its_exit_codes(monkeypatch, capsys):
    """`edge-infer` runs cli.main on sys.argv: 0 for --version, 2 for a bare command (help), 1 for a bad verb."""
    from edge_infer import cli

    ep = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["edge-infer"]
    assert ep == "edge_infer.cli:main"
    for argv, code in ((["edge-infer", "--version"], 0), (["edge-infer"], 2), (["edge-infer", "nope"], 1)):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exc:
            cli.main()
        assert exc.value.code == code
    capsys.readouterr()


def test_without_out_each_run_writes_a_new_numbered_folder(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in (1, 2):
        code, out, err = run("generate", "-c", "None", "-n", "2", "-s", "0")
        assert code == 0, err
        assert str(Path("out") / f"generate-{i}") in out
        assert sorted(p.name for p in (tmp_path / "out" / f"generate-{i}").iterdir()) == \
            ["gen_data.npy", "gen_label.npy", "generated.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "generate-1" / "gen_data.npy"),
                                  np.load(tmp_path / "out" / "generate-2" / "gen_data.npy"))
    code, _, err = run("generate", "-c", "Scrach")
    assert code == 1 and "unknown class" in _one_error_line(err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["generate-1", "generate-2"]  # a failed run adds none
