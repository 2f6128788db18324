"""An exactly equivalent decoder graph that onnxruntime runs fast on CPU.

Why: ``torch.onnx`` exports the decoder as three ``ConvTranspose`` nodes, and
onnxruntime's CPU kernel for ``ConvTranspose`` is a slow im2col/col2im path
that the NCHWc layout optimiser (``ORT_ENABLE_ALL`` on x86) does not touch.
The plain decoder therefore runs at a fraction of the encoder's speed although
both do about 0.77 M multiply-adds per map (measurements: docs/performance.md).

What: every transposed convolution is rewritten, at export time and from the
weights alone, into a plain ``Conv`` whose output channels hold the *phases*
of the upsampled output (sub-pixel convolution):

* ``t_conv1`` (stride 1) is a ``Conv`` with the flipped, in/out-swapped
  kernel on the input padded by ``k - 1 - p``.
* ``t_conv2`` (stride 2) becomes four small ``Conv`` s on the 7×7 grid, one
  per 2×2 output phase, each with only its own taps (1×1, 1×2, 2×1, 2×2).
* ``t_conv3`` (stride 2) is applied directly to those phases, never
  interleaving them: seen from the 7×7 phase grid it is a stride-4 transposed
  convolution whose 16·3 output channels are its 4×4 output phases. It is
  computed as a sum of one ``Conv`` per input phase, each with only the taps
  that phase feeds (one big sub-pixel kernel would be 86 % zeros);
  onnxruntime fuses each ``Add`` into the following ``Conv``.
* The phases are interleaved once, at the very end, together with the
  NCHW→NHWC transpose the bundle format asks for; onnxruntime folds the
  channels-last transpose into its NCHWc reorder, leaving one small 5-D
  ``Transpose`` and a crop (7·4 = 28 → 26).

The whole graph is thus ``Conv``s plus cheap reshapes, so onnxruntime keeps
it in its blocked NCHWc layout end to end. The rewrite only moves weights
around (each output is the same sum of the same products, in another order),
so it matches PyTorch to float32 rounding (~1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import onnx
    import torch

LATENT_CHANNELS, LATENT_SIZE = 64, 3
INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "latent", "wafer", "batch"


@dataclass(frozen=True)
class PhasePlan:
    """How one axis of a transposed convolution maps onto a plain convolution.

    Output position ``o = stride * q + r`` is phase ``r`` at coarse position
    ``q``; it reads the input at ``q + t - pad_begin`` with kernel tap
    ``taps[r][t]`` (``None`` where that phase has no tap).
    """

    in_length: int
    out_length: int  # the transposed convolution's output length
    stride: int
    phase_length: int  # Q = ceil(out_length / stride): positions per phase
    kernel: int  # the plain convolution's kernel length
    pad_begin: int
    pad_end: int
    taps: tuple[tuple[int | None, ...], ...]  # [phase][conv tap] -> transposed-conv tap


def phase_plan(in_length: int, stride: int, padding: int, kernel: int, output_padding: int = 0) -> PhasePlan:
    """Plan the sub-pixel rewrite of a 1-D transposed convolution (dilation 1).

    With ``o = stride * i - padding + k``, output phase ``r`` at ``q`` takes
    input ``i = q + (r + padding - k) / stride`` for the taps ``k`` where that
    division is exact: a plain convolution over ``q`` per phase, all phases
    sharing one kernel window.
    """
    if min(in_length, stride, kernel) < 1 or padding < 0 or not 0 <= output_padding < stride:
        raise ValueError(f"unsupported transposed convolution: length {in_length}, stride {stride}, "
                         f"padding {padding}, kernel {kernel}, output_padding {output_padding}")
    out_length = (in_length - 1) * stride - 2 * padding + kernel + output_padding
    if out_length < 1:
        raise ValueError(f"transposed convolution with empty output (length {out_length})")
    offsets = {r: [((r + padding - k) // stride, k) for k in range(kernel) if (r + padding - k) % stride == 0]
               for r in range(stride)}
    all_d = [d for taps in offsets.values() for d, _ in taps]
    d_min, d_max = min(all_d), max(all_d)
    conv_kernel = d_max - d_min + 1
    phase_length = -(-out_length // stride)
    pad_begin = -d_min
    pad_end = phase_length + conv_kernel - 1 - in_length - pad_begin
    if pad_begin < 0 or pad_end < 0:
        # Would need a crop of the input; never the case for this architecture.
        raise ValueError("transposed convolution whose sub-pixel form needs negative padding")
    taps = []
    for r in range(stride):
        row: list[int | None] = [None] * conv_kernel
        for d, k in offsets[r]:
            row[d - d_min] = k
        taps.append(tuple(row))
    return PhasePlan(in_length, out_length, stride, phase_length, conv_kernel, pad_begin, pad_end, tuple(taps))


def phase_conv_weights(weight: np.ndarray, bias: np.ndarray, plan_h: PhasePlan,
                       plan_w: PhasePlan) -> tuple[np.ndarray, np.ndarray]:
    """The plain ``Conv`` weight and bias equivalent to a 2-D transposed convolution.

    ``weight`` is PyTorch's ``(C_in, C_out, kH, kW)``. The result has
    ``sH * sW * C_out`` output channels ordered ``(phase_row, phase_col, c_out)``,
    the depth-to-space "DCR" order.
    """
    c_in, c_out = weight.shape[:2]
    sh, sw = plan_h.stride, plan_w.stride
    conv = np.zeros((sh * sw * c_out, c_in, plan_h.kernel, plan_w.kernel), dtype=np.float64)
    for rh in range(sh):
        for rw in range(sw):
            block = conv[(rh * sw + rw) * c_out:(rh * sw + rw + 1) * c_out]
            for th, kh in enumerate(plan_h.taps[rh]):
                for tw, kw in enumerate(plan_w.taps[rw]):
                    if kh is not None and kw is not None:
                        block[:, :, th, tw] = weight[:, :, kh, kw].T
    return conv, np.tile(np.asarray(bias, dtype=np.float64), sh * sw)


def on_phase_grid(weight: np.ndarray, in_stride: int, stride: int) -> np.ndarray:
    """Re-express a transposed convolution so it reads its input's phases directly.

    If the input ``x`` of a transposed convolution (stride ``stride``, weight
    ``(C_in, C_out, k, k)``) is itself the interleaving of ``in_stride``²
    phases ``x[s·j + a] = phase[a][j]``, then ``o = stride·(s·j + a) - p + k``:
    the same layer is a transposed convolution of stride ``s·stride`` over the
    phase tensor (channels ``(a_row, a_col, c_in)``), whose kernel holds the
    original one shifted by ``stride·a``. Returns that kernel.
    """
    c_in, c_out, kh, kw = weight.shape
    size_h, size_w = stride * (in_stride - 1) + kh, stride * (in_stride - 1) + kw
    merged = np.zeros((in_stride * in_stride * c_in, c_out, size_h, size_w), dtype=np.float64)
    for ah in range(in_stride):
        for aw in range(in_stride):
            a = ah * in_stride + aw
            merged[a * c_in:(a + 1) * c_in, :, stride * ah:stride * ah + kh, stride * aw:stride * aw + kw] = weight
    return merged


def _layer(module: "torch.nn.Module", name: str) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Weights and (stride, padding, output_padding) of a square ConvTranspose2d, checked."""
    import torch

    layer = getattr(module, name, None)
    if not isinstance(layer, torch.nn.ConvTranspose2d):
        raise ValueError(f"decoder has no ConvTranspose2d {name!r}; build_fast_decoder expects training.model.Decoder")
    square = (len(set(layer.stride)) == 1 and len(set(layer.padding)) == 1
              and len(set(layer.output_padding)) == 1 and layer.kernel_size[0] == layer.kernel_size[1])
    if not square or layer.groups != 1 or tuple(layer.dilation) != (1, 1) or layer.padding_mode != "zeros" \
            or layer.bias is None:
        raise ValueError(f"{name}: only square, ungrouped, undilated, zero-padded ConvTranspose2d with bias is supported")
    weight = layer.weight.detach().cpu().double().numpy()
    bias = layer.bias.detach().cpu().double().numpy()
    return weight, bias, layer.stride[0], layer.padding[0], layer.output_padding[0]


