"""What a new user hits first (issue 12): packaging, providers, feedback, and the rough edges of the CLI.

The CLI is run in-process through ``main`` (what the console script calls);
the packaging checks run the torch-free ``.venv`` that ``make test`` builds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_infer import runtime
from edge_infer.errors import InputError, ProviderError

from conftest import REPO, one_error_line  # noqa: E402


@pytest.fixture()
def decoder_path(bundle_dir):
    return bundle_dir / "decoder.onnx"


@pytest.fixture(scope="module")
def gen(bundle_dir):
    from edge_infer import WaferGenerator

    return WaferGenerator.load(bundle_dir, provider="cpu")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_INFER_MODEL", "ORT_DISABLE_TELEMETRY")}


# ---------------------------------------------------------------- packaging


def test_the_wheel_installs_only_edge_infer(runtime_venv):
    """Every file the installed distribution put into site-packages is under edge_infer/ (or its metadata)."""
    site = next((runtime_venv / "lib").glob("python3*/site-packages"))
    record = next(site.glob("edge_infer-*.dist-info")) / "RECORD"
    tops = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines() if line}
    tops = {t for t in tops if not t.endswith(".dist-info") and t != ".."}  # ../../bin/edge-infer
    assert tops == {"edge_infer"}
    assert not (site / "training").exists() and not (site / "export").exists()


@pytest.mark.parametrize("module", ["training", "export"])
def test_training_and_export_without_torch_say_which_extra_in_one_line(runtime_venv, module):
    r = subprocess.run([str(runtime_venv / "bin" / "python"), "-m", module, "--help"], cwd=REPO, env=_clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "PyTorch" in r.stderr and "[train]" in r.stderr


def test_each_runtime_extra_brings_exactly_one_onnxruntime_distribution():
    """The runtime is chosen by one extra; the base install has none, so no install holds two distributions."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("onnxruntime")]
    extras = project["optional-dependencies"]
    dist = {name: {d.split("[")[0].split(">")[0].split("=")[0].strip() for d in extras[name] if d.startswith("onnxruntime")}
            for name in ("cpu", "gpu", "cuda")}
    assert dist == {"cpu": {"onnxruntime"}, "gpu": {"onnxruntime-gpu"}, "cuda": {"onnxruntime-gpu"}}
    assert all(d.startswith("onnxruntime-gpu[cuda,cudnn]") for d in extras["gpu"] + extras["cuda"])


