"""The generation as ONNX graphs: ``generator.onnx`` and ``generator_core.onnx``.

Both graphs are one story, built here from the exported decoder:

    latent + σ · noise(seed, row, attempt)  →  decoder  →  outline lock  →  one-hot maps

* ``generator.onnx`` takes bank rows: ``source`` int64 ``[N]``, ``seed``
  int64 ``[1]``, ``row0`` int64 ``[1]``, ``strength`` float32 ``[1]``; the
  latent bank, the per-channel latent std and the outlines are initializers.
  σ = ``strength × std``; row ``i`` of the call is row ``row0 + i`` of the
  request; attempt 0.
* ``generator_core.onnx`` takes what the caller has: ``latent`` float32
  ``[N, 64, 3, 3]``, ``sigma`` float32 ``[N, 64]``, ``outline`` bool
  ``[N, 26, 26]`` (True = off-wafer), ``seed`` int64 ``[1]``, ``row`` int64
  ``[N]`` (each row's index within the request) and ``attempt`` int64 ``[N]``.
  It serves given maps (after ``encoder.onnx``), ``mix``, the course noise
  schedule and sibling redraws. Outputs ``maps`` and ``probs`` (the
  decoder's probabilities, for ``raw``).

The noise is a pure function of (seed, row, attempt, element), defined in
``docs/other-languages.md`` and, in numpy, by :func:`reference_noise` (which
the exporter checks the graph against):

    key   = mix(seed XOR attempt·K)                      (uint64, wrapping)
    x     = mix(key + (row·288 + p + 1)·γ)               pair p = 0..287 of the row
    u1    = (2^24 − (x >> 40)) · 2^-24                   in (0, 1]
    θ     = (x AND 0xFFFFFF) · (2π · 2^-24)              float32 constant
    ρ     = sqrt(−2 · ln u1)
    noise[p] = ρ·cos θ,  noise[288 + p] = ρ·sin θ        elements in (64, 3, 3) C order

with ``mix`` the SplitMix64 output function, γ = 0x9E3779B97F4A7C15 and
K = 0xD1B54A32D192ED03. Everything after the integer hash is float32 in
onnxruntime's own kernels, which is why the graph, not numpy, is the
definition that reproduces bit for bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_infer.sampling import ATTEMPT_MUL, GAMMA, MIX_M1, MIX_M2, splitmix64
from edge_infer.wafer import BOUNDARY, DEFECT, MAP_SHAPE, N_STATES, NORMAL

if TYPE_CHECKING:
    import onnx

LATENT_SHAPE = (64, 3, 3)
LATENT_SIZE = int(np.prod(LATENT_SHAPE))
PAIRS = LATENT_SIZE // 2
OPSET = 18
BATCH = "batch"
GENERATOR_INPUTS = ("source", "seed", "row0", "strength")
CORE_INPUTS = ("latent", "sigma", "outline", "seed", "row", "attempt")
OUTPUT, PROBS = "maps", "probs"
_U24 = float(2.0**-24)
_ANGLE = np.float32(2 * math.pi * 2.0**-24)


def _u64(value: int) -> np.ndarray:
    return np.array([value & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)


# ------------------------------------------------------------------ numpy reference


def reference_noise(seed: int, rows: np.ndarray, attempt: "int | np.ndarray" = 0) -> np.ndarray:
    """The documented noise in numpy: float64 ``(len(rows), 64, 3, 3)``.

    The integer part is exact; the float part is computed in float64 from the
    same float32 uniforms, so it agrees with the graph's float32 kernels to
    about 1e-6 (not bit for bit: that is the graph's job).
    """
    rows = np.asarray(rows, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        attempts = np.broadcast_to(np.asarray(attempt, dtype=np.int64).astype(np.uint64), rows.shape)
        key = splitmix64(np.uint64(seed) ^ (attempts * np.uint64(ATTEMPT_MUL)))[:, None]
        counter = rows[:, None] * np.uint64(PAIRS) + np.arange(PAIRS, dtype=np.uint64)[None, :] + np.uint64(1)
        x = splitmix64(key + counter * np.uint64(GAMMA))
    u1 = ((np.uint64(1 << 24) - (x >> np.uint64(40))).astype(np.float32) * np.float32(_U24)).astype(np.float64)
    theta = ((x & np.uint64(0xFFFFFF)).astype(np.float32) * _ANGLE).astype(np.float64)
    rho = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([rho * np.cos(theta), rho * np.sin(theta)], axis=1)
    return z.reshape(len(rows), *LATENT_SHAPE)


# ------------------------------------------------------------------ graph building


class _Builder:
    """Nodes and initializers of one graph, with unique names."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self.bank_outlines: "np.ndarray | None" = None
        self._n = 0

    def const(self, name: str, value: Any, dtype: Any = None) -> str:
        from onnx import numpy_helper

        array = np.asarray(value, dtype=dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list, name: str, output: str = "", **attrs: Any) -> str:
        from onnx import helper

        self._n += 1
        out = output or f"{name}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{name}_{self._n}", **attrs))
        return out


