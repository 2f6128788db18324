"""The runtime works in an environment without torch (``make test`` builds that ``.venv``).

Runs the installed ``edge-infer`` commands there, and the Python API, and
checks that nothing imports torch along the way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_INFER_MODEL")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_torch_is_not_installed_there(runtime_venv, tmp_path):
    r = _run(runtime_venv, str(runtime_venv / "bin" / "python"), "-c", "import torch", cwd=tmp_path)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr


def test_api_never_imports_torch(runtime_venv, tmp_path):
    code = (
        "import sys, numpy as np\n"
        "import edge_infer\n"
        "from edge_infer import WaferGenerator\n"
        "g = WaferGenerator.load()\n"
        "r = g.generate('Donut', 3, seed=0, method='mix')\n"
        "a = g.augment(1, seed=0)\n"
        "z = g.encode(r.maps); g.decode(z); g.reconstruct(r.maps)\n"
        "assert r.maps.shape == (3, 26, 26, 3) and a.maps.shape == (1281, 26, 26, 3)\n"
        "print('torch' in sys.modules, edge_infer.__file__)\n"
    )
    r = _run(runtime_venv, str(runtime_venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    imported, where = r.stdout.split()
    assert imported == "False"
    assert str(runtime_venv) in where  # the installed package, not the source tree


def test_cli_commands_run_there(runtime_venv, tmp_path, wafer_zip):
    exe = str(runtime_venv / "bin" / "edge-infer")
    r = _run(runtime_venv, exe, "generate", "--class", "None", "-n", "5", "--out", "gen", "--seed", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "gen" / "gen_data.npy").shape == (5, 26, 26, 3)
    assert (tmp_path / "gen" / "generated.png").stat().st_size > 0
    r = _run(runtime_venv, exe, "augment", "--out", "aug", "--seed", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # The default recipe (symmetries): the 7 other rotations/flips of each of the 1281 bank maps.
    assert np.load(tmp_path / "aug" / "gen_data.npy", mmap_mode="r").shape == (8967, 26, 26, 3)
    assert np.load(tmp_path / "aug" / "gen_label.npy").shape == (8967, 1)
    r = _run(runtime_venv, exe, "reconstruct", "--data", str(wafer_zip), cwd=tmp_path)
    assert r.returncode == 0 and "die-state accuracy" in r.stdout, r.stderr
    r = _run(runtime_venv, exe, "info", cwd=tmp_path)
    assert r.returncode == 0 and "None: 404" in r.stdout, r.stderr
    r = _run(runtime_venv, exe, "generate", "--class", "Nothing", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown class") and "Traceback" not in r.stderr
