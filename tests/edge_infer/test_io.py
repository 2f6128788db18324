"""Reading users' data safely (edge_infer.io) and writing outputs atomically (edge_infer.files)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_infer.errors import DataFileError, EdgeInferError, InputError, OutputError
from edge_infer.files import atomic_folder, atomic_path, check_targets, write_npy
from edge_infer.io import load_dataset, load_npy
from edge_infer.wafer import to_onehot


def save_npy(path, array, force=False):
    """How the runtime writes an output array: write_npy into an atomic_path."""
    with atomic_path(path, force=force) as tmp:
        write_npy(tmp, array)


def _maps(n=6, seed=0):
    rng = np.random.default_rng(seed)
    states = rng.integers(1, 3, size=(n, 26, 26))
    yy, xx = np.mgrid[:26, :26]
    states[:, (yy - 12.5) ** 2 + (xx - 12.5) ** 2 > 12.5**2] = 0  # a wafer: a disc, corners off-wafer
    return to_onehot(states).astype(np.float64), rng.integers(0, 9, size=(n, 1))


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture
def layouts(tmp_path):
    data, labels = _maps()
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "data.npy", data)
    np.save(folder / "label.npy", labels)
    zpath = tmp_path / "wafer.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("label.npy", _npy_bytes(labels))
        zf.writestr("data.npy", _npy_bytes(data))
    return data, labels, folder, zpath


def test_three_layouts_give_the_same_dataset(layouts):
    data, labels, folder, zpath = layouts
    a = load_dataset(zpath)
    b = load_dataset(folder)
    c = load_dataset(folder / "data.npy", folder / "label.npy")
    for ds in (a, b, c):
        assert ds.maps.dtype == np.float32 and ds.maps.shape == (6, 26, 26, 3)
        assert np.array_equal(ds.maps, data)
        assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, labels)


def test_real_zip_matches_its_readme(wafer_data):
    assert wafer_data.maps.shape == (1281, 26, 26, 3)
    assert np.bincount(wafer_data.labels[:, 0]).tolist() == [90, 1, 296, 31, 297, 74, 72, 16, 404]
    boundary = wafer_data.maps[..., 0].sum(axis=(1, 2))
    assert sorted(set(boundary.tolist())) == [143, 156]


def test_missing_and_misnamed_files(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_dataset(tmp_path / "nope.zip")
    text = tmp_path / "data.npy"
    text.write_text("hello, not an array")
    with pytest.raises(DataFileError, match="not a valid .npy"):
        load_dataset(text)
    fake_zip = tmp_path / "wafer.zip"
    fake_zip.write_text("not a zip")
    with pytest.raises(DataFileError, match="not a valid zip"):
        load_dataset(fake_zip)
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(DataFileError, match="holds no data.npy"):
        load_dataset(empty_zip)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="holds no data.npy"):
        load_dataset(tmp_path / "empty")


def test_pickles_are_never_loaded(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match="never loaded"):
        load_npy(path)


def test_label_problems(tmp_path, layouts):
    data, labels, folder, _ = layouts
    np.save(tmp_path / "short.npy", labels[:3])
    with pytest.raises(InputError, match="3 entries but there are 6 maps"):
        load_dataset(folder / "data.npy", tmp_path / "short.npy")
    np.save(tmp_path / "big.npy", labels + 20)
    with pytest.raises(InputError, match="outside 0..8"):
        load_dataset(folder / "data.npy", tmp_path / "big.npy")
    with pytest.raises(DataFileError, match="no labels"):
        load_dataset(folder / "data.npy", require_labels=True)


@given(st.binary(max_size=600), st.integers(0, 2))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_loaders_raise_only_documented_errors(tmp_path, payload, form):
    """Random bytes, and truncations of valid files, as .npy, as .zip, or inside a zip."""
    valid_npy = _npy_bytes(_maps(2)[0])
    candidates = [payload, valid_npy[: len(payload) % len(valid_npy)], payload + valid_npy[:40]]
    for i, raw in enumerate(candidates):
        if form == 0:
            path = tmp_path / f"f{i}.npy"
            path.write_bytes(raw)
        elif form == 1:
            path = tmp_path / f"f{i}.zip"
            path.write_bytes(raw)
        else:
            path = tmp_path / f"f{i}.zip"
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("data.npy", raw)
        try:
            ds = load_dataset(path)
        except EdgeInferError:
            continue
        assert ds.maps.shape[1:] == (26, 26, 3)


def test_save_npy_is_atomic_and_respects_force(tmp_path):
    target = tmp_path / "out" / "gen_data.npy"
    save_npy(target, np.arange(3))
    assert np.array_equal(np.load(target), np.arange(3))
    with pytest.raises(OutputError, match="--force"):
        save_npy(target, np.arange(5))
    assert np.array_equal(np.load(target), np.arange(3)), "existing output must survive"
    save_npy(target, np.arange(5), force=True)
    assert np.array_equal(np.load(target), np.arange(5))
    assert sorted(p.name for p in target.parent.iterdir()) == ["gen_data.npy"]
    assert target.stat().st_mode & 0o044 == 0o044, "outputs are readable like any new file"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_write_leaves_nothing(tmp_path, exc):
    target = tmp_path / "gen_data.npy"
    target.write_bytes(b"precious")
    with pytest.raises(exc):
        with atomic_path(target, force=True) as tmp:
            tmp.write_bytes(b"half")
            raise exc()
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["gen_data.npy"]


def test_unwritable_targets_fail_before_writing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create folder"):
        check_targets([blocker / "sub" / "gen_data.npy"])
    with pytest.raises(OutputError, match="is a folder"):
        check_targets([tmp_path], force=True)
    with pytest.raises(OutputError):
        save_npy(Path("/proc/edge-infer-test/gen.npy"), np.zeros(2))


def test_full_disk_is_one_clear_error_and_loses_nothing(tmp_path, monkeypatch):
    """A write that fails with ENOSPC (disk full) mid-way: OutputError, old file kept, no temporary left."""
    import errno

    import edge_infer.files as ef

    target = tmp_path / "gen_data.npy"
    save_npy(target, np.arange(4))

    def full(fh, *args, **kwargs):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ef.np, "save", full)
    with pytest.raises(OutputError, match="No space left on device"):
        save_npy(target, np.arange(9), force=True)
    monkeypatch.undo()
    assert np.array_equal(np.load(target), np.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["gen_data.npy"]


def test_atomic_folder_replaces_only_on_success(tmp_path):
    target = tmp_path / "run"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_folder(target, force=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(OutputError, match="--force"):
        with atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("second")
    with atomic_folder(target, force=True) as tmp:
        (tmp / "a.txt").write_text("second")
    assert (target / "a.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "no temporaries or old copies left"


def test_atomic_files_are_all_or_none(tmp_path):
    from edge_infer.files import atomic_files

    a, b = tmp_path / "gen_data.npy", tmp_path / "gen_label.npy"
    with pytest.raises(RuntimeError):
        with atomic_files([a, b]) as (ta, tb):
            ta.write_bytes(b"maps")
            tb.write_bytes(b"labels")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    b.write_bytes(b"old labels")
    with pytest.raises(OutputError, match="gen_label.npy already exists"):  # refused before anything is written
        with atomic_files([a, b]):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen_label.npy"]
    with atomic_files([a, b], force=True) as (ta, tb):
        ta.write_bytes(b"maps")
        tb.write_bytes(b"labels")
    assert (a.read_bytes(), b.read_bytes()) == (b"maps", b"labels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen_data.npy", "gen_label.npy"]


def test_temporary_files_name_their_writer_and_only_dead_writers_parts_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from edge_infer.errors import Note
    from edge_infer.files import PART_SUFFIX

    target = tmp_path / "gen_data.npy"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".gen_data.npy.{os.getpid()}-")
        assert tmp.name.endswith(".edge-infer-part") and PART_SUFFIX == ".edge-infer-part"
        tmp.write_bytes(b"x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".gen_label.npy.{int(dead.stdout)}-abc123{PART_SUFFIX}"  # a SIGKILLed run's leftover
    live = tmp_path / f".other.npy.{os.getpid()}-def456{PART_SUFFIX}"  # a run still writing (this one)
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    with pytest.warns(Note, match="removed 1 partial file"):
        save_npy(tmp_path / "gen_label.npy", np.arange(2))
    assert not stale.exists() and live.exists()
