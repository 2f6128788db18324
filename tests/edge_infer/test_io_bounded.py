"""Huge and hostile inputs: declared sizes checked before reading, maps read in bounded memory.

The bombs and the million-map file are built in the test's temp folder in
milliseconds: a deflate stream of zeros is one compressed 1 MiB piece
repeated (each piece ends with a full flush, so pieces are independent), and
the million maps are a small block written over and over.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from edge_infer.errors import DataFileError, InputError, TooLargeError
from edge_infer.io import (
    MAX_MEMORY_ENV,
    check_start,
    iter_maps,
    load_dataset,
    load_npy,
    max_input_memory,
    open_input,
)
from edge_infer.wafer import ResizeNote, to_onehot

MAP_BYTES = 26 * 26 * 3 * 4


def npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def zip_of_zeros(path: Path, header: bytes, zeros: int, *, declared=None, crc: int = 0, name="data.npy") -> Path:
    """A zip whose one deflated member is ``header`` + ``zeros`` zero bytes (sizes < 4 GiB).

    ``declared``: the uncompressed size the zip states (default: the real one);
    ``crc``: the CRC it states (these bombs are refused long before the CRC is checked).
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = 1 << 20
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    piece = comp.compress(bytes(mib)) + comp.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(zeros, mib)
    tail = comp.compress(bytes(rest)) + comp.flush()
    size = len(header) + zeros if declared is None else declared
    csize = len(head) + full * len(piece) + len(tail)
    nm = name.encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, csize, size, len(nm), 0) + nm)
        fh.write(head)
        fh.write(piece * full)
        fh.write(tail)
        cd = fh.tell()
        fh.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, csize, size, len(nm), 0, 0, 0, 0, 0, 0) + nm)
        end = fh.tell()
        fh.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, end - cd, cd, 0))
    return path


def wafer_states(n: int, seed: int = 0) -> np.ndarray:
    """``n`` plausible die-state maps (round wafer, random defects), uint8."""
    yy, xx = np.mgrid[:26, :26]
    off = (yy - 12.5) ** 2 + (xx - 12.5) ** 2 > 12.5**2
    rng = np.random.default_rng(seed)
    states = rng.integers(1, 3, size=(n, 26, 26), dtype=np.uint8)
    states[:, off] = 0
    return states


# ---------------------------------------------------------------- declared sizes


def test_zip_bomb_of_zeros_is_refused_at_its_first_map(tmp_path):
    n = 250_000  # 2 GB of zeros behind an honest header, in a 2 MB zip
    bomb = zip_of_zeros(tmp_path / "bomb.zip", npy_header((n, 26, 26, 3)), n * MAP_BYTES)
    assert bomb.stat().st_size < 3_000_000
    source = open_input(bomb).maps
    assert source.count == n
    with pytest.raises(InputError, match=r"map 0 in .*bomb.zip:data.npy is not one-hot"):
        check_start(source)
    with pytest.raises(InputError, match="map 0 in"):
        next(iter_maps(source))


@pytest.mark.parametrize("maps_declared, maps_held", [(1281, 250_000), (250_000, 1281)])
def test_zip_member_whose_size_disagrees_with_its_header(tmp_path, maps_declared, maps_held):
    """Both directions: a small header before gigabytes, and a huge header before a little."""
    header = npy_header((maps_declared, 26, 26, 3))
    bomb = zip_of_zeros(tmp_path / "lying.zip", header, maps_held * MAP_BYTES)
    with pytest.raises(DataFileError) as exc:
        load_dataset(bomb)
    msg = str(exc.value)
    assert "lying.zip:data.npy" in msg and f"({maps_declared}, 26, 26, 3)" in msg
    assert f"{len(header) + maps_declared * MAP_BYTES:,} bytes" in msg
    assert f"{len(header) + maps_held * MAP_BYTES:,} bytes" in msg
    assert "\n" not in msg


