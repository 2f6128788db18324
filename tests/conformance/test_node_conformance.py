"""The documented Node.js client reproduces the Python API bit for bit.

The client is ``docs/examples/generate.mjs``, shown in full in
``docs/other-languages.md``. It is copied to a temporary folder outside the
repository (with a ``node_modules`` link to the pinned onnxruntime-node that
``make test`` installs into the ignored folder ``.node``) and run against an
exported copy of the default bundle, as a tool author would run it.
Skipped, saying why, where node or that folder is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_infer import WaferGenerator

from conftest import REPO  # noqa: E402

CLIENT = REPO / "docs" / "examples" / "generate.mjs"
DOC = REPO / "docs" / "other-languages.md"
NODE_MODULES = Path(os.environ.get("EDGE_INFER_NODE_MODULES", REPO / ".node" / "node_modules"))


def export_bundle(dest: Path) -> Path:
    """The default bundle exported as a tool author does it: `edge-infer bundle export DIR` (the installed
    command where `make test` built one, else the checkout's)."""
    venv = os.environ.get("EDGE_INFER_RUNTIME_VENV")
    command = [str(Path(venv) / "bin" / "edge-infer")] if venv else [sys.executable, "-m", "edge_infer.cli"]
    done = subprocess.run([*command, "bundle", "export", str(dest)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dest


def test_the_documented_client_is_the_tested_file():
    blocks = re.findall(r"^```js\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
    full = [b for b in blocks if b.startswith("// Generate n wafer maps")]
    assert len(full) == 1, "docs/other-languages.md shows the Node.js client once, in full"
    assert full[0] == CLIENT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed: the Node.js conformance test needs node and npm (make test installs onnxruntime-node)")
    if not (NODE_MODULES / "onnxruntime-node").is_dir():
        pytest.skip(f"onnxruntime-node is not installed in {NODE_MODULES}; `make test` installs it with npm")
    return exe


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return export_bundle(tmp_path_factory.mktemp("export") / "wafer-cae")


@pytest.fixture(scope="module")
def gen(bundle) -> WaferGenerator:
    return WaferGenerator.load(bundle, provider="cpu")


@pytest.fixture(scope="module")
def client(node, tmp_path_factory):
    """A folder outside the repository holding the client and a link to onnxruntime-node; runs it."""
    folder = tmp_path_factory.mktemp("tool")
    assert REPO not in folder.resolve().parents
    shutil.copyfile(CLIENT, folder / "generate.mjs")
    (folder / "node_modules").symlink_to(NODE_MODULES.resolve(), target_is_directory=True)

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([node, "generate.mjs", *map(str, args)], cwd=folder, capture_output=True,
                              text=True, timeout=600)

    return run


def _node_generate(client, bundle: Path, out: Path, cls: str, n: int, seed: int):
    done = client(bundle, cls, n, seed, out)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no module-type or other warning
    maps, labels = np.load(out / "gen_data.npy"), np.load(out / "gen_label.npy")
    assert f"wrote {n} maps of class {cls}" in done.stdout and str(out / "gen_data.npy") in done.stdout
    return maps, labels, done.stdout


def test_every_class_equals_the_python_api_bit_for_bit(client, gen, bundle, tmp_path):
    # Every class, n up to 1024; a class with fewer maps is asked for 3 more than it has,
    # so its sources repeat (and any clashing sibling is redrawn) as in Python.
    counts = gen.bundle.class_counts()
    for index, name in enumerate(gen.classes):
        if counts[name] == 0:
            continue
        n, seed = min(1024, counts[name] + 3), 1000 + 7919 * index
        want = gen.generate(name, n, seed=seed)
        maps, labels, _ = _node_generate(client, bundle, tmp_path / f"class{index}", name, n, seed)
        assert maps.dtype == np.float32 and maps.shape == (n, 26, 26, 3)
        assert np.array_equal(maps, want.maps), f"{name}: Node differs from Python"
        assert labels.dtype == np.int64 and np.array_equal(labels, want.labels)


def test_a_chunked_request_with_redraws_equals_the_python_api(client, gen, bundle, tmp_path):
    # More rows than one block (4096) and than the class has: sources cycle, and rows
    # whose first draw equals an earlier sibling's map are redrawn by generator_core.onnx.
    name, n, seed = "Near-full", 4100, 2**63 - 1
    want = gen.generate(name, n, seed=seed)
    maps, labels, said = _node_generate(client, bundle, tmp_path / "chunked", name, n, seed)
    assert np.array_equal(maps, want.maps) and np.array_equal(labels, want.labels)
    # the rows Python redrew: its maps differ from generator.onnx's first draws there
    session = ort.InferenceSession(str(bundle / "generator.onnx"), providers=["CPUExecutionProvider"])
    first = np.concatenate([session.run(["maps"], {
        "source": want.sources[lo:lo + 4096], "seed": np.array([seed], np.int64), "row0": np.array([lo], np.int64),
        "strength": np.array([gen.bundle.noise_defaults.strength], np.float32)})[0] for lo in range(0, n, 4096)])
    redrawn = int((first != want.maps).any(axis=(1, 2, 3)).sum())
    assert redrawn > 0
    assert f"{redrawn} sibling redraws" in said


@pytest.mark.parametrize("args, message", [
    (("Scratchy", 5, 1), "unknown class Scratchy"),
    (("Scratch", 0, 1), "N must be a whole number"),
    (("Scratch", 5, 2**63), "SEED must be a whole number from 0 to 2**63-1"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(client, bundle, tmp_path, args, message):
    out = tmp_path / "out"
    done = client(bundle, *args, out)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and message in done.stderr
    assert not out.exists()


def test_a_changed_graph_is_refused(client, bundle, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(bundle, changed)
    data = bytearray((changed / "generator.onnx").read_bytes())
    data[-1] ^= 1
    (changed / "generator.onnx").write_bytes(bytes(data))
    done = client(changed, "Scratch", 5, 1, tmp_path / "out")
    assert done.returncode != 0 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "differs from the manifest's sha256" in done.stderr and not (tmp_path / "out").exists()


def test_existing_outputs_are_refused(client, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gen_data.npy").write_bytes(b"mine")
    done = client(bundle, "Scratch", 5, 1, out)
    assert done.returncode != 0 and done.stderr.startswith("error: ") and "already exists" in done.stderr
    assert (out / "gen_data.npy").read_bytes() == b"mine" and not (out / "gen_label.npy").exists()
