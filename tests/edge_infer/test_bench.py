"""edge_infer.bench and ``edge-infer bench``: what is measured and reported (never how fast)."""

from __future__ import annotations

import json

import pytest

from edge_infer import bench
from edge_infer.errors import InputError, ProviderError


def test_parse_batches():
    assert bench.parse_batches("1,64,1024") == [1, 64, 1024]
    assert bench.parse_batches(" 8 , 2 ") == [8, 2]
    assert bench.parse_batches([3, 5]) == [3, 5]
    for bad in ("", "0", "1,-2", "a,b", "1.5"):
        with pytest.raises(InputError):
            bench.parse_batches(bad)


def test_measure_counts_calls_and_derives_figures():
    calls = []
    res = bench.measure(lambda: calls.append(1), batch=10, seconds=0.01, min_calls=7, warmup=3)
    assert res["calls"] >= 7 and len(calls) == res["calls"] + 3  # warm-up runs are not counted
    assert res["maps_per_s"] == pytest.approx(10 * res["calls"] / res["seconds"], rel=1e-3)
    # The best of the 3 slices is at least the whole run's average rate.
    assert res["maps_per_s_best"] >= res["maps_per_s"] * 0.999
    lat = res["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p99"]
    with pytest.raises(InputError):
        bench.measure(lambda: None, batch=1, seconds=0)


def test_machine_info_describes_the_machine():
    info = bench.machine_info()
    assert info["usable_cores"] >= 1 and info["onnxruntime"]
    assert "CPUExecutionProvider" in info["providers_listed"]
    json.dumps(info)


def test_providers_listed_only_when_they_really_work(bundle_dir, monkeypatch):
    assert bench.working_providers(bundle_dir / "decoder.onnx", "cpu") == ["cpu"]
    found = bench.working_providers(bundle_dir / "decoder.onnx", "all")
    assert found[0] == "cpu"
    # Every provider the build lists is tried; only those a session really gets are kept.
    from edge_infer import runtime

    class Info:
        def __init__(self, actual):
            self.actual = actual

    monkeypatch.setattr(runtime, "available_providers", lambda: [runtime.EXECUTION_PROVIDERS[n] for n in
                                                                 ("cpu", "cuda", "tensorrt", "openvino")])

    def only_openvino(path, provider):
        if provider != "openvino":
            raise ProviderError(f"no {provider} here")
        return None, Info("openvino")

    monkeypatch.setattr(runtime, "open_session", only_openvino)
    assert bench.working_providers("x.onnx", "all") == ["cpu", "openvino"]
    monkeypatch.setattr(runtime, "open_session", lambda path, provider: (None, Info(provider)))
    assert bench.working_providers("x.onnx", "all") == ["cpu", "cuda", "tensorrt", "openvino"]
    with pytest.raises(ProviderError):
        monkeypatch.setattr(runtime, "open_session", only_openvino)
        bench.working_providers("x.onnx", "cuda")
    with pytest.raises(ProviderError):
        bench.working_providers("x.onnx", "cuda")
    with pytest.raises(InputError):
        bench.working_providers("x.onnx", "tpu")


@pytest.fixture(scope="module")
def report(bundle_dir):
    return bench.run_bench(bundle_dir, batches=[1, 5], provider="cpu", threads=1, seconds=0.02)


def test_run_bench_rows(report, bundle_dir):
    assert [(r["task"], r["batch"]) for r in report["results"]] == [(t, b) for b in (1, 5) for t in bench.TASKS]
    for r in report["results"]:
        assert r["provider"] == "cpu" and r["threads"] == 1 and r["runtime"] == "onnxruntime"
        assert r["calls"] >= 5 and r["maps_per_s"] > 0
    s = report["settings"]
    assert s["batches"] == [1, 5] and s["threads"] == 1 and s["providers"] == ["cpu"]
    assert report["machine"]["cpu"]
    json.dumps(report)  # the --out file is plain JSON


def test_table_lists_every_row(report):
    table = bench.format_table(report)
    assert table.count("\nonnxruntime ") == len(report["results"])
    assert "maps/s" in table and report["machine"]["onnxruntime"] in table


def test_bad_options(bundle_dir):
    with pytest.raises(InputError):
        bench.run_bench(bundle_dir, batches=[1], tasks=["train"], seconds=0.01)
    with pytest.raises(InputError):
        bench.run_bench(bundle_dir, batches=[1], threads=0, seconds=0.01)


def test_cli_writes_json_and_reports_errors(bundle_dir, tmp_path, capsys):
    from edge_infer.cli import main

    out = tmp_path / "b" / "bench.json"
    args = ["bench", "--model", str(bundle_dir), "--batches", "2", "--threads", "1", "--seconds", "0.02",
            "--tasks", "decode,generate", "--provider", "cpu", "--out", str(out)]
    with pytest.raises(SystemExit) as ok:
        main(args)
    assert ok.value.code == 0
    data = json.loads(out.read_text())
    assert [(r["task"], r["batch"]) for r in data["results"]] == [("decode", 2), ("generate", 2)]
    assert "generate" in capsys.readouterr().out
    with pytest.raises(SystemExit) as again:  # no silent overwrite
        main(args)
    assert again.value.code == 1 and "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main(["bench", "--model", str(bundle_dir), "--batches", "0", "--out", str(tmp_path / "new" / "sub" / "b.json")])
    err = capsys.readouterr().err
    assert bad.value.code == 1 and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "new").exists()  # the folders a failed run made for its --out file are gone


def test_bench_runs_in_the_torch_free_runtime(runtime_venv, tmp_path):
    """`edge-infer bench` is part of the runtime: it runs where torch is absent and never imports it."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_INFER_MODEL")}
    code = (
        "import sys, json\n"
        "from edge_infer.bench import run_bench\n"
        "r = run_bench(batches=[2], provider='all', threads=1, seconds=0.02)\n"
        "print(json.dumps([sorted({x['task'] for x in r['results']}), r['settings']['providers'], 'torch' in sys.modules]))\n"
    )
    done = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    tasks, providers, torch_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert tasks == ["decode", "encode", "generate"] and providers[0] == "cpu" and torch_loaded is False
    out = tmp_path / "b.json"
    done = subprocess.run([str(runtime_venv / "bin" / "edge-infer"), "bench", "--batches", "1", "--seconds", "0.02",
                           "--tasks", "decode", "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["results"][0]["task"] == "decode"
