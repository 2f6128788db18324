"""Block-wise consumption (the reconstruct and augment verbs): streamed results equal the in-memory calls on the
whole input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_infer.io as eio
from edge_infer import WaferGenerator
from edge_infer.cli import main
from edge_infer.errors import InputError, TooLargeError
from edge_infer.commands.reconstruct import metric_sums
from edge_infer.io import open_input


@pytest.fixture(scope="module")
def gen(bundle_dir):
    return WaferGenerator.load(bundle_dir, provider="cpu")


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of 300 one-hot float32 maps (so the 1281 course maps take 5 blocks; 150 as float64 from a file)."""
    monkeypatch.setattr(eio, "BLOCK_BYTES", 300 * 26 * 26 * 3 * 4)


def reconstruction_metrics(onehot, probs):
    squared, dies, right, defects, found = metric_sums(np.asarray(onehot, np.float32), probs)
    return {"mse": squared / (dies * 3), "accuracy": right / dies, "defect_recall": found / defects}


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return exc.value.code, out.out, out.err


def test_reconstruct_streamed_equals_in_memory(gen, bundle_dir, wafer_zip, wafer_data, small_blocks, tmp_path,
                                              capsys, monkeypatch):
    import functools

    import edge_infer.commands.reconstruct as cmd
    from edge_infer.commands._common import Progress

    monkeypatch.setattr(cmd, "Progress", functools.partial(Progress, delay=0.0, every=0.0))  # a line per block
    code, out, err = _cli(capsys, "reconstruct", "--data", str(wafer_zip), "-o", str(tmp_path), "--model", str(bundle_dir))
    assert code == 0, err
    done = [ln.split()[1] for ln in err.splitlines() if ln.startswith("reconstruct: ")]
    assert done == ["300/1,281", "600/1,281", "900/1,281", "1,200/1,281", "1,281/1,281"]
    np.testing.assert_array_equal(np.load(tmp_path / "reconstructed.npy"), gen.reconstruct(wafer_data.maps))


def test_files_in_either_order_give_the_same_maps(gen, bundle_dir, wafer_zip, wafer_data, small_blocks, tmp_path,
                                                 capsys):
    """The course data.npy is float64 in Fortran order: read whole (within the ceiling); C order streams."""
    import zipfile

    with zipfile.ZipFile(wafer_zip) as zf:
        (tmp_path / "data.npy").write_bytes(zf.read("data.npy"))
    np.save(tmp_path / "c.npy", np.ascontiguousarray(wafer_data.maps))
    # a stack in C order streams: it opens under a 1 MiB ceiling (it holds 10 MiB); Fortran order is read whole
    assert eio.open_input(tmp_path / "c.npy", max_memory=1 << 20).maps.count == 1281
    with pytest.raises(TooLargeError, match="read whole"):
        eio.open_input(tmp_path / "data.npy", max_memory=1 << 20)
    for name in ("data.npy", "c.npy"):
        with pytest.raises(TooLargeError, match="ceiling"):
            eio.load_npy(tmp_path / name, max_memory=1 << 20)
        code, out, err = _cli(capsys, "reconstruct", "--data", str(tmp_path / name), "-o", str(tmp_path / f"r-{name}"),
                              "--model", str(bundle_dir))
        assert code == 0 and "maps: 1281 from" in out, err
        np.testing.assert_array_equal(np.load(tmp_path / f"r-{name}" / "reconstructed.npy"),
                                      gen.reconstruct(wafer_data.maps))


def test_reconstruct_cli_streams_the_same_figures_and_files(gen, bundle_dir, wafer_zip, wafer_data, small_blocks, tmp_path, capsys):
    code, out, err = _cli(capsys, "reconstruct", "--data", str(wafer_zip), "-o", str(tmp_path), "--model", str(bundle_dir))
    assert code == 0, err
    m = reconstruction_metrics(wafer_data.maps, gen.reconstruct(wafer_data.maps, raw=True))
    assert f"mse: {m['mse']:.6f}" in out and f"die-state accuracy: {100 * m['accuracy']:.2f} %" in out
    assert "maps: 1281 from" in out
    np.testing.assert_array_equal(np.load(tmp_path / "reconstructed.npy"), gen.reconstruct(wafer_data.maps))
    assert (tmp_path / "reconstructed.png").stat().st_size > 0


