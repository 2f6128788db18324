"""onnxruntime sessions (edge_infer.runtime.open_session): provider choice, quiet CUDA probing, options."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edge_infer import runtime
from edge_infer.errors import BundleError, EdgeInferError, InputError, ProviderError
from edge_infer.runtime import CPU, CUDA, open_session, resolve_providers


@pytest.fixture(scope="module")
def decoder_path(bundle_dir):
    return bundle_dir / "decoder.onnx"


def _cuda_really_works(path) -> bool:
    return open_session(path, provider="auto")[1].actual == "cuda"


def test_resolve_providers():
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers(" CPU ") == [CPU]
    auto = resolve_providers("auto")
    assert auto[-1] == CPU
    # auto tries CUDA only where the build lists it and an NVIDIA driver is present.
    assert (CUDA in auto) == (CUDA in runtime.available_providers() and runtime.nvidia_driver() is None)
    with pytest.raises(InputError, match="auto, cpu, cuda"):
        resolve_providers("tpu")


def test_cuda_missing_from_the_build_is_a_provider_error(monkeypatch):
    monkeypatch.setattr(runtime, "available_providers", lambda: [CPU])
    assert resolve_providers("auto") == [CPU]
    with pytest.raises(ProviderError, match="no CUDAExecutionProvider"):
        resolve_providers("cuda")


def test_cpu_session_and_reported_provider_agree(decoder_path):
    session, info = open_session(decoder_path, provider="cpu", threads=1)
    assert info.actual == "cpu" and session.get_providers() == [CPU]


def test_auto_reports_what_the_session_really_got(decoder_path):
    session, info = open_session(decoder_path, provider="auto")
    assert info.actual == ("cuda" if session.get_providers()[0] == CUDA else "cpu")
    assert info.describe().startswith(info.actual)


def test_explicit_cuda_without_a_working_gpu_is_an_error_not_a_fallback(decoder_path):
    if _cuda_really_works(decoder_path):
        pytest.skip("CUDA works on this machine")
    with pytest.raises(ProviderError, match="CUDA"):
        open_session(decoder_path, provider="cuda")


def test_probing_cuda_prints_no_log_wall(decoder_path, capfd):
    if open_session(decoder_path, provider="auto")[1].actual == "cpu":
        with pytest.raises(ProviderError):
            open_session(decoder_path, provider="cuda")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_bad_threads_and_unloadable_graphs(decoder_path, tmp_path):
    with pytest.raises(InputError, match="threads"):
        open_session(decoder_path, provider="cpu", threads=0)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx graph")
    with pytest.raises(BundleError, match="broken.onnx"):
        open_session(broken, provider="cpu")
    with pytest.raises(BundleError, match="no such file"):
        open_session(tmp_path / "absent.onnx", provider="cpu")


def test_sessions_open_from_bytes_with_every_graph_optimisation(decoder_path):
    # Bit-exact results across clients rely on optimisation level "all" (docs/other-languages.md).
    import onnxruntime as ort

    from_bytes, info = open_session(decoder_path.read_bytes(), provider="cpu", threads=1)
    from_file, _ = open_session(decoder_path, provider="cpu", threads=2)
    assert info.actual == "cpu"
    for session in (from_bytes, from_file):
        assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    z = np.random.default_rng(3).standard_normal((5, 64, 3, 3)).astype(np.float32)
    name = from_file.get_inputs()[0].name
    np.testing.assert_array_equal(from_bytes.run(None, {name: z})[0], from_file.run(None, {name: z})[0])
    with pytest.raises(BundleError, match="cannot load"):
        open_session(b"not a graph", provider="cpu")


def test_session_options_pass_through_but_the_level_stays_all(decoder_path, tmp_path):
    optimized = tmp_path / "optimized.onnx"
    open_session(decoder_path, provider="cpu", threads=1, options={"optimized_model_filepath": str(optimized)})
    assert optimized.stat().st_size > 0
    with pytest.raises(InputError, match="fixed at 'all'"):
        open_session(decoder_path, provider="cpu", options={"graph_optimization_level": 1})


def test_without_onnxruntime_one_error_names_the_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(EdgeInferError) as err:
        runtime.ort()
    assert "edge-infer[cpu]" in str(err.value) and "edge-infer[gpu]" in str(err.value)
