"""export.fast_decoder: the Conv-only decoder graph equals PyTorch and the plain export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.fast_decoder import on_phase_grid, phase_conv_weights, phase_plan  # noqa: E402
from export.fast_decoder import build_fast_decoder  # noqa: E402
from training.model import Decoder  # noqa: E402

TOL = 1e-5


def _decoder(seed: int = 0, scale: float = 1.0) -> Decoder:
    torch.manual_seed(seed)
    dec = Decoder().eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(scale)
    return dec


def _session(model) -> "ort.InferenceSession":
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _torch_nhwc(dec: Decoder, z: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return dec(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    # Weights scaled up so that every ReLU sees both signs and the sigmoid is not saturated flat.
    return _decoder(seed=0, scale=2.0)


@pytest.fixture(scope="module")
def fast_session(decoder):
    return _session(build_fast_decoder(decoder))


@pytest.mark.parametrize("batch", [1, 7, 64, 300])
def test_fast_decoder_matches_pytorch(decoder, fast_session, batch):
    z = np.random.default_rng(batch).standard_normal((batch, 64, 3, 3)).astype(np.float32) * 2
    out = fast_session.run(None, {"latent": z})[0]
    ref = _torch_nhwc(decoder, z)
    assert out.shape == (batch, 26, 26, 3) and out.dtype == np.float32
    assert np.abs(out - ref).max() < TOL
    # Not a trivially flat output: the comparison had something to compare.
    assert ref.std() > 0.05


def test_other_weights_match_too():
    dec = _decoder(seed=123, scale=0.5)
    z = np.random.default_rng(5).standard_normal((5, 64, 3, 3)).astype(np.float32)
    out = _session(build_fast_decoder(dec)).run(None, {"latent": z})[0]
    assert np.abs(out - _torch_nhwc(dec, z)).max() < TOL


def test_interface_names_shapes_and_dynamic_batch(decoder):
    model = build_fast_decoder(decoder)
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp)) == ("latent", ["batch", 64, 3, 3])
    assert (out.name, dims(out)) == ("wafer", ["batch", 26, 26, 3])
    assert model.opset_import[0].version == 17
    # The point of the rewrite: no ConvTranspose left for onnxruntime's slow kernel.
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" not in ops and "Conv" in ops


def test_opset_argument(decoder):
    assert build_fast_decoder(decoder, opset=18).opset_import[0].version == 18
    with pytest.raises(ValueError):
        build_fast_decoder(decoder, opset=11)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_equals_plain_torch_onnx_export(decoder, fast_session, tmp_path):
    """The fast graph gives the plain (ConvTranspose) export's output."""

    class Plain(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.d = d

        def forward(self, z):
            return self.d(z).permute(0, 2, 3, 1)

    path = tmp_path / "plain.onnx"
    wrapper = Plain(decoder).eval()
    torch.onnx.export(wrapper, (torch.zeros(2, 64, 3, 3),), str(path), input_names=["latent"],
                      output_names=["wafer"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert "ConvTranspose" in {n.op_type for n in onnx.load(str(path)).graph.node}
    z = np.random.default_rng(9).standard_normal((33, 64, 3, 3)).astype(np.float32)
    a = plain.run(None, {"latent": z})[0]
    b = fast_session.run(None, {"latent": z})[0]
    assert np.abs(a - b).max() < TOL


@pytest.mark.parametrize("stride,padding,kernel,output_padding,length", [
    (1, 0, 5, 0, 3), (2, 1, 3, 1, 7), (2, 2, 3, 1, 14), (3, 1, 4, 2, 5), (2, 0, 2, 0, 4), (4, 2, 5, 1, 7),
])
def test_phase_rewrite_of_any_transposed_conv(stride, padding, kernel, output_padding, length):
    """The sub-pixel plan is exact for transposed convs beyond the three in the model."""
    rng = np.random.default_rng(stride * 100 + kernel)
    x = rng.standard_normal((2, 3, length, length))
    w = rng.standard_normal((3, 4, kernel, kernel))
    b = rng.standard_normal(4)
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                               stride=stride, padding=padding, output_padding=output_padding).numpy()
    plan = phase_plan(length, stride, padding, kernel, output_padding)
    wc, bc = phase_conv_weights(w, b, plan, plan)
    y = torch.nn.functional.conv2d(
        torch.nn.functional.pad(torch.from_numpy(x), (plan.pad_begin, plan.pad_end, plan.pad_begin, plan.pad_end)),
        torch.from_numpy(wc), torch.from_numpy(bc)).numpy()
    s, q, o = stride, plan.phase_length, plan.out_length
    assert y.shape == (2, s * s * 4, q, q) and o == ref.shape[-1]
    full = y.reshape(2, s, s, 4, q, q).transpose(0, 3, 4, 1, 5, 2).reshape(2, 4, s * q, s * q)[:, :, :o, :o]
    np.testing.assert_allclose(full, ref, atol=1e-9)


def test_merge_onto_phase_grid_is_exact():
    """A stride-2 transposed conv of an interleaved input == stride-4 one of its phases."""
    rng = np.random.default_rng(1)
    phases = rng.standard_normal((1, 4 * 2, 5, 5))  # 2×2 phases of a 10×10, 2 channels each
    fine = phases.reshape(1, 2, 2, 2, 5, 5).transpose(0, 3, 4, 1, 5, 2).reshape(1, 2, 10, 10)
    w = rng.standard_normal((2, 3, 3, 3))
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(fine), torch.from_numpy(w), stride=2, padding=2,
                                               output_padding=1).numpy()
    got = torch.nn.functional.conv_transpose2d(torch.from_numpy(phases), torch.from_numpy(on_phase_grid(w, 2, 2)),
                                               stride=4, padding=2, output_padding=1).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_rejects_a_different_architecture():
    dec = Decoder()
    dec.t_conv2 = torch.nn.ConvTranspose2d(32, 16, kernel_size=3, stride=2, padding=1, output_padding=1, dilation=2)
    with pytest.raises(ValueError, match="t_conv2"):
        build_fast_decoder(dec)
    dec = Decoder()
    del dec.t_conv3
    with pytest.raises(ValueError, match="t_conv3"):
        build_fast_decoder(dec)
    with pytest.raises(ValueError):
        phase_plan(3, 2, 0, 3, output_padding=2)


@pytest.mark.parametrize("pads", [[0, 0, 1, 1], [1, 0, 0, 1], [2, 2, 2, 2], [0, 0, 0, 0]])
def test_trimming_zero_taps_keeps_the_conv(pads):
    from export.fast_decoder import _trim_taps

    rng = np.random.default_rng(sum(pads))
    w = np.zeros((4, 3, 3, 3))
    w[:, :, 1:, 1] = rng.standard_normal((4, 3, 2))  # zero first row, first and last columns
    x = rng.standard_normal((2, 3, 5, 5))
    t, l, b, r = pads
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.from_numpy(x), (l, r, t, b)), torch.from_numpy(w))
    wt, (t2, l2, b2, r2) = _trim_taps(w, pads)
    assert min(t2, l2, b2, r2) >= 0 and wt.size <= w.size
    got = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.from_numpy(x), (l2, r2, t2, b2)), torch.from_numpy(wt))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-12)
    if pads == [2, 2, 2, 2]:
        assert wt.shape[2:] == (2, 1)