@pytest.mark.parametrize("k, options", [(3, []), (2, ["--noise-mode", "course"]), (1, ["--no-outline-lock"])])
def test_augment_streamed_equals_in_memory(gen, bundle_dir, wafer_zip, wafer_data, small_blocks, tmp_path, capsys, k,
                                           options):
    api = {"mode": "course"} if "course" in options else {"outline_lock": False} if options else {}
    whole = gen.augment(k, maps=wafer_data.maps, labels=wafer_data.labels, seed=11, **api)
    code, out, err = _cli(capsys, "augment", "--data", str(wafer_zip), "-k", str(k), "--seed", "11", *options,
                          "-o", str(tmp_path), "--model", str(bundle_dir))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "gen_data.npy"), whole.maps)
    np.testing.assert_array_equal(np.load(tmp_path / "gen_label.npy"), whole.labels)


def test_augment_cli_streams_the_in_memory_result(gen, bundle_dir, wafer_zip, wafer_data, small_blocks, tmp_path, capsys):
    code, out, err = _cli(capsys, "augment", "--data", str(wafer_zip), "-k", "2", "--seed", "3", "-o", str(tmp_path), "--model", str(bundle_dir))
    assert code == 0, err
    whole = gen.augment(2, maps=wafer_data.maps, labels=wafer_data.labels, seed=3)
    np.testing.assert_array_equal(np.load(tmp_path / "gen_data.npy"), whole.maps)
    np.testing.assert_array_equal(np.load(tmp_path / "gen_label.npy"), whole.labels)
    assert "recipe classic: made 2562 maps from 1281 source maps" in out and (tmp_path / "augment.png").exists()
    # mix pairs sources across the whole input: read whole, same result as the in-memory call
    code, out, err = _cli(
        capsys, "augment", "--data", str(wafer_zip), "-k", "2", "--seed", "3", "--method", "mix",
        "-o", str(tmp_path / "mix"), "--model", str(bundle_dir),
    )
    assert code == 0, err
    from edge_infer.sampling import MixFallback

    with pytest.warns(MixFallback):  # Donut has a single map
        mixed = gen.augment(2, maps=wafer_data.maps, labels=wafer_data.labels, seed=3, method="mix")
    np.testing.assert_array_equal(np.load(tmp_path / "mix" / "gen_data.npy"), mixed.maps)


def test_source_offset_numbers_rows_as_one_call(gen, wafer_data):
    maps, labels = wafer_data.maps[:400], wafer_data.labels[:400]
    whole = gen.augment(4, maps=maps, labels=labels, seed=5)
    # 130 sources × 4 = 520 rows a call: calls that start at rows 520 and 1040, on no round boundary
    parts = [gen.augment(4, maps=maps[s : s + 130], labels=labels[s : s + 130], seed=5, source_offset=s) for s in range(0, 400, 130)]
    np.testing.assert_array_equal(np.concatenate([p.maps for p in parts]), whole.maps)
    np.testing.assert_array_equal(np.concatenate([p.sources for p in parts]), whole.sources)
    with pytest.raises(InputError, match="mix"):
        gen.augment(2, maps=wafer_data.maps[:10], labels=wafer_data.labels[:10], method="mix", source_offset=10)


def test_a_bad_map_late_in_the_input_leaves_no_output(gen, bundle_dir, wafer_data, small_blocks, tmp_path, capsys):
    maps = wafer_data.maps.copy()
    maps[1000, 3, 3] = 0
    np.save(tmp_path / "m.npy", maps)
    np.save(tmp_path / "l.npy", wafer_data.labels)
    out = tmp_path / "out"
    out.mkdir()
    (out / "gen_data.npy").write_bytes(b"precious")
    for args in (
        ("reconstruct", "--data", str(tmp_path / "m.npy"), "-o", str(out), "--force"),
        ("augment", "--data", str(tmp_path / "m.npy"), "--labels", str(tmp_path / "l.npy"), "-o", str(out), "--force"),
    ):
        code, _, err = _cli(capsys, *args, "--model", str(bundle_dir))
        assert code == 1 and "error: map 1000 in" in err and "not one-hot" in err
        assert sorted(p.name for p in out.iterdir()) == ["gen_data.npy"]
        assert (out / "gen_data.npy").read_bytes() == b"precious"