def _mix(b: _Builder, x: str, tag: str) -> str:
    """SplitMix64 output function on a uint64 tensor."""
    for shift, mul in ((30, MIX_M1), (27, MIX_M2), (31, None)):
        s = b.op("BitShift", [x, f"shift{shift}"], f"{tag}_shr{shift}", direction="RIGHT")
        x = b.op("BitwiseXor", [x, s], f"{tag}_xor{shift}")
        if mul is not None:
            x = b.op("Mul", [x, f"mul{mul:x}"], f"{tag}_mul")
    return x


def _hash_constants(b: _Builder) -> None:
    for shift in (30, 27, 31, 40):
        b.const(f"shift{shift}", _u64(shift))
    b.const(f"mul{MIX_M1:x}", _u64(MIX_M1))
    b.const(f"mul{MIX_M2:x}", _u64(MIX_M2))


def _noisy_latent(b: _Builder, latent: str, sigma: str, seed: str, row: str, attempt: "str | None") -> str:
    """``latent + sigma · noise(seed, row, attempt)``; ``sigma`` per element, ``(N|1, 576)``.

    Kept flat, ``(N, 576)``: broadcasting a whole last axis is onnxruntime's
    fast path, a ``(64, 1)`` over ``(64, 9)`` is not (docs/performance.md).
    The values are those of the channel-wise product.
    """
    from onnx import TensorProto

    _hash_constants(b)
    s = b.op("Cast", [seed], "seed_u64", to=TensorProto.UINT64)
    if attempt is not None:
        a = b.op("Cast", [attempt], "attempt_u64", to=TensorProto.UINT64)
        a = b.op("Mul", [a, b.const("attempt_mul", _u64(ATTEMPT_MUL))], "attempt_k")
        s = b.op("BitwiseXor", [s, a], "stream")
    key = _mix(b, s, "key")  # [1], or [N] with a per-row attempt
    # key + (row·288 + p + 1)·γ  =  (row·(288γ) + key + γ) + p·γ: one broadcast Add per element.
    base = b.op("Add", [key, b.const("gamma", _u64(GAMMA))], "key_plus_gamma")
    r = b.op("Cast", [row], "row_u64", to=TensorProto.UINT64)
    r = b.op("Mul", [r, b.const("row_step", _u64(PAIRS * GAMMA))], "row_step")
    r = b.op("Add", [r, base], "row_base")
    r = b.op("Unsqueeze", [r, b.const("axis1", [1], np.int64)], "row_col")
    pair_steps = (np.arange(PAIRS, dtype=np.uint64) * np.uint64(GAMMA)).reshape(1, PAIRS)
    x = b.op("Add", [r, b.const("pair_steps", pair_steps)], "counter")
    x = _mix(b, x, "noise")
    hi = b.op("BitShift", [x, "shift40"], "hi24", direction="RIGHT")
    hi = b.op("Sub", [b.const("two24", _u64(1 << 24)), hi], "one_minus")
    u1 = b.op("Mul", [b.op("Cast", [hi], "hi_f", to=TensorProto.FLOAT), b.const("u24", np.float32(_U24))], "u1")
    lo = b.op("BitwiseAnd", [x, b.const("mask24", _u64(0xFFFFFF))], "lo24")
    theta = b.op("Mul", [b.op("Cast", [lo], "lo_f", to=TensorProto.FLOAT), b.const("angle", _ANGLE)], "theta")
    rho = b.op("Mul", [b.op("Log", [u1], "ln_u1"), b.const("minus2", np.float32(-2))], "rho2")
    rho = b.op("Sqrt", [rho], "rho")
    cos = b.op("Mul", [rho, b.op("Cos", [theta], "cos")], "z_cos")
    sin = b.op("Mul", [rho, b.op("Sin", [theta], "sin")], "z_sin")
    z = b.op("Concat", [cos, sin], "normals", axis=1)
    eps = b.op("Mul", [z, sigma], "scaled")
    flat = b.op("Reshape", [latent, b.const("flat_shape", [-1, LATENT_SIZE], np.int64)], "latent_flat")
    noisy = b.op("Add", [flat, eps], "noisy_flat")
    return b.op("Reshape", [noisy, b.const("latent_shape", [-1, *LATENT_SHAPE], np.int64)], "noisy_latent")


