"""The coupling momentum density ``r(p | x)`` (``MomentumFlow``): exact inverse, exact log-det,
a normalised ``r``, and weights that stay unbiased for Z with it."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow import NHF, sampling
from hamflow.momentum_flow import MomentumFlow

F64 = torch.float64


def moved(flow: MomentumFlow, seed: int, size: float = 0.4) -> MomentumFlow:
    """The flow with every parameter moved off its initial value (so not the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in flow.parameters():
            w.add_(size * torch.randn(w.shape, generator=gen, dtype=w.dtype))
    return flow


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(1, 5), layers=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_inverse_round_trip_and_log_det_is_autograds(dim, layers, seed):
    flow = moved(MomentumFlow(dim, layers, hidden=8).double(), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    p = torch.randn(6, dim, generator=gen, dtype=F64)
    q = torch.randn(6, dim, generator=gen, dtype=F64)
    u, log_det = flow(p, q)
    back, log_det_inv = flow.inverse(u, q)
    assert torch.allclose(back, p, atol=1e-10)
    assert torch.allclose(log_det_inv, -log_det, atol=1e-10)
    assert not torch.allclose(u, p)  # not the identity
    for i in range(len(p)):
        qi = q[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v, qi=qi: flow(v[None], qi)[0][0], p[i])
        assert abs(torch.slogdet(jac)[1].item() - log_det[i].item()) < 1e-9


def test_a_new_flow_is_the_identity():
    flow = MomentumFlow(3)
    p, q = torch.randn(5, 3), torch.randn(5, 3)
    u, log_det = flow(p, q)
    assert torch.equal(u, p) and torch.equal(log_det, torch.zeros(5))


class Gauss:
    """``e^{log_Z} N(0.3, 0.6² I)`` in float64."""

    def __init__(self, dim, std=0.6, log_Z=1.5):
        self.dim, self.std, self.log_Z, self.name = dim, std, log_Z, "gauss"

    def __call__(self, x):
        z = (x - 0.3) / self.std
        norm = self.dim * (0.5 * math.log(2 * math.pi) + math.log(self.std))
        return -0.5 * (z * z).sum(-1) - norm + self.log_Z


def tiny(target, layers=2, seed=0):
    """A small float64 sampler with every parameter moved off its start, the couplings of
    ``r`` included; ``r`` is kept narrower than the sampler's momenta (``momentum_scale``), so
    the weights have a finite variance and a mean over 30,000 draws a trustworthy error."""
    torch.manual_seed(seed)
    model = NHF(target.dim, num_flows=2, hidden=(8,), encoder_hidden=(8,)).double()
    sampling.attach_target(model, target, kicks=False, scale=1.6, momentum_layers=layers)
    with torch.no_grad():
        for name, w in model.named_parameters():
            if "beta" not in name:
                w.add_((0.15 if "momentum_flow" in name else 0.05) * torch.randn_like(w))
    model.momentum_scale.fill_(0.6)
    return model


def test_r_is_a_normalised_density_of_p():
    """``∫ r(p | x) dp = 1`` for fixed ``x``, by quadrature on a 2-d grid of ``p``."""
    model = tiny(Gauss(2))
    q = torch.tensor([[0.4, -0.7]], dtype=F64)
    axis = torch.linspace(-30, 30, 1501, dtype=F64)  # r is wide: its draws reach |p| = 20
    pp = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        log_r = sampling._log_r(model, pp, q.expand(len(pp), 2))
    mass = torch.exp(log_r).sum() * (axis[1] - axis[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3, mass.item()


def test_fresh_momenta_are_drawn_from_r():
    """The draws ``importance_sample`` makes (``mu + e^{log s} z`` through the inverse) have
    the density ``_log_r`` scores: the mean of ``1 / r`` over a box's draws estimates its
    volume only when both agree."""
    model = tiny(Gauss(2))
    q = torch.tensor([[0.4, -0.7]], dtype=F64).expand(200_000, 2)
    torch.manual_seed(5)
    with torch.no_grad():
        mu, log_s = sampling._r_params(model, q)
        z = torch.randn_like(mu)
        p, log_det = model.momentum_flow.inverse(mu + log_s.exp() * z, q)
        log_r_draw = sampling._normal_log_prob(z, log_s) - log_det
        assert torch.allclose(log_r_draw, sampling._log_r(model, p, q), atol=1e-9)
        # E_r[1{p in B} / r(p)] = |B|: a check on the density of the draws themselves
        inside = ((p > -1) & (p < 1)).all(-1)
        vol = torch.where(inside, torch.exp(-log_r_draw), torch.zeros_like(log_r_draw))
    se = vol.std().item() / math.sqrt(len(vol))
    assert abs(vol.mean().item() - 4.0) < 4 * se + 1e-3, (vol.mean().item(), se)


@pytest.mark.parametrize("k", [1, 8])
def test_weights_with_the_momentum_flow_are_unbiased_for_Z(k):
    """The mean of ``w / Z`` over 30,000 draws is 1 within 4 standard errors; a log-det
    dropped from ``r`` (the negative control) moves it by many."""
    target = Gauss(2)
    model = tiny(target)
    torch.manual_seed(11)
    _, log_w = sampling.importance_sample(model, 30_000, n_momenta=k)
    w = torch.exp(log_w - target.log_Z)
    mean, se = w.mean().item(), w.std().item() / math.sqrt(len(w))
    assert se < 0.05, se
    assert abs(mean - 1) < 4 * se, (k, mean, se)
    if k == 1:
        torch.manual_seed(11)
        with torch.no_grad():
            d = sampling.extended_sample(model, 30_000)
            _, log_det = model.momentum_flow(d["p"], d["q"])
        assert torch.equal(d["log_w"], log_w)
        wrong = torch.exp(d["log_w"] - log_det - target.log_Z)
        assert abs(wrong.mean().item() - 1) > 10 * se, wrong.mean().item()


def test_the_momentum_flow_trains_and_saves(tmp_path):
    """Its parameters get gradients from the reverse KL, and a saved sampler loads with them;
    a sampler saved without the flow loads with it at the identity."""
    target = Gauss(2)
    model = tiny(target)
    loss = sampling.reverse_kld(model, 64)
    loss.backward()
    grads = [w.grad for w in model.momentum_flow.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("momentum_flow")}
    fresh = NHF(2, num_flows=2, hidden=(8,), encoder_hidden=(8,)).double()
    sampling.attach_target(fresh, target, kicks=False, momentum_layers=2)
    fresh.load_state_dict(state)
    p, q = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    assert torch.equal(fresh.momentum_flow(p, q)[0], p)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.momentum_flow(p, q)[0], model.momentum_flow(p, q)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dim=0), "dim"),
        (dict(dim=2, layers=0), "layers"),
        (dict(dim=2, hidden=0), "hidden"),
        (dict(dim=2, bound=-1.0), "bound"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MomentumFlow(**kwargs)
    if match == "layers":
        model = NHF(2, num_flows=1, hidden=(4,), encoder_hidden=(4,), target=Gauss(2))
        with pytest.raises(ValueError, match="layers"):
            sampling.use_momentum_flow(model, -1)
