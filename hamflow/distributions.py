"""Distributions used by the Neural Hamiltonian Flow (paper Sec. 4 and A.2).

- :class:`SoftUniform`: the paper's soft-uniform prior ``π(s; σ, β)``, a normflows base
  distribution.
- :class:`GaussianMomentumEncoder`: the variational momentum density ``f_ψ(p | q)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import normflows as nf
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SoftUniform", "GaussianMomentumEncoder", "mlp", "sobol_normal"]


def sobol_normal(
    num_samples: int, dim: int, batch: int = 1, *, dtype=torch.float32, device=None
) -> Tensor:
    """Randomised quasi-Monte Carlo draws of ``N(0, I_dim)``: ``(num_samples, batch, dim)``.

    One scrambled Sobol point set of ``num_samples`` points, seeded from torch's generator (so
    ``torch.manual_seed`` makes it reproducible), shifted independently for each of the ``batch``
    rows by a uniform random vector modulo 1 (a Cranley–Patterson rotation), then mapped through
    the normal quantile function. Every draw is exactly ``N(0, I)`` on its own, so an
    importance-weighted average over them is still unbiased and the IWAE estimate built on them
    is still a lower bound in expectation; within a row the draws cover the space more evenly
    than independent ones, so the average varies less and the bound is tighter for the same
    ``K``; and the rows are independent of each other, so a mean over many rows averages the
    randomness out as it would for independent draws (docs/density.md).

    Example:
        >>> eps = sobol_normal(256, 2, batch=3, dtype=torch.float64)
        >>> eps.shape, bool(eps.mean().abs() < 0.05)
        (torch.Size([256, 3, 2]), True)
    """
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    points = engine.draw(num_samples, dtype=torch.float64).to(device).unsqueeze(1)
    shift = torch.rand(1, batch, dim, dtype=torch.float64, device=device)
    u = torch.remainder(points + shift, 1.0).clamp(1e-12, 1 - 1e-12)
    eps = math.sqrt(2.0) * torch.erfinv(2 * u - 1)
    return eps.to(dtype=dtype)


def mlp(widths: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A plain MLP with ``activation`` between its linear layers (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class SoftUniform(nf.distributions.BaseDistribution):
    """Soft-uniform density ``π(s) ∝ Π_i sigmoid(β(s_i + σ/2)) · sigmoid(−β(s_i − σ/2))``.

    This is the prior of the paper's Fig. 9 (Sec. 4). Each coordinate is a uniform on
    ``[−σ/2, σ/2]`` convolved with a logistic of scale ``1/β``, which gives both an exact sampler
    (uniform plus logistic noise) and the exact normaliser ``Z = σ / (1 − exp(−βσ))`` per
    coordinate.

    Args:
        dim: number of coordinates.
        width: σ, the width of the flat region.
        sharpness: β, the steepness of the edges.

    Example:
        >>> prior = SoftUniform(2, width=4.0, sharpness=4.0)
        >>> z, log_p = prior(5)
        >>> z.shape, bool(torch.allclose(log_p, prior.log_prob(z)))
        (torch.Size([5, 2]), True)
    """

    def __init__(self, dim: int, width: float = 4.0, sharpness: float = 4.0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not (width > 0 and sharpness > 0 and math.isfinite(width * sharpness)):
            raise ValueError(
                f"width, sharpness: expected positive numbers, got {width!r}, {sharpness!r}"
            )
        self.dim = int(dim)
        self.width = float(width)
        self.sharpness = float(sharpness)
        c = self.sharpness * self.width
        # A Python float: exact whatever the dtype of the samples.
        self.log_norm = self.dim * (math.log(self.width) - math.log(-math.expm1(-c)))
        self.register_buffer("_ref", torch.zeros(()))  # carries dtype and device

    def log_prob(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[-1] != self.dim:
            raise ValueError(f"z: expected shape (batch, {self.dim}), got {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise ValueError("z: expected finite values, got NaN or inf")
        a, b = self.width / 2, self.sharpness
        log_dens = F.logsigmoid(b * (z + a)) + F.logsigmoid(-b * (z - a))
        return log_dens.sum(-1) - self.log_norm

    def forward(self, num_samples: int = 1) -> tuple[Tensor, Tensor]:
        ref = self._ref
        u = torch.rand(num_samples, self.dim, dtype=ref.dtype, device=ref.device)
        eps = torch.rand_like(u).clamp(1e-12, 1 - 1e-12)
        z = (u - 0.5) * self.width + torch.logit(eps) / self.sharpness
        return z, self.log_prob(z)


class GaussianMomentumEncoder(nn.Module):
    """Variational momentum density ``f_ψ(p | q) = N(p; μ(q), σ(q))`` (paper Sec. 3.3, A.2).

    With ``trunk="separate"`` (the paper), ``μ`` and ``log σ`` are separate ReLU MLPs
    ``[d, 128, 128, d]``; with ``trunk="shared"``, one MLP ``[d, 128, 128, 2d]`` outputs both,
    which halves the encoder's cost. Both start at a standard normal momentum (zero mean, unit
    scale).

    Example:
        >>> enc = GaussianMomentumEncoder(2, hidden=(16,))
        >>> q = torch.randn(4, 2)
        >>> p, log_f = enc.rsample(q)
        >>> p.shape, log_f.shape
        (torch.Size([4, 2]), torch.Size([4]))
        >>> bool(torch.allclose(enc.log_prob(p, q), log_f))
        True
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128), trunk: str = "separate"):
        super().__init__()
        if trunk not in ("separate", "shared"):
            raise ValueError(f"trunk: expected 'separate' or 'shared', got {trunk!r}")
        self.dim = int(dim)
        self.trunk = trunk
        if trunk == "shared":
            self.net = mlp([self.dim, *[int(h) for h in hidden], 2 * self.dim])
            heads = [self.net]
        else:
            widths = [self.dim, *[int(h) for h in hidden], self.dim]
            self.mean = mlp(widths)
            self.log_scale = mlp(widths)
            heads = [self.mean, self.log_scale]
        for net in heads:
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)

    def params(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of ``p`` given ``q``."""
        if self.trunk == "shared":
            return self.net(q).chunk(2, dim=-1)
        return self.mean(q), self.log_scale(q)

    def log_prob(self, p: Tensor, q: Tensor) -> Tensor:
        mu, log_s = self.params(q)
        z = (p - mu) * torch.exp(-log_s)
        return (-0.5 * z * z - log_s - 0.5 * math.log(2 * math.pi)).sum(-1)

    def rsample(
        self, q: Tensor, num_samples: int = 1, eps: Tensor | None = None, scale: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Reparametrised ``p ~ f(p | q)`` and ``log f(p | q)``.

        With ``num_samples = K > 1``, ``q`` is ``(B, d)`` and the outputs are ``(K, B, d)`` and
        ``(K, B)``. ``eps``, standard-normal noise of that shape (or broadcastable to it), replaces
        the fresh draw (for quasi-random samples, see :func:`sobol_normal`). ``scale`` widens
        (``> 1``) or narrows the Gaussian's standard deviation by that factor, and ``log f`` is
        that of the widened density.
        """
        mu, log_s = self.params(q)
        if scale != 1.0:
            log_s = log_s + math.log(scale)
        shape = mu.shape if num_samples == 1 else (num_samples, *mu.shape)
        if eps is None:
            eps = torch.randn(shape, dtype=mu.dtype, device=mu.device)
        else:
            eps = eps.to(mu).expand(shape)
        p = mu + torch.exp(log_s) * eps
        log_f = (-0.5 * eps * eps - log_s - 0.5 * math.log(2 * math.pi)).sum(-1)
        return p, log_f
