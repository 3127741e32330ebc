"""Two-dimensional toy densities with exact samplers and (where one exists) exact log-density.

These are the targets of the density-modelling showcase (paper Sec. 4, Fig. 9) and of
``benchmarks/toy_density.py``. Each density knows its **true entropy** ``H(p) = −E_p[ln p]``,
the floor below which no model's expected negative log-likelihood can go.

=====================  =======================================================  ============
name                   what                                                     ``log_prob``
=====================  =======================================================  ============
``eight_gaussians``    8 Gaussians, σ = 0.1, on a circle of radius 2            exact
``circular_gmm``       8 broader Gaussians on a circle (normflows' spec)         exact
``gaussian_mixture``   4 anisotropic Gaussians with unequal weights              exact
``ring_mixture``       2 concentric rings, radii 1 and 2 (normflows' spec)       exact
``two_moons``          normflows' ``TwoMoons`` energy                            numerical
``grid_gaussians``     9 Gaussians, σ = 0.2, on a 3×3 grid of spacing 1.5         exact
``checkerboard``       uniform on the 8 dark squares of a 4×4 board on [−4, 4]²  exact
``banana``             a Gaussian bent into a parabola (unit-Jacobian shear)      exact
=====================  =======================================================  ============

``grid_gaussians``, ``checkerboard`` and ``banana`` are **held out**: the benchmarks' main table
does not train on them, so that NHF's defaults can be checked on densities they were not chosen
on (``benchmarks/toy_density.py`` says which it uses; the last two were added on 2026-12-06,
after the defaults were fixed).

``two_moons`` is defined by an unnormalised energy with no closed-form normaliser; its
``ln Z`` is computed once by numerical integration on a fine grid (``exact`` is ``False``).

Example:
    >>> d = get_density("eight_gaussians")
    >>> x = d.sample(4, seed=0)
    >>> x.shape, x.dtype, d.log_prob(x).shape
    (torch.Size([4, 2]), torch.float32, torch.Size([4]))
    >>> sorted(TOY_DENSITIES)[:3]
    ['banana', 'checkerboard', 'circular_gmm']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ToyDensity",
    "GaussianMixture",
    "RingMixture",
    "TwoMoons",
    "Checkerboard",
    "Banana",
    "Entropy",
    "TOY_DENSITIES",
    "get_density",
]

SeedLike = int | np.random.Generator | None


class Entropy(NamedTuple):
    """A differential entropy in nats, how it was computed, and its standard error.

    ``method`` is ``"monte_carlo"`` (``−mean ln p(x)`` over exact samples; ``stderr`` is the
    standard error of that mean) or ``"grid"`` (``−∫ p ln p`` by the midpoint rule on a grid;
    ``stderr`` is ``0.0``, the discretisation error being far below the quoted digits).
    """

    value: float
    stderr: float
    method: str


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"seed: expected an int, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class ToyDensity:
    """Base class: a 2-D density with ``sample``, ``log_prob`` and ``entropy`` (paper Sec. 4).

    Subclasses implement ``_sample(n, rng) -> ndarray (n, 2)`` and ``_log_prob(x64) -> (B,)``
    on float64 tensors.

    Attributes:
        name: registry name.
        bounds: ``(lo, hi)`` of a square holding all but a negligible part of the mass; used for
            plots and grid integration.
        exact: whether ``log_prob`` is exact (``True``) or numerically normalised.
    """

    name: str
    bounds: tuple[float, float] = (-4.0, 4.0)
    exact: bool = True
    dim: int = field(default=2, init=False)

    # -- to implement ------------------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------------
    def sample(self, n: int, seed: SeedLike = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` exact samples as a ``(n, 2)`` tensor; the same ``seed`` gives the same bytes."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n: expected an integer >= 1, got {n!r}")
        return torch.from_numpy(self._sample(n, _rng(seed))).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """``ln p(x)`` for ``x`` of shape ``(B, 2)``, computed in float64, returned in x's dtype."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != 2:
            raise ValueError(f"x: expected shape (batch, 2), got {tuple(x.shape)}")
        return self._log_prob(x.double()).to(x.dtype)

    def grid(self, resolution: int = 400) -> tuple[Tensor, float]:
        """Cell centres of a ``resolution²`` grid over ``bounds`` (float64) and the cell area."""
        lo, hi = self.bounds
        h = (hi - lo) / resolution
        t = torch.linspace(lo + h / 2, hi - h / 2, resolution, dtype=torch.float64)
        xx, yy = torch.meshgrid(t, t, indexing="xy")
        return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1), h * h

    def entropy(
        self, method: str | None = None, num_samples: int = 200_000, resolution: int = 1000
    ) -> Entropy:
        """The true differential entropy ``−E_p[ln p]`` in nats.

        ``method="monte_carlo"`` (the default for exact densities) averages ``−ln p`` over
        ``num_samples`` exact samples (seed 0) and reports the standard error; ``"grid"`` (the
        default for numerically normalised ones) integrates ``−p ln p`` on a grid.
        """
        method = method or ("monte_carlo" if self.exact else "grid")
        if method == "monte_carlo":
            lp = self.log_prob(self.sample(num_samples, seed=0, dtype=torch.float64))
            return Entropy(-lp.mean().item(), lp.std().item() / math.sqrt(num_samples), method)
        if method == "grid":
            x, area = self.grid(resolution)
            lp = torch.cat([self._log_prob(c) for c in x.split(2**18)])
            p = lp.exp()
            return Entropy(-(p * lp).nan_to_num().sum().item() * area, 0.0, method)
        raise ValueError(f"method: expected 'monte_carlo', 'grid' or None, got {method!r}")


