"""Fused input gradient of a softplus MLP, with its own hand-written backward.

For ``E(x) = w · s(z_L)``, ``z_l = W_l h_{l-1} + b_l``, ``h_l = s(z_l)``, ``h_0 = x`` and
``s = softplus`` (so ``s' = σ``, the logistic sigmoid), the input gradient is the chain

    a_L = w,   g_l = σ(z_l) ⊙ a_l,   a_{l-1} = g_l W_l,   dE/dx = a_0.

Training differentiates ``dE/dx`` once more, with respect to ``x`` and the weights. Autograd would
record a node per operation of that chain, and autograd-inside-autograd records the chain itself
first. Here the chain is one autograd node whose backward is written out by hand: one pass back
through the ``a``/``g`` chain, then one back through the ``z`` chain. It supports one level of
differentiation (``once_differentiable``), which is all a training step needs.

On a CPU both passes run with subnormal floats flushed to zero (see :func:`flush_denormals`).
Where a unit saturates, ``σ(z)`` is tiny and its products with other small factors fall below
float32's smallest normal number (about ``1.2e-38``); x86 cores handle such operands in
microcode, many times slower than normal ones. Flushing them changes no value above that
threshold; without it, an NHF step on eight Gaussians took 1.68× as long after 2,600 steps of
training (``benchmarks/nhf_denormals.py``, docs/benchmarks/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

FLUSH_DENORMALS = True
"""Run the kernel's CPU passes with subnormals flushed to zero; ``False`` runs them as they come
(for measuring what the flush buys)."""

# The smallest positive float32 subnormal, built from its bits so that no conversion can flush it.
_SUBNORMAL = torch.tensor([1], dtype=torch.int32).view(torch.float32)


def denormals_flushed() -> bool:
    """Whether this CPU thread flushes subnormals to zero now (``torch.set_flush_denormal``)."""
    return bool(_SUBNORMAL.mul(1.0).item() == 0.0)


@contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Flush subnormal floats to zero on this CPU thread inside the block, then restore the
    setting it found. Does nothing on other devices, with :data:`FLUSH_DENORMALS` off, or where
    torch cannot flush (``torch.set_flush_denormal`` returns ``False``).

    Example:
        >>> was = denormals_flushed()
        >>> with flush_denormals(torch.device("cpu")):
        ...     tiny = _SUBNORMAL * 1.0
        >>> float(tiny), denormals_flushed() == was
        (0.0, True)
    """
    if device.type != "cpu" or not FLUSH_DENORMALS or denormals_flushed():
        yield
        return
    if not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class MLPInputGrad(torch.autograd.Function):
    """``dE/dx`` of a softplus MLP; call as ``MLPInputGrad.apply(x, W_1, b_1, …, W_L, b_L, w)``."""

    @staticmethod
    def forward(ctx, x: Tensor, *params: Tensor) -> Tensor:
        with flush_denormals(x.device):
            return MLPInputGrad._forward(ctx, x, *params)

    @staticmethod
    def _forward(ctx, x: Tensor, *params: Tensor) -> Tensor:
        weights, biases, w_out = params[0:-1:2], params[1:-1:2], params[-1]
        depth = len(weights)
        inputs, sigmas = [x], []
        h = x
        for layer in range(depth):
            z = torch.addmm(biases[layer], h, weights[layer].t())
            sigmas.append(torch.sigmoid(z))
            if layer < depth - 1:
                h = F.softplus(z)
                inputs.append(h)
        a, gs, acts = w_out, [None] * depth, [None] * depth
        for layer in reversed(range(depth)):
            acts[layer] = a
            gs[layer] = sigmas[layer] * a
            a = gs[layer] @ weights[layer]
        ctx.depth = depth
        ctx.save_for_backward(*params, *inputs, *sigmas, *gs, *acts[:-1])
        return a

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        with flush_denormals(grad_out.device):
            return MLPInputGrad._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        depth = ctx.depth
        saved = list(ctx.saved_tensors)
        params, saved = saved[: 2 * depth + 1], saved[2 * depth + 1 :]
        inputs, saved = saved[:depth], saved[depth:]
        sigmas, saved = saved[:depth], saved[depth:]
        gs, acts = saved[:depth], [*saved[depth:], params[-1]]
        weights = params[0:-1:2]
        d_weights = [None] * depth
        d_z = [None] * depth

        # Back through the gradient chain: dE/dx = g_0 W_0, g_l = σ_l ⊙ a_l, a_l = g_{l+1} W_{l+1}.
        d_weights[0] = gs[0].t() @ grad_out
        d_g = grad_out @ weights[0].t()
        d_w_out = None
        for layer in range(depth):
            sig = sigmas[layer]
            d_z[layer] = d_g * acts[layer] * sig * (1 - sig)
            d_a = d_g * sig
            if layer < depth - 1:
                d_weights[layer + 1] = gs[layer + 1].t() @ d_a
                d_g = d_a @ weights[layer + 1].t()
            else:
                d_w_out = d_a.sum(0, keepdim=True)

        # Back through the forward chain: z_l = h_{l-1} W_l^T + b_l, h_l = softplus(z_l).
        d_biases = [None] * depth
        d_x = None
        for layer in reversed(range(depth)):
            d_biases[layer] = d_z[layer].sum(0)
            d_weights[layer] = d_weights[layer] + d_z[layer].t() @ inputs[layer]
            d_h = d_z[layer] @ weights[layer]
            if layer > 0:
                d_z[layer - 1] = d_z[layer - 1] + d_h * sigmas[layer - 1]
            else:
                d_x = d_h
        grads: list[Tensor | None] = [d_x]
        for dw, db in zip(d_weights, d_biases):
            grads += [dw, db]
        grads.append(d_w_out)
        return tuple(grads)
