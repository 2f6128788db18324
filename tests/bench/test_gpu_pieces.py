"""bench.gpu_pieces: what travels to the GPU machine in pieces comes back together byte for byte, or says what is wrong."""

from __future__ import annotations

import hashlib
import os
import zipfile

import pytest

from bench.gpu_pieces import PieceError, check, join, main, read_sums, split, stash, store


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "ei-gpu.tar"
    path.write_bytes(os.urandom(10_000) + bytes(range(256)) * 7)  # 11,792 bytes, not a multiple of the piece size
    return path


def test_split_then_join_gives_the_same_bytes_through_a_stash(tmp_path, payload):
    made = split(payload, tmp_path / "pieces", max_bytes=4096)
    assert [p.name for p in made] == [f"ei-gpu.tar.{i}of3" for i in (1, 2, 3)]
    sizes = [p.stat().st_size for p in made]
    assert sum(sizes) == payload.stat().st_size and max(sizes) <= 4096 and max(sizes) - min(sizes) <= 1
    pieces, whole = read_sums(tmp_path / "pieces")
    assert whole == (hashlib.sha256(payload.read_bytes()).hexdigest(), "ei-gpu.tar")
    assert [name for _, name in pieces] == [p.name for p in made]

    # one call per piece: each call's checkout holds SHA256SUMS and its own piece only
    calls = []
    for piece in made:
        call = tmp_path / f"call-{piece.name}"
        call.mkdir()
        (call / "SHA256SUMS").write_bytes((tmp_path / "pieces" / "SHA256SUMS").read_bytes())
        (call / piece.name).write_bytes(piece.read_bytes())
        calls.append(call)
    held, missing = stash(calls[0], tmp_path / "stash")
    assert held == [made[0].name] and missing == [made[1].name, made[2].name]
    for call in calls[1:]:
        held, missing = stash(call, tmp_path / "stash")
    assert missing == [] and len(held) == 3

    out = join(tmp_path / "stash", tmp_path / "joined")
    assert out.read_bytes() == payload.read_bytes()


def test_a_missing_or_corrupt_piece_is_named_and_nothing_is_written(tmp_path, payload):
    made = split(payload, tmp_path / "p", max_bytes=4096)
    made[1].unlink()
    with pytest.raises(PieceError, match=r"missing: ei-gpu\.tar\.2of3"):
        join(tmp_path / "p", tmp_path / "joined")
    assert not list(tmp_path.glob("joined*"))

    made = split(payload, tmp_path / "p", max_bytes=4096)
    data = bytearray(made[2].read_bytes())
    data[0] ^= 1
    made[2].write_bytes(bytes(data))
    assert check(tmp_path / "p") == ([], ["ei-gpu.tar.3of3"])
    assert main(["join", str(tmp_path / "p"), str(tmp_path / "joined")]) == 1
    assert not list(tmp_path.glob("joined*"))

    made = split(payload, tmp_path / "p", max_bytes=4096)  # every piece right, the whole's checksum not
    sums = tmp_path / "p" / "SHA256SUMS"
    sums.write_text(sums.read_text().replace(hashlib.sha256(payload.read_bytes()).hexdigest(), "0" * 64))
    with pytest.raises(PieceError, match="do not match"):
        join(tmp_path / "p", tmp_path / "joined")
    assert not list(tmp_path.glob("joined*"))


def test_a_new_split_replaces_the_old_pieces_and_a_stale_stash(tmp_path, payload):
    split(payload, tmp_path / "p", max_bytes=2048)
    stash(tmp_path / "p", tmp_path / "stash")
    payload.write_bytes(payload.read_bytes()[:5000])
    made = split(payload, tmp_path / "p", max_bytes=4096)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["SHA256SUMS"] + [p.name for p in made]
    held, missing = stash(tmp_path / "p", tmp_path / "stash")
    assert missing == [] and sorted(os.listdir(tmp_path / "stash")) == sorted(["SHA256SUMS"] + held)
    assert join(tmp_path / "stash", tmp_path / "joined").read_bytes() == payload.read_bytes()


def test_store_keeps_a_wheels_members_and_modes_uncompressed(tmp_path):
    src = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("pkg/lib.so", date_time=(2026, 1, 2, 3, 4, 6))
        info.external_attr = 0o755 << 16
        z.writestr(info, b"\x7fELF" + b"a" * 5000)
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/lib.so,,\n")
    out = store(src, tmp_path / "stored.whl")
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in b.infolist())
        assert b.getinfo("pkg/lib.so").external_attr >> 16 == 0o755
        assert b.getinfo("pkg/lib.so").date_time == (2026, 1, 2, 3, 4, 6)
        assert all(a.read(n) == b.read(n) for n in a.namelist())
