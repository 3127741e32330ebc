"""The decoder's fused CPU path computes the reference function exactly (issue 10, goal 7).

``Decoder(path="fused")`` folds nearest x2 upsampling into a stride-2 transposed conv, moves the
skip's 1x1 conv before the upsampling and decodes in chunks of ``DECODE_CHUNK``. Each change is
an identity of the maths, so in float64 the two paths must agree to rounding, in values and in
gradients, for any weights.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow_hgn.config import ModelConfig
from hamflow_hgn.models.hgn import HGN
from hamflow_hgn.models.networks import (
    DECODE_CHUNK,
    Decoder,
    ResidualUpBlock,
    upsample_conv_kernel,
)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 5),
    size=st.integers(1, 6),
)
def test_upsample_conv_kernel_equals_upsample_then_conv(seed, c_in, c_out, size):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c_out, c_in, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(2, c_in, size, size, generator=g, dtype=torch.float64)
    reference = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
    fused = F.conv_transpose2d(x, upsample_conv_kernel(w), stride=2, padding=1)
    assert fused.shape == reference.shape
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-12)


def test_upsample_conv_kernel_refuses_other_shapes():
    with pytest.raises(ValueError, match=r"expected \(O, I, 3, 3\), got \(2, 3, 5, 5\)"):
        upsample_conv_kernel(torch.zeros(2, 3, 5, 5))


@pytest.mark.parametrize("c_in, c_out", [(4, 4), (3, 6)])  # identity skip and 1x1-conv skip
def test_block_paths_agree_in_value_and_gradient(c_in, c_out):
    torch.manual_seed(0)
    block = ResidualUpBlock(c_in, c_out).double()
    with torch.no_grad():  # weights well away from init, so that a wrong tap would show
        for p in block.parameters():
            p.normal_()
    x = torch.randn(3, c_in, 5, 5, dtype=torch.float64, requires_grad=True)
    out = {}
    for fused in (False, True):
        block.zero_grad()
        x.grad = None
        y = block(x, fused=fused)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
        out[fused] = (y.detach(), grads)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=0, atol=1e-12)
    for g_fused, g_ref in zip(out[True][1], out[False][1]):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-10)


def test_decoder_paths_agree_across_chunks():
    torch.manual_seed(1)
    dec = Decoder(4, width=6, channels=3, n_up=2).double()
    q = torch.randn(DECODE_CHUNK + 5, 4, 4, 4, dtype=torch.float64)  # two chunks, one ragged
    dec.path = "reference"
    ref = dec(q)
    dec.path = "fused"
    fused = dec(q)
    assert fused.shape == ref.shape == (DECODE_CHUNK + 5, 3, 16, 16)
    torch.testing.assert_close(fused, ref, rtol=0, atol=1e-12)


def test_auto_path_per_device_and_bad_path():
    dec = Decoder(4, width=4, n_up=1)
    assert dec.path == "auto"
    assert dec.resolved_path(torch.device("cpu")) == "fused"
    assert dec.resolved_path(torch.device("cuda")) == "reference"
    with pytest.raises(ValueError, match="expected 'auto' or one of"):
        dec.path = "fast"
    assert dec.path == "auto"  # a refused value leaves the old one


def test_hgn_loss_identical_on_both_paths():
    """The whole training loss, not only the decoder: same value, same gradients."""
    cfg = ModelConfig.reduced(8, frames=5, image_size=16)
    torch.manual_seed(0)
    model = HGN(cfg).double()
    images = torch.rand(2, 5, 3, 16, 16, dtype=torch.float64)
    results = {}
    for path in ("reference", "fused"):
        model.decoder.path = path
        model.zero_grad()
        torch.manual_seed(3)
        loss, _ = model(images)
        loss.backward()
        results[path] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(results["fused"][0], results["reference"][0], rtol=1e-12, atol=0)
    for a, b in zip(results["fused"][1], results["reference"][1]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
