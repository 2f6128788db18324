"""The command as a tool author and a new user meet it (issue 23): runs that never collide, the
bundle exported for another language, ``info --json``, the picture's grid, the help texts.

Run on the torch-free ``.venv``'s ``edge-infer`` when ``$EDGE_INFER_RUNTIME_VENV`` is set
(``make test``), else ``python -m edge_infer.cli`` from this checkout (see test_faults).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import one_error_line
from test_faults import edge_infer, tree


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- runs that never collide


@pytest.mark.slow
def test_runs_without_out_each_get_a_folder_of_their_own(tmp_path):
    """The README's first command twice, then augment, in one empty folder: three runs, three folders."""
    r1 = edge_infer("generate", "--class", "None", "-n", "5", cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr
    first = tree(tmp_path / "out" / "generate-1")
    r2 = edge_infer("generate", "--class", "None", "-n", "5", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    r3 = edge_infer("augment", cwd=tmp_path)
    assert r3.returncode == 0, r3.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["augment-1", "generate-1", "generate-2"]
    assert files(tmp_path) == ["out", "out/augment-1", "out/augment-1/augment.png", "out/augment-1/gen_data.npy",
                               "out/augment-1/gen_label.npy", "out/generate-1", "out/generate-1/gen_data.npy",
                               "out/generate-1/gen_label.npy", "out/generate-1/generated.png", "out/generate-2",
                               "out/generate-2/gen_data.npy", "out/generate-2/gen_label.npy",
                               "out/generate-2/generated.png"]
    # each run says where it wrote, and no run touched another's files
    for r, folder in ((r1, "out/generate-1"), (r2, "out/generate-2"), (r3, "out/augment-1")):
        assert f"into {folder}" in r.stdout.splitlines()[0], r.stdout
    assert tree(tmp_path / "out" / "generate-1") == first
    assert np.load(tmp_path / "out" / "generate-2" / "gen_data.npy").shape == (5, 26, 26, 3)
    assert np.load(tmp_path / "out" / "augment-1" / "gen_label.npy").shape[1] == 1


@pytest.mark.parametrize("what", ["file", "dangling-link"])
def test_an_out_that_is_not_a_folder_is_one_error_not_a_hang(tmp_path, wafer_zip, what):
    """``out`` a plain file, or a link to nothing: one error line (the 8 s limit only guards a hang:
    the run takes about a second)."""
    if what == "file":
        (tmp_path / "out").write_text("mine\n")
    else:
        (tmp_path / "out").symlink_to("nowhere")
    try:
        r = edge_infer("convert", "--data", str(wafer_zip), cwd=tmp_path, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("edge-infer convert without --out still running after 8 s: it hangs")
    assert r.returncode == 1
    assert "out" in one_error_line(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_misuse_is_exactly_one_stderr_line_and_creates_nothing(tmp_path):
    r = edge_infer("generate", "-n", "5", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [one_error_line(r.stderr)], r.stderr  # no provider line before it
    assert "give a class" in r.stderr and "or a source index" in r.stderr  # the library says it, once
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the bundle for another language


@pytest.mark.slow
def test_an_exported_bundle_generates_the_same_maps_as_the_default(tmp_path, bundle_dir):
    from edge_infer import WaferGenerator

    r = edge_infer("bundle", "export", "tool/model", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "tool" / "model"
    manifest = json.loads((dest / "manifest.json").read_text())
    assert sorted(p.name for p in dest.iterdir()) == sorted(["manifest.json", *manifest["files"]])
    for name in ["manifest.json", *manifest["files"]]:
        assert (dest / name).read_bytes() == (bundle_dir / name).read_bytes(), name
    exported, default = WaferGenerator.load(dest, provider="cpu"), WaferGenerator.load(provider="cpu")
    for cls, n in (("Scratch", 20), ("Donut", 3), ("None", 300)):
        a = exported.generate(cls, n, seed=123)
        b = default.generate(cls, n, seed=123)
        assert np.array_equal(a.maps, b.maps) and np.array_equal(a.labels, b.labels), cls
        assert np.array_equal(a.sources, b.sources), cls


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_export_into_a_folder_that_is_not_a_bundle_is_refused(tmp_path, force):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file\n")
    r = edge_infer("bundle", "export", "mine", *(["--force"] if force else []), cwd=tmp_path)
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert "not a bundle" in line, line
    assert files(tmp_path) == ["mine", "mine/notes.txt"]
    assert (mine / "notes.txt").read_text() == "my own file\n"


def test_export_over_an_earlier_export_needs_force(tmp_path):
    assert edge_infer("bundle", "export", "b", cwd=tmp_path).returncode == 0
    before = tree(tmp_path / "b")
    r = edge_infer("bundle", "export", "b", cwd=tmp_path)
    assert r.returncode == 1 and "--force" in one_error_line(r.stderr)
    r = edge_infer("bundle", "export", "b", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "b") == before
    assert files(tmp_path) == ["b", *(f"b/{name}" for name in sorted(before))]  # nothing beside it


def test_info_json_is_one_json_object_for_scripts(tmp_path):
    from edge_infer.wafer import CLASS_NAMES

    r = edge_infer("info", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # the whole stdout is the JSON object
    bundle = Path(report["bundle"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [c["name"] for c in report["classes"]] == list(CLASS_NAMES) == manifest["classes"]
    assert [c["index"] for c in report["classes"]] == list(range(len(CLASS_NAMES)))
    assert sum(c["bank_maps"] for c in report["classes"]) == report["bank_maps"] == manifest["latent_bank"]["count"]
    assert report["noise_defaults"]["strength"] == manifest["noise_defaults"]["strength"]
    assert set(report["graphs"]) == {"encoder", "decoder", "generator", "generator_core"}
    for role, name in report["graphs"].items():
        assert (bundle / name).is_file() and name == manifest["graphs"][role]["file"]
    assert report["format_version"] == manifest["format_version"]


# ---------------------------------------------------------------- the picture and the help texts


@pytest.mark.slow
def test_the_picture_shows_every_map_asked_for_up_to_the_cap(tmp_path):
    """generated.png is a grid of rows of 8 (each source above its map): it widens up to 8 maps,
    grows a row pair per 8 more up to 64, and shows no more than 64. (Only the label column's
    width may vary a little with its text, "sources 56-63".)"""
    from PIL import Image

    size = {}
    for n in (1, 8, 16, 65):
        r = edge_infer("generate", "--class", "Loc", "-n", str(n), "--seed", "0", "--out", f"n{n}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        with Image.open(tmp_path / f"n{n}" / "generated.png") as im:
            size[n] = im.size
    width = {n: w for n, (w, h) in size.items()}
    height = {n: h for n, (w, h) in size.items()}
    tile = (width[8] - width[1]) / 7  # one more map in a row
    assert tile > 50, size
    assert all(abs(width[n] - width[8]) < tile / 2 for n in (16, 65)), size  # never more than 8 in a row
    row_pair = height[16] - height[8]  # 16 maps: a second row of 8 below the first
    assert row_pair > tile, size
    assert height[65] == height[8] + 7 * row_pair, size  # 64 maps in 8 rows of 8, and no more


@pytest.mark.parametrize("verb", ["augment", "convert", "reconstruct"])
def test_help_texts_explain_in_place_without_repository_paths(tmp_path, verb):
    r = edge_infer(*verb.split(), "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "docs/" not in r.stdout, r.stdout


def test_reconstruct_threads_text_describes_its_own_verb(tmp_path):
    r = edge_infer("reconstruct", "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = re.search(r"^\s*--threads\b(.*?)(?=^\s*-)", r.stdout, flags=re.S | re.M)
    assert m, r.stdout
    assert "onnxruntime threads" in m.group(1) and "generate" not in m.group(1).lower(), m.group(1)
