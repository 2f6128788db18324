"""Model bundles: find, verify and load one (``docs/bundle-format.md``); each failed check names the file at fault."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import BundleError, DataFileError
from .files import atomic_folder, check_folder_target
from .npy import open_npy_member
from .sampling import DEFAULT_NOISE_STRENGTH, Settings, settings
from .wafer import MAP_SIZE

FORMAT = "edge-infer-bundle"
FORMAT_VERSION = 3  # the one this code reads; older and newer ones are refused, saying why
_FORMAT_CHANGES = {1: "its class names 5, 6, 7 are wrong, and it has no generator graphs",
                   2: "it has no generator graphs"}
MANIFEST = "manifest.json"
ENV_VAR = "EDGE_INFER_MODEL"
BUNDLE_NAME = "wafer-cae"
LATENT_SHAPE = (64, 3, 3)
#: The shipped manifest is about 50 KB; a larger one is not a manifest this code wrote.
MAX_MANIFEST_BYTES = 4 << 20

_REQUIRED_KEYS = ("classes", "graphs", "latent_bank", "latent_stats", "files", "manifest_sha256")


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, read-only so threads may share one; row ``i`` of the bank arrays is training map ``i``."""

    path: Path
    manifest: Mapping[str, Any]
    classes: tuple[str, ...]
    encoder_path: Path
    decoder_path: Path
    encoder_io: tuple[str, str]
    decoder_io: tuple[str, str]
    generator_path: Path  # bank rows + seed + row0 + strength -> maps
    core_path: Path  # latents + sigma + outlines + seed + rows + attempts -> maps, probs
    latents: np.ndarray  # float32 (N, 64, 3, 3)
    labels: np.ndarray  # int64 (N,)
    outline_ids: np.ndarray  # int64 (N,)
    outlines: np.ndarray  # bool (K, 26, 26), True = off-wafer
    latent_std: np.ndarray  # float32 (64,), per latent channel over the bank
    noise_defaults: Settings  # the manifest's, checked like a request's options (raw is False)

    @property
    def count(self) -> int:
        """Number of maps in the latent bank."""
        return int(self.labels.shape[0])

    def class_counts(self) -> dict[str, int]:
        """Bank maps per class, in class order."""
        return dict(zip(self.classes, np.bincount(self.labels, minlength=len(self.classes)).tolist()))