def test_zip_member_that_inflates_to_less_than_it_declares(tmp_path):
    header = npy_header((10, 26, 26, 3))
    crc = zlib.crc32(header + bytes(5 * MAP_BYTES))  # right for what is there: only the length lies
    short = zip_of_zeros(tmp_path / "short.zip", header, 5 * MAP_BYTES, declared=len(header) + 10 * MAP_BYTES, crc=crc)
    with pytest.raises(DataFileError, match="short.zip:data.npy ends early: the file is truncated"):
        load_dataset(short)


def test_zip_member_with_a_bad_crc_is_damaged(tmp_path):
    maps = to_onehot(wafer_states(3))
    raw = io.BytesIO()
    np.save(raw, maps)
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.npy", raw.getvalue())
    blob = bytearray(path.read_bytes())
    crc = struct.pack("<I", zlib.crc32(raw.getvalue()))
    for at in (14, blob.rindex(b"PK\x01\x02") + 16):  # the CRC in the local and the central header
        assert blob[at : at + 4] == crc
        blob[at : at + 4] = b"\0\0\0\0"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataFileError, match="crc.zip:data.npy is damaged"):
        load_dataset(path)


@pytest.mark.parametrize("claimed, held", [(100_000_000_000, 0), (10, 3), (3, 10)])
def test_npy_header_that_lies_about_its_length(tmp_path, claimed, held):
    """More maps than the file holds (a 1 kB file claiming 10^11 maps; a truncated file), or fewer."""
    path = tmp_path / "liar.npy"
    header = npy_header((claimed, 26, 26, 3))
    path.write_bytes(header + bytes(held * MAP_BYTES + (1000 if held == 0 else 0)))
    real = path.stat().st_size
    with pytest.raises(DataFileError) as exc:
        load_dataset(path)
    msg = str(exc.value)
    assert str(path) in msg and f"{len(header) + claimed * MAP_BYTES:,} bytes" in msg and f"{real:,} bytes" in msg
    assert ("truncated or its header lies" in msg) == (claimed > held)
    with pytest.raises(DataFileError, match="header declares"):
        load_npy(path)


def test_truncated_file_is_refused_before_reading(tmp_path):
    maps = to_onehot(wafer_states(50))
    full = tmp_path / "full.npy"
    np.save(full, maps)
    cut = tmp_path / "cut.npy"
    cut.write_bytes(full.read_bytes()[: 30_000])
    with pytest.raises(DataFileError, match=r"cut.npy: its header declares a float32 array of shape \(50, 26, 26, 3\)"):
        open_input(cut)


def test_labels_lying_header_and_first_bad_label(tmp_path):
    np.save(tmp_path / "maps.npy", wafer_states(6))
    (tmp_path / "lab.npy").write_bytes(npy_header((10**12, 1), "<i8") + bytes(48))
    with pytest.raises(DataFileError, match="lab.npy: its header declares"):
        open_input(tmp_path / "maps.npy", tmp_path / "lab.npy")
    np.save(tmp_path / "lab.npy", np.array([0, 1, 2, 3, 11, 2]))
    with pytest.raises(InputError, match=r"outside 0..8 .*the first is map 4 \(label 11\)"):
        open_input(tmp_path / "maps.npy", tmp_path / "lab.npy")


# ---------------------------------------------------------------- validation block by block


def test_first_bad_map_is_named_by_its_index_in_the_whole_input(tmp_path):
    maps = to_onehot(wafer_states(1000))
    maps[737, 5, 5] = [1, 1, 0]
    np.save(tmp_path / "m.npy", maps)
    with pytest.raises(InputError, match=r"^map 737 in .*m.npy is not one-hot"):
        for _ in iter_maps(open_input(tmp_path / "m.npy").maps, rows=128):
            pass
    maps[737, 5, 5] = [0, 1, 0]
    maps[901, 0, 0, 0] = np.nan
    np.save(tmp_path / "m.npy", maps)
    with pytest.raises(InputError, match=r"^map 901 in .* NaN"):
        load_dataset(tmp_path / "m.npy")


