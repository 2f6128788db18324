"""Kills, hostile bundles and odd paths on the installed command (issue 21).

Each case is what a failing machine or a hostile user does to ``edge-infer``:
a signal mid-write (SIGTERM, SIGHUP, SIGKILL), a bundle whose graphs compute
NaN, a manifest nested 100,000 deep or 140 MB large, an output path the OS
refuses, a bundle file that is a link out of its folder. The promise: one
``error:`` line (or one signal line), a non-zero exit, no traceback, nothing
the run created left behind, nothing that was there lost.

The command is the torch-free ``.venv``'s ``edge-infer`` when
``$EDGE_INFER_RUNTIME_VENV`` is set (``make test``), else
``python -m edge_infer.cli`` from this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, one_error_line

PART = ".edge-infer-part"
SIGNAL_LINES = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hangup (SIGHUP)"}
PROGRESS = re.compile(r"^(generate|convert): [\d,]+/[\d,]+ maps")


# ---------------------------------------------------------------- running the command


def command() -> list[str]:
    venv = os.environ.get("EDGE_INFER_RUNTIME_VENV")
    if venv and (Path(venv) / "bin" / "edge-infer").exists():
        return [str(Path(venv) / "bin" / "edge-infer")]
    return [sys.executable, "-m", "edge_infer.cli"]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_INFER_MODEL", "PYTHONPATH")}
    if not os.environ.get("EDGE_INFER_RUNTIME_VENV"):
        env["PYTHONPATH"] = str(REPO)  # python -m edge_infer.cli from a folder outside the checkout
    return env


def edge_infer(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``edge-infer ARGS`` in ``cwd``; asserts no traceback reached stderr."""
    r = subprocess.run([*command(), *args], cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    return r


# Runs the command as its only child, so RUSAGE_CHILDREN is that command's peak alone.
_MEASURE = """\
import json, resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr, "seconds": time.monotonic() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measured(*args: str, cwd: Path) -> dict:
    """``edge-infer ARGS`` with its wall time and peak resident memory (MB)."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, *command(), *args], cwd=cwd, env=environment(),
                       capture_output=True, text=True, timeout=180, check=True)
    result = json.loads(r.stdout)
    assert "Traceback" not in result["err"], result["err"][-1500:]
    print(f"edge-infer {args[0]}: exit {result['rc']}, {result['seconds']:.2f} s, peak {result['peak_mb']:.0f} MB")
    return result


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{PART}")) if folder.exists() else []