def test_without_onnxruntime_a_command_names_the_runtime_extras(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as where none is installed
    code, _, err = run("generate", "-c", "None", "-n", "2", "-o", str(tmp_path / "g"))
    assert code == 1
    line = one_error_line(err)
    assert "no onnxruntime is installed" in line and "edge-infer[cpu]" in line and "edge-infer[gpu]" in line
    assert not (tmp_path / "g").exists()


def test_no_onnxruntime_telemetry_file_or_warning(runtime_venv, tmp_path):
    """onnxruntime writes a telemetry id under $HOME/.cache, and warns where it cannot: neither happens."""
    home = tmp_path / "home"  # does not exist: onnxruntime would create it (or, unwritable, warn)
    env = {**_clean_env(), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    r = subprocess.run([str(runtime_venv / "bin" / "edge-infer"), "generate", "-c", "None", "-n", "2", "-o", "g"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not home.exists()
    assert "[W:" not in r.stderr and "[E:" not in r.stderr  # onnxruntime's own log lines
    assert [ln.split(":")[0] for ln in r.stderr.splitlines()] == ["provider"]  # our one line, nothing else


# ---------------------------------------------------------------- providers


def test_every_known_provider_is_accepted_and_unknown_ones_listed():
    assert runtime.PROVIDERS == ("auto", "cpu", "cuda", "tensorrt", "openvino")
    with pytest.raises(InputError, match="auto, cpu, cuda, tensorrt, openvino"):
        runtime.resolve_providers("rocm")


def test_a_provider_missing_from_the_build_names_the_distribution_to_use(decoder_path, monkeypatch):
    monkeypatch.setattr(runtime, "available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "ort_distribution", lambda: "onnxruntime-gpu")
    with pytest.raises(ProviderError, match="OpenVINO was asked for.*onnxruntime-openvino, in an environment of its own"):
        runtime.open_session(decoder_path, provider="openvino")


def test_without_a_driver_no_gpu_session_is_even_tried(decoder_path, monkeypatch):
    """auto on a CPU-only machine costs one CPU session, and says why in one line."""
    monkeypatch.setattr(runtime, "available_providers", lambda: [runtime.TENSORRT, runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "nvidia_driver", lambda: "no NVIDIA driver found")
    ort = runtime.ort()
    asked = []
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        asked.append(list(providers))
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    _, info = runtime.open_session(decoder_path, provider="auto")
    assert asked == [[runtime.CPU]]
    assert info.describe() == "cpu (auto: no NVIDIA driver found, so CUDA was not tried)"
    for explicit in ("cuda", "tensorrt"):
        with pytest.raises(ProviderError, match="was asked for, but no NVIDIA driver found"):
            runtime.open_session(decoder_path, provider=explicit)
    assert asked == [[runtime.CPU]]


def _driver_without_cuda_libraries(decoder_path, monkeypatch):
    """Simulate an NVIDIA driver on this machine, where the CUDA libraries do not load."""
    if runtime.CUDA not in runtime.available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    session, _ = runtime.open_session(decoder_path, provider="auto")
    if session.get_providers()[0] != runtime.CPU:
        pytest.skip("a GPU works here")
    monkeypatch.setattr(runtime, "nvidia_driver", lambda: None)


def test_a_driver_without_cuda_libraries_names_the_missing_library(decoder_path, monkeypatch):
    """With a driver present (simulated) but CUDA not loadable, explicit cuda/tensorrt fail naming a library;
    auto falls back saying so."""
    _driver_without_cuda_libraries(decoder_path, monkeypatch)
    _, info = runtime.open_session(decoder_path, provider="auto")
    assert info.actual == "cpu" and info.note.startswith("auto: CUDA not usable: ") and "is missing" in info.note
    for explicit in ("cuda", "tensorrt"):
        with pytest.raises(ProviderError, match=r"was asked for, but onnxruntime could not use it: \S+\.so[.\d]* is missing"):
            runtime.open_session(decoder_path, provider=explicit)


def test_a_driver_without_cuda_libraries_prints_nothing_of_onnxruntimes_own(decoder_path, monkeypatch, capfd):
    _driver_without_cuda_libraries(decoder_path, monkeypatch)
    capfd.readouterr()
    runtime.open_session(decoder_path, provider="auto")
    for explicit in ("cuda", "tensorrt"):
        with pytest.raises(ProviderError):
            runtime.open_session(decoder_path, provider=explicit)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------------- the API


def test_np_asarray_and_np_save_give_the_maps(gen, tmp_path):
    result = gen.generate("Loc", 3, seed=0)
    assert np.asarray(result).shape == (3, 26, 26, 3) and np.asarray(result).dtype == np.float32
    np.save(tmp_path / "r.npy", result)
    loaded = np.load(tmp_path / "r.npy")  # allow_pickle=False: a pickled object array would not load
    np.testing.assert_array_equal(loaded, result.maps)


def test_nested_lists_are_accepted(gen):
    maps = gen.bank_maps([3, 4])
    np.testing.assert_array_equal(gen.encode(maps.tolist()), gen.encode(maps))  # one-hot, as JSON gives it
    states = maps.argmax(-1)
    np.testing.assert_array_equal(gen.encode(states.tolist()), gen.encode(maps))
    np.testing.assert_array_equal(gen.encode(states[0].tolist()), gen.encode(maps[:1]))  # one map


def test_ragged_nested_lists_are_refused_in_one_message(gen):
    good = gen.bank_maps([3]).argmax(-1)[0].tolist()
    bad = [row[:] for row in good]
    bad[5] = bad[5][:20]
    with pytest.raises(InputError, match=r"^maps\[1\] is not a map: .*nested lists must be rectangular"):
        gen.encode([good, bad])


def test_progress_is_called_per_block_by_every_streaming_call(gen, tmp_path):
    calls = []
    gen.generate("None", 5000, seed=0, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5000, 5000) and len(calls) >= 2
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and {t for _, t in calls} == {5000}
    calls.clear()
    gen.generate_to_files("None", 300, tmp_path / "s", seed=0, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (300, 300)


# ---------------------------------------------------------------- the CLI


def test_bare_command_shows_help_and_exits_2_like_click(run):
    code, out, err = run()
    assert code == 2
    assert "Usage: edge-infer" in err and "generate" in err and "error:" not in err


def test_did_you_mean_for_class_names(run, tmp_path):
    code, _, err = run("generate", "--class", "Scrach", "-o", str(tmp_path / "o"))
    assert code == 1 and "unknown class 'Scrach' (did you mean 'Scratch'?)" in err
    code, _, err = run("generate", "--class", "Spiral", "-o", str(tmp_path / "o"))
    assert code == 1 and "did you mean" not in err


def test_failed_or_interrupted_runs_leave_no_empty_folder(run, tmp_path, monkeypatch):
    import edge_infer.npy

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edge_infer.npy.NpyWriter, "write", boom)  # Ctrl-C while the maps are being written
    new = tmp_path / "new" / "deeper"
    code, _, err = run("generate", "-c", "None", "-o", str(new))
    assert code == 130 and "interrupted" in err
    assert not (tmp_path / "new").exists()  # both folders it made are gone
    mine = tmp_path / "mine"
    mine.mkdir()
    assert run("generate", "-c", "None", "-o", str(mine))[0] == 130
    assert mine.is_dir() and list(mine.iterdir()) == []  # the user's own folder stays


def test_failed_augment_leaves_no_empty_folder(run, tmp_path):
    np.save(tmp_path / "maps.npy", np.random.default_rng(0).integers(0, 3, (4, 32, 32)))
    np.save(tmp_path / "labels.npy", np.zeros((4, 1), dtype=np.int64))
    code, _, err = run("augment", "--data", str(tmp_path / "maps.npy"), "--labels", str(tmp_path / "labels.npy"),
                       "-o", str(tmp_path / "aug"))
    assert code == 1 and "map 0 in" in err and "is not wafer-shaped" in err
    assert not (tmp_path / "aug").exists()


def test_odd_maps_in_a_resized_input_are_warned_about_too(run, tmp_path, gen, monkeypatch):
    """The streamed reader folds per-block resize notes into one; the wafer warning must survive that."""
    monkeypatch.chdir(tmp_path)  # without --out: out/reconstruct-N here
    good = gen.bank_maps(np.arange(6)).argmax(-1)
    big = np.repeat(np.repeat(good, 2, axis=1), 2, axis=2)  # 52×52: resized on reading
    big[3] = 1
    np.save(tmp_path / "big.npy", big)
    code, _, err = run("reconstruct", "--data", str(tmp_path / "big.npy"))
    assert code == 0, err
    assert "note: resized 6 map(s) from 52×52" in err
    assert "warning: 1 of 6 maps" in err and "map 3, one die state everywhere" in err


def test_random_die_states_are_refused_and_odd_maps_warned_about(run, tmp_path, gen, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without --out: out/reconstruct-N here
    good = gen.bank_maps(np.arange(6)).argmax(-1)
    odd = good.copy()
    odd[2] = 1  # one die state everywhere
    np.save(tmp_path / "odd.npy", odd)
    code, out, err = run("reconstruct", "--data", str(tmp_path / "odd.npy"))
    assert code == 0, err
    assert "warning: 1 of 6 maps" in err and "map 2, one die state everywhere" in err


def test_quiet_silences_progress_and_the_provider_line(run, tmp_path, monkeypatch):
    import functools

    import edge_infer.commands.generate as cmd
    from edge_infer.commands._common import Progress

    monkeypatch.setattr(cmd, "Progress", functools.partial(Progress, delay=0.0, every=0.0))  # report this short run
    code, _, err = run("generate", "-c", "None", "-n", "5000", "-o", str(tmp_path / "a"))
    assert code == 0 and "generate: 5,000/5,000 maps (100%)" in err and "provider:" in err
    code, _, err = run("generate", "-c", "None", "-n", "5000", "-o", str(tmp_path / "b"), "--quiet")
    assert code == 0 and err == ""


def test_two_onnxruntime_distributions_are_named_as_the_problem(decoder_path, monkeypatch):
    monkeypatch.setattr(runtime, "ort_distributions", lambda: ("onnxruntime-gpu", "onnxruntime"))
    monkeypatch.setattr(runtime, "available_providers", lambda: [runtime.CPU])
    with pytest.raises(ProviderError, match="onnxruntime-gpu and onnxruntime are both installed.*pip uninstall"):
        runtime.open_session(decoder_path, provider="cuda")


def test_the_provider_a_session_really_got_decides(decoder_path, monkeypatch):
    """Judged by session.get_providers(): a GPU session says so (auto says why); an explicit provider the
    session did not get is an error, never a quiet CPU run."""

    class Session:
        got: list[str] = []

        def __init__(self, *args, **kwargs):
            self.providers = list(Session.got)

        def get_providers(self):
            return self.providers

        def disable_fallback(self):
            pass

    monkeypatch.setattr(runtime.ort(), "InferenceSession", Session)
    monkeypatch.setattr(runtime, "available_providers", lambda: [runtime.TENSORRT, runtime.CUDA, runtime.OPENVINO, runtime.CPU])
    monkeypatch.setattr(runtime, "ort_distributions", lambda: ("onnxruntime-gpu",))
    monkeypatch.setattr(runtime, "nvidia_driver", lambda: None)
    monkeypatch.setattr(runtime, "_library_problem", lambda ep: "libcudnn.so.9 is missing")

    def opened(got, provider):
        Session.got = got
        return runtime.open_session(decoder_path, provider=provider)[1]

    info = opened([runtime.CUDA, runtime.CPU], "auto")
    assert info.actual == "cuda" and "really got the GPU" in info.describe()
    assert opened([runtime.OPENVINO, runtime.CPU], "openvino").actual == "openvino"
    with pytest.raises(ProviderError, match=r"CUDA was asked for.*libcudnn.so.9 is missing.*edge-infer\[gpu\]"):
        opened([runtime.CPU], "cuda")
    with pytest.raises(ProviderError, match="OpenVINO was asked for.*fell back to CPUExecutionProvider"):
        opened([runtime.CPU], "openvino")
    assert "CUDA not usable: libcudnn.so.9 is missing" in opened([runtime.CPU], "auto").note
