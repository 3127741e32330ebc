"""The four HGN networks of paper Sec. 3.2 and A.1 (encoder, f_psi, energies, decoder) and
the MLP builder the baselines share.

Shapes with the A.1 defaults (32x32 RGB, T+1 = 31 frames, reconstruct protocol):

==================  =========================  ==========================
network             input                      output
==================  =========================  ==========================
:class:`Encoder`    ``(B, 31*3, 32, 32)``      mean, log-var ``(B, 48, 4, 4)``
:class:`StateTransform`  z ``(B, 48, 4, 4)``   s0 ``(B, 32, 4, 4)`` = q, p
:class:`ConvEnergy` q or p ``(B, 16, 4, 4)``   ``(B,)``
:class:`Decoder`    q ``(B, 16, 4, 4)``        ``(B, 3, 32, 32)``
==================  =========================  ==========================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamflow import Energy

__all__ = [
    "Encoder",
    "StateTransform",
    "ConvEnergy",
    "ConfinedEnergy",
    "DECODER_PATHS",
    "DECODE_CHUNK",
    "upsample_conv_kernel",
    "ResidualUpBlock",
    "Decoder",
    "mlp",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
}


def mlp(widths: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with ``activation`` between them.

    Example:
        >>> mlp([4, 8, 2], "tanh")
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): Tanh()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    widths = [int(w) for w in widths]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _he_init(module: nn.Module) -> None:
    """He-normal weights and zero biases for every conv of a ReLU stack.

    PyTorch's default conv init shrinks activations about 1.7x per layer; through the eight
    encoder layers that leaves an almost input-independent posterior at the start of training.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


def _stride_layers(n_down: int) -> set[int]:
    """Which of the 7 trunk layers of the encoder have stride 2 (spread out, first at 1)."""
    return set([1, 3, 5, 6, 4, 2][:n_down])


