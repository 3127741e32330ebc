"""A conditional 2-D toy with a closed-form density: a ring whose radius is the context.

Used by ``examples/conditional.py``, the conditional tests and docs/conditional.md to measure a
conditional model against the truth.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["RingGivenRadius"]


class RingGivenRadius:
    """``p(x | c)``: a ring in the plane whose radius is the context ``c`` (shape ``(N, 1)``).

    ``x = r (cos φ, sin φ)`` with ``φ ~ U(0, 2π)`` and ``r ~ N(c, σ²)``; the contexts are drawn
    from ``U(radius_min, radius_max)``. The density is exact,

        p(x | c) = [N(ρ; c, σ²) + N(−ρ; c, σ²)] / (2π ρ),   ρ = |x|,

    (a draw with ``r < 0`` lands at radius ``|r|`` on the opposite side), so a model's test NLL
    can be compared with the truth, ``E[−ln p(x | c)]``.

    Parameters
    ----------
    noise : float
        ``σ``, the ring's radial standard deviation.
    radius_min, radius_max : float
        The range of the contexts.

    Examples
    --------
        >>> ring = RingGivenRadius()
        >>> x, c = ring.sample(4, seed=0)
        >>> x.shape, c.shape, ring.log_prob(x, c).shape
        (torch.Size([4, 2]), torch.Size([4, 1]), torch.Size([4]))
    """

    def __init__(self, noise: float = 0.15, radius_min: float = 1.0, radius_max: float = 2.5):
        if not (math.isfinite(noise) and noise > 0):
            raise ValueError(f"noise: expected a positive number, got {noise!r}")
        if not (0 < radius_min <= radius_max and math.isfinite(radius_max)):
            raise ValueError(
                f"radius_min, radius_max: expected 0 < radius_min <= radius_max, got "
                f"{radius_min!r}, {radius_max!r}"
            )
        self.noise, self.radius_min, self.radius_max = float(noise), radius_min, radius_max

    def contexts(self, n: int, *, seed: int | None = None, dtype=torch.float32) -> Tensor:
        """``n`` radii from ``U(radius_min, radius_max)``, ``(n, 1)``."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        u = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        return (self.radius_min + (self.radius_max - self.radius_min) * u).to(dtype)

    def sample(
        self, n: int, context: Tensor | None = None, *, seed: int | None = None, dtype=None
    ) -> tuple[Tensor, Tensor]:
        """``n`` points and their contexts: the given ``context`` (one row, or ``n`` rows) or
        fresh ones. Returns ``(x, context)``, ``(n, 2)`` and ``(n, 1)``."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        if context is None:
            dtype = dtype or torch.float32
            c = self.contexts(n, seed=None if seed is None else seed + 1, dtype=torch.float64)
        else:
            dtype = dtype or context.dtype
            c = context.reshape(-1, 1).to(torch.float64).expand(n, 1)
        phi = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
        r = c[:, 0] + self.noise * torch.randn(n, generator=gen, dtype=torch.float64)
        x = torch.stack([r * torch.cos(phi), r * torch.sin(phi)], dim=-1)
        return x.to(dtype), c.to(dtype)

    def log_prob(self, x: Tensor, context: Tensor) -> Tensor:
        """The exact ``ln p(x | c)``, ``(N,)``; ``context`` is ``(N, 1)`` or one row."""
        if x.dim() != 2 or x.shape[-1] != 2:
            raise ValueError(f"x: expected shape (N, 2), got {tuple(x.shape)}")
        c = context.reshape(-1, 1).to(torch.float64)[:, 0]
        rho = x.to(torch.float64).norm(dim=-1)
        s = self.noise
        log_n = lambda z: -0.5 * ((z - c) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))  # noqa: E731
        radial = torch.logaddexp(log_n(rho), log_n(-rho))
        return (radial - torch.log(2 * math.pi * rho)).to(x.dtype)
