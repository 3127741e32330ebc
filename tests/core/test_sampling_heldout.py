"""Held-out check of the sampler's goals (issue 33) on targets the benchmark and docs never use.

Seven targets with a closed-form ``ln Z``, 2 to 18 dimensions, defined here and imported by no
benchmark, example or guide: a rotated, shifted, anisotropic Gaussian (18-d), a correlated
multivariate Student-t (4-d, ν = 5), a funnel of another width (5-d, σ = 2), a tilted banana of
another curvature (3-d), a ring of 12 modes (2-d), an unequal two-mode mixture (6-d) and an
annulus (2-d). ``HAMFLOW_SLOW=1`` fits ``NHF(dim, target=t)`` with ``fit_sampler``'s defaults for
60 s of CPU time on one thread (``benchmarks/sampling.py``'s ``run_one``, method ``nhf``, seed 0)
and asserts the issue's bar from 4,000 importance samples: ``|ln Ẑ − ln Z| ≤ 0.1``, ESS
fraction ``≥ 0.1``, on the one-mode targets an ESS no lower than a parameter-matched normflows
RealNVP's trained by the reverse KL for the same time, and on the ring at least 90 % of the
modes holding a quarter of their fair share. A case that misses the bar is an expected failure
(strict) whose reason gives the measured numbers, so a fix shows up as an error to remove the
mark. Every fitted row goes to ``runs/sampling_heldout/NAME.json``.

Measured at seed 0, with 16 momenta per importance sample (``importance_sample``'s default):
``ln Z`` is within 0.1 nats on all seven (at most 0.028, the ring), the ESS is at least 0.1 on
all seven (the ring: 0.37; the tilted banana 0.90), the ring's 12 modes are all covered, and
NHF's ESS is above RealNVP's on the 18-d Gaussian (0.988 against 0.958) and below it on the
other three one-mode targets (by 0.0003 on the Student-t, 0.01 on the funnel, 0.10 on the
tilted banana). Four targets meet every goal; the other three are marked below.

The fast tests check the targets themselves: each ``ln Z`` and exact sampler against an
independent importance-sampling estimate.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _helpers import benchmark_module
from torch import Tensor, nn

from hamflow.targets import grid_log_z

ROOT = Path(__file__).resolve().parents[2]
LOG_2PI = math.log(2 * math.pi)
BUDGET_S = 60.0
SEED = 0


# -- the held-out targets ---------------------------------------------------------------------


def _rotation(dim: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return q


class _HeldOut(nn.Module):
    """``log_prob`` ``(N, dim) → (N,)`` with a closed-form ``log_Z``, and exact ``sample``."""

    unimodal = True

    def __init__(self, name: str, dim: int, log_Z: float) -> None:
        super().__init__()
        self.name, self.dim, self.log_Z = name, dim, float(log_Z)


class RotatedGaussian(_HeldOut):
    """``N(m, R diag(var) Rᵀ)``, variances log-spaced over ``condition``, mean ``shift · z``."""

    def __init__(self, dim=18, condition=30.0, shift=1.5, seed=7):
        rot = _rotation(dim, seed)
        var = torch.logspace(
            -0.5 * math.log10(condition), 0.5 * math.log10(condition), dim, dtype=torch.float64
        )
        super().__init__("rotated_gauss18", dim, 0.5 * dim * LOG_2PI + 0.5 * float(var.log().sum()))
        gen = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("mean", shift * torch.randn(dim, generator=gen, dtype=torch.float64))
        self.register_buffer("precision", rot @ torch.diag(1 / var) @ rot.T)
        self.register_buffer("root", rot @ torch.diag(var.sqrt()))

    def log_prob(self, x):
        d = x - self.mean.to(x)
        return -0.5 * ((d @ self.precision.to(x)) * d).sum(-1)

    def sample(self, n):
        return self.mean + torch.randn(n, self.dim, dtype=torch.float64) @ self.root.T


class StudentT(_HeldOut):
    """A multivariate Student-t with ``nu`` degrees of freedom, location ``m``, scale ``A Aᵀ``."""

    def __init__(self, dim=4, nu=5.0, seed=3):
        gen = torch.Generator().manual_seed(seed)
        a = torch.eye(dim, dtype=torch.float64) + 0.4 * torch.randn(
            dim, dim, generator=gen, dtype=torch.float64
        )
        chol = torch.linalg.cholesky(a @ a.T)
        log_det = 2 * float(torch.log(torch.diagonal(chol)).sum())
        log_z = (
            math.lgamma(nu / 2)
            + 0.5 * dim * math.log(nu * math.pi)
            + 0.5 * log_det
            - math.lgamma((nu + dim) / 2)
        )
        super().__init__("student_t4", dim, log_z)
        self.nu = float(nu)
        self.register_buffer("loc", torch.randn(dim, generator=gen, dtype=torch.float64))
        self.register_buffer("chol", chol)

    def log_prob(self, x):
        d = (x - self.loc.to(x)).T
        z = torch.linalg.solve_triangular(self.chol.to(x), d, upper=False)
        return -0.5 * (self.nu + self.dim) * torch.log1p((z * z).sum(0) / self.nu)

    def sample(self, n):
        z = torch.randn(n, self.dim, dtype=torch.float64) @ self.chol.T
        chi2 = torch.distributions.Chi2(torch.tensor(self.nu, dtype=torch.float64)).sample((n,))
        return self.loc + z / torch.sqrt(chi2 / self.nu)[:, None]


class Funnel5(_HeldOut):
    """Neal's funnel in 5-d with ``v ~ N(0, σ²)``, ``σ = 2``, and ``x_i | v ~ N(0, e^v)``."""

    def __init__(self, dim=5, sigma=2.0):
        log_z = 0.5 * math.log(2 * math.pi * sigma**2) + 0.5 * (dim - 1) * LOG_2PI
        super().__init__("funnel5_sigma2", dim, log_z)
        self.sigma = sigma

    def log_prob(self, x):
        v, rest = x[:, 0], x[:, 1:]
        return (
            -0.5 * (v / self.sigma) ** 2
            - 0.5 * (rest * rest).sum(-1) * torch.exp(-v)
            - 0.5 * (self.dim - 1) * v
        )

    def sample(self, n):
        v = self.sigma * torch.randn(n, 1, dtype=torch.float64)
        return torch.cat([v, torch.randn(n, self.dim - 1, dtype=torch.float64) * (v / 2).exp()], 1)


