"""Another language reproduces the Python API bit for bit: generator.onnx in Node.js (onnxruntime-node).

`make test` installs the pinned onnxruntime-node into the ignored folder
``.node`` (``npm install --ignore-scripts``); the client is
``tests/conformance/node/generate.mjs``, which reads nothing but the bundle's files.
Skipped, saying why, where node or that folder is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_infer import WaferGenerator

from conftest import REPO  # noqa: E402
CLIENT = Path(__file__).parent / "node" / "generate.mjs"
NODE_MODULES = Path(os.environ.get("EDGE_INFER_NODE_MODULES", REPO / ".node" / "node_modules"))


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed: the Node.js conformance test needs node and npm (make test installs onnxruntime-node)")
    if not (NODE_MODULES / "onnxruntime-node").is_dir():
        pytest.skip(f"onnxruntime-node is not installed in {NODE_MODULES}; `make test` installs it with npm")
    return exe


@pytest.fixture(scope="module")
def gen(bundle_dir) -> WaferGenerator:
    return WaferGenerator.load(bundle_dir, provider="cpu")


def _node_maps(node: str, bundle: Path, tmp: Path, sources, seed: int, row0: int = 0, strength=None, chunk: int = 0,
               name: str = "req") -> np.ndarray:
    request = {"sources": [int(s) for s in sources], "seed": str(seed), "row0": row0, "chunk": chunk}
    if strength is not None:
        request["strength"] = strength
    req, out = tmp / f"{name}.json", tmp / f"{name}.f32"
    req.write_text(json.dumps(request))
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    done = subprocess.run([node, str(CLIENT), str(bundle), str(req), str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return np.fromfile(out, dtype="<f4").reshape(len(sources), 26, 26, 3)


def test_every_class_equals_the_python_api_bit_for_bit(node, gen, bundle_dir, tmp_path):
    # Every class, n up to 1024 (capped at the class count, so sources are distinct), one
    # Node process per request; the Python side is the public API with the bundle's default strength.
    counts = gen.bundle.class_counts()
    for index, name in enumerate(gen.classes):
        n = min(1024, counts[name])
        seed = 1000 + 7919 * index
        want = gen.generate(name, n, seed=seed)
        assert len(set(want.sources.tolist())) == n
        got = _node_maps(node, bundle_dir, tmp_path, want.sources, seed, name=f"class{index}")
        assert np.array_equal(got, want.maps), f"{name}: Node differs from Python"


def test_a_chunked_request_equals_those_rows(node, gen, bundle_dir, tmp_path):
    want = gen.generate("None", 700, seed=2**63 - 1, strength=0.9)
    # the rows 300..699 alone, by their row0, in Node chunks of 128 rows
    got = _node_maps(node, bundle_dir, tmp_path, want.sources[300:], 2**63 - 1, row0=300, strength=0.9, chunk=128)
    assert np.array_equal(got, want.maps[300:])
    # and a different row0 gives different maps (the noise belongs to the row)
    other = _node_maps(node, bundle_dir, tmp_path, want.sources[300:310], 2**63 - 1, row0=301, strength=0.9, name="off")
    assert not np.array_equal(other, want.maps[300:310])
