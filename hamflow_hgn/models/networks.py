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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamflow import Energy

__all__ = ["Encoder", "StateTransform", "ConvEnergy", "ResidualUpBlock", "Decoder", "mlp"]

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


class ResidualUpBlock(nn.Module):
    """Decoder block (A.1): nearest-neighbour x2, two conv+leaky-ReLU layers, skip, sigmoid.

    ``out = sigmoid(conv_b(conv_a(up(x))) + skip(up(x)))``, with a 1x1 conv as the skip when the
    channel count changes.

    Example:
        >>> ResidualUpBlock(4, 8)(torch.rand(1, 4, 4, 4)).shape
        torch.Size([1, 8, 8, 8])
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

    def forward(self, x: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.sigmoid(self.body(up) + self.skip(up))


class Decoder(nn.Module):
    """d_theta: q to an image with ``n_up`` residual upsampling blocks and a final conv (A.1).

    A sigmoid on the final conv keeps pixels in [0, 1] like the data (A.1 does not say what
    follows the final conv; without it the initial MSE is ten times larger).

    Example:
        >>> Decoder(4, width=8, channels=3, n_up=2)(torch.randn(2, 4, 4, 4)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self, in_channels: int = 16, width: int = 64, channels: int = 3, n_up: int = 3
    ) -> None:
        super().__init__()
        blocks = [ResidualUpBlock(in_channels if i == 0 else width, width) for i in range(n_up)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, q: Tensor) -> Tensor:
        return torch.sigmoid(self.out(self.blocks(q)))