class TiltedBanana(_HeldOut):
    """``x₁ ~ N(0, a²)``, ``x₂ = b(x₁² − a²) + t x₁ + s₂ z``, ``x₃ ~ N(0, s₃²)``: a shear."""

    def __init__(self, a=1.5, b=0.8, t=0.3, s2=0.6, s3=0.5):
        log_z = math.log(2 * math.pi * a * s2) + 0.5 * math.log(2 * math.pi * s3**2)
        super().__init__("tilted_banana3", 3, log_z)
        self.a, self.b, self.t, self.s2, self.s3 = a, b, t, s2, s3

    def _mean2(self, x1):
        return self.b * (x1 * x1 - self.a**2) + self.t * x1

    def log_prob(self, x):
        y2 = (x[:, 1] - self._mean2(x[:, 0])) / self.s2
        return -0.5 * (x[:, 0] / self.a) ** 2 - 0.5 * y2 * y2 - 0.5 * (x[:, 2] / self.s3) ** 2

    def sample(self, n):
        z = torch.randn(n, 3, dtype=torch.float64)
        x1 = self.a * z[:, 0]
        return torch.stack([x1, self._mean2(x1) + self.s2 * z[:, 1], self.s3 * z[:, 2]], 1)


class _Mixture(_HeldOut):
    """Isotropic Gaussians with centres ``modes``, widths ``stds`` and ``weights``, times
    ``exp(log_Z)``; :meth:`mode_counts` assigns points to their nearest centre."""

    unimodal = False

    def __init__(self, name, modes, stds, weights, log_z):
        super().__init__(name, modes.shape[1], log_z)
        self.register_buffer("modes", modes)
        self.register_buffer("stds", torch.as_tensor(stds, dtype=torch.float64))
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float64))

    def log_prob(self, x):
        s = self.stds.to(x)
        d2 = ((x[:, None, :] - self.modes.to(x)) ** 2).sum(-1) / s**2
        log_n = -0.5 * d2 - self.dim * torch.log(s) - 0.5 * self.dim * LOG_2PI
        return torch.logsumexp(log_n + self.weights.to(x).log(), -1) + self.log_Z

    def sample(self, n):
        idx = torch.multinomial(self.weights, n, replacement=True)
        z = torch.randn(n, self.dim, dtype=torch.float64)
        return self.modes[idx] + self.stds[idx, None] * z

    def mode_counts(self, x):
        d2 = ((x[:, None, :].double() - self.modes) ** 2).sum(-1)
        return torch.bincount(d2.argmin(-1), minlength=len(self.modes))