def signal_mid_write(args: list[str], cwd: Path, folder: Path, signum: int) -> tuple[int, str, str]:
    """Start ``edge-infer ARGS``, wait for its first progress line (its outputs are being written
    into ``folder``), send ``signum``; return (exit code, stdout, stderr)."""
    proc = subprocess.Popen([*command(), *args], cwd=cwd, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    writing = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if PROGRESS.match(line):
                writing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert writing.wait(90), f"no progress line within 90 s: {''.join(lines)}"
        assert parts(folder), f"nothing being written in {folder} at the first progress line"
        proc.send_signal(signum)
        out = proc.stdout.read()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return proc.returncode, out, "".join(lines)


def chatter_removed(err: str) -> list[str]:
    """stderr without the provider and progress lines, which a run prints before it is stopped."""
    return [ln for ln in err.splitlines() if ln.strip() and not PROGRESS.match(ln) and not ln.startswith("provider:")]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- signals


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    r = edge_infer("generate", "--class", "None", "-n", "5", "--seed", "1", "--out", "earlier", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "earlier"


@pytest.fixture()
def earlier_output(tmp_path, finished_run) -> dict[str, bytes]:
    """A finished run's outputs in tmp/earlier, which no later run may touch."""
    shutil.copytree(finished_run, tmp_path / "earlier")
    return tree(tmp_path / "earlier")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_generate_is_one_line_and_leaves_nothing(tmp_path, earlier_output, signum):
    """A stopped run (kill, closed terminal) exits 128+signal with one line, removes its partial
    files and the --out folders it created, and leaves an earlier run's outputs as they were."""
    code, out, err = signal_mid_write(["generate", "--class", "Loc", "-n", "400000", "--out", "big/run"], tmp_path,
                                      tmp_path / "big" / "run", signum)
    assert code == 128 + signum, err
    assert chatter_removed(err) == [SIGNAL_LINES[signum]], err
    assert out == ""
    assert "Traceback" not in err
    assert not (tmp_path / "big").exists(), parts(tmp_path)  # both folders were the run's own
    assert parts(tmp_path) == []
    assert tree(tmp_path / "earlier") == earlier_output


@pytest.mark.slow
def test_a_signal_during_a_forced_rewrite_keeps_the_old_outputs(tmp_path, earlier_output):
    """--force replaces outputs only once the new ones are complete: a hangup mid-write keeps the old."""
    code, _, err = signal_mid_write(["generate", "--class", "Loc", "-n", "400000", "--out", "earlier", "--force"],
                                    tmp_path, tmp_path / "earlier", signal.SIGHUP)
    assert code == 129, err
    assert chatter_removed(err) == ["hangup (SIGHUP)"], err
    assert parts(tmp_path) == []
    assert tree(tmp_path / "earlier") == earlier_output


@pytest.fixture()
def big_npy(tmp_path, wafer_data):
    """~200k maps (the course data tiled) as die states uint8: 136 MB, 400 MB as G85."""
    path = tmp_path / "big.npy"
    states = wafer_data.maps.argmax(axis=-1).astype(np.uint8)
    np.save(path, np.tile(states, (157, 1, 1)))
    yield path
    path.unlink()  # pytest keeps the last runs' temporary folders: not 136 MB each


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_signal_mid_convert_to_g85_is_one_line_and_leaves_nothing(tmp_path, big_npy, earlier_output):
    code, out, err = signal_mid_write(["convert", "--data", big_npy.name, "--to", "g85", "--out", "g85/run"],
                                      tmp_path, tmp_path / "g85" / "run", signal.SIGTERM)
    assert code == 143, err
    assert chatter_removed(err) == ["terminated (SIGTERM)"], err
    assert out == ""
    assert not (tmp_path / "g85").exists(), parts(tmp_path)
    assert parts(tmp_path) == []
    assert tree(tmp_path / "earlier") == earlier_output
    assert big_npy.stat().st_size > 100e6  # the input is untouched too


@pytest.mark.slow
def test_after_a_sigkill_the_next_run_into_that_folder_removes_the_parts_and_says_so(tmp_path):
    """SIGKILL cannot be handled: its partial files stay until the next run into the folder,
    which removes them with one note line and writes its own outputs."""
    folder = tmp_path / "k"
    proc_args = ["generate", "--class", "Loc", "-n", "400000", "--out", "k"]
    code, _, err = signal_mid_write(proc_args, tmp_path, folder, signal.SIGKILL)  # waited for: reaped
    assert code == -signal.SIGKILL, err
    left = parts(folder)
    assert left and all(name.startswith(".") for name in left), left  # hidden, named as the project's own

    r = edge_infer("generate", "--class", "None", "-n", "5", "--seed", "0", "--out", "k", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and f"removed {len(left)} partial file" in notes[0], r.stderr
    assert parts(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == ["gen_data.npy", "gen_label.npy", "generated.png"]
    assert np.load(folder / "gen_data.npy").shape == (5, 26, 26, 3)


# ---------------------------------------------------------------- hostile bundles


def rehash(folder: Path) -> None:
    """Recompute a bundle's file hashes and manifest hash after its files were changed."""
    from edge_infer.bundle import manifest_hash, sha256_file

    mpath = folder / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    manifest["manifest_sha256"] = manifest_hash(manifest)
    mpath.write_text(json.dumps(manifest, indent=2))


@pytest.fixture()
def bundle_copy(tmp_path, bundle_dir) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dest)
    return dest


@pytest.fixture()
def nan_bundle(bundle_copy) -> Path:
    """The bundle with every float initializer of both generator graphs set to NaN, hashes recomputed:
    a bundle that verifies and whose generation computes garbage."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    for name in ("generator.onnx", "generator_core.onnx"):
        model = onnx.load(bundle_copy / name)
        changed = 0
        for init in model.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT:
                arr = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(np.full_like(arr, np.nan), init.name))
                changed += 1
        assert changed, name
        onnx.save(model, bundle_copy / name)
    rehash(bundle_copy)
    return bundle_copy


@pytest.mark.slow
@pytest.mark.parametrize("extra, graph", [([], "generator.onnx"), (["--method", "mix"], "generator_core.onnx")],
                         ids=["generator", "core"])
def test_a_bundle_whose_graphs_compute_nan_cannot_exit_0(tmp_path, nan_bundle, extra, graph):
    """The NaN bundle passes every hash check; its maps are refused before they are written."""
    from edge_infer.bundle import load_bundle

    load_bundle(nan_bundle)  # it does verify: what stops it is the check of what its graphs compute
    r = edge_infer("generate", "--class", "Loc", "-n", "5", "--model", str(nan_bundle), *extra, cwd=tmp_path)
    assert r.returncode != 0
    line = one_error_line(r.stderr)
    assert f"{graph}:" in line and "NaN" in line, line
    assert not (tmp_path / "out").exists()  # the run's out/generate-1 (and out/) removed again
    r = edge_infer("generate", "--class", "Loc", "-n", "5", "--model", str(nan_bundle), "--out", "o", *extra,
                   cwd=tmp_path)
    assert r.returncode != 0 and f"{graph}:" in one_error_line(r.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
@pytest.mark.parametrize("verb", ["generate", "info"])
def test_a_deeply_nested_manifest_is_one_error_in_bounded_time_and_memory(tmp_path, bundle_copy, depth, verb):
    (bundle_copy / "manifest.json").write_text("[" * depth + "]" * depth)
    args = [verb, "--model", str(bundle_copy)] + (["--class", "Loc", "-n", "5", "--out", "o"] if verb == "generate" else [])
    r = measured(*args, cwd=tmp_path)
    assert r["rc"] == 1
    line = one_error_line(r["err"])
    assert "manifest.json" in line and "nested too deep" in line, line
    assert r["peak_mb"] < 1024
    assert not (tmp_path / "o").exists()


def test_a_140_mb_manifest_is_refused_before_it_is_parsed(tmp_path, bundle_copy):
    """A manifest is read up to a ceiling (the error names it), never parsed whole: a JSON list of
    35 million numbers would take several GB as Python objects."""
    mpath = bundle_copy / "manifest.json"
    manifest = json.loads(mpath.read_text())
    head = json.dumps(manifest)[:-1].encode() + b', "padding": ['
    chunk = b"0.5," * (1 << 18)
    with open(mpath, "wb") as fh:
        fh.write(head)
        while fh.tell() < 140_000_000:
            fh.write(chunk)
        fh.write(b"0.5]}")
    assert mpath.stat().st_size > 140_000_000
    try:
        for args in (["info", "--model", str(bundle_copy)],
                     ["generate", "--class", "Loc", "-n", "5", "--model", str(bundle_copy), "--out", "o"]):
            r = measured(*args, cwd=tmp_path)
            assert r["rc"] == 1
            line = one_error_line(r["err"])
            assert "manifest.json" in line and "larger than 4 MiB" in line, line
            assert r["peak_mb"] < 1024
        assert not (tmp_path / "o").exists()
    finally:
        mpath.unlink()  # not 140 MB in each of the temporary folders pytest keeps


@pytest.mark.parametrize("target, name", [("generator.onnx", "generator.onnx"), ("/etc/passwd", "decoder.onnx")],
                         ids=["graph-elsewhere", "system-file"])
def test_a_bundle_file_linking_out_of_the_folder_is_refused(tmp_path, bundle_copy, bundle_dir, target, name):
    """A link to a valid graph outside the folder, or to a system file, is refused with one line,
    its hash recomputed so that only the link itself is wrong."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    real = bundle_dir / target if not target.startswith("/") else Path(target)
    if not real.exists():
        pytest.skip(f"{real} absent")
    if real.is_relative_to(bundle_dir):  # a valid graph, but in another folder
        real = Path(shutil.copy(real, outside / target))
    (bundle_copy / name).unlink()
    (bundle_copy / name).symlink_to(real)
    rehash(bundle_copy)
    for args in (["info"], ["generate", "--class", "Loc", "-n", "5", "--out", "o"]):
        r = edge_infer(*args, "--model", str(bundle_copy), cwd=tmp_path)
        assert r.returncode == 1
        line = one_error_line(r.stderr)
        assert f"{name}:" in line and "outside the bundle folder" in line, line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- paths the OS refuses


def long_paths(tmp_path: Path) -> dict[str, str]:
    deep = "/".join(["d" * 200] * 21)
    deep += "/" + "x" * (4281 - len(deep) - 1)
    assert len(deep) == 4281
    return {"name-300": "a" * 300, "path-4281": deep}


@pytest.mark.parametrize("which", ["name-300", "path-4281"])
@pytest.mark.parametrize("verb", ["generate", "convert"])
def test_an_output_path_too_long_for_the_os_is_one_error_line(tmp_path, wafer_zip, verb, which):
    out = long_paths(tmp_path)[which]
    args = (["generate", "--class", "None", "-n", "5"] if verb == "generate"
            else ["convert", "--data", str(wafer_zip), "--to", "g85"])
    r = edge_infer(*args, "--out", out, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    line = one_error_line(r.stderr)
    assert "too long" in line.lower(), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder of the run left