def default_bundle_path() -> Path:
    """``$EDGE_INFER_MODEL``, else the bundle inside the installed package, else the repository's ``models/``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    here = Path(__file__).resolve().parent
    packaged = here / "_bundle" / BUNDLE_NAME
    return packaged if (packaged / MANIFEST).exists() else here.parent / "models" / BUNDLE_NAME


def sha256_file(path: Union[str, Path]) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without ``manifest_sha256``."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any]:
    mpath = folder / MANIFEST
    if not folder.is_dir():
        why = "not a folder" if folder.exists() else "no such folder"
        raise BundleError(f"no model bundle at {folder} ({why}); set --model or ${ENV_VAR}")
    try:
        with open(_inside(folder, MANIFEST), "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleError(f"{mpath}: larger than {MAX_MANIFEST_BYTES >> 20} MiB, "
                              "so not a manifest edge-infer wrote")
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # undecodable text or JSON
        raise BundleError(f"{mpath}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BundleError(f"{mpath}: not a manifest (its JSON is nested too deep)") from None
    except OSError as exc:
        raise BundleError(f"{mpath}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: expected a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: not an {FORMAT} manifest (format={manifest.get('format')!r})")
    version = manifest.get("format_version")
    if type(version) is not int:
        raise BundleError(f"{mpath}: format_version must be an integer, not {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(f"{mpath}: bundle format version {version} is newer than this edge-infer reads; upgrade it")
    if version < FORMAT_VERSION:
        # An old bundle is refused rather than patched: a class asked for by
        # name must never silently mean what an old manifest said it meant.
        why = _FORMAT_CHANGES.get(version, "this edge-infer no longer reads it")
        raise BundleError(f"{mpath}: bundle format version {version} is too old ({why}); re-export it with this "
                          f"edge-infer: python -m export RUN --out {folder}")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{mpath}: missing key(s) {', '.join(missing)}")
    if not isinstance(manifest["files"], dict):
        raise BundleError(f"{mpath}: 'files' must map file names to sha256")
    if manifest["manifest_sha256"] != manifest_hash(manifest):
        raise BundleError(f"{mpath}: modified (its sha256 does not match manifest_sha256)")
    return manifest


def _inside(folder: Path, name: str) -> Path:
    """``folder/name`` if, links resolved, it is a regular file inside ``folder``: a bundle is one folder."""
    p = folder / name
    try:
        real = p.resolve(strict=True)
        if not real.is_relative_to(folder.resolve()):  # a link, "..", or an absolute name
            raise BundleError(f"{p}: outside the bundle folder (it is {real}); a bundle's files live in its folder")
        if not real.is_file():
            raise BundleError(f"{p}: not a regular file")
    except FileNotFoundError:
        raise BundleError(f"{p}: missing from the bundle") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop
        raise BundleError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return p


def _listed(folder: Path, manifest: Mapping[str, Any], key: str) -> tuple[Path, Mapping[str, Any]]:
    """The file of manifest entry ``key`` (e.g. ``graphs.decoder``), listed under files (so verified), and the entry."""
    entry: Any = manifest
    try:
        for part in key.split("."):
            entry = entry[part]
        fname = str(entry["file"])
    except (KeyError, TypeError):
        raise BundleError(f"{folder / MANIFEST}: {key} needs a file") from None
    if fname not in manifest["files"]:
        raise BundleError(f"{folder / MANIFEST}: {fname} is not listed under files, so it cannot be verified")
    return _inside(folder, fname), entry


def _load_bank(path: Path, n_classes: int, expected_count: Optional[int]) -> dict[str, np.ndarray]:
    # edge_infer.npy checks each header against the real size first: a broken bank is never a huge allocation.
    try:
        with zipfile.ZipFile(path) as zf:
            members = {m.filename: m for m in zf.infolist()}
        bank = {key: open_npy_member(path, members[f"{key}.npy"]).read()
                for key in ("latents", "labels", "outline_ids", "outlines")}
    except KeyError as exc:
        raise BundleError(f"{path}: missing array {exc}") from None
    except (DataFileError, OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: not a readable latent bank ({exc})") from None
    lat, lab, oid, outl = bank["latents"], bank["labels"], bank["outline_ids"], bank["outlines"]
    n = lab.shape[0] if lab.ndim == 1 else -1
    problems = []
    if lat.ndim != 4 or tuple(lat.shape[1:]) != LATENT_SHAPE or lat.shape[0] != n:
        problems.append(f"latents shape {lat.shape} (expected (N, 64, 3, 3))")
    if lab.ndim != 1 or lab.dtype.kind not in "iu":
        problems.append(f"labels shape {lab.shape} dtype {lab.dtype}")
    elif lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        problems.append(f"labels outside 0..{n_classes - 1}")
    if outl.ndim != 3 or tuple(outl.shape[1:]) != (MAP_SIZE, MAP_SIZE) or outl.dtype != np.bool_:
        problems.append(f"outlines shape {outl.shape} dtype {outl.dtype}")
    if (oid.shape != lab.shape or oid.dtype.kind not in "iu"
            or (oid.size and (oid.min() < 0 or oid.max() >= outl.shape[0]))):
        problems.append("outline_ids do not index outlines")
    if lat.dtype.kind == "f" and not np.isfinite(lat).all():
        problems.append("latents hold NaN or infinite values")
    if expected_count is not None and n != expected_count:
        problems.append(f"{n} entries but the manifest says {expected_count}")
    if problems:
        raise BundleError(f"{path}: malformed latent bank: {'; '.join(problems)}")
    out = {"latents": np.ascontiguousarray(lat, dtype=np.float32), "labels": lab.astype(np.int64),
           "outline_ids": oid.astype(np.int64), "outlines": outl}
    for arr in out.values():
        arr.flags.writeable = False
    return out


def load_bundle(path: Optional[Union[str, Path]] = None, *, verify: bool = True) -> Bundle:
    """Find, verify and load a bundle (``path`` None: the default one); ``verify=False`` skips the per-file sha256s."""
    folder = Path(path).expanduser() if path is not None else default_bundle_path()
    manifest = _read_manifest(folder)
    mpath = folder / MANIFEST
    for name, expected in manifest["files"].items() if verify else ():
        if sha256_file(_inside(folder, str(name))) != expected:
            raise BundleError(f"{folder / name}: sha256 differs from the manifest (the file was modified or truncated)")
    classes = manifest["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise BundleError(f"{mpath}: classes must be a non-empty list of names")
    (enc_path, enc), (dec_path, dec), (gen_path, _), (core_path, _) = (
        _listed(folder, manifest, f"graphs.{role}") for role in ("encoder", "decoder", "generator", "generator_core"))
    enc_io, dec_io = ((str(graph.get("input", "")), str(graph.get("output", ""))) for graph in (enc, dec))
    bank_path, bank_entry = _listed(folder, manifest, "latent_bank")
    bank = _load_bank(bank_path, len(classes), bank_entry.get("count"))
    try:
        std = np.asarray(manifest["latent_stats"]["overall"]["std"], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        std = np.empty(0, dtype=np.float32)
    if std.shape != (LATENT_SHAPE[0],) or not np.isfinite(std).all() or (std < 0).any():
        raise BundleError(f"{mpath}: latent_stats.overall.std must be 64 finite numbers ≥ 0")
    std.flags.writeable = False
    nd = manifest.get("noise_defaults") or {}
    try:  # the checks every request's options get, with edge-infer's defaults where the manifest has none
        noise_defaults = settings(Settings("noise", "relative", DEFAULT_NOISE_STRENGTH, True, False),
                                  nd.get("strength"), nd.get("method"), nd.get("mode"), nd.get("outline_lock"))
    except (ValueError, AttributeError):  # InputError is a ValueError; AttributeError: not a JSON object
        raise BundleError(f"{mpath}: malformed noise_defaults {nd!r}") from None
    return Bundle(path=folder, manifest=manifest, classes=tuple(classes), encoder_path=enc_path, decoder_path=dec_path,
                  encoder_io=enc_io, decoder_io=dec_io, generator_path=gen_path, core_path=core_path,
                  **bank, latent_std=std, noise_defaults=noise_defaults)


def export_bundle(bundle: Bundle, dest: Union[str, Path], *, force: bool = False) -> Path:
    """Copy the verified ``bundle`` to ``dest``, which appears only when complete (replacing a bundle: ``force``)."""
    dest = Path(dest)
    replace = check_folder_target(dest, force=force, marker=MANIFEST, what="a bundle")
    with atomic_folder(dest, force=replace) as tmp:
        for name in [MANIFEST, *bundle.manifest["files"]]:
            shutil.copyfile(_inside(bundle.path, name), tmp / name)
    return dest