@dataclass(frozen=True)
class GaussianMixture(ToyDensity):
    """A mixture of 2-D Gaussians; exact ``log_prob``.

    Args:
        means: ``K`` component means.
        covs: ``K`` 2×2 covariances.
        weights: ``K`` mixture weights (normalised here).

    Example:
        >>> d = GaussianMixture("one", means=((0.0, 0.0),), covs=(((1.0, 0.0), (0.0, 1.0)),))
        >>> round(d.log_prob(torch.zeros(1, 2)).item(), 4) == round(-math.log(2 * math.pi), 4)
        True
    """

    means: tuple[tuple[float, float], ...] = ()
    covs: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = ()
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.means)
        if k == 0 or len(self.covs) != k:
            raise ValueError(
                f"covs: expected one 2x2 covariance per mean ({k}), got {len(self.covs)}"
            )
        if self.weights is not None and (len(self.weights) != k or min(self.weights) <= 0):
            raise ValueError(f"weights: expected {k} positive numbers, got {self.weights!r}")

    @cached_property
    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = np.ones(len(self.means)) if self.weights is None else np.asarray(self.weights, float)
        return np.asarray(self.means, float), np.asarray(self.covs, float), w / w.sum()

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        mu, cov, w = self._params
        k = rng.choice(len(w), size=n, p=w)
        chol = np.linalg.cholesky(cov)
        eps = rng.standard_normal((n, 2))
        return mu[k] + np.einsum("nij,nj->ni", chol[k], eps)

    def _log_prob(self, x: Tensor) -> Tensor:
        mu, cov, w = (torch.from_numpy(a).to(x) for a in self._params)
        mix = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=w),
            torch.distributions.MultivariateNormal(mu, covariance_matrix=cov),
        )
        return mix.log_prob(x)


def circle_of_gaussians(name: str, n: int, radius: float, sigma: float) -> GaussianMixture:
    """``n`` equal-weight isotropic Gaussians of std ``sigma`` at angles ``2πk/n`` on a circle.

    Mode ``k`` sits at ``radius · (sin 2πk/n, cos 2πk/n)``, normflows' convention.
    """
    angles = [2 * math.pi * k / n for k in range(n)]
    means = tuple((radius * math.sin(a), radius * math.cos(a)) for a in angles)
    cov = ((sigma**2, 0.0), (0.0, sigma**2))
    return GaussianMixture(name, means=means, covs=(cov,) * n)