def _sigma_per_element(b: _Builder, sigma: str) -> str:
    """σ ``(N, 64)`` per latent channel → ``(N, 576)`` per element (channel-major, as the latent)."""
    s = b.op("Unsqueeze", [sigma, b.const("axis2", [2], np.int64)], "sigma_by_channel")
    s = b.op("Expand", [s, b.const("per_position", [1, 1, LATENT_SIZE // LATENT_SHAPE[0]], np.int64)], "sigma_by_position")
    return b.op("Reshape", [s, b.const("sigma_flat_shape", [-1, LATENT_SIZE], np.int64)], "sigma_per_element")


def _copy_decoder(b: _Builder, decoder: "onnx.ModelProto", latent: str) -> "tuple[str, list, str]":
    """Copy the decoder's weights and nodes in, reading ``latent``.

    Returns ``(head_out, tail, out)``: where the fast decoder's per-die
    probabilities are still on its phase grid (the Sigmoid's output,
    ``(N, S·S·3, Q, Q)``) and the data-movement nodes after it that interleave
    the phases into NHWC maps (not yet added), or, for any other decoder,
    ``(out, [], out)``: its NHWC output with every node added.
    """
    g = decoder.graph
    (din,), (dout,) = [i.name for i in g.input], [o.name for o in g.output]

    def rename(name: str) -> str:
        return latent if name == din else (f"decoder/{name}" if name else name)

    for init in g.initializer:
        copy = type(init)()
        copy.CopyFrom(init)
        copy.name = rename(init.name)
        b.initializers.append(copy)
    nodes = []
    for node in g.node:
        copy = type(node)()
        copy.CopyFrom(node)
        copy.name = f"decoder/{node.name}"
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]
        nodes.append(copy)
    sig = [i for i, n in enumerate(nodes) if n.op_type == "Sigmoid"]
    tail = nodes[sig[-1] + 1:] if len(sig) == 1 else []
    phased = bool(tail) and all(n.op_type in ("Transpose", "Reshape", "Slice") for n in tail) and \
        tail[0].op_type == "Transpose" and list(tail[0].attribute[0].ints) == [0, 2, 3, 1]
    split = next((init for init in g.initializer if init.name == "phase_split_shape"), None) if phased else None
    if split is None:
        b.nodes.extend(nodes)
        return rename(dout), [], rename(dout)
    b.nodes.extend(nodes[:sig[-1] + 1])
    return nodes[sig[-1]].output[0], tail, rename(dout)


def _add_tail(b: _Builder, tail: list, source: str, head_out: str, output: str, tag: str) -> str:
    """The decoder's phase interleave applied to ``source`` instead of its probabilities."""
    names = {head_out: source}
    for node in tail:
        copy = type(node)()
        copy.CopyFrom(node)
        copy.name = f"{tag}/{node.name}"
        copy.input[:] = [names.get(n, n) for n in node.input]
        outs = []
        for n in node.output:
            names[n] = f"{tag}/{n}"
            outs.append(names[n])
        copy.output[:] = outs
        b.nodes.append(copy)
    b.nodes[-1].output[0] = output
    return output


def _phase_shape(decoder: "onnx.ModelProto") -> "tuple[int, int]":
    """(S, Q) of the fast decoder's phase grid: S×S phases of Q×Q positions."""
    from onnx import numpy_helper

    split = next(i for i in decoder.graph.initializer if i.name == "phase_split_shape")
    _, q, _, s, _ = (int(v) for v in numpy_helper.to_array(split))
    return s, q


def to_phases(outline: np.ndarray, s: int, q: int) -> np.ndarray:
    """Off-wafer masks ``(K, 26, 26)`` as float32 ``(K, S·S, Q, Q)`` on the decoder's phase grid."""
    k = outline.shape[0]
    full = np.zeros((k, s * q, s * q), dtype=np.float32)
    full[:, : outline.shape[1], : outline.shape[2]] = outline
    return np.ascontiguousarray(full.reshape(k, q, s, q, s).transpose(0, 2, 4, 1, 3).reshape(k, s * s, q, q))


def _lock_phases(b: _Builder, probs: str, off: str, phases: int) -> str:
    """The outline lock on the phase grid: probabilities ``(N, P·3, Q, Q)`` → one-hot, same layout.

    ``off``: ``−2^127`` where a die is off-wafer, else 0, ``(N, P, Q, Q)``
    (see :func:`_off_phases`). Defect wins where ``defect − normal > 0``
    (ties go to normal, as in ``edge_infer.wafer.lock_outline``), on-wafer only:

        d = Clip(Conv(probs; defect 2^126, normal −2^126) + off, 0, 2^-23)
        one-hot = Conv([off, d]; boundary −2^-127·off, defect 2^23·d, normal 1 + 2^-127·off − 2^23·d)

    Scaling by a power of two is exact and ``defect − normal`` is rounded
    once, so the sum is 0 for a tie, ≤ −2^126 off-wafer, and ≥ 2^-23 for any
    positive difference (down to the smallest subnormal): d is exactly 0
    or 2^-23, and every one-hot value an exact 0 or 1.
    """
    diff = np.zeros((phases, phases * N_STATES, 1, 1), dtype=np.float32)
    states = np.zeros((phases * N_STATES, 2 * phases, 1, 1), dtype=np.float32)
    bias = np.zeros(phases * N_STATES, dtype=np.float32)
    for p in range(phases):
        diff[p, p * N_STATES + DEFECT], diff[p, p * N_STATES + NORMAL] = 2.0**126, -(2.0**126)
        states[p * N_STATES + BOUNDARY, p] = -(2.0**-127)
        states[p * N_STATES + NORMAL, p] = 2.0**-127
        states[p * N_STATES + DEFECT, phases + p] = 2.0**23
        states[p * N_STATES + NORMAL, phases + p] = -(2.0**23)
        bias[p * N_STATES + NORMAL] = 1
    d = b.op("Conv", [probs, b.const("lock_diff", diff)], "defect_minus_normal", kernel_shape=[1, 1])
    d = b.op("Add", [d, off], "defect_in_wafer")
    d = b.op("Clip", [d, b.const("zero_f", np.float32(0)), b.const("tiny_f", np.float32(2.0**-23))], "defect")
    both = b.op("Concat", [off, d], "off_and_defect", axis=1)
    return b.op("Conv", [both, b.const("lock_states", states), b.const("lock_bias", bias)], "onehot_phases", kernel_shape=[1, 1])


def _off_phases(b: _Builder, kind: str, name: str, s: int, q: int) -> str:
    """Every row's off-wafer dies on the decoder's phase grid as the lock wants them.

    float32 ``(N, S·S, Q, Q)``: −2^127 off-wafer, 0 on-wafer. Bank rows gather
    it from an initializer (one per outline); a caller's ``(N, 26, 26)`` mask
    is padded and reordered onto the grid, then scaled.
    """
    from onnx import TensorProto

    if kind == "bank":
        shifts = to_phases(b.bank_outlines, s, q) * np.float32(-(2.0**127))
        return b.op("Gather", [b.const("outline_shifts", shifts), name], "off", axis=0)
    off = b.op("Cast", [name], "off_f", to=TensorProto.FLOAT)
    off = b.op("Pad", [off, b.const("pad_to_grid", [0, 0, 0, 0, s * q - MAP_SHAPE[0], s * q - MAP_SHAPE[1]], np.int64)], "off_grid")
    off = b.op("Reshape", [off, b.const("grid_split", [-1, q, s, q, s], np.int64)], "off_split")
    off = b.op("Transpose", [off], "off_phase_major", perm=[0, 2, 4, 1, 3])
    off = b.op("Reshape", [off, b.const("phase_shape", [-1, s * s, q, q], np.int64)], "off_mask")
    return b.op("Mul", [off, b.const("off_shift", np.float32(-(2.0**127)))], "off")


def _lock(b: _Builder, probs: str, off_code: str) -> str:
    """One-hot maps: off-wafer dies (``off_code`` 2) boundary, others the higher of normal/defect.

    Exactly ``edge_infer.wafer.lock_outline``: code = [defect > normal] + 2·off-wafer
    (a tie is normal), then one row of a 4-row table per die. For decoders
    without a phase grid (the plain variant); slower than :func:`_lock_phases`.
    """
    from onnx import TensorProto

    normal = b.op("Gather", [probs, b.const("ch_normal", np.int64(NORMAL))], "normal", axis=3)
    defect = b.op("Gather", [probs, b.const("ch_defect", np.int64(DEFECT))], "defect", axis=3)
    code = b.op("Cast", [b.op("Greater", [defect, normal], "defect_wins")], "defect_code", to=TensorProto.INT32)
    code = b.op("Add", [code, off_code], "die_code")
    table = np.zeros((4, N_STATES), dtype=np.float32)
    table[[0, 1, 2, 3], [NORMAL, DEFECT, BOUNDARY, BOUNDARY]] = 1
    return b.op("Gather", [b.const("lock_table", table), code], "lock", output=OUTPUT, axis=0)


def _decode_and_lock(b: _Builder, decoder: "onnx.ModelProto", noisy: str, outline: "tuple[str, str]",
                     probs_output: bool) -> None:
    """Decoder then outline lock into ``maps`` (and the probabilities into ``probs``).

    ``outline``: ``("bank", ids)`` -- outline ids into the bank's table -- or
    ``("mask", name)`` -- a bool ``(N, 26, 26)`` input.
    """
    from onnx import TensorProto

    kind, name = outline
    head, tail, out = _copy_decoder(b, decoder, noisy)
    if tail:
        s, q = _phase_shape(decoder)
        off = _off_phases(b, kind, name, s, q)
        onehot = _lock_phases(b, head, off, s * s)
        _add_tail(b, tail, onehot, head, OUTPUT, "maps_tail")
        if probs_output:
            _add_tail(b, tail, head, head, PROBS, "probs_tail")
        return
    if kind == "bank":
        off = b.op("Gather", [b.const("outline_codes", np.asarray(b.bank_outlines, dtype=np.int32) * 2), name], "off_code", axis=0)
    else:
        off = b.op("Cast", [name], "outline_i32", to=TensorProto.INT32)
        off = b.op("Mul", [off, b.const("two", np.int32(2))], "off_code")
    _lock(b, out, off)
    if probs_output:
        b.nodes.append(__import__("onnx").helper.make_node("Identity", [out], [PROBS], name="probs_out"))


def _model(b: _Builder, name: str, inputs: list, outputs: list, doc: str) -> "onnx.ModelProto":
    import onnx
    from onnx import helper

    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edge-infer export.generator_graph", doc_string=doc)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    return model


def _map_output(name: str = OUTPUT) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *MAP_SHAPE])


def build_generator(decoder: "onnx.ModelProto", latents: np.ndarray, std: np.ndarray,
                    outline_ids: np.ndarray, outlines: np.ndarray) -> "onnx.ModelProto":
    """``generator.onnx``: bank rows, seed, row0, strength → one-hot maps (see the module docstring)."""
    from onnx import TensorProto, helper

    b = _Builder()
    latent = b.op("Gather", [b.const("bank_latents", np.ascontiguousarray(latents, np.float32)), "source"], "bank_latent", axis=0)
    per_element = np.repeat(np.asarray(std, np.float32), LATENT_SIZE // LATENT_SHAPE[0])
    sigma = b.op("Mul", ["strength", b.const("latent_std", per_element)], "sigma")
    n = b.op("Shape", ["source"], "n")
    row = b.op("Range", [b.const("zero", np.int64(0)), b.op("Squeeze", [n], "n_scalar"), b.const("one", np.int64(1))], "offsets")
    row = b.op("Add", [row, "row0"], "rows")
    noisy = _noisy_latent(b, latent, sigma, "seed", row, None)
    ids = b.op("Gather", [b.const("bank_outline_ids", np.asarray(outline_ids, np.int64)), "source"], "outline_id", axis=0)
    b.bank_outlines = np.asarray(outlines, dtype=bool)
    _decode_and_lock(b, decoder, noisy, ("bank", ids), probs_output=False)
    inputs = [
        helper.make_tensor_value_info("source", TensorProto.INT64, [BATCH]),
        helper.make_tensor_value_info("seed", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("row0", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("strength", TensorProto.FLOAT, [1]),
    ]
    return _model(b, "edge_infer_generator", inputs, [_map_output()],
                  "edge-infer generator: bank rows + seed + row0 + strength -> one-hot wafer maps "
                  "(counter-based noise, decoder, outline lock); see docs/bundle-format.md")


def build_core(decoder: "onnx.ModelProto") -> "onnx.ModelProto":
    """``generator_core.onnx``: caller's latents, σ, outlines, seed, rows, attempt → maps and probabilities."""
    from onnx import TensorProto, helper

    b = _Builder()
    noisy = _noisy_latent(b, "latent", _sigma_per_element(b, "sigma"), "seed", "row", "attempt")
    _decode_and_lock(b, decoder, noisy, ("mask", "outline"), probs_output=True)
    inputs = [
        helper.make_tensor_value_info("latent", TensorProto.FLOAT, [BATCH, *LATENT_SHAPE]),
        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, [BATCH, LATENT_SHAPE[0]]),
        helper.make_tensor_value_info("outline", TensorProto.BOOL, [BATCH, MAP_SHAPE[0], MAP_SHAPE[1]]),
        helper.make_tensor_value_info("seed", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("row", TensorProto.INT64, [BATCH]),
        helper.make_tensor_value_info("attempt", TensorProto.INT64, [BATCH]),
    ]
    return _model(b, "edge_infer_generator_core", inputs, [_map_output(), _map_output(PROBS)],
                  "edge-infer generator core: latents + sigma + outlines + seed + rows + attempt -> "
                  "one-hot wafer maps and decoder probabilities; see docs/bundle-format.md")


def noise_probe() -> "onnx.ModelProto":
    """The noise part alone (latent, sigma, seed, row, attempt → noisy latent), for verification."""
    from onnx import TensorProto, helper

    b = _Builder()
    noisy = _noisy_latent(b, "latent", _sigma_per_element(b, "sigma"), "seed", "row", "attempt")
    b.nodes.append(helper.make_node("Identity", [noisy], ["noisy"], name="out"))
    inputs = [
        helper.make_tensor_value_info("latent", TensorProto.FLOAT, [BATCH, *LATENT_SHAPE]),
        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, [BATCH, LATENT_SHAPE[0]]),
        helper.make_tensor_value_info("seed", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("row", TensorProto.INT64, [BATCH]),
        helper.make_tensor_value_info("attempt", TensorProto.INT64, [BATCH]),
    ]
    out = [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, [BATCH, *LATENT_SHAPE])]
    return _model(b, "edge_infer_noise_probe", inputs, out, "noise only, for verification")