def test_without_the_wafer_rule_the_bad_map_named_is_the_one_that_is_bad(tmp_path):
    states = np.zeros((3, 26, 26), np.uint8)  # not wafer-shaped, which a conversion without the rule accepts
    states[1, 5, 5] = 7
    np.save(tmp_path / "m.npy", states)
    with pytest.raises(InputError, match=r"^map 1 in .*m.npy holds die states outside 0..2"):
        list(iter_maps(open_input(tmp_path / "m.npy").maps, wafer_rule=False))


def test_blocks_cover_every_map_in_order_with_one_resize_note(tmp_path):
    states = np.repeat(np.repeat(wafer_states(300), 2, axis=1), 2, axis=2)  # 52×52
    np.save(tmp_path / "big.npy", states)
    source = open_input(tmp_path / "big.npy").maps
    with pytest.warns(ResizeNote) as notes:
        blocks = list(iter_maps(source, rows=64))
    assert [s for s, _ in blocks] == list(range(0, 300, 64))
    assert len(notes) == 1 and "resized 300 map(s) from 52×52" in str(notes[0].message)
    got = np.concatenate([b for _, b in blocks])
    np.testing.assert_array_equal(got, to_onehot(wafer_states(300)))


def test_dataset_hash_and_layouts_unchanged_by_block_reading(tmp_path):
    import hashlib

    maps = to_onehot(wafer_states(700)).astype(np.float64)
    np.save(tmp_path / "data.npy", maps)
    ds = load_dataset(tmp_path / "data.npy")
    assert ds.sha256 == hashlib.sha256((tmp_path / "data.npy").read_bytes()).hexdigest()
    np.testing.assert_array_equal(ds.maps, maps)


# ---------------------------------------------------------------- the ceiling


def test_memory_ceiling_refuses_whole_reads_and_says_how_to_raise_it(tmp_path, monkeypatch):
    np.save(tmp_path / "m.npy", wafer_states(200))
    with pytest.raises(TooLargeError) as exc:
        load_dataset(tmp_path / "m.npy", max_memory=1 << 20)
    msg = str(exc.value)
    assert "200 maps from" in msg and MAX_MEMORY_ENV in msg and "block by block" in msg
    monkeypatch.setenv(MAX_MEMORY_ENV, "1M")
    assert max_input_memory() == 1 << 20
    with pytest.raises(TooLargeError):
        load_dataset(tmp_path / "m.npy")
    assert sum(b.shape[0] for _, b in iter_maps(open_input(tmp_path / "m.npy").maps)) == 200, "streaming is not held back"
    monkeypatch.setenv(MAX_MEMORY_ENV, "2g")
    assert load_dataset(tmp_path / "m.npy").maps.shape == (200, 26, 26, 3)
    monkeypatch.setenv(MAX_MEMORY_ENV, "lots")
    with pytest.raises(InputError, match=f"{MAX_MEMORY_ENV}='lots' is not a size"):
        max_input_memory()


def test_inputs_that_cannot_be_cut_into_maps_are_read_whole_within_the_ceiling(tmp_path):
    one = to_onehot(wafer_states(1))[0]  # (26, 26, 3): a single map
    np.save(tmp_path / "one.npy", one)
    assert load_dataset(tmp_path / "one.npy").maps.shape == (1, 26, 26, 3)
    # Fortran order cannot be cut into maps as it is read: read whole.
    raw = io.BytesIO()
    np.save(raw, np.asfortranarray(to_onehot(wafer_states(4))))
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as zf:
        zf.writestr("data.npy", raw.getvalue())
    np.testing.assert_array_equal(load_dataset(tmp_path / "f.zip").maps, to_onehot(wafer_states(4)))
    with pytest.raises(TooLargeError, match="read whole"):
        open_input(tmp_path / "f.zip", max_memory=10_000)


# ---------------------------------------------------------------- a million maps, bounded