def test_streamed_inputs_and_labels_come_from_every_layout(wafer_zip, tmp_path):
    inp = open_input(wafer_zip, require_labels=True)
    assert inp.maps.count == 1281 and inp.labels.shape == (1281, 1)
    assert Path(inp.source) == wafer_zip


def test_out_of_memory_says_how_much_was_asked(bundle_dir, tmp_path, capsys, monkeypatch):
    def too_big(*a, **k):
        np.empty((10**7, 26, 26, 3, 1000), dtype=np.float32)  # 74 TiB: numpy refuses it, and says so

    import edge_infer.commands.reconstruct as cmd

    monkeypatch.setattr(cmd, "iter_maps", too_big)
    yy, xx = np.mgrid[:26, :26]
    wafer = ((yy - 12.5) ** 2 + (xx - 12.5) ** 2 <= 12.5**2).astype(np.uint8)  # a disc: passes the wafer rule
    np.save(tmp_path / "m.npy", np.stack([wafer, wafer]))
    code, _, err = _cli(capsys, "reconstruct", "--data", str(tmp_path / "m.npy"), "--model", str(bundle_dir))
    assert code == 1
    line = [ln for ln in err.splitlines() if ln.startswith("error:")][0]
    assert line.startswith("error: out of memory (") and line.endswith("ask for fewer maps at a time")
    assert "73.8 TiB" in line and "(10000000, 26, 26, 3, 1000)" in line  # what was asked, as numpy says it


def test_augment_streams_g85_too(gen, bundle_dir, tmp_path, capsys, monkeypatch):
    """--format both from a streamed input: the G85 file holds the same maps and classes as the .npy pair."""
    monkeypatch.setattr(eio, "BLOCK_BYTES", 128 * 26 * 26 * 3 * 4)
    idx = np.arange(300)
    np.save(tmp_path / "m.npy", gen.bank_maps(idx))
    np.save(tmp_path / "l.npy", gen.bundle.labels[idx].reshape(-1, 1))
    code, out, err = _cli(
        capsys, "augment", "--data", str(tmp_path / "m.npy"), "--labels", str(tmp_path / "l.npy"), "-k", "2",
        "--seed", "1", "--format", "both", "-o", str(tmp_path / "o"), "--model", str(bundle_dir),
    )
    assert code == 0, err
    npy = np.load(tmp_path / "o" / "gen_data.npy")
    np.testing.assert_array_equal(npy, gen.augment(2, maps=gen.bank_maps(idx), labels=gen.bundle.labels[idx], seed=1).maps)
    back = eio.load_dataset(tmp_path / "o" / "gen_maps.xml")
    np.testing.assert_array_equal(back.maps, npy)
    np.testing.assert_array_equal(back.labels, np.load(tmp_path / "o" / "gen_label.npy"))


def test_convert_streams_npy_inputs(wafer_zip, wafer_data, small_blocks, tmp_path, capsys):
    """convert reads .npy inputs block by block: to npy and to G85, the same maps and labels."""
    code, _, err = _cli(capsys, "convert", "--data", str(wafer_zip), "--to", "npy", "-o", str(tmp_path / "n"))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "n" / "data.npy"), wafer_data.maps)
    np.testing.assert_array_equal(np.load(tmp_path / "n" / "label.npy"), wafer_data.labels)
    code, _, err = _cli(capsys, "convert", "--data", str(tmp_path / "n"), "--to", "g85", "-o", str(tmp_path / "g"))
    assert code == 0, err
    back = eio.load_dataset(tmp_path / "g" / "maps.xml")
    np.testing.assert_array_equal(back.maps, wafer_data.maps)
    np.testing.assert_array_equal(back.labels, wafer_data.labels)