def ring12():
    """12 equal modes on a circle of radius 5 (neighbours 7.4 widths apart), ``ln Z = −1``."""
    angle = 2 * math.pi * torch.arange(12, dtype=torch.float64) / 12 + 0.2
    modes = 5.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return _Mixture("ring12", modes, [0.35] * 12, [1 / 12] * 12, -1.0)


def two_modes6():
    """Weights 0.3 and 0.7, widths 1 and 0.7, centres 6 apart in 6-d, ``ln Z = 0.5``."""
    u = _rotation(6, 5)[:, 0]
    return _Mixture("two_modes6", torch.stack([3 * u, -3 * u]), [1.0, 0.7], [0.3, 0.7], 0.5)


class Annulus(_HeldOut):
    """``ln π̃ = −(|x| − R)² / (2s²)`` in 2-d: ``Z = 2π (s² e^{−R²/2s²} + R s √(2π) Φ(R/s))``."""

    unimodal = False  # one connected ridge, but no Gaussian-like mode: no ESS comparison

    def __init__(self, radius=3.0, width=0.3):
        r, s = radius, width
        phi = 0.5 * (1 + math.erf(r / (s * math.sqrt(2))))
        z = (
            2
            * math.pi
            * (s * s * math.exp(-(r * r) / (2 * s * s)) + r * s * math.sqrt(2 * math.pi) * phi)
        )
        super().__init__("annulus", 2, math.log(z))
        self.radius, self.width = radius, width

    def log_prob(self, x):
        r = torch.sqrt((x * x).sum(-1) + 1e-12)
        return -0.5 * ((r - self.radius) / self.width) ** 2

    def sample(self, n):  # rejection from the radial density r · N(r; R, s²) on r > 0
        out = torch.empty(0, dtype=torch.float64)
        top = self.radius + 6 * self.width
        while len(out) < n:
            r = self.radius + self.width * torch.randn(4 * n, dtype=torch.float64)
            r = r[(r > 0) & (torch.rand(4 * n, dtype=torch.float64)[: len(r)] * top < r)]
            out = torch.cat([out, r])
        r = out[:n]
        theta = 2 * math.pi * torch.rand(n, dtype=torch.float64)
        return torch.stack([r * theta.cos(), r * theta.sin()], 1)


TARGETS = {
    "rotated_gauss18": RotatedGaussian,
    "student_t4": StudentT,
    "funnel5_sigma2": Funnel5,
    "tilted_banana3": TiltedBanana,
    "ring12": ring12,
    "two_modes6": two_modes6,
    "annulus": Annulus,
}

# Cases measured below the bar: name -> the measured numbers (strict xfail: a fix surfaces).
KNOWN_MISSES: dict[str, str] = {
    "student_t4": "issue 33: ESS below RealNVP's (0.9932 vs 0.9935); ln Z off by 0.0003",
    "funnel5_sigma2": "issue 33: ESS below RealNVP's (0.988 vs 0.998); ln Z off by 0.007",
    "tilted_banana3": "issue 33: ESS below RealNVP's (0.897 vs 0.999); ln Z off by 0.015",
}


