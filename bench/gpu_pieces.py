"""Split a file into pieces that each fit one device call, and put it back together.

The GPU machine takes at most 64 MiB of files per call, the repository
included, so what must travel to it (bench/gpu-check.sh fetch: the
onnxruntime-gpu wheel xz-compressed, and the edge-infer wheel) goes as k pieces, one
per call. Beside the pieces, SHA256SUMS (the format of ``sha256sum``, so
``sha256sum -c`` reads it too) holds one line per piece and a last line for
the whole file. Piece names say their place and the count:
``ei-gpu.tar.2of4``.

    python3 bench/gpu_pieces.py split FILE DIR [--max-mib 50]
    python3 bench/gpu_pieces.py stash SRC DST   # copy the pieces SRC holds to DST, say what DST lacks
    python3 bench/gpu_pieces.py join DIR OUT    # check every piece, concatenate, check the whole
    python3 bench/gpu_pieces.py store WHEEL OUT # the same zip with its members stored, not deflated

Bad input or a missing/corrupt piece: one ``error:`` line, exit 1, no
half-written file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

SUMS = "SHA256SUMS"
_PIECE = re.compile(r"\.(\d+)of(\d+)$")
_CHUNK = 1 << 20


class PieceError(Exception):
    """A piece or the whole is missing or does not match its checksum."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _write_sums(folder: Path, lines: list[tuple[str, str]]) -> None:
    tmp = folder / (SUMS + ".tmp")
    tmp.write_text("".join(f"{digest}  {name}\n" for digest, name in lines))
    os.replace(tmp, folder / SUMS)


def read_sums(folder: Path) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """``([(sha, piece name), ...] in order, (sha, whole name))`` from ``folder/SHA256SUMS``."""
    path = Path(folder) / SUMS
    if not path.is_file():
        raise PieceError(f"{path}: no such file (run bench/gpu-check.sh fetch, and carry it in every call)")
    pieces, whole = [], None
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line.strip())
        if not m:
            raise PieceError(f"{path}: not a sha256sum line: {line!r}")
        if _PIECE.search(m[2]):
            pieces.append((m[1], m[2]))
        else:
            whole = (m[1], m[2])
    counts = {int(_PIECE.search(name)[2]) for _, name in pieces}
    if whole is None or not pieces or counts != {len(pieces)}:
        raise PieceError(f"{path}: expected k pieces named NAME.iofk and one line for the whole")
    return pieces, whole


def split(path: Path, folder: Path, max_bytes: int) -> list[Path]:
    """Cut ``path`` into the fewest pieces of at most ``max_bytes``, of near-equal size,
    in ``folder`` (older pieces of the same name there are removed), with SHA256SUMS."""
    path, folder = Path(path), Path(folder)
    if max_bytes < 1:
        raise PieceError(f"piece size must be positive, not {max_bytes}")
    size = path.stat().st_size
    k = max(1, -(-size // max_bytes))
    each = -(-size // k) if size else 0
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{path.name}.*of*"):
        old.unlink()
    made, lines = [], []
    with open(path, "rb") as src:
        for i in range(1, k + 1):
            piece = folder / f"{path.name}.{i}of{k}"
            h, left = hashlib.sha256(), each
            with open(piece, "wb") as dst:
                while left > 0 and (block := src.read(min(_CHUNK, left))):
                    dst.write(block)
                    h.update(block)
                    left -= len(block)
            made.append(piece)
            lines.append((h.hexdigest(), piece.name))
    _write_sums(folder, lines + [(sha256(path), path.name)])
    return made


def check(folder: Path) -> tuple[list[str], list[str]]:
    """``(missing, corrupt)`` piece names in ``folder``, by its SHA256SUMS."""
    pieces, _ = read_sums(folder)
    missing = [name for _, name in pieces if not (Path(folder) / name).is_file()]
    corrupt = [name for digest, name in pieces if name not in missing and sha256(Path(folder) / name) != digest]
    return missing, corrupt


def join(folder: Path, out: Path) -> Path:
    """Concatenate the pieces in ``folder`` into ``out`` after checking each, then check the whole."""
    folder, out = Path(folder), Path(out)
    pieces, (whole_sha, whole_name) = read_sums(folder)
    missing, corrupt = check(folder)
    if missing or corrupt:
        raise PieceError("; ".join(filter(None, [
            f"missing: {', '.join(missing)} (the machine was given back since, or the call did not carry "
            "it: run the calls for these pieces again)" if missing else "",
            f"corrupt: {', '.join(corrupt)}" if corrupt else ""])))
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as dst:
        for _, name in pieces:
            with open(folder / name, "rb") as src:
                shutil.copyfileobj(src, dst, _CHUNK)
    if sha256(tmp) != whole_sha:
        tmp.unlink()
        raise PieceError(f"the joined pieces do not match the sha256 of {whole_name}")
    os.replace(tmp, out)
    return out


def stash(src: Path, dst: Path) -> tuple[list[str], list[str]]:
    """Copy the pieces ``src`` holds (checked) into ``dst``; returns ``(held, missing)`` there.

    A ``dst`` stashed from another fetch (other SHA256SUMS) is emptied first."""
    src, dst = Path(src), Path(dst)
    pieces, _ = read_sums(src)
    dst.mkdir(parents=True, exist_ok=True)
    if not (dst / SUMS).is_file() or (dst / SUMS).read_bytes() != (src / SUMS).read_bytes():
        for old in dst.iterdir():
            old.unlink()
        shutil.copyfile(src / SUMS, dst / SUMS)
    for digest, name in pieces:
        if (src / name).is_file() and not (dst / name).is_file():
            if sha256(src / name) != digest:
                raise PieceError(f"{src / name}: corrupt (its sha256 is not the one in {SUMS})")
            shutil.copyfile(src / name, dst / (name + ".part"))
            os.replace(dst / (name + ".part"), dst / name)
    held = [name for _, name in pieces if (dst / name).is_file()]
    return held, [name for _, name in pieces if name not in held]


def store(src: Path, dst: Path) -> Path:
    """Copy the zip (a wheel) ``src`` to ``dst`` with every member stored uncompressed, so the
    payload's xz sees raw bytes; names, order, dates and permissions are kept, so it installs alike."""
    tmp = Path(str(dst) + ".part")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            new = zipfile.ZipInfo(info.filename, info.date_time)
            new.external_attr, new.create_system = info.external_attr, info.create_system
            new.compress_type = zipfile.ZIP_STORED
            with zin.open(info) as member, zout.open(new, "w", force_zip64=True) as copy:
                shutil.copyfileobj(member, copy, _CHUNK)
    os.replace(tmp, dst)
    return Path(dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("split")
    p.add_argument("file", type=Path)
    p.add_argument("folder", type=Path)
    p.add_argument("--max-mib", type=float, default=50.0)
    p = sub.add_parser("store")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p = sub.add_parser("stash")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p = sub.add_parser("join")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.verb == "split":
            made = split(a.file, a.folder, int(a.max_mib * 2**20))
            for piece in made:
                print(f"{piece}  {piece.stat().st_size / 2**20:.1f} MiB")
        elif a.verb == "store":
            print(f"{store(a.src, a.dst)}  {a.dst.stat().st_size / 2**20:.1f} MiB, stored")
        elif a.verb == "stash":
            held, missing = stash(a.src, a.dst)
            print(f"{a.dst} holds {len(held)} of {len(held) + len(missing)} pieces"
                  + (f"; still to come: {', '.join(missing)}" if missing else "; all there"))
        else:
            print(f"{join(a.folder, a.out)}: joined, sha256 matches")
    except (PieceError, OSError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
