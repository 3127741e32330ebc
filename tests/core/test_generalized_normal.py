"""The learned-shape prior :class:`~hamflow.distributions.GeneralizedNormal`, in float64.

Its density is checked against scipy's independent ``gennorm`` and by quadrature (mass and
variance one for every shape), its sampler by a Kolmogorov–Smirnov test, its shape's range and
gradient at the ends, and its use as NHF's ``prior="generalized_normal"``.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from scipy import integrate, stats

from hamflow import NHF
from hamflow.distributions import GeneralizedNormal

F64 = torch.float64
SHAPES = [1.05, 1.5, 2.0, 4.0, 15.0]


def _one(beta: float) -> GeneralizedNormal:
    return GeneralizedNormal(1, beta=beta, beta_max=16.0).to(F64)


def _alpha(beta: float) -> float:
    return math.sqrt(math.gamma(1 / beta) / math.gamma(3 / beta))


@settings(max_examples=40, deadline=None)
@given(beta=st.floats(1.01, 15.9), seed=st.integers(0, 2**16))
def test_log_prob_matches_scipy_gennorm(beta, seed):
    prior = GeneralizedNormal(3, beta=beta, beta_max=16.0).to(F64)
    z = 3 * torch.randn(7, 3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    expected = stats.gennorm.logpdf(z.numpy(), beta, scale=_alpha(beta)).sum(-1)
    assert np.allclose(prior.log_prob(z).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", SHAPES)
def test_mass_and_variance_are_one_for_every_shape(beta):
    one = _one(beta)

    def density(z: float, power: int = 0) -> float:
        return z**power * math.exp(one.log_prob(torch.tensor([[z]], dtype=F64)).item())

    # split at 0, where the density has a kink for beta < 2
    mass = sum(integrate.quad(density, a, b, epsabs=1e-13)[0] for a, b in [(-40, 0), (0, 40)])
    var = sum(integrate.quad(density, a, b, (2,), epsabs=1e-13)[0] for a, b in [(-40, 0), (0, 40)])
    assert abs(mass - 1) < 1e-10 and abs(var - 1) < 1e-9


def test_shape_two_is_the_standard_normal_and_one_the_laplace():
    z = torch.linspace(-5, 5, 101, dtype=F64)[:, None]
    normal = -0.5 * z.squeeze(1) ** 2 - 0.5 * math.log(2 * math.pi)
    assert torch.allclose(_one(2.0).log_prob(z), normal, atol=1e-12)
    b = 1 / math.sqrt(2)  # the unit-variance Laplace scale
    laplace = -z.abs().squeeze(1) / b - math.log(2 * b)
    near_one = GeneralizedNormal(1, beta=1 + 1e-9, beta_min=1.0 - 1e-12).to(F64)
    assert torch.allclose(near_one.log_prob(z), laplace, atol=1e-7)


@pytest.mark.parametrize("beta", [1.2, 2.0, 7.0])
def test_sampler_matches_the_density(beta):
    prior = GeneralizedNormal(2, beta=beta).to(F64)
    torch.manual_seed(3)
    z, log_p = prior(20_000)
    assert z.dtype == F64 and torch.allclose(log_p, prior.log_prob(z))
    for i in range(2):
        result = stats.kstest(z[:, i].numpy(), stats.gennorm(beta, scale=_alpha(beta)).cdf)
        assert result.pvalue > 1e-3, (i, result)
    assert abs(np.corrcoef(z[:, 0].numpy(), z[:, 1].numpy())[0, 1]) < 0.05


def test_zero_and_far_states_keep_finite_values_and_gradients():
    """z = 0 exactly (|z|^β has a zero derivative there) and a state 10³ out in float32 at the
    largest default shape: the log-density and every gradient stay finite."""
    prior = GeneralizedNormal(2, beta=7.9)
    z = torch.tensor([[0.0, 0.0], [1e3, -1e3]], requires_grad=True)
    log_p = prior.log_prob(z)
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(z.grad).all()
    assert torch.isfinite(prior.u.grad).all() and z.grad[0].abs().max() == 0


def test_blocks_learn_their_own_shape():
    prior = GeneralizedNormal(4, blocks=2).to(F64)
    # q near 0 (a peaked, heavy-tailed shape fits it) and p near ±1.5 (a flat-topped one does)
    z = torch.tensor([[0.1, -0.2, 1.5, -1.6]], dtype=F64)
    (-prior.log_prob(z)).sum().backward()
    grad = prior.u.grad  # of the NLL: positive pushes beta down, negative pushes it up
    assert grad.shape == (2,) and grad[0] > 0 > grad[1]
    with torch.no_grad():
        prior.u.copy_(torch.tensor([0.2, -0.2]))
    beta = prior.beta()
    assert beta[0] == beta[1] and beta[2] == beta[3] and beta[0] > 2 > beta[2]


def test_shape_stays_in_range_and_can_come_back():
    prior = GeneralizedNormal(2, beta_min=1.0, beta_max=16.0).to(F64)
    for u, end in ((1e3, 16.0), (-1e3, 1.0)):
        with torch.no_grad():
            prior.u.fill_(u)
        assert abs(prior.beta()[0].item() - end) < 1e-9
    with torch.no_grad():
        prior.u.fill_(0.3)  # near the top, not at it: the gradient still reaches u
    z = torch.full((1, 2), 0.2, dtype=F64)
    prior.log_prob(z).sum().backward()
    assert torch.isfinite(prior.u.grad).all() and prior.u.grad.abs().min() > 0


def test_gain_sets_the_initial_rate_of_ln_beta():
    for gain in (1.0, 10.0):
        prior = GeneralizedNormal(1, beta=3.0, gain=gain).to(F64)
        torch.log(prior.beta()).sum().backward()
        assert abs(prior.u.grad.item() - gain) < 1e-12
    fixed = GeneralizedNormal(2, learnable=False)
    assert list(fixed.parameters()) == [] and fixed.beta().tolist() == [2.0, 2.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=0), "dim: expected a positive integer"),
        (dict(dim=3, blocks=2), "blocks: expected a positive divisor of dim=3"),
        (dict(dim=2, beta=0.5), "expected 0 < beta_min < beta < beta_max"),
        (dict(dim=2, beta_max=math.inf), "expected 0 < beta_min < beta < beta_max"),
        (dict(dim=2, gain=0.0), "gain: expected a positive finite number"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneralizedNormal(**kwargs)


def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"z: expected shape \(batch, 4\)"):
        GeneralizedNormal(4).log_prob(torch.zeros(3, 2))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_is_refused_not_clamped(bad):
    """The clamp that guards the power would otherwise give a state at inf a finite density."""
    z = torch.zeros(2, 2)
    z[1, 0] = bad
    with pytest.raises(ValueError, match="z: expected finite values"):
        GeneralizedNormal(2).log_prob(z)


def test_nhf_learned_tails_prior_learns_one_shape_for_q_and_one_for_p():
    torch.manual_seed(0)
    model = NHF(3, hidden=(16,), encoder_hidden=(16,), prior="generalized_normal")
    assert isinstance(model.prior, GeneralizedNormal) and model.prior.u.shape == (2,)
    model.forward_kld(torch.randn(32, 3) * torch.tensor([1.0, 2.0, 0.5])).backward()
    assert torch.isfinite(model.prior.u.grad).all() and model.prior.u.grad.abs().min() > 0
    assert not isinstance(NHF(3).prior, GeneralizedNormal)  # the default: standard normal
    assert not isinstance(NHF.paper(3).prior, GeneralizedNormal)  # paper A.2: the same


def test_nhf_names_every_prior_it_knows_when_refusing_one():
    with pytest.raises(ValueError, match="expected 'normal', 'generalized_normal', 'soft_uniform'"):
        NHF(2, prior="laplace")
