"""Shared fixtures: where the real data is, and the torch-free runtime environment.

The course data is never copied into the repository: tests read it from
``../shared/data/wafer.zip`` (or ``$EDGE_INFER_DATA``) and skip, saying why,
where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "wafer.zip"
DEFAULT_BUNDLE = REPO / "models" / "wafer-cae"


def data_path() -> Path:
    return Path(os.environ.get("EDGE_INFER_DATA", DEFAULT_DATA))


@pytest.fixture(scope="session")
def wafer_zip() -> Path:
    """Path of the course wafer.zip; skips the test where it is absent."""
    path = data_path()
    if not path.exists():
        pytest.skip(f"course data not found at {path} (set EDGE_INFER_DATA to its path)")
    return path


@pytest.fixture(scope="session")
def wafer_data(wafer_zip):
    """The 1281 course maps and labels, validated (edge_infer.io.load_dataset)."""
    from edge_infer.io import load_dataset

    return load_dataset(wafer_zip, require_labels=True)


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    """The committed default bundle."""
    if not (DEFAULT_BUNDLE / "manifest.json").exists():
        pytest.skip(f"no bundle at {DEFAULT_BUNDLE}; run `make model`")
    return DEFAULT_BUNDLE


@pytest.fixture(scope="session")
def runtime_venv() -> Path:
    """A virtual environment with the runtime installed and no torch (made by `make test`)."""
    venv = os.environ.get("EDGE_INFER_RUNTIME_VENV")
    if not venv:
        pytest.skip("EDGE_INFER_RUNTIME_VENV not set; `make test` sets it to the torch-free .venv")
    path = Path(venv)
    if not (path / "bin" / "edge-infer").exists():
        pytest.fail(f"{path} has no edge-infer command; run `make test`, which builds it")
    return path


@pytest.fixture()
def run(capsys, bundle_dir):
    """Run ``edge-infer ARGS`` in-process; return (exit code, stdout, stderr).

    Verbs that load a model get ``--model`` of the committed bundle unless
    ``model=False``. Every run asserts that no traceback reached stderr.
    """
    from edge_infer.cli import main

    def _run(*args: str, model: bool = True) -> tuple[int, str, str]:
        argv = list(args)
        if model and argv and argv[0] in ("generate", "augment", "reconstruct", "info"):
            argv += ["--model", str(bundle_dir)]
        with pytest.raises(SystemExit) as exc:
            main(argv)
        out = capsys.readouterr()
        assert "Traceback" not in out.err
        return exc.value.code, out.out, out.err

    return _run


def one_error_line(err: str) -> str:
    """The single ``error:`` line of a failed command's stderr (asserts there is exactly one)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]