@dataclass(frozen=True)
class RingMixture(ToyDensity):
    """Concentric rings: ``p(x) ∝ Σ_i exp(−(|x| − R_i)² / 2s²)``, as normflows' ``RingMixture``.

    The normaliser is exact: ``∫ exp(−(r−R)²/2s²) 2πr dr = 2π[s² e^{−R²/2s²} +
    R s √(2π) Φ(R/s)]``. Ring ``i`` therefore carries weight ``∝ Z_i`` (roughly its radius).
    Sampling picks a ring, then a radius from ``∝ r·N(r; R, s)`` by rejection from the normal
    truncated to ``r > 0`` (acceptance ``r / (R + 10 s)``; the mass beyond ``R + 10s`` is below
    ``1e-22`` and is dropped), and a uniform angle.

    Example:
        >>> d = RingMixture("rings", radii=(1.0,), scale=0.1)
        >>> r = d.sample(1000, seed=0).norm(dim=1)
        >>> bool(abs(r.mean() - 1.0) < 0.02)
        True
    """

    radii: tuple[float, ...] = (1.0, 2.0)
    scale: float = 0.125

    def _log_z(self) -> np.ndarray:
        r, s = np.asarray(self.radii, float), self.scale
        phi = 0.5 * (1 + np.vectorize(math.erf)(r / (s * math.sqrt(2))))
        return np.log(
            2 * np.pi * (s * s * np.exp(-(r**2) / (2 * s * s)) + r * s * np.sqrt(2 * np.pi) * phi)
        )

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        log_z = self._log_z()
        w = np.exp(log_z - log_z.max())
        ring = rng.choice(len(w), size=n, p=w / w.sum())
        big_r, s = np.asarray(self.radii, float)[ring], self.scale
        r = np.empty(n)
        todo = np.arange(n)
        while todo.size:
            prop = big_r[todo] + s * rng.standard_normal(todo.size)
            ok = (prop > 0) & (rng.random(todo.size) * (big_r[todo] + 10 * s) < prop)
            r[todo[ok]] = prop[ok]
            todo = todo[~ok]
        theta = rng.uniform(0, 2 * np.pi, n)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)

    def _log_prob(self, x: Tensor) -> Tensor:
        radii = torch.tensor(self.radii, dtype=x.dtype, device=x.device)
        log_z = torch.logsumexp(torch.from_numpy(self._log_z()).to(x), dim=0)
        d = (x.norm(dim=-1, keepdim=True) - radii) ** 2 / (2 * self.scale**2)
        return torch.logsumexp(-d, dim=-1) - log_z


def _two_moons_energy(x: Tensor) -> Tensor:
    """normflows' ``TwoMoons`` unnormalised log-density (stable form of its last term)."""
    a = x[:, 0].abs()
    return (
        -0.5 * ((x.norm(dim=-1) - 2) / 0.2) ** 2
        - 0.5 * ((a - 2) / 0.3) ** 2
        + torch.nn.functional.softplus(-4 * a / 0.09)
    )


@dataclass(frozen=True)
class TwoMoons(ToyDensity):
    """normflows' ``TwoMoons``: a ring of radius 2 cut into two arcs at ``x₀ = ±2``.

    ``p(x) ∝ exp(−½((|x|−2)/0.2)² − ½((|x₀|−2)/0.3)²) (1 + exp(−4|x₀|/0.09))``. There is no
    closed-form normaliser, so ``ln Z`` is computed by the midpoint rule on a 2000² grid over
    ``[−4, 4]²`` (float64; the density is below ``e^{-40}`` outside it), and ``exact`` is False.
    Sampling is exact rejection sampling from the uniform on ``bounds`` (the unnormalised density
    is at most 1.01).

    Example:
        >>> d = TwoMoons("moons")
        >>> x, area = d.grid(500)
        >>> round(d.log_prob(x).exp().sum().item() * area, 3)
        1.0
    """

    exact: bool = False

    @cached_property
    def _log_z(self) -> float:
        x, area = self.grid(2000)
        lse = torch.logsumexp(torch.cat([_two_moons_energy(c) for c in x.split(2**20)]), 0)
        return lse.item() + math.log(area)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.bounds
        out: list[np.ndarray] = []
        have = 0
        while have < n:
            prop = rng.uniform(lo, hi, size=(max(4 * n, 1024) * 8, 2))
            log_u = np.log(rng.random(len(prop)) * 1.01)
            keep = prop[log_u < _two_moons_energy(torch.from_numpy(prop)).numpy()]
            out.append(keep)
            have += len(keep)
        return np.concatenate(out)[:n]

    def _log_prob(self, x: Tensor) -> Tensor:
        return _two_moons_energy(x) - self._log_z


