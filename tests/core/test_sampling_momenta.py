"""Importance weights with K momenta per draw (``n_momenta``): unbiased for Z at every K, the
extended-space weights at K = 1, and closer to the marginal weights as K grows."""

from __future__ import annotations

import math

import pytest
import torch

from hamflow import NHF, sampling
from hamflow.targets import Banana

F64 = torch.float64


class CorrelatedGauss:
    """``e^{log_Z} N(m, C)`` in 2-d (correlation 0.6) in float64: a known normaliser."""

    def __init__(self, log_Z=0.8):
        self.dim, self.log_Z, self.name = 2, log_Z, "corr_gauss"
        self.mean = torch.tensor([0.4, -0.3], dtype=F64)
        cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=F64)
        self.precision = torch.linalg.inv(cov)
        self.norm = math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(cov)))

    def __call__(self, x):
        d = x - self.mean
        return -0.5 * ((d @ self.precision) * d).sum(-1) - self.norm + self.log_Z


def tiny(target, seed=0):
    """A small float64 sampler moved away from its initial values (``r`` then differs from
    ``q(p | x)``, which is what the K momenta correct). Its samples are wider than the target
    and ``r`` narrower than the untrained encoder, so that the weights' variance is finite and
    a mean over 30,000 draws has a trustworthy standard error."""
    torch.manual_seed(seed)
    model = NHF(2, num_flows=2, hidden=(8,), encoder_hidden=(8,)).double()
    sampling.attach_target(model, target, kicks=False, scale=1.6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "beta" not in name:
                p.add_(0.05 * torch.randn_like(p))
    model.momentum_scale.fill_(0.6)
    return model


def _fresh_terms(model, d, k):
    """``ln q(x, p_j) − ln r(p_j | x)`` for ``k`` fresh ``p_j ~ r(· | x)``, ``(k, n)``, built
    from public pieces and drawn in the order :func:`importance_sample` draws them."""
    flow = model.phase_space_flow()
    _, affine_log_det = model.from_data(d["x"])
    mu, log_s = model.encoder.params(d["q"])
    log_s = log_s + math.log(float(model.momentum_scale))
    out = []
    for _ in range(k):
        z = torch.randn_like(d["p"])
        p = mu + log_s.exp() * z
        log_q = flow.log_prob(torch.cat([d["q"], p], -1)) + affine_log_det
        out.append(log_q - sampling._log_r(model, p, d["q"]))
    return torch.stack(out)


def _z_ratio(log_w, log_Z):
    """The mean of ``w / Z`` and its standard error."""
    w = torch.exp(log_w - log_Z)
    return w.mean().item(), w.std().item() / math.sqrt(len(w))


def test_inverse_scores_the_draws_own_momentum_as_the_forward_pass():
    """The fresh momenta are scored by the flow's exact inverse; on a draw's own momentum it
    gives the forward pass's ``ln q(x, p)`` (dampings, frictions and affine map included)."""
    model = tiny(CorrelatedGauss())
    with torch.no_grad():
        for f in model.frictions:
            f.rate.normal_(0, 0.3)
        d = sampling.extended_sample(model, 300)
        flow = model.phase_space_flow()
        log_q = sampling._log_joint(flow, d["q"], d["p"]) + model.from_data(d["x"])[1]
    assert torch.allclose(log_q, d["log_q"], atol=1e-10)
    assert d["log_q"].std() > 0.1  # not a constant


def test_one_momentum_reproduces_the_extended_space_weights_exactly():
    model = tiny(CorrelatedGauss())
    torch.manual_seed(3)
    x, log_w = sampling.importance_sample(model, 700, chunk_size=256, n_momenta=1)
    torch.manual_seed(3)
    with torch.no_grad():
        parts = [sampling.extended_sample(model, n) for n in (256, 256, 188)]
    assert torch.equal(x, torch.cat([d["x"] for d in parts]))
    assert torch.equal(log_w, torch.cat([d["log_target"] + d["log_r"] - d["log_q"] for d in parts]))


@pytest.mark.parametrize("k", [1, 8])
def test_weights_are_unbiased_for_Z(k):
    """The mean of ``w`` over 30,000 draws matches ``Z`` within 4 standard errors."""
    target = CorrelatedGauss()
    model = tiny(target)
    torch.manual_seed(11)
    _, log_w = sampling.importance_sample(model, 30_000, n_momenta=k)
    mean, se = _z_ratio(log_w, target.log_Z)
    assert abs(mean - 1) < 4 * se, (k, mean, se)
    assert se < 0.05  # the check has power


def test_dropping_the_draws_own_momentum_is_biased():
    """Negative controls: ``q̂`` from the fresh momenta alone (K − 1 = 3 or 7 of them) gives
    weights whose mean is off ``Z`` by many standard errors (by Jensen, high), while the same
    momenta with the draw's own, what :func:`importance_sample` computes (checked equal
    here), are not."""
    target = CorrelatedGauss()
    model = tiny(target)
    for k in (4, 8):
        torch.manual_seed(12)
        _, log_w = sampling.importance_sample(model, 30_000, chunk_size=30_000, n_momenta=k)
        torch.manual_seed(12)
        with torch.no_grad():
            d = sampling.extended_sample(model, 30_000)
            fresh = _fresh_terms(model, d, k - 1)
        own = (d["log_q"] - d["log_r"])[None]
        right = d["log_target"] - (torch.logsumexp(torch.cat([own, fresh]), 0) - math.log(k))
        assert torch.allclose(right, log_w, atol=1e-10)
        mean, se = _z_ratio(right, target.log_Z)
        assert abs(mean - 1) < 4 * se, (k, mean, se)
        wrong = d["log_target"] - (torch.logsumexp(fresh, 0) - math.log(k - 1))
        mean, se = _z_ratio(wrong, target.log_Z)
        assert mean - 1 > 8 * se, (k, mean, se)


def test_more_momenta_raise_the_ess_of_a_trained_sampler():
    """Same draws of ``x`` (same seed, one chunk): the weights at K = 16 are more even than the
    extended-space weights (K = 1) of a briefly trained sampler."""
    torch.manual_seed(0)
    model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    sampling.fit_sampler(model, max_steps=150, batch=256, seed=0)
    out = {}
    for k in (1, 16):
        torch.manual_seed(4)
        out[k] = sampling.importance_sample(model, 3000, n_momenta=k)
    assert torch.equal(out[1][0], out[16][0])
    ess = {k: sampling.ess_from_log_weights(lw).item() for k, (_, lw) in out.items()}
    assert ess[16] >= ess[1], ess


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "8"])
def test_bad_n_momenta_is_refused(bad):
    model = tiny(CorrelatedGauss())
    for call in (sampling.importance_sample, sampling.log_normalizer, sampling.ess):
        with pytest.raises(ValueError, match="n_momenta"):
            call(model, 16, n_momenta=bad)
    with pytest.raises(ValueError, match="n_momenta"):
        sampling.calibrate_momentum(model, 16, n_momenta=bad)
    with pytest.raises(ValueError, match="n_momenta"):
        model.importance_sample(16, n_momenta=bad)
