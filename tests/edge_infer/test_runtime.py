"""onnxruntime sessions: provider choice, quiet CUDA probing, the graph runner."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_infer import runtime
from edge_infer.errors import BundleError, InputError, ProviderError
from edge_infer.runtime import CPU, CUDA, GraphRunner, create_session_info, resolve_providers


@pytest.fixture(scope="module")
def decoder_path(bundle_dir):
    return bundle_dir / "decoder.onnx"


def _cuda_really_works(path) -> bool:
    return create_session_info(path, provider="auto")[1].actual == "cuda"


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
    session, info = create_session_info(decoder_path, provider="cpu", threads=1)
    assert info.actual == "cpu" and session.get_providers() == [CPU]


def test_auto_reports_what_the_session_really_got(decoder_path):
    session, info = create_session_info(decoder_path, provider="auto")
    assert info.actual == ("cuda" if session.get_providers()[0] == CUDA else "cpu")
    assert info.describe().startswith(info.actual)


def test_explicit_cuda_without_a_working_gpu_is_an_error_not_a_fallback(decoder_path):
    if _cuda_really_works(decoder_path):
        pytest.skip("CUDA works on this machine")
    with pytest.raises(ProviderError, match="CUDA"):
        create_session_info(decoder_path, provider="cuda")


def test_probing_cuda_prints_no_log_wall(decoder_path, capfd):
    if create_session_info(decoder_path, provider="auto")[1].actual == "cpu":
        with pytest.raises(ProviderError):
            create_session_info(decoder_path, provider="cuda")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_bad_threads_and_unloadable_graphs(decoder_path, tmp_path):
    with pytest.raises(InputError, match="threads"):
        create_session_info(decoder_path, provider="cpu", threads=0)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx graph")
    with pytest.raises(BundleError, match="broken.onnx"):
        create_session_info(broken, provider="cpu")
    with pytest.raises(BundleError, match="no such file"):
        create_session_info(tmp_path / "absent.onnx", provider="cpu")


def test_runner_matches_plain_session_run(decoder_path):
    runner = GraphRunner.open(decoder_path, provider="cpu")
    assert runner.actual == "cpu" and runner.item_shape == (26, 26, 3)
    z = np.random.default_rng(0).standard_normal((37, 64, 3, 3)).astype(np.float32)
    expected = runner.session.run(None, {runner.input_name: z})[0]
    np.testing.assert_array_equal(runner.run(z), expected)
    np.testing.assert_array_equal(runner.run(z, chunk=8), expected)
    buf = np.full((37, 26, 26, 3), -1, dtype=np.float32)
    assert runner.run(z, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    assert runner.run(z[:0]).shape == (0, 26, 26, 3)
    with pytest.raises(InputError):
        runner.run(z, out=np.empty((36, 26, 26, 3), np.float32))
    # float64 input is accepted and converted
    np.testing.assert_array_equal(runner.run(z.astype(np.float64)), expected)


def test_one_runner_serves_many_threads(decoder_path):
    runner = GraphRunner.open(decoder_path, provider="cpu", threads=1)
    zs = [np.random.default_rng(i).standard_normal((16, 64, 3, 3)).astype(np.float32) for i in range(6)]
    expected = [runner.run(z) for z in zs]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = runner.run(zs[i], chunk=5)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        np.testing.assert_array_equal(results[i], expected[i])


def test_sessions_open_from_bytes_with_every_graph_optimisation(decoder_path):
    # Bit-exact results across clients rely on optimisation level "all" (docs/other-languages.md).
    import onnxruntime as ort

    from_bytes, info = create_session_info(decoder_path.read_bytes(), provider="cpu", threads=1)
    from_file, _ = create_session_info(decoder_path, provider="cpu", threads=2)
    assert info.actual == "cpu"
    for session in (from_bytes, from_file):
        assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    z = np.random.default_rng(3).standard_normal((5, 64, 3, 3)).astype(np.float32)
    name = from_file.get_inputs()[0].name
    np.testing.assert_array_equal(from_bytes.run(None, {name: z})[0], from_file.run(None, {name: z})[0])
    with pytest.raises(BundleError, match="cannot load"):
        create_session_info(b"not a graph", provider="cpu")


def test_session_options_pass_through_but_the_level_stays_all(decoder_path, tmp_path):
    optimized = tmp_path / "optimized.onnx"
    create_session_info(decoder_path, provider="cpu", threads=1, options={"optimized_model_filepath": str(optimized)})
    assert optimized.stat().st_size > 0
    with pytest.raises(InputError, match="fixed at 'all'"):
        create_session_info(decoder_path, provider="cpu", options={"graph_optimization_level": 1})
