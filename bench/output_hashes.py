"""sha256 of the maps for a fixed set of seeded settings, as JSON: run it before and after a change
to the runtime, and compare (`diff`). Every setting goes through the public API only.

    python -m bench.output_hashes [--data ../shared/data/wafer.zip] > hashes.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile

import numpy as np

from edge_infer import CLASS_NAMES, WaferGenerator


def digest(arr: object) -> str:
    a = np.ascontiguousarray(np.asarray(arr))
    return hashlib.sha256(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/wafer.zip")
    args = ap.parse_args()
    gen = WaferGenerator.load(provider="cpu")
    with zipfile.ZipFile(args.data) as zf, zf.open("data.npy") as f:
        data = np.load(f)[::4].astype(np.float32)
    with zipfile.ZipFile(args.data) as zf, zf.open("label.npy") as f:
        labels = np.load(f)[::4]
    out: dict[str, str] = {}

    def put(name: str, result: object) -> None:
        out[name] = digest(getattr(result, "maps", result))
        if hasattr(result, "sources"):
            out[name + ".sources"] = digest(result.sources)
            out[name + ".labels"] = digest(result.labels)

    for i, name in enumerate(CLASS_NAMES):
        put(f"generate.{name}.n7.seed{i}", gen.generate(name, 7, seed=i))
        put(f"generate.{name}.n40.seed99", gen.generate(i, 40, seed=99))
    put("generate.Scratch.mix", gen.generate("Scratch", 30, seed=3, method="mix"))
    put("generate.Donut.mix", gen.generate("Donut", 4, seed=3, method="mix"))
    put("generate.Loc.nolock", gen.generate("Loc", 20, seed=4, outline_lock=False))
    put("generate.Loc.raw", gen.generate("Loc", 6, seed=5, raw=True))
    put("generate.Center.course", gen.generate("Center", 12, seed=6, mode="course"))
    put("generate.Center.strength1", gen.generate("Center", 12, seed=6, strength=1.0))
    put("generate.source17", gen.generate(None, 9, seed=7, source_index=17))
    put("generate.NearFull.5000", gen.generate("Near-full", 5000, seed=8))
    put("generate.given.Loc", gen.generate("Loc", 25, seed=9, maps=data, labels=labels))
    put("generate.given.nolabels", gen.generate("Loc", 8, seed=9, maps=data[:5]))
    put("augment.bank.k2", gen.augment(2, seed=10))
    put("augment.given.k3", gen.augment(3, seed=11, maps=data, labels=labels))
    put("augment.given.mix", gen.augment(2, seed=12, maps=data[:100], labels=labels[:100], method="mix"))
    put("augment.given.course", gen.augment(5, seed=13, maps=data[:50], labels=labels[:50], mode="course"))
    put("encode", gen.encode(data))
    put("decode", gen.decode(gen.encode(data[:40])))
    put("decode.raw", gen.decode(gen.encode(data[:40]), raw=True))
    put("reconstruct", gen.reconstruct(data))
    put("reconstruct.raw", gen.reconstruct(data[:40], raw=True))
    put("reconstruct.lock", gen.reconstruct(data[:40], outline_lock=True))
    put("bank_maps", gen.bank_maps(np.arange(0, 1281, 7)))
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