# -- fast: the targets themselves ------------------------------------------------------------


def _student_proposal(mean: Tensor, cov: Tensor, n: int, nu: float = 3.0):
    """``n`` draws of a multivariate Student-t (``nu``, location ``mean``, scale ``cov``) and
    their log-densities: heavier-tailed than every target here, so ``π̃/h`` has finite variance."""
    d = len(mean)
    chol = torch.linalg.cholesky(cov)
    z = torch.randn(n, d, dtype=torch.float64)
    u = torch.distributions.Chi2(torch.tensor(nu, dtype=torch.float64)).sample((n,)) / nu
    x = mean + (z @ chol.T) / u.sqrt()[:, None]
    white = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)
    log_h = (
        math.lgamma((nu + d) / 2)
        - math.lgamma(nu / 2)
        - 0.5 * d * math.log(nu * math.pi)
        - float(torch.log(torch.diagonal(chol)).sum())
        - 0.5 * (nu + d) * torch.log1p((white * white).sum(0) / nu)
    )
    return x, log_h


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_held_out_log_z_and_sampler_match_an_independent_estimate(name):
    """``ln Z`` and the mean by importance sampling from a broad Student-t (built around the
    exact draws' moments, with twice their covariance), against the closed form and the exact
    draws; 2-d targets also by quadrature. A wrong normaliser, exponent or sampler moves one of
    them by far more than the tolerance."""
    torch.manual_seed(0)
    t = TARGETS[name]()
    with torch.no_grad():
        draws = t.sample(100_000).double()
        mean, cov = draws.mean(0), torch.cov(draws.T)
        x, log_h = _student_proposal(mean, 2 * cov, 400_000)
        log_w = t.log_prob(x) - log_h
    estimate = float(torch.logsumexp(log_w, 0) - math.log(len(x)))
    assert abs(estimate - t.log_Z) < 0.03, (name, estimate, t.log_Z)
    is_mean = (torch.softmax(log_w, 0)[:, None] * x).sum(0)
    gap = ((is_mean - mean) / cov.diagonal().sqrt()).abs().max()
    assert gap < 0.05, (name, is_mean, mean)
    if t.dim == 2:
        assert abs(grid_log_z(t.log_prob, bound=9.0, points=1201) - t.log_Z) < 1e-3


# -- slow: the goals at 60 s ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("sampling_bench_heldout", "sampling.py") as module:
        yield module


def _fit(bench, target, method):
    torch.manual_seed(1000)
    x = target.sample(20_000).double()
    ref = (x.mean(0), x.std(0), {"kind": "exact samples", "n": len(x)})
    row, _ = bench.run_one(target, method, SEED, BUDGET_S, ref)
    return row


def _cases():
    for name in TARGETS:
        marks = [pytest.mark.slow]
        if name in KNOWN_MISSES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[name]))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_cases()))
def test_held_out_goals_at_60_s(bench, name):
    torch.set_num_threads(1)
    target = TARGETS[name]()
    rows = []
    for method in ["nhf", "realnvp_kl"] if target.unimodal else ["nhf"]:
        rows.append(_fit(bench, target, method))
        bench._common.write_json(  # after every fit, so a later crash keeps the rows
            ROOT / "runs" / "sampling_heldout" / f"{name}.json",
            {
                "command": "HAMFLOW_SLOW=1 pytest tests/core/test_sampling_heldout.py",
                **bench._common.machine_info(),
                "commit": bench._git_commit(),
                "log_Z": target.log_Z,
                "rows": rows,
            },
        )
    nhf = rows[0]
    assert "failed" not in nhf, nhf
    assert nhf["log_Z_err"] <= 0.1, nhf
    assert nhf["ess"] >= 0.1, nhf
    if target.unimodal:
        assert "failed" in rows[1] or nhf["ess"] >= rows[1]["ess"], rows
    if name == "ring12":
        assert nhf["modes_covered"] >= 0.9, nhf
