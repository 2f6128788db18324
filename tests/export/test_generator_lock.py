"""The generator graphs' outline lock (export.generator_graph._lock_phases) on adversarial probabilities.

The exporter checks the whole graph against decoder + lock_outline on random
latents; ties, subnormal differences and saturated probabilities are rare
there, so they are checked here, on the lock alone.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from export import generator_graph as gg  # noqa: E402
from edge_infer.wafer import DEFECT, N_STATES, NORMAL, lock_outline  # noqa: E402

PHASES, Q = 16, 7


def _lock_session():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    b = gg._Builder()
    out = gg._lock_phases(b, "probs", "off", PHASES)
    b.nodes.append(helper.make_node("Identity", [out], ["maps"], name="out"))
    graph = helper.make_graph(b.nodes, "lock", [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", PHASES * N_STATES, Q, Q]),
        helper.make_tensor_value_info("off", TensorProto.FLOAT, ["n", PHASES, Q, Q]),
    ], [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["n", PHASES * N_STATES, Q, Q])], b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", gg.OPSET)])
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", gg.OPSET)])
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _states_last(x: np.ndarray) -> np.ndarray:
    """(N, P·3, Q, Q) → (N, P, Q, Q, 3): the lock's layout to lock_outline's."""
    return np.moveaxis(x.reshape(x.shape[0], PHASES, N_STATES, Q, Q), 2, -1)


def test_lock_equals_lock_outline_on_ties_subnormals_and_saturation():
    rng = np.random.default_rng(0)
    n = 64
    tiny = np.float32(2.0**-149)  # the smallest subnormal
    values = np.array([0, tiny, 2 * tiny, np.float32(2.0**-126), np.nextafter(np.float32(2.0**-126), np.float32(1)),
                       np.float32(8.940697e-08), np.float32(0.5), np.nextafter(np.float32(0.5), np.float32(1)),
                       np.nextafter(np.float32(1), np.float32(0)), np.float32(1), np.float32(-0.0)], dtype=np.float32)
    probs = values[rng.integers(0, values.size, size=(n, PHASES * N_STATES, Q, Q))]
    probs[: n // 2] = np.where(rng.random(probs[: n // 2].shape) < 0.5, probs[: n // 2], rng.random(probs[: n // 2].shape, dtype=np.float32))
    # exact ties on a quarter of the dies (``last`` is a view: this writes into probs)
    last = _states_last(probs)
    tie = rng.random(last.shape[:-1]) < 0.25
    last[..., DEFECT] = np.where(tie, last[..., NORMAL], last[..., DEFECT])
    off_mask = rng.random((n, PHASES, Q, Q)) < 0.3
    maps = _lock_session().run(None, {"probs": np.ascontiguousarray(probs),
                                      "off": off_mask.astype(np.float32) * np.float32(-(2.0**127))})[0]
    want = lock_outline(_states_last(probs).reshape(-1, N_STATES), off_mask.reshape(-1))
    got = _states_last(maps).reshape(-1, N_STATES)
    assert np.array_equal(got, want)
    assert got.tobytes() == want.tobytes()  # no −0.0 either
    assert tie.any() and off_mask.any()