@dataclass(frozen=True)
class Checkerboard(ToyDensity):
    """Uniform on the dark squares of a 4×4 board of ``cell``-sized squares centred at 0.

    The square in column ``i`` and row ``j`` (both from 0, from the lower left) is dark when
    ``i + j`` is even, so 8 of the 16 carry mass: ``ln p = −ln(8 cell²)`` on them and ``−inf``
    elsewhere, and the entropy is exactly ``ln(8 cell²)``. With ``cell = 2`` the board fills
    ``bounds = [−4, 4]²``; its sharp edges are what a smooth flow finds hard.

    Example:
        >>> d = Checkerboard("board")
        >>> d.log_prob(torch.tensor([[-3.0, -3.0], [-1.0, -3.0]])).exp()
        tensor([0.0312, 0.0000])
    """

    cell: float = 2.0

    def _index(self, x: Tensor) -> Tensor:
        """``(column, row)`` of each point's square: 0 to 3 on the board."""
        return (x + 2 * self.cell) // self.cell

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dark = np.array([(i, j) for j in range(4) for i in range(4) if (i + j) % 2 == 0])
        corner = dark[rng.integers(0, len(dark), n)] * self.cell - 2 * self.cell
        return corner + rng.uniform(0.0, self.cell, size=(n, 2))

    def _log_prob(self, x: Tensor) -> Tensor:
        ij = self._index(x)
        on_board = ((ij >= 0) & (ij <= 3)).all(-1)
        dark = on_board & (ij.sum(-1).remainder(2) == 0)
        log_p = -math.log(8 * self.cell**2)
        return torch.where(dark, torch.full_like(x[:, 0], log_p), float("-inf"))


@dataclass(frozen=True)
class Banana(ToyDensity):
    """A Gaussian bent into a parabola by a shear of unit Jacobian.

    ``y ~ N(0, diag(s₁², s₂²))`` and ``x = (y₁, y₂ + b(y₁² − s₁²))`` with ``b = bend``, so
    ``ln p(x) = ln N(x₁; 0, s₁²) + ln N(x₂ − b(x₁² − s₁²); 0, s₂²)`` exactly, and the entropy is
    the Gaussian's, ``ln(2πe s₁s₂)``.

    Example:
        >>> d = Banana("b")
        >>> h = d.entropy(num_samples=100_000)
        >>> abs(h.value - math.log(2 * math.pi * math.e * 0.8 * 0.35)) < 4 * h.stderr
        True
    """

    bounds: tuple[float, float] = (-6.0, 6.0)
    s1: float = 0.8
    s2: float = 0.35
    bend: float = 0.5

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        y = rng.standard_normal((n, 2)) * np.array([self.s1, self.s2])
        y[:, 1] += self.bend * (y[:, 0] ** 2 - self.s1**2)
        return y

    def _log_prob(self, x: Tensor) -> Tensor:
        y2 = x[:, 1] - self.bend * (x[:, 0] ** 2 - self.s1**2)
        z = torch.stack([x[:, 0] / self.s1, y2 / self.s2], -1)
        return -0.5 * (z * z).sum(-1) - math.log(2 * math.pi * self.s1 * self.s2)


TOY_DENSITIES: dict[str, ToyDensity] = {
    d.name: d
    for d in (
        circle_of_gaussians("eight_gaussians", 8, radius=2.0, sigma=0.1),
        circle_of_gaussians("circular_gmm", 8, radius=2.0, sigma=2 / 3 * math.sin(math.pi / 8)),
        GaussianMixture(
            "gaussian_mixture",
            means=((-1.5, -1.0), (1.5, -1.0), (0.0, 1.6), (1.8, 1.8)),
            covs=(
                ((0.30, 0.12), (0.12, 0.15)),
                ((0.15, -0.08), (-0.08, 0.25)),
                ((0.40, 0.0), (0.0, 0.08)),
                ((0.05, 0.0), (0.0, 0.05)),
            ),
            weights=(0.4, 0.3, 0.2, 0.1),
        ),
        RingMixture("ring_mixture", radii=(1.0, 2.0), scale=0.125),
        TwoMoons("two_moons"),
        GaussianMixture(
            "grid_gaussians",
            means=tuple((1.5 * i, 1.5 * j) for j in (-1, 0, 1) for i in (-1, 0, 1)),
            covs=(((0.04, 0.0), (0.0, 0.04)),) * 9,
        ),
        Checkerboard("checkerboard"),
        Banana("banana"),
    )
}
"""The toy suite by name; see the module docstring for what each one is."""


def get_density(name: str) -> ToyDensity:
    """Look up a toy density by name; an unknown name raises a ``ValueError`` listing the known.

    Example:
        >>> get_density("two_moons").exact
        False
    """
    try:
        return TOY_DENSITIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"density: expected one of {sorted(TOY_DENSITIES)}, got {name!r}"
        ) from None