class Encoder(nn.Module):
    """Inference network q(z | x): 8 conv layers on frames stacked along channels (A.1).

    Seven 3x3 conv layers with ReLU (32 filters, then 64), ``n_down`` of them with stride 2 to
    reach the latent size, then the eighth layer: two parallel 3x3 convs giving the mean and the
    log-variance of z, ``out_channels`` (48) filters each. ``deterministic=True`` drops the
    log-variance head.

    Example:
        >>> enc = Encoder(2 * 3, widths=(8,) * 7, out_channels=12, n_down=1)
        >>> mean, logvar = enc(torch.rand(5, 6, 8, 8))
        >>> mean.shape, logvar.shape
        (torch.Size([5, 12, 4, 4]), torch.Size([5, 12, 4, 4]))
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int] = (32, 64, 64, 64, 64, 64, 64),
        out_channels: int = 48,
        n_down: int = 3,
        *,
        deterministic: bool = False,
    ) -> None:
        super().__init__()
        strided = _stride_layers(n_down)
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, stride=2 if i in strided else 1, padding=1), nn.ReLU()]
            c = w
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Conv2d(c, out_channels, 3, padding=1)
        self.logvar = None if deterministic else nn.Conv2d(c, out_channels, 3, padding=1)
        _he_init(self.trunk)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.trunk(x)
        return self.mean(h), None if self.logvar is None else self.logvar(h)


class StateTransform(nn.Module):
    """f_psi: z to s0 = (q, p) with 3 conv layers of 64 filters (A.1).

    ReLU after the first two layers; the last layer (``2 * state_channels`` filters) is linear,
    so q and p can take any sign.

    Example:
        >>> f = StateTransform(12, width=8, state_channels=4)
        >>> q, p = f(torch.randn(2, 12, 4, 4))
        >>> q.shape, bool((q < 0).any())
        (torch.Size([2, 4, 4, 4]), True)
    """

    def __init__(self, in_channels: int = 48, width: int = 64, state_channels: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * state_channels, 3, padding=1),
        )

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(z).chunk(2, dim=1)


class ConvEnergy(Energy):
    """A scalar energy of a feature map: softplus conv net summed over positions (A.1).

    ``layers`` 3x3 conv layers of ``width`` filters, each followed by softplus (smooth, since
    training differentiates dE/dx again), then a 1x1 linear read-out to one channel, summed over
    every spatial position: ``E(x) = sum_hw r . softplus(conv_L(... softplus(conv_1 x)))``.

    :meth:`grad` is computed in closed form inside the forward graph (the transposed convolutions
    of the backward pass, ``g <- conv_transpose(g * sigmoid(z_l), W_l)``), so a training step
    needs one ordinary backward pass and no autograd inside autograd; this also keeps DDP and
    ``torch.compile`` on their well-trodden paths. ``closed_form=False`` uses autograd.

    Example:
        >>> from hamflow.hamiltonians import autograd_grad
        >>> e = ConvEnergy(4, width=8, layers=3).double()
        >>> x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
        >>> e(x).shape
        torch.Size([2])
        >>> bool(torch.allclose(e.grad(x), autograd_grad(e, x), atol=1e-12))
        True
    """

    def __init__(
        self, in_channels: int = 16, width: int = 64, layers: int = 6, *, closed_form: bool = True
    ) -> None:
        super().__init__()
        widths = [in_channels] + [width] * layers
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:])
        )
        self.readout = nn.Conv2d(width, 1, 1, bias=False)  # a constant offset has no dynamics
        self.closed_form = closed_form
        # PyTorch's default init shrinks the input gradient ~3x per layer (6e-4 after 6 layers),
        # so the initial latent barely moves and the decoder learns a static image. He-normal
        # weights keep dE/dx of order 0.1-1, so the initial dynamics are visible.
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for conv in self.convs:
            h = F.softplus(conv(h))
        return self.readout(h).flatten(1).sum(-1)

    def grad(self, x: Tensor) -> Tensor:
        if not self.closed_form:
            return super().grad(x)
        pre: list[Tensor] = []
        h = x
        for i, conv in enumerate(self.convs):
            z = conv(h)
            pre.append(z)
            if i < len(self.convs) - 1:
                h = F.softplus(z)
        g = self.readout.weight.view(1, -1, 1, 1).to(x.dtype)  # dE/dh_L, the same at every pixel
        for conv, z in zip(reversed(self.convs), reversed(pre)):
            g = F.conv_transpose2d(torch.sigmoid(z) * g, conv.weight, padding=1)
        return g


class ConfinedEnergy(Energy):
    """A learned energy plus a fixed quadratic well: ``E(x) = net(x) + c/2 |x|^2``.

    The confining Hamiltonian of ``ModelConfig.confinement`` (an option of this project, not
    of the paper): with ``K`` and ``V`` both confined, ``H = K_net(p) + V_net(q) +
    c/2 (|q|^2 + |p|^2)``. A :class:`ConvEnergy` grows at most linearly (its gradient is
    bounded), so every level set of ``H`` is bounded and a rollout, which conserves ``H``,
    cannot run away. Alone, the quadratic part turns each pair ``(q_i, p_i)`` at the angular
    frequency ``c``. The gradient is the net's (closed form where it has one) plus ``c x``.

    Args:
        net: the learned energy.
        strength: ``c``, a positive finite number.

    Example:
        >>> from hamflow.hamiltonians import autograd_grad
        >>> e = ConfinedEnergy(ConvEnergy(2, width=4, layers=2), 1.5).double()
        >>> x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
        >>> bool(torch.allclose(e(x) - e.net(x), 0.75 * x.square().flatten(1).sum(1)))
        True
        >>> bool(torch.allclose(e.grad(x), autograd_grad(e, x), atol=1e-12))
        True

    References:
        Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 3.2 (the separable
        ``H = K(p) + V(q)`` this adds to).
    """

    def __init__(self, net: Energy, strength: float) -> None:
        super().__init__()
        if not (isinstance(strength, (int, float)) and math.isfinite(strength) and strength > 0):
            raise ValueError(f"strength: expected a positive finite number, got {strength!r}")
        self.net = net
        self.strength = float(strength)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) + 0.5 * self.strength * x.square().flatten(1).sum(-1)

    def grad(self, x: Tensor) -> Tensor:
        return self.net.grad(x) + self.strength * x


DECODER_PATHS: dict[str, str] = {
    "reference": "nearest x2 upsampling, then a 3x3 conv; NCHW; every image in one call",
    "fused": "the upsampling folded into a stride-2 transposed conv; channels-last; the images "
    "in chunks of DECODE_CHUNK",
}
"""How :class:`Decoder` computes its (identical) function; ``"auto"`` picks per device.