def _peak_rss_mb(code: str) -> tuple[float, dict]:
    """Run ``code`` (which sets ``result``, a dict) in a fresh interpreter; return its peak memory (MB) and ``result``.

    The peak is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a small
    launcher: Linux carries a process's peak across ``exec``, so a process
    forked from this (large) pytest process would report pytest's size.
    """
    child = code + "\nimport json\nprint(json.dumps(result))\n"
    launcher = textwrap.dedent(
        f"""
        import json, resource, subprocess, sys
        out = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({{"peak_kb": peak_kb, "result": json.loads(out.stdout.strip().splitlines()[-1])}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["peak_kb"] / 1024, data["result"]


def _write_repeated(path: Path, n: int, block: np.ndarray) -> None:
    with open(path, "wb") as fh:
        fh.write(npy_header((n, 26, 26), "|u1"))
        for _ in range(n // block.shape[0]):
            fh.write(block.tobytes())


def test_a_million_maps_are_read_in_bounded_memory(tmp_path):
    """A million maps (676 MB of die states on disk; 8.1 GB as one-hot) read front to back under 100 MB."""
    n, states = 1_000_000, wafer_states(4000)
    path = tmp_path / "million.npy"
    _write_repeated(path, n, states)
    peak, result = _peak_rss_mb(
        textwrap.dedent(
            f"""
            import numpy as np
            from edge_infer.io import open_input
            source = open_input({str(path)!r}).maps
            count = defects = 0
            for raw in source.raw_blocks(4096):  # BLOCK_ROWS
                count += raw.shape[0]
                defects += int(np.count_nonzero(raw == 2))
            result = {{"count": count, "declared": source.count, "defects": defects}}
            """
        )
    )
    assert result["count"] == result["declared"] == n
    assert result["defects"] == int((states == 2).sum()) * (n // 4000), "every map was read"
    assert peak < 100, f"peak {peak:.0f} MB reading a 676 MB file"


def test_every_map_is_validated_in_bounded_memory(tmp_path):
    """50,000 maps (405 MB as one-hot) validated and decoded block by block under 200 MB."""
    n, states = 50_000, wafer_states(1000)
    path = tmp_path / "many.npy"
    _write_repeated(path, n, states)
    peak, result = _peak_rss_mb(
        textwrap.dedent(
            f"""
            from edge_infer.io import iter_maps, open_input
            count = normal = 0
            for start, maps in iter_maps(open_input({str(path)!r}).maps):
                count += maps.shape[0]
                normal += int(maps[..., 1].sum())
            result = {{"count": count, "normal": normal}}
            """
        )
    )
    assert result["count"] == n
    assert result["normal"] == int((states == 1).sum()) * (n // 1000)
    assert peak < 200, f"peak {peak:.0f} MB validating 405 MB of maps"


def test_bomb_is_refused_by_the_cli_in_bounded_memory(tmp_path, runtime_venv):
    """The installed command, torch-free: a 2 GB-of-zeros zip and a lying one, refused, peak < 200 MB."""
    n = 250_000
    honest = zip_of_zeros(tmp_path / "bomb.zip", npy_header((n, 26, 26, 3)), n * MAP_BYTES)
    lying = zip_of_zeros(tmp_path / "lying.zip", npy_header((1281, 26, 26, 3)), n * MAP_BYTES)
    for bomb, message in ((honest, "map 0 in"), (lying, "its header declares")):
        code = textwrap.dedent(
            f"""
            import os, subprocess
            out = subprocess.run([{str(runtime_venv / "bin" / "edge-infer")!r}, "reconstruct", "--data", {str(bomb)!r}],
                                 capture_output=True, text=True)
            result = {{"rc": out.returncode, "err": out.stderr}}
            """
        )
        peak, result = _peak_rss_mb(code)  # the launcher's and the command's peaks: both bounded
        assert result["rc"] == 1
        errors = [ln for ln in result["err"].splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in result["err"]
        assert peak < 200, f"{bomb.name}: peak {peak:.0f} MB"
