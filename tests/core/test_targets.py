"""The sampling targets: their normalisers are right, their samplers follow their densities."""

from __future__ import annotations

import math

import normflows as nf
import pytest
import torch

from hamflow.targets import (
    Banana,
    CorrelatedGaussian,
    Funnel,
    GridMixture,
    as_target,
    grid_log_z,
)

F64 = torch.float64


@pytest.mark.parametrize(
    "target, bound",
    [
        (Banana(), 40.0),
        (GridMixture(), 10.0),
        (Funnel(2, sigma=1.0), 9.0),
        (CorrelatedGaussian(2, condition=10.0), 8.0),
    ],
)
def test_log_Z_matches_quadrature_in_2d(target, bound):
    assert abs(grid_log_z(target.log_prob, bound=bound, points=2001) - target.log_Z) < 2e-3


def _normalised(target, x):
    """``ln π(x)`` written with torch.distributions, independently of the targets' formulas."""
    D = torch.distributions
    if isinstance(target, Funnel):
        v = x[:, 0]
        lp = D.Normal(0.0, target.sigma).log_prob(v)
        return lp + D.Normal(0.0, torch.exp(v / 2)[:, None]).log_prob(x[:, 1:]).sum(-1)
    if isinstance(target, Banana):
        x1 = x[:, 0]
        lp = D.Normal(0.0, target.a).log_prob(x1)
        lp = lp + D.Normal(target.b * (x1**2 - target.a**2), 1.0).log_prob(x[:, 1])
        return lp + D.Normal(0.0, 1.0).log_prob(x[:, 2:]).sum(-1)
    if isinstance(target, GridMixture):
        comp = D.Independent(D.Normal(target.modes, target.std), 1)
        mix = D.Categorical(torch.ones(len(target.modes), dtype=F64))
        lp = D.MixtureSameFamily(mix, comp).log_prob(x[:, :2])
        return lp + D.Normal(0.0, 1.0).log_prob(x[:, 2:]).sum(-1)
    cov = target.covariance
    return D.MultivariateNormal(torch.zeros(len(cov), dtype=F64), cov).log_prob(x)


@pytest.mark.parametrize(
    "target", [Funnel(10), Banana(dim=5), GridMixture(dim=3), CorrelatedGaussian(20)]
)
def test_log_prob_minus_log_Z_is_the_normalised_density(target):
    torch.manual_seed(0)
    x = target.sample(64).double()
    assert torch.allclose(target.log_prob(x) - target.log_Z, _normalised(target, x), atol=1e-8)


@pytest.mark.parametrize("target", [Funnel(4), Banana(dim=3), CorrelatedGaussian(5)])
def test_exact_samplers_have_the_right_moments(target):
    torch.manual_seed(0)
    x = target.sample(40000).double()
    if isinstance(target, Funnel):
        assert abs(x[:, 0].mean()) < 0.1 and abs(x[:, 0].var() - target.sigma**2) < 0.4
    elif isinstance(target, Banana):
        assert abs(x[:, 0].var() - target.a**2) < 0.2 and abs(x[:, 1].mean()) < 0.05
    else:
        cov = target.covariance
        assert torch.allclose(torch.cov(x.T), cov, atol=0.1 * cov.max())


def test_grid_mixture_counts_every_mode():
    t = GridMixture()
    counts = t.mode_counts(t.sample(16000))
    assert counts.sum() == 16000 and (counts > 800).all()


def test_normflows_targets_get_a_normaliser_by_quadrature():
    lz = grid_log_z(nf.distributions.CircularGaussianMixture().log_prob, bound=5.0)
    assert abs(lz) < 1e-3  # it is normalised
    assert math.isfinite(grid_log_z(nf.distributions.TwoMoons().log_prob, bound=5.0))


def test_checked_target_errors_name_the_target():
    t = as_target(Funnel(3))
    with pytest.raises(ValueError, match="funnel.*shape"):
        t(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="target"):
        as_target(object())
    bad = as_target(lambda x: torch.zeros(len(x), 1), dim=2, name="wide")
    with pytest.raises(ValueError, match="'wide'.*shape"):
        bad(torch.zeros(3, 2))
    assert as_target(t) is t
