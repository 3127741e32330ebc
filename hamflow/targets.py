"""Unnormalised target densities with a known normaliser, for fitting samplers (reverse KL).

Each target is a normflows :class:`~normflows.distributions.Target`: ``log_prob(x)`` maps
``(N, dim)`` to ``(N,)`` and returns ``ln π̃(x) = ln π(x) + ln Z`` with the normaliser
``log_Z`` stored beside it, so that an estimate of ``ln Z`` can be scored. Most also draw exact
samples (``sample(n)``), which the tests and the benchmark use for reference moments.

- :class:`Funnel`: Neal's funnel (Neal, 2003), 10-d by default.
- :class:`Banana`: a twisted Gaussian (Haario et al., 1999).
- :class:`GridMixture`: equal-weight Gaussians on a square grid (16 separated modes in 2-D).
- :class:`CorrelatedGaussian`: an ill-conditioned Gaussian with a random rotation.
- :class:`CheckedTarget` and :func:`as_target`: wrap a normflows target or any differentiable
  callable, check its output (shape, NaN, inf) and name it in every error.
- :func:`grid_log_z`: ``ln Z`` of a 2-D target by quadrature (for normflows' ``TwoMoons`` and
  ``CircularGaussianMixture``, whose normaliser is not stored).

Hamiltonian variational inference (Salimans et al., 2015) and the Hamiltonian VAE (Caterini
et al., 2018) use such targets; ``docs/sampling.md`` shows them in use.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import normflows as nf
import torch
from torch import Tensor

__all__ = [
    "Funnel",
    "Banana",
    "GridMixture",
    "CorrelatedGaussian",
    "CheckedTarget",
    "NonFiniteTargetError",
    "as_target",
    "grid_log_z",
]

_LOG_2PI = math.log(2 * math.pi)


def _check_dim(dim: int, low: int = 1) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < low:
        raise ValueError(f"dim: expected an integer >= {low}, got {dim!r}")
    return dim


def _check_x(x: Tensor, dim: int, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != dim:
        raise ValueError(f"{name}: expected x of shape (N, {dim}), got {tuple(x.shape)}")


class _KnownTarget(nf.distributions.Target):
    """A target with ``dim``, ``name`` and an exact ``log_Z``; subclasses add ``_log_prob``."""

    name = "target"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = self.n_dims = int(dim)
        self.log_Z = 0.0

    def log_prob(self, x: Tensor) -> Tensor:
        _check_x(x, self.dim, f"{self.name}.log_prob")
        return self._log_prob(x)

    def _log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"dim={self.dim}, log_Z={self.log_Z:.6g}"


class Funnel(_KnownTarget):
    """Neal's funnel: ``v ~ N(0, σ²)``, ``x_i | v ~ N(0, e^v)`` for ``i = 1 … dim − 1``.

    ``log_prob`` omits the Gaussians' normalisers, so ``log_Z = ½ ln(2πσ²) + (dim−1)/2 · ln 2π``.
    The neck (``v ≪ 0``) is narrow and the mouth wide: a sampler with one length scale fails.

    Parameters
    ----------
    dim
        total dimension (``v`` first), at least 2.
    sigma
        standard deviation of ``v`` (Neal uses 3).

    Examples
    --------
    >>> t = Funnel(10)
    >>> x = t.sample(4)
    >>> x.shape, t.log_prob(x).shape, round(t.log_Z, 4)
    (torch.Size([4, 10]), torch.Size([4]), 10.288)
    """

    name = "funnel"

    def __init__(self, dim: int = 10, sigma: float = 3.0) -> None:
        super().__init__(_check_dim(dim, 2))
        self.sigma = float(sigma)
        self.log_Z = 0.5 * math.log(2 * math.pi * self.sigma**2) + 0.5 * (dim - 1) * _LOG_2PI

    def _log_prob(self, x: Tensor) -> Tensor:
        v, rest = x[:, 0], x[:, 1:]
        return (
            -0.5 * (v / self.sigma) ** 2
            - 0.5 * (rest * rest).sum(-1) * torch.exp(-v)
            - 0.5 * (self.dim - 1) * v
        )

    def sample(self, num_samples: int = 1) -> Tensor:
        v = self.sigma * torch.randn(num_samples, 1)
        return torch.cat([v, torch.randn(num_samples, self.dim - 1) * torch.exp(v / 2)], -1)


class Banana(_KnownTarget):
    """A twisted Gaussian: ``x₁ ~ N(0, a²)``, ``x₂ − b(x₁² − a²) ~ N(0, 1)``, others ``N(0, 1)``.

    The twist is a shear (unit Jacobian), so ``log_Z = ln(2π a) + (dim−2)/2 · ln 2π`` for the
    Gaussian exponents that ``log_prob`` returns without normalisers.

    Examples
    --------
    >>> t = Banana()
    >>> round(t.log_Z, 4), t.log_prob(torch.zeros(1, 2)).item()
    (2.531, -2.0)
    """

    name = "banana"

    def __init__(self, dim: int = 2, a: float = 2.0, b: float = 0.5) -> None:
        super().__init__(_check_dim(dim, 2))
        self.a, self.b = float(a), float(b)
        self.log_Z = math.log(2 * math.pi * self.a) + 0.5 * (dim - 2) * _LOG_2PI

    def _log_prob(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        y2 = x2 - self.b * (x1 * x1 - self.a**2)
        return -0.5 * (x1 / self.a) ** 2 - 0.5 * y2 * y2 - 0.5 * (x[:, 2:] ** 2).sum(-1)

    def sample(self, num_samples: int = 1) -> Tensor:
        z = torch.randn(num_samples, self.dim)
        x1 = self.a * z[:, :1]
        x2 = z[:, 1:2] + self.b * (x1 * x1 - self.a**2)
        return torch.cat([x1, x2, z[:, 2:]], -1)


class GridMixture(_KnownTarget):
    """Equal-weight isotropic Gaussians centred on a ``side × side`` grid in the first two
    coordinates (the others standard normal); ``side = 4`` gives 16 separated modes.

    ``log_prob`` is the mixture density times ``exp(log_Z)``; ``modes`` holds the centres and
    :meth:`mode_counts` assigns points to their nearest centre (mode coverage).

    Parameters
    ----------
    side
        modes per row of the grid.
    spacing
        distance between neighbouring centres.
    std
        standard deviation of each Gaussian.
    dim
        total dimension, at least 2.
    log_Z
        the normaliser to report (the density is multiplied by ``exp(log_Z)``).

    Examples
    --------
    >>> t = GridMixture()
    >>> t.modes.shape, t.mode_counts(t.sample(1600)).min().item() > 50
    (torch.Size([16, 2]), True)
    """

    name = "grid_mixture"

    def __init__(
        self, side: int = 4, spacing: float = 4.0, std: float = 0.5, dim: int = 2, log_Z=3.0
    ) -> None:
        super().__init__(_check_dim(dim, 2))
        if not isinstance(side, int) or side < 1:
            raise ValueError(f"side: expected an integer >= 1, got {side!r}")
        self.std = float(std)
        grid = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * float(spacing)
        gx, gy = torch.meshgrid(grid, grid, indexing="ij")
        self.register_buffer("modes", torch.stack([gx.flatten(), gy.flatten()], -1))
        self.log_Z = float(log_Z)

    def _log_prob(self, x: Tensor) -> Tensor:
        m = self.modes.to(x)
        d2 = ((x[:, None, :2] - m) ** 2).sum(-1) / self.std**2
        log_mix = torch.logsumexp(-0.5 * d2, -1) - math.log(len(m))
        log_mix = log_mix - math.log(2 * math.pi * self.std**2)
        rest = -0.5 * (x[:, 2:] ** 2).sum(-1) - 0.5 * (self.dim - 2) * _LOG_2PI
        return log_mix + rest + self.log_Z

    def sample(self, num_samples: int = 1) -> Tensor:
        idx = torch.randint(len(self.modes), (num_samples,))
        x = torch.randn(num_samples, self.dim)
        x[:, :2] = x[:, :2] * self.std + self.modes[idx].float()
        return x

    def mode_counts(self, x: Tensor) -> Tensor:
        """How many rows of ``x`` lie nearest to each mode, ``(num_modes,)``."""
        d2 = ((x[:, None, :2].double() - self.modes) ** 2).sum(-1)
        return torch.bincount(d2.argmin(-1), minlength=len(self.modes))


class CorrelatedGaussian(_KnownTarget):
    """A zero-mean Gaussian whose covariance has eigenvalues log-spaced over ``condition``,
    rotated by a random orthogonal matrix (fixed by ``seed``); ``log_prob`` omits the normaliser.

    Examples
    --------
    >>> t = CorrelatedGaussian(20, condition=100.0)
    >>> s = torch.linalg.eigvalsh(t.covariance)
    >>> round((s.max() / s.min()).item()), t.sample(3).shape
    (100, torch.Size([3, 20]))
    """

    name = "correlated_gaussian"

    def __init__(self, dim: int = 20, condition: float = 100.0, seed: int = 0) -> None:
        super().__init__(_check_dim(dim, 1))
        if not (condition >= 1 and math.isfinite(condition)):
            raise ValueError(f"condition: expected a finite number >= 1, got {condition!r}")
        gen = torch.Generator().manual_seed(seed)
        rot, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        var = torch.logspace(
            -0.5 * math.log10(condition), 0.5 * math.log10(condition), dim, dtype=torch.float64
        )
        cov = rot @ torch.diag(var) @ rot.T
        self.register_buffer("covariance", 0.5 * (cov + cov.T))
        self.register_buffer("precision", rot @ torch.diag(1 / var) @ rot.T)
        self.register_buffer("chol", torch.linalg.cholesky(self.covariance))
        self.log_Z = 0.5 * dim * _LOG_2PI + 0.5 * float(torch.log(var).sum())

    def _log_prob(self, x: Tensor) -> Tensor:
        return -0.5 * ((x @ self.precision.to(x)) * x).sum(-1)

    def sample(self, num_samples: int = 1) -> Tensor:
        return (torch.randn(num_samples, self.dim, dtype=torch.float64) @ self.chol.T).float()


class NonFiniteTargetError(ValueError):
    """A target returned NaN or ``+inf``: a ``ValueError`` that :func:`~hamflow.sampling.
    fit_sampler` may skip a step on (a diverged draw), unlike a wrong shape, which it raises at
    once."""


class CheckedTarget:
    """A target as a sampler sees it: ``log_prob`` with its output checked, plus metadata.

    Wraps a normflows ``Target`` (its ``log_prob`` is used) or any differentiable callable
    ``(N, dim) -> (N,)``. A call that returns the wrong shape, NaN or inf raises a
    ``ValueError`` naming the target, so a broken target never turns into a silent NaN loss.
    It is deliberately not an ``nn.Module``: a model that holds one gains no parameters.

    Parameters
    ----------
    target
        the target (a ``Target``, an object with ``log_prob``, or a callable).
    dim
        the dimension it expects (taken from ``target.dim`` or ``n_dims`` if absent).
    name
        the name used in errors (default: the class or function name).
    log_Z
        the normaliser when known (default: ``target.log_Z`` if it has one).

    Examples
    --------
    >>> t = as_target(lambda x: -0.5 * (x**2).sum(-1), dim=3, name="gauss")
    >>> t(torch.zeros(2, 3)).tolist()
    [-0.0, -0.0]
    >>> try:
    ...     t(torch.full((1, 3), float("nan")))
    ... except ValueError as err:
    ...     print(err)
    target 'gauss': log_prob returned NaN or inf for 1 of 1 points, e.g. at x = [nan, nan, nan]
    """

    def __init__(
        self,
        target,
        dim: int | None = None,
        name: str | None = None,
        log_Z: float | None = None,
    ) -> None:
        fn = getattr(target, "log_prob", None)
        if fn is None:
            if not callable(target):
                raise TypeError(
                    "target: expected a normflows Target, an object with log_prob or a callable "
                    f"(N, dim) -> (N,), got {type(target).__name__}"
                )
            fn = target
        self.target = target
        self.fn: Callable[[Tensor], Tensor] = fn
        self.dim = (
            dim if dim is not None else getattr(target, "dim", getattr(target, "n_dims", None))
        )
        self.name = (
            name
            or getattr(target, "name", None)
            or getattr(target, "__name__", type(target).__name__)
        )
        self.log_Z = log_Z if log_Z is not None else getattr(target, "log_Z", None)

    def __call__(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    def log_prob(self, x: Tensor) -> Tensor:
        if self.dim is not None and (x.dim() != 2 or x.shape[-1] != self.dim):
            raise ValueError(
                f"target {self.name!r}: expected points of shape (N, {self.dim}), got "
                f"{tuple(x.shape)}"
            )
        out = self.fn(x)
        if not isinstance(out, Tensor):
            raise TypeError(
                f"target {self.name!r}: log_prob must return a torch.Tensor, got "
                f"{type(out).__name__}"
            )
        if out.shape != x.shape[:1]:
            raise ValueError(
                f"target {self.name!r}: log_prob must return shape ({x.shape[0]},) for "
                f"{tuple(x.shape)} points, got {tuple(out.shape)}"
            )
        # A value of -inf (outside the support) is allowed; NaN and +inf are not.
        bad = torch.isnan(out) | (out == math.inf)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise NonFiniteTargetError(
                f"target {self.name!r}: log_prob returned NaN or inf for {int(bad.sum())} of "
                f"{len(out)} points, e.g. at x = {[round(v, 4) for v in x[i].tolist()]}"
            )
        return out

    def __repr__(self) -> str:
        return f"CheckedTarget({self.name!r}, dim={self.dim}, log_Z={self.log_Z})"


def as_target(target, dim: int | None = None, name: str | None = None, log_Z=None):
    """``target`` as a :class:`CheckedTarget` (returned unchanged if it already is one).

    Examples
    --------
    >>> as_target(Funnel(4)).name, as_target(Funnel(4)).dim
    ('funnel', 4)
    """
    if isinstance(target, CheckedTarget):
        return target
    return CheckedTarget(target, dim=dim, name=name, log_Z=log_Z)


def grid_log_z(
    log_prob: Callable[[Tensor], Tensor], bound: float = 6.0, points: int = 1001
) -> float:
    """``ln ∫ exp(log_prob)`` over the square ``[−bound, bound]²`` by the trapezoid rule (2-D).

    Accurate to well below 10⁻³ nats for a smooth target that is negligible outside the square.

    Examples
    --------
    >>> t = Banana(a=1.0, b=0.2)
    >>> abs(grid_log_z(t.log_prob, bound=8.0) - t.log_Z) < 1e-6
    True
    """
    g = torch.linspace(-bound, bound, points, dtype=torch.float64)
    h = (g[1] - g[0]).item()
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    xy = torch.stack([gx.flatten(), gy.flatten()], -1)
    with torch.no_grad():
        lp = torch.cat([log_prob(c) for c in xy.split(2**16)]).double().reshape(points, points)
    w = torch.ones(points, dtype=torch.float64)
    w[0] = w[-1] = 0.5
    log_w = torch.log(w[:, None] * w[None, :])
    return float(torch.logsumexp(lp + log_w, (0, 1))) + 2 * math.log(h)
