"""training.data: the three data layouts, provenance hashes, the seeded split, tensor layout.

Plus the training CLI's refusals of bad data: one clear message, exit 1, no
traceback and no run folder left behind.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_infer.errors import DataFileError, InputError
from edge_infer.wafer import to_onehot
from training.data import load_training_data, split_indices, to_tensor

from conftest import REPO  # noqa: E402
COURSE_DATA_SHA256 = "2564b21f89f6b634eae6aec7c7d86378a7fda3ec56344d33ffac9a13a16d5924"
COURSE_LABEL_SHA256 = "5c8e13bb85864aa02676233077252e80f9f7a086800a99c81dcbb204b39a9933"


def toy(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small synthetic wafer-like maps (float64 one-hot channels-last, like data.npy) and labels (N,1):
    a round wafer of normal dies with a random defect blob, boundary outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:26, :26] - 12.5
    r = np.hypot(yy, xx)
    states = np.where(r < 12, 1, 0)[None].repeat(n, axis=0)
    for i in range(n):
        cy, cx = rng.uniform(-8, 8, size=2)
        blob = np.hypot(yy - cy, xx - cx) < rng.uniform(2, 6)
        states[i][blob & (r < 12)] = 2
        states[i][(rng.random((26, 26)) < 0.05) & (r < 12)] = 2
    return to_onehot(states).astype(np.float64), rng.integers(0, 9, size=(n, 1)).astype(np.int64)


def write_layouts(root: Path, maps: np.ndarray, labels: np.ndarray) -> dict:
    """The same data as a zip, a folder and two loose .npy files."""
    folder = root / "folder"
    folder.mkdir()
    np.save(folder / "data.npy", maps)
    np.save(folder / "label.npy", labels)
    zpath = root / "wafer.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(folder / "data.npy", "wafer/data.npy")
        zf.write(folder / "label.npy", "wafer/label.npy")
    loose = root / "loose"
    loose.mkdir()
    np.save(loose / "maps.npy", maps)
    np.save(loose / "labels.npy", labels)
    return {"zip": (zpath, None), "folder": (folder, None), "paths": (loose / "maps.npy", loose / "labels.npy")}


@pytest.mark.parametrize("layout", ["zip", "folder", "paths"])
def test_three_layouts_give_the_same_data_and_hash(tmp_path, layout):
    maps, labels = toy()
    data, lab = write_layouts(tmp_path, maps, labels)[layout]
    td = load_training_data(data, lab)
    assert td.maps.dtype == np.float32 and td.maps.shape == (12, 26, 26, 3)
    np.testing.assert_array_equal(td.maps, maps.astype(np.float32))
    np.testing.assert_array_equal(td.labels, labels[:, 0])
    assert td.n_maps == 12
    # the hash is of data.npy's bytes, so it is the same in every layout
    assert td.sha256 == hashlib.sha256((tmp_path / "folder" / "data.npy").read_bytes()).hexdigest()
    assert td.labels_sha256 == hashlib.sha256((tmp_path / "folder" / "label.npy").read_bytes()).hexdigest()
    prov = td.provenance()
    assert prov["n_maps"] == 12 and prov["sha256"] == td.sha256 and prov["path"] == str(data)


def test_course_zip(wafer_zip):
    td = load_training_data(wafer_zip)
    assert td.maps.shape == (1281, 26, 26, 3) and td.labels.shape == (1281,)
    assert td.sha256 == COURSE_DATA_SHA256
    assert td.labels_sha256 == COURSE_LABEL_SHA256
    assert np.bincount(td.labels, minlength=9).tolist() == [90, 1, 296, 31, 297, 74, 72, 16, 404]


def test_labels_are_required(tmp_path):
    maps, _ = toy()
    np.save(tmp_path / "maps.npy", maps)
    with pytest.raises(DataFileError, match="no labels"):
        load_training_data(tmp_path / "maps.npy")


def test_to_tensor_is_channels_first():
    maps, _ = toy(3)
    x = to_tensor(maps)
    assert tuple(x.shape) == (3, 3, 26, 26) and str(x.dtype) == "torch.float32"
    np.testing.assert_array_equal(x.numpy(), np.moveaxis(maps, -1, 1))
    assert x.is_contiguous()


def test_split_is_seeded_disjoint_and_complete():
    tr, val = split_indices(1281, 0.1, seed=0)
    assert len(val) == 128 and len(tr) == 1153
    assert not set(tr) & set(val) and sorted(set(tr) | set(val)) == list(range(1281))
    tr2, val2 = split_indices(1281, 0.1, seed=0)
    np.testing.assert_array_equal(val, val2)
    _, val3 = split_indices(1281, 0.1, seed=1)
    assert not np.array_equal(val, val3)
    tr0, val0 = split_indices(10, 0.0, seed=0)
    assert len(val0) == 0 and tr0.tolist() == list(range(10))
    assert len(split_indices(5, 0.01, seed=0)[1]) == 1  # a positive share holds out at least one map


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_split_refuses_bad_shares(bad):
    with pytest.raises(InputError, match="val-split"):
        split_indices(10, bad, seed=0)


# ------------------------------------------------------------ CLI refusals


def _bad_inputs(tmp_path: Path) -> dict:
    """name -> (CLI data args, a word the message must contain)."""
    maps, labels = toy(8)
    cases = {}

    def case(name, m, lab, word):
        d = tmp_path / name
        d.mkdir()
        np.save(d / "maps.npy", m)
        np.save(d / "labels.npy", lab)
        cases[name] = (["--data", str(d / "maps.npy"), "--labels", str(d / "labels.npy")], word)

    case("shape", maps[:, :, :, :2], labels, "shape")
    case("channels_first", np.moveaxis(maps, -1, 1), labels, "channels-first")
    nonhot = maps.copy()
    nonhot[0, 5, 5] = [1, 1, 0]
    case("not_onehot", nonhot, labels, "one-hot")
    nan = maps.copy()
    nan[1, 2, 3, 0] = np.nan
    case("nan", nan, labels, "NaN")
    case("count", maps, labels[:5], "5 entries but there are 8 maps")
    out_of_range = labels.copy()
    out_of_range[0, 0] = 9
    case("label_range", maps, out_of_range, "outside 0..8")
    cases["missing_data"] = (["--data", str(tmp_path / "nope.zip")], "no such file")
    d = tmp_path / "missing_labels"
    d.mkdir()
    np.save(d / "maps.npy", maps)
    cases["missing_labels"] = (["--data", str(d / "maps.npy"), "--labels", str(d / "nope.npy")], "no such file")
    cases["no_labels"] = (["--data", str(d / "maps.npy")], "no labels")
    return cases


BAD = ["shape", "channels_first", "not_onehot", "nan", "count", "label_range", "missing_data", "missing_labels", "no_labels"]


@pytest.mark.parametrize("name", BAD)
def test_cli_refuses_bad_data_cleanly(tmp_path, name):
    from typer.testing import CliRunner

    from training.__main__ import app

    args, word = _bad_inputs(tmp_path)[name]
    out = tmp_path / "runs" / "bad"
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--epochs", "1", "-q"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and word in result.output
    assert result.output.count("\n") == 1  # one line
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_cli_refuses_existing_out_without_force(tmp_path):
    from typer.testing import CliRunner

    from training.__main__ import app

    maps, labels = toy(8)
    data, _ = write_layouts(tmp_path, maps, labels)["folder"]
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an earlier run")
    result = CliRunner().invoke(app, ["--data", str(data), "--out", str(out), "--epochs", "1", "-q"])
    assert result.exit_code == 1
    assert result.output == f"error: {out} already exists; use --force to replace it\n"
    assert [p.name for p in out.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize(
    "flags, word",
    [(["--schedule", "step"], "--schedule"), (["--val-split", "1"], "--val-split"), (["--loss", "l1"], "--loss")],
)
def test_cli_refuses_bad_recipe(tmp_path, flags, word):
    from typer.testing import CliRunner

    from training.__main__ import app

    maps, labels = toy(8)
    data, _ = write_layouts(tmp_path, maps, labels)["folder"]
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["--data", str(data), "--out", str(out), *flags, "-q"])
    assert result.exit_code == 1 and result.output.startswith("error: ") and word in result.output
    assert not out.exists()


def test_module_entry_point_reports_without_traceback(tmp_path):
    """The real ``python -m training`` process: message on stderr, exit 1."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "training", "--data", str(tmp_path / "nope.zip"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"error: {tmp_path / 'nope.zip'}: no such file or folder\n"
    assert proc.stdout == "" and not out.exists()
