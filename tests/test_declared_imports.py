"""Every third-party import is declared by the extra that its package needs.

``edge_infer`` may use only the base dependencies and its runtime (the ``cpu``
or the ``gpu`` extra: onnxruntime, imported only when a graph is opened);
``training`` and ``export`` those plus the ``train`` extra; tests and
``bench/`` the ``dev`` extra too.
An import nobody declares works on the machine where it was written and fails
on a fresh one (edge-infer 0.1's ``python -m training`` needed tqdm).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO

LOCAL = {"edge_infer", "training", "export", "bench", "conftest"}
SCOPES = {"edge_infer": ("base", "runtime"), "training": ("base", "runtime", "train"),
          "export": ("base", "runtime", "train"), "bench": ("base", "runtime", "train", "dev"),
          "tests": ("base", "runtime", "train", "dev")}


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    scopes = {"base": {_dist_name(r) for r in project["dependencies"]}}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        scopes[extra] = {_dist_name(r) for r in reqs}
    scopes["runtime"] = scopes["cpu"] | scopes["gpu"]  # a user installs exactly one of the two
    return scopes


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - LOCAL - set(sys.stdlib_module_names)


@functools.lru_cache(maxsize=None)
def _installed() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _providers(module: str) -> set[str]:
    """Distributions that provide an import name (onnxruntime: onnxruntime or onnxruntime-gpu)."""
    dists = {d.lower().replace("_", "-") for d in _installed().get(module, [])}
    if module == "onnxruntime":  # the two builds (the cpu and gpu extras) install one import name
        dists |= {"onnxruntime", "onnxruntime-gpu"}
    return dists


@pytest.mark.parametrize("package", sorted(SCOPES))
def test_every_import_is_declared(package):
    declared = _declared()
    allowed = set().union(*(declared[s] for s in SCOPES[package]))
    undeclared = {}
    for path in sorted((REPO / package).rglob("*.py")):
        for module in _imports(path):
            if (path.parent / f"{module}.py").exists():  # a sibling module (tests import their helpers)
                continue
            providers = _providers(module)
            if not providers & allowed:
                undeclared.setdefault(module, []).append(str(path.relative_to(REPO)))
    assert not undeclared, (
        f"{package}: imports not declared in pyproject.toml for {'+'.join(SCOPES[package])}: {undeclared}")


def test_the_check_catches_an_undeclared_import(tmp_path):
    """The scan sees imports inside functions too, where lazy imports live."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from tqdm import tqdm\n    import numpy.linalg\n    import json\n")
    assert _imports(f) == {"tqdm", "numpy"}
    assert "tqdm" not in _declared()["base"]