def _pads(plan: PhasePlan) -> list[int]:
    """ONNX Conv pads (top, left, bottom, right) of a square plan."""
    return [plan.pad_begin, plan.pad_begin, plan.pad_end, plan.pad_end]


def _trim_taps(weight: np.ndarray, pads: list[int]) -> tuple[np.ndarray, list[int]]:
    """Drop all-zero kernel rows/columns at the kernel's edges, shifting the padding to match.

    A conv reads input ``q + t - pad_begin`` with tap ``t``; removing ``n``
    leading zero taps and ``n`` of padding reads the same inputs. Trimming
    stops where the padding would go negative (ONNX pads cannot).
    """
    top, left, bottom, right = pads
    rows = np.flatnonzero(np.abs(weight).sum(axis=(0, 1, 3)))
    cols = np.flatnonzero(np.abs(weight).sum(axis=(0, 1, 2)))
    if rows.size == 0:  # no tap at all: keep one so the conv still yields its bias
        rows = cols = np.array([0])
    kh, kw = weight.shape[2:]
    r0, c0 = min(rows[0], top), min(cols[0], left)
    r1, c1 = kh - 1 - min(kh - 1 - rows[-1], bottom), kw - 1 - min(kw - 1 - cols[-1], right)
    trimmed = weight[:, :, r0:r1 + 1, c0:c1 + 1]
    return trimmed, [top - r0, left - c0, bottom - (kh - 1 - r1), right - (kw - 1 - c1)]


