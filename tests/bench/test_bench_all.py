"""bench.bench_all (``make bench``): the ratios and verdicts it derives from measured rows (never how fast)."""

from __future__ import annotations

import pytest


def test_make_bench_ratios_and_targets():
    """bench.bench_all turns the two runtimes' rows into the issue's ratios and verdicts."""
    from bench.bench_all import compute_ratios

    def row(task, batch, rate, p50, label=""):
        return {"task": task, "batch": batch, "provider": "cpu", "label": label, "maps_per_s": rate,
                "latency_ms": {"p50": p50, "p99": p50}}

    onnx_rows = [row("encode", 1024, 1000, 1), row("decode", 1024, 700, 1), row("generate", 1024, 500, 1),
                 row("generate", 1, 10, 0.1), row("decode", 1024, 200, 5, label="compare")]
    torch_rows = [row("decode", 1024, 350, 3), row("generate", 1024, 300, 3), row("generate", 1, 5, 0.2)]
    r = compute_ratios(onnx_rows, torch_rows, big=1024, small=1)
    assert r["decode_over_encode_onnx"]["value"] == 0.7 and r["decode_over_encode_onnx"]["met"] is True
    assert r["generate_onnx_over_torch"]["value"] == pytest.approx(1.667, abs=1e-3)
    assert r["generate_onnx_over_torch"]["met"] is False
    assert r["generate_latency_onnx_over_torch_b1"]["value"] == 0.5
    assert r["generate_latency_onnx_over_torch_b1"]["met"] is False  # lower is better, target 1/4
    assert r["decode_fast_over_plain"]["value"] == 3.5 and r["decode_fast_over_plain"]["met"] is None
    assert compute_ratios([], [], 1024, 1)["decode_over_encode_onnx"]["value"] is None


def test_make_bench_keeps_each_rows_best_round():
    """Rounds are merged row by row with one rule for both runtimes: the round
    with the best best-slice rate, and the lowest p50 of any round."""
    from bench.bench_all import best_of_rounds

    def row(task, batch, best, p50, runtime="onnxruntime"):
        return {"runtime": runtime, "task": task, "batch": batch, "provider": "cpu", "label": "",
                "maps_per_s": best * 0.9, "maps_per_s_best": best, "latency_ms": {"p50": p50, "p99": 2 * p50}}

    rounds = [
        [row("decode", 1024, 500, 3.0), row("generate", 1, 80, 0.20)],
        [row("decode", 1024, 700, 2.0), row("generate", 1, 60, 0.15)],  # a quieter round for decode
        [row("decode", 1024, 600, 2.5), row("generate", 1, 90, 0.18)],
    ]
    merged = {(r["task"], r["batch"]): r for r in best_of_rounds(rounds)}
    assert len(merged) == 2
    assert merged[("decode", 1024)]["maps_per_s_best"] == 700 and merged[("decode", 1024)]["latency_ms"]["p99"] == 4.0
    assert merged[("generate", 1)]["maps_per_s_best"] == 90
    assert merged[("generate", 1)]["latency_ms"]["p50"] == 0.15  # lowest p50 of any round
    assert rounds[0][1]["latency_ms"]["p50"] == 0.20  # inputs untouched


def test_make_bench_times_the_plain_decoder_like_the_bundles(bundle_dir):
    """``make bench``'s plain-decoder rows: decode on each provider, labelled "compare" for the ratios."""
    from bench.bench_all import time_plain_decoder

    rows = time_plain_decoder(bundle_dir / "decoder.onnx", [1, 5], 0.02, 1, ["cpu"])
    assert [(r["task"], r["batch"], r["variant"], r["label"], r["provider"]) for r in rows] == \
        [("decode", 1, "decoder", "compare", "cpu"), ("decode", 5, "decoder", "compare", "cpu")]
    assert all(r["calls"] >= 5 and r["maps_per_s"] > 0 and r["threads"] == 1 for r in rows)


@pytest.mark.parametrize("argv", [["-m", "bench.bench_all", "--batches", "0"],
                                  ["-m", "bench.torch_eager", "--batches", "x"],
                                  ["bench/profile_graphs.py", "/no/such.onnx"]])
def test_drivers_report_bad_input_in_one_line(argv):
    """The developer drivers go through the one entry-point wrapper too."""
    import subprocess
    import sys

    from conftest import REPO, one_error_line

    r = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    one_error_line(r.stderr)