``"fused"`` is the default on the CPU, where it makes the HGN training step about twice as fast
(issue 10, ``benchmarks/hgn_step.py``); ``"reference"`` is the default elsewhere (not yet timed on
a GPU) and is the path used before issue 10. Both compute the same function of the same
parameters (to float rounding; ``tests/hgn/test_fast_paths.py``).
"""

DECODE_CHUNK = 64
"""Images per decoder call on the ``"fused"`` path. Whole-batch calls at 32x32 allocate tensors of
over 100 MB, which glibc maps afresh (and the kernel zeroes) on every step: that page faulting
cost the CPU step more than a third of its time."""

_FOLD = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def upsample_conv_kernel(weight: Tensor) -> Tensor:
    """The stride-2 transposed-conv kernel equal to nearest x2 upsampling then ``weight``.

    ``conv2d(interpolate(x, scale_factor=2), W, padding=1)`` equals
    ``conv_transpose2d(x, upsample_conv_kernel(W), stride=2, padding=1)``: each output pixel of
    the upsampled image reads a 2x2 patch of ``x`` whose taps are sums of ``W``'s taps. The
    transposed conv does 4 of the 9 multiply-adds per pixel. ``weight`` is ``(O, I, 3, 3)``;
    the result is ``(I, O, 4, 4)``.

    Example:
        >>> w, x = torch.randn(5, 4, 3, 3, dtype=torch.float64), torch.randn(2, 4, 3, 3).double()
        >>> up = F.conv2d(F.interpolate(x, scale_factor=2), w, padding=1)
        >>> fused = F.conv_transpose2d(x, upsample_conv_kernel(w), stride=2, padding=1)
        >>> bool(torch.allclose(up, fused, atol=1e-12))
        True
    """
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight: expected (O, I, 3, 3), got {tuple(weight.shape)}")
    fold = weight.new_tensor(_FOLD)
    return torch.einsum("ak,oikl,bl->ioab", fold, weight, fold)


class ResidualUpBlock(nn.Module):
    """Decoder block (A.1): nearest-neighbour x2, two conv+leaky-ReLU layers, skip, sigmoid.

    ``out = sigmoid(conv_b(conv_a(up(x))) + skip(up(x)))``, with a 1x1 conv as the skip when the
    channel count changes. ``fused=True`` computes the same function without materialising
    ``up(x)``: ``conv_a(up(x))`` as one transposed conv (:func:`upsample_conv_kernel`) and
    ``skip(up(x))`` as ``up(skip(x))`` (a 1x1 conv commutes with nearest upsampling).

    Example:
        >>> block = ResidualUpBlock(4, 8).double()
        >>> x = torch.rand(1, 4, 4, 4, dtype=torch.float64)
        >>> block(x).shape
        torch.Size([1, 8, 8, 8])
        >>> bool(torch.allclose(block(x), block(x, fused=True), atol=1e-12))
        True
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor, fused: bool = False) -> Tensor:
        if not fused:
            up = F.interpolate(x, scale_factor=2, mode="nearest")
            return torch.sigmoid(self.body(up) + self.skip(up))
        conv_a, act_a, conv_b, act_b = self.body
        kernel = upsample_conv_kernel(conv_a.weight)
        h = act_a(F.conv_transpose2d(x, kernel, conv_a.bias, stride=2, padding=1))
        skip = F.interpolate(self.skip(x), scale_factor=2, mode="nearest")
        return torch.sigmoid(act_b(conv_b(h)) + skip)


class Decoder(nn.Module):
    """d_theta: q to an image with ``n_up`` residual upsampling blocks and a final conv (A.1).

    A sigmoid on the final conv keeps pixels in [0, 1] like the data (A.1 does not say what
    follows the final conv; without it the initial MSE is ten times larger).

    ``path`` chooses how the same function is computed (:data:`DECODER_PATHS`): ``"auto"``
    (default) is ``"fused"`` on the CPU and ``"reference"`` on other devices. It is a runtime
    choice, not part of the model: the parameters, and so checkpoints, are the same.

    Example:
        >>> dec = Decoder(4, width=8, channels=3, n_up=2)
        >>> dec(torch.randn(2, 4, 4, 4)).shape
        torch.Size([2, 3, 16, 16])
        >>> Decoder(4, path="fast")
        Traceback (most recent call last):
        ...
        ValueError: path: expected 'auto' or one of ['fused', 'reference'], got 'fast'
    """

    def __init__(
        self,
        in_channels: int = 16,
        width: int = 64,
        channels: int = 3,
        n_up: int = 3,
        *,
        path: str = "auto",
    ) -> None:
        super().__init__()
        blocks = [ResidualUpBlock(in_channels if i == 0 else width, width) for i in range(n_up)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        self.path = path

    @property
    def path(self) -> str:
        """The requested path: ``"auto"`` or a key of :data:`DECODER_PATHS`."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        if value != "auto" and value not in DECODER_PATHS:
            raise ValueError(
                f"path: expected 'auto' or one of {sorted(DECODER_PATHS)}, got {value!r}"
            )
        self._path = value

    def resolved_path(self, device: torch.device) -> str:
        """The path used for inputs on ``device``."""
        if self._path != "auto":
            return self._path
        return "fused" if device.type == "cpu" else "reference"

    def forward(self, q: Tensor) -> Tensor:
        if self.resolved_path(q.device) == "reference":
            return self._decode(q, fused=False)
        q = q.contiguous(memory_format=torch.channels_last)
        return torch.cat([self._decode(c, fused=True) for c in q.split(DECODE_CHUNK)])

    def _decode(self, q: Tensor, fused: bool) -> Tensor:
        h = q
        for block in self.blocks:
            h = block(h, fused=fused)
        return torch.sigmoid(self.out(h))