class _Graph:
    """A tiny ONNX graph builder: named nodes (for profiles) and float32/int64 constants."""

    def __init__(self) -> None:
        import onnx

        self.onnx = onnx
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, value: np.ndarray | Sequence[int], dtype: type = np.float32) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs: object) -> str:
        out = output or name
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray, plan_h: PhasePlan, plan_w: PhasePlan) -> str:
        return self.node("Conv", [x, self.const(f"{name}.weight", weight), self.const(f"{name}.bias", bias)], name,
                         kernel_shape=[plan_h.kernel, plan_w.kernel],
                         pads=[plan_h.pad_begin, plan_w.pad_begin, plan_h.pad_end, plan_w.pad_end])


def build_fast_decoder(decoder: "torch.nn.Module", opset: int = 17) -> "onnx.ModelProto":
    """The decoder as an exactly equivalent, Conv-only ONNX graph.

    ``decoder`` is a :class:`training.model.Decoder` (its weights are read, not
    traced). The graph takes ``latent`` float32 ``(batch, 64, 3, 3)`` and
    returns ``wafer`` float32 ``(batch, 26, 26, 3)``: per-die sigmoid
    probabilities, channels-last like ``data.npy``, ``batch`` dynamic.
    Raises ``ValueError`` for a decoder of another shape.
    """
    import onnx
    from onnx import TensorProto, helper

    if opset < 13:
        raise ValueError(f"opset {opset} is too old; the fast decoder needs opset 13 or newer")
    w1, b1, s1, p1, op1 = _layer(decoder, "t_conv1")
    w2, b2, s2, p2, op2 = _layer(decoder, "t_conv2")
    w3, b3, s3, p3, op3 = _layer(decoder, "t_conv3")
    if w1.shape[0] != LATENT_CHANNELS or w2.shape[0] != w1.shape[1] or w3.shape[0] != w2.shape[1]:
        raise ValueError("decoder channel counts do not chain from a 64-channel latent")

    g = _Graph()
    # t_conv1: a stride-1 transposed conv is a conv on the padded input (one phase).
    if s1 != 1:
        raise ValueError("t_conv1 must have stride 1")
    plan1 = phase_plan(LATENT_SIZE, s1, p1, w1.shape[2], op1)
    x = g.conv(INPUT_NAME, "t_conv1", *phase_conv_weights(w1, b1, plan1, plan1), plan1, plan1)
    x = g.node("Relu", [x], "relu1")
    # t_conv2: its s2×s2 output phases, each on the coarse grid.
    plan2 = phase_plan(plan1.out_length, s2, p2, w2.shape[2], op2)
    if plan2.phase_length * s2 != plan2.out_length:
        raise ValueError("t_conv2 output is not a whole number of phases")
    w2c, b2c = phase_conv_weights(w2, b2, plan2, plan2)
    # t_conv3 read straight from t_conv2's phases: stride s2·s3 on the same coarse grid.
    merged = on_phase_grid(w3, s2, s3)
    plan3 = phase_plan(plan2.phase_length, s2 * s3, p3, merged.shape[2], op3)
    expected = (plan2.out_length - 1) * s3 - 2 * p3 + w3.shape[2] + op3
    if plan3.out_length != expected:  # the merge must not change the layer's output size
        raise ValueError("t_conv3 cannot be merged onto t_conv2's phase grid")
    w3c, b3c = phase_conv_weights(merged, b3, plan3, plan3)
    # One small conv per t_conv2 phase (only its own taps), and t_conv3 as the sum
    # of one conv per input phase (only the taps that phase feeds): most taps of the
    # single sub-pixel kernels are structural zeros (t_conv3's: 86 %), and separate
    # convs skip them. onnxruntime fuses each Add into the next Conv (NCHWc "Sum").
    c2 = w2.shape[1]
    total = None
    for a in range(s2 * s2):
        ours = slice(a * c2, (a + 1) * c2)
        w, pads = _trim_taps(w2c[ours], _pads(plan2))
        h = g.node("Conv", [x, g.const(f"t_conv2_phase{a}.weight", w), g.const(f"t_conv2_phase{a}.bias", b2c[ours])],
                   f"t_conv2_phase{a}", kernel_shape=list(w.shape[2:]), pads=pads)
        h = g.node("Relu", [h], f"relu2_phase{a}")
        w, pads = _trim_taps(w3c[:, ours], _pads(plan3))
        inputs = [h, g.const(f"t_conv3_from{a}.weight", w)] + ([g.const("t_conv3.bias", b3c)] if total is None else [])
        y = g.node("Conv", inputs, f"t_conv3_from_phase{a}", kernel_shape=list(w.shape[2:]), pads=pads)
        total = y if total is None else g.node("Add", [total, y], f"t_conv3_sum{a}")
    assert total is not None
    x = total
    x = g.node("Sigmoid", [x], "sigmoid")
    # Interleave the S×S phases once, with the NHWC transpose, then crop S·Q → out.
    s, q, c, out = plan3.stride, plan3.phase_length, w3.shape[1], plan3.out_length
    x = g.node("Transpose", [x], "to_channels_last", perm=[0, 2, 3, 1])  # (N, Q, Q, S·S·C): folded into NCHWc reorder
    x = g.node("Reshape", [x, g.const("phase_split_shape", [-1, q, q, s, s * c], np.int64)], "split_phase_rows")
    x = g.node("Transpose", [x], "interleave_rows", perm=[0, 1, 3, 2, 4])  # (N, Q, S, Q, S·C)
    full = s * q
    last = "wafer_full" if full != out else OUTPUT_NAME
    x = g.node("Reshape", [x, g.const("nhwc_shape", [-1, full, full, c], np.int64)], "to_nhwc", output=last)
    if full != out:
        x = g.node("Slice", [x, g.const("crop_starts", [0, 0], np.int64), g.const("crop_ends", [out, out], np.int64),
                             g.const("crop_axes", [1, 2], np.int64)], "crop", output=OUTPUT_NAME)

    graph = helper.make_graph(
        g.nodes, "wafer_decoder_fast",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_AXIS, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_AXIS, out, out, c])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edge-infer export.fast_decoder",
                              doc_string="Decoder rewritten into Conv-only sub-pixel form; exact (see export/fast_decoder.py)")
    # The oldest IR that carries this opset, so older onnxruntime builds load it too.
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model
