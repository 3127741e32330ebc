"""Distributions used by the Neural Hamiltonian Flow (paper Sec. 4 and A.2).

- :class:`SoftUniform`: the paper's soft-uniform prior ``π(s; σ, β)``, a normflows base
  distribution.
- :class:`GeneralizedNormal`: a unit-variance prior whose tails are learned, from heavy
  (Laplace) through normal to nearly uniform (``NHF(prior="generalized_normal")``).
- :class:`GaussianMomentumEncoder`: the variational momentum density ``f_ψ(p | q)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import normflows as nf
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SoftUniform", "GeneralizedNormal", "GaussianMomentumEncoder", "mlp", "sobol_normal"]


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
    randomness out as it would for independent draws (docs/density/index.md).

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


_TINY, _HUGE = 1e-30, 1e4


class GeneralizedNormal(nf.distributions.BaseDistribution):
    """Unit-variance generalised normal prior with a learned shape per block of coordinates.

    Each coordinate has the exponential-power density (Subbotin's)

        π(z) = β / (2α Γ(1/β)) · exp(−|z/α|^β),   α = √(Γ(1/β) / Γ(3/β)),

    whose variance is 1 for every shape ``β``: ``β = 2`` is the standard normal, ``β = 1`` the
    Laplace density, and ``β → ∞`` the uniform on ``[−√3, √3]``. The shape is learned, one
    ``β`` per block of coordinates, inside ``(beta_min, beta_max)``; it starts at ``beta``. The
    normaliser is exact for every ``β``, so the prior stays a proper density while it learns,
    and the sampler is exact too (``|z/α|^β`` is Gamma(1/β) distributed).

    ``NHF(dim, prior="generalized_normal")`` uses it with two blocks, one shape for ``q`` and
    one for ``p`` (paper Sec. 3.3 leaves the prior open): bounded data such as a checkerboard
    pull ``β`` up, heavy tails pull it down, and the scale is left to the flows and the affine
    map. Each shape is stored as ``u`` with
    ``ln β = ln β_min + (ln β_max − ln β_min) · sigmoid(k · u + c)``, so that it never leaves
    its range and can always come back from either end.

    Args:
        dim: number of coordinates.
        blocks: number of equal blocks of coordinates that share a shape (``dim`` must be a
            multiple of it).
        beta: the initial shape (2: the standard normal).
        beta_min, beta_max: the range of the shape.
        gain: ``d ln β / du`` at the initial shape: an optimiser step moves ``ln β`` about this
            many times as far as it moves ``u`` (Adam's step in ``u`` is about its learning rate).
        learnable: learn the shape (otherwise it stays ``beta``).

    Example:
        >>> prior = GeneralizedNormal(4, blocks=2)
        >>> prior.beta().tolist()
        [2.0, 2.0, 2.0, 2.0]
        >>> z, log_p = prior(3)
        >>> z.shape, bool(torch.allclose(log_p, prior.log_prob(z)))
        (torch.Size([3, 4]), True)
    """

    def __init__(
        self,
        dim: int,
        blocks: int = 1,
        *,
        beta: float = 2.0,
        beta_min: float = 1.0,
        beta_max: float = 8.0,
        gain: float = 10.0,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not isinstance(blocks, int) or blocks < 1 or dim % blocks:
            raise ValueError(f"blocks: expected a positive divisor of dim={dim}, got {blocks!r}")
        if not (0 < beta_min < beta < beta_max and math.isfinite(beta_max)):
            raise ValueError(
                f"beta, beta_min, beta_max: expected 0 < beta_min < beta < beta_max < inf, got "
                f"{beta!r}, {beta_min!r}, {beta_max!r}"
            )
        if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain: expected a positive finite number, got {gain!r}")
        self.dim, self.blocks, self.gain = dim, blocks, float(gain)
        self._log_lo, self._log_hi = math.log(beta_min), math.log(beta_max)
        # The offset c puts β at its initial value when u = 0; the slope makes d ln β / du = gain
        # there.
        frac = (math.log(beta) - self._log_lo) / (self._log_hi - self._log_lo)
        self._offset = math.log(frac / (1 - frac))
        self._slope = self.gain / ((self._log_hi - self._log_lo) * frac * (1 - frac))
        u = torch.zeros(blocks)
        if learnable:
            self.u = nn.Parameter(u)
        else:
            self.register_buffer("u", u)

    def beta(self) -> Tensor:
        """The shape of every coordinate, ``(dim,)``."""
        t = torch.sigmoid(self._slope * self.u + self._offset)
        beta = torch.exp(self._log_lo + (self._log_hi - self._log_lo) * t)
        return beta.repeat_interleave(self.dim // self.blocks)

    @staticmethod
    def _log_alpha(beta: Tensor) -> Tensor:
        return 0.5 * (torch.lgamma(1 / beta) - torch.lgamma(3 / beta))

    def log_prob(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[-1] != self.dim:
            raise ValueError(f"z: expected shape (batch, {self.dim}), got {tuple(z.shape)}")
        # Without this check the clamp below would give a state at inf a finite density. On an
        # accelerator it is left out, as in MLPEnergy, so that a training step never waits.
        if z.device.type == "cpu" and not torch.isfinite(z).all():
            raise ValueError("z: expected finite values, got NaN or inf")
        beta = self.beta().to(z.dtype)
        log_alpha = self._log_alpha(beta)
        log_norm = torch.log(beta) - math.log(2.0) - log_alpha - torch.lgamma(1 / beta)
        # |z/α| is held inside [1e-30, 1e4] before the power: at 0 the gradient of |z|^β is
        # then 0 (not 0 · inf), and (1e4)^β stays finite in float32 up to β = 8. A state more
        # than 10⁴ scale units out has a density below e^{-10^32} either way.
        scaled = (z.abs() * torch.exp(-log_alpha)).clamp(_TINY, _HUGE)
        power = scaled.pow(beta)
        return (log_norm - power).sum(-1)

    def forward(self, num_samples: int = 1) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            beta = self.beta()
            gamma = torch.distributions.Gamma(1 / beta, torch.ones_like(beta))
            magnitude = gamma.sample((num_samples,)).pow(1 / beta)
            sign = torch.randint_like(magnitude, 2).mul_(2).sub_(1)
            z = sign * magnitude * torch.exp(self._log_alpha(beta))
        return z, self.log_prob(z)


class GaussianMomentumEncoder(nn.Module):
    """Variational momentum density ``f_ψ(p | q) = N(p; μ(q), σ(q))`` (paper Sec. 3.3, A.2).

    With ``trunk="separate"`` (the paper), ``μ`` and ``log σ`` are separate ReLU MLPs
    ``[d, 128, 128, d]``; with ``trunk="shared"``, one MLP ``[d, 128, 128, 2d]`` outputs both,
    which halves the encoder's cost. Both start at a standard normal momentum (zero mean, unit
    scale). With ``context_dim = c > 0`` it is ``f(p | q, context)``: the MLPs read
    ``cat(q, context)`` (``NHF(dim, context_dim=c)``, :mod:`hamflow.conditional`).

    Example:
        >>> enc = GaussianMomentumEncoder(2, hidden=(16,))
        >>> q = torch.randn(4, 2)
        >>> p, log_f = enc.rsample(q)
        >>> p.shape, log_f.shape
        (torch.Size([4, 2]), torch.Size([4]))
        >>> bool(torch.allclose(enc.log_prob(p, q), log_f))
        True
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        trunk: str = "separate",
        context_dim: int = 0,
    ):
        super().__init__()
        if trunk not in ("separate", "shared"):
            raise ValueError(f"trunk: expected 'separate' or 'shared', got {trunk!r}")
        if not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 0:
            raise ValueError(f"context_dim: expected an integer >= 0, got {context_dim!r}")
        self.dim = int(dim)
        self.trunk = trunk
        self.context_dim = context_dim
        width_in = self.dim + context_dim
        if trunk == "shared":
            self.net = mlp([width_in, *[int(h) for h in hidden], 2 * self.dim])
            heads = [self.net]
        else:
            widths = [width_in, *[int(h) for h in hidden], self.dim]
            self.mean = mlp(widths)
            self.log_scale = mlp(widths)
            heads = [self.mean, self.log_scale]
        for net in heads:
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)

    def params(self, q: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of ``p`` given ``q`` (and the context, for a conditional encoder)."""
        if self.context_dim:
            if context is None:
                raise ValueError(
                    f"context: this encoder takes a context of width {self.context_dim}, got None"
                )
            q = torch.cat([q, context], dim=-1)
        if self.trunk == "shared":
            return self.net(q).chunk(2, dim=-1)
        return self.mean(q), self.log_scale(q)

    def log_prob(self, p: Tensor, q: Tensor, context: Tensor | None = None) -> Tensor:
        mu, log_s = self.params(q, context)
        z = (p - mu) * torch.exp(-log_s)
        return (-0.5 * z * z - log_s - 0.5 * math.log(2 * math.pi)).sum(-1)

    def rsample(
        self,
        q: Tensor,
        num_samples: int = 1,
        eps: Tensor | None = None,
        scale: float = 1.0,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparametrised ``p ~ f(p | q)`` and ``log f(p | q)``.

        With ``num_samples = K > 1``, ``q`` is ``(B, d)`` and the outputs are ``(K, B, d)`` and
        ``(K, B)``. ``eps``, standard-normal noise of that shape (or broadcastable to it), replaces
        the fresh draw (for quasi-random samples, see :func:`sobol_normal`). ``scale`` widens
        (``> 1``) or narrows the Gaussian's standard deviation by that factor, and ``log f`` is
        that of the widened density. A conditional encoder (``context_dim > 0``) reads
        ``context``, ``(B, context_dim)``, beside ``q``.
        """
        mu, log_s = self.params(q, context)
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
