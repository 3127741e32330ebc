"""NHF as a sampler of an unnormalised target: exact log-det, exact weights, unbiased Z."""

from __future__ import annotations

import math

import normflows as nf
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow import NHF, sampling
from hamflow.targets import Banana, CorrelatedGaussian, Funnel

F64 = torch.float64


def tiny(
    dim: int,
    target,
    kicks: bool = True,
    scale: float = 1.0,
    affine="triangular",
    seed=0,
    damping: bool = True,
):
    """A small float64 sampler whose parameters are moved away from their initial values."""
    torch.manual_seed(seed)
    model = NHF(dim, num_flows=2, hidden=(8,), encoder_hidden=(8,), affine=affine)
    model = model.double()
    sampling.attach_target(model, target, kicks=kicks, scale=scale, damping=damping)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "beta" not in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


class Gauss:
    """An isotropic Gaussian ``N(m, s² I)`` in float64 with a known normaliser."""

    def __init__(self, dim, std=0.7, mean=0.3, log_Z=1.5):
        self.dim, self.std, self.mean, self.log_Z, self.name = dim, std, mean, log_Z, "gauss"

    def __call__(self, x):
        z = (x - self.mean) / self.std
        norm = self.dim * (0.5 * math.log(2 * math.pi) + math.log(self.std))
        return -0.5 * (z * z).sum(-1) - norm + self.log_Z


def flat_map(model, s0):
    x, p, _, _ = sampling.push_forward(model, s0[None])
    return torch.cat([x, p], -1)[0]


@settings(max_examples=8, deadline=None)
@given(
    dim=st.integers(1, 3),
    kicks=st.booleans(),
    affine=st.sampled_from(["triangular", "diagonal", "none"]),
    seed=st.integers(0, 100),
    damping=st.booleans(),
)
def test_log_det_matches_autograd_jacobian(dim, kicks, affine, seed, damping):
    model = tiny(dim, Gauss(dim), kicks=kicks, affine=affine, seed=seed, damping=damping)
    with torch.no_grad():
        for f in model.frictions:
            f.rate.normal_(0, 0.3)
    s0 = torch.randn(4, 2 * dim, dtype=F64)
    _, _, _, log_det = sampling.push_forward(model, s0)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda s: flat_map(model, s), s0[i])
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        assert torch.allclose(logabs, log_det[i].detach(), atol=1e-9), (logabs, log_det[i])


def test_kicked_flow_inverts_exactly():
    model = tiny(3, Funnel(3), kicks=True)
    s0 = torch.randn(16, 6, dtype=F64)
    q0, p0 = s0.chunk(2, -1)
    with torch.no_grad():
        q, p = model.transport(q0, p0)
        back_q, back_p = model.transport(q, p, inverse=True)
    assert torch.allclose(back_q, q0, atol=1e-10) and torch.allclose(back_p, p0, atol=1e-10)
    assert not torch.allclose(q, q0)


def test_log_weights_are_the_extended_space_identity():
    target = Gauss(2)
    model = tiny(2, target)
    torch.manual_seed(3)
    d = sampling.extended_sample(model, 32)
    q = model.affine.inverse(d["x"])[0]
    s0 = torch.cat(model.transport(q, d["p"], inverse=True), -1)
    log_pi = model.prior.log_prob(s0)
    _, _, _, log_det = sampling.push_forward(model, s0)
    expected = target(d["x"]) + model.encoder.log_prob(d["p"], q)
    expected = expected - (log_pi - log_det)
    assert torch.allclose(d["log_w"], expected, atol=1e-9)


@pytest.mark.parametrize("momentum", ["encoder", "normal"])
@pytest.mark.parametrize("kicks", [False, True])
def test_importance_weights_are_unbiased_for_Z(kicks, momentum):
    """exp(logsumexp(ln w) - ln n) averaged over independent batches is Z within 4 s.e."""
    target = Gauss(2, std=0.6, log_Z=1.5)
    model = tiny(2, target, kicks=kicks, scale=1.6)
    torch.manual_seed(1)
    _, log_w = model.importance_sample(100000, momentum=momentum)
    z_hat = torch.exp(log_w.reshape(1000, 100) - target.log_Z).mean(1)  # Ẑ / Z per batch
    mean, se = z_hat.mean().item(), z_hat.std().item() / math.sqrt(len(z_hat))
    assert se < 0.06  # the check has power: a log-det off by 0.25 nats would fail it
    assert abs(mean - 1) < 4 * se, (mean, se)


@settings(max_examples=20, deadline=None)
@given(dim=st.integers(1, 5), seed=st.integers(0, 10_000), inverse=st.booleans())
def test_position_damping_inverts_and_its_log_det_is_autograds(dim, seed, inverse):
    torch.manual_seed(seed)
    layer = sampling.PositionDamping(dim, hidden=6).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.7)
    q, p = torch.randn(3, dim, dtype=F64), torch.randn(3, dim, dtype=F64)
    p2, log_det = layer(q, p, inverse=inverse)
    back, back_log_det = layer(q, p2, inverse=not inverse)
    assert torch.allclose(back, p, atol=1e-12)
    assert torch.allclose(log_det, -back_log_det, atol=1e-12)
    assert not torch.allclose(p2, p)  # the check is not of an identity

    def flat(s):
        qq, pp = s.chunk(2)
        return torch.cat([qq, layer(qq[None], pp[None], inverse=inverse)[0][0]])

    for i in range(3):
        jac = torch.autograd.functional.jacobian(flat, torch.cat([q[i], p[i]]))
        assert torch.allclose(torch.linalg.slogdet(jac)[1], log_det[i], atol=1e-10)


def test_damped_sampler_inverts_and_samples_what_push_forward_maps():
    model = tiny(3, Funnel(3), kicks=False, damping=True)
    assert all(isinstance(f, sampling.DampedFlow) for f in model.flows)
    s0 = torch.randn(16, 6, dtype=F64)
    q0, p0 = s0.chunk(2, -1)
    with torch.no_grad():
        q, p = model.transport(q0, p0)
        back_q, back_p = model.transport(q, p, inverse=True)
        x, p_T, q_T, _ = sampling.push_forward(model, s0)
    assert torch.allclose(back_q, q0, atol=1e-10) and torch.allclose(back_p, p0, atol=1e-10)
    assert torch.allclose(q_T, q, atol=1e-12) and torch.allclose(p_T, p, atol=1e-12)


def test_missing_damping_log_det_would_be_caught():
    """The unbiasedness check fails when the position dampings' log-det is left out."""
    target = Gauss(2, std=0.6)
    model = tiny(2, target, kicks=False, scale=1.6, damping=True)
    torch.manual_seed(1)
    with torch.no_grad():
        s0, log_pi = model.prior(40000)
        x, p, q, log_det = sampling.push_forward(model, s0)
        damp_only = log_det - model.flow_log_det() - model.affine(q[:1])[1][0]
        log_w = target(x) + model.encoder.log_prob(p, q) - (log_pi - log_det)
    assert damp_only.std() > 0.05  # the dampings' log-det varies from draw to draw
    for wrong, should_pass in ((log_w, True), (log_w - damp_only, False)):
        z_hat = torch.exp(wrong.reshape(400, 100) - target.log_Z).mean(1)
        se = z_hat.std().item() / 20
        assert (abs(z_hat.mean().item() - 1) < 4 * se) == should_pass


def test_geometric_annealing_path_is_the_start_where_beta_is_zero():
    """With π̃ = e^c N(0, s² I), π̃^β N(0, s² I)^{1−β} = e^{βc} N(0, s² I): the losses at β and
    at 1 differ by exactly (1 − β) c on the same draws; the tempered path does not."""
    c, s = 1.3, 1.7
    target = Gauss(2, std=s, mean=0.0, log_Z=c)
    model = tiny(2, target, kicks=False, scale=s)
    losses = {}
    for beta, path in ((1.0, "geometric"), (0.3, "geometric"), (0.3, "tempered")):
        torch.manual_seed(5)
        losses[beta, path] = model.reverse_kld(64, beta=beta, path=path).item()
    assert math.isclose(losses[0.3, "geometric"] - losses[1.0, "geometric"], 0.7 * c, abs_tol=1e-9)
    assert abs(losses[0.3, "tempered"] - losses[1.0, "geometric"] - 0.7 * c) > 0.1
    with pytest.raises(ValueError, match="path"):
        model.reverse_kld(8, beta=0.5, path="linear")


def test_missing_log_det_would_be_caught():
    """The unbiasedness check fails when the affine map's log-det is left out."""
    target = Gauss(2, std=0.6)
    model = tiny(2, target, kicks=False, scale=1.6)
    torch.manual_seed(1)
    with torch.no_grad():
        d = sampling.extended_sample(model, 40000)
        wrong = d["log_w"] - model.affine(d["x"][:1])[1][0]
    z_hat = torch.exp(wrong.reshape(400, 100) - target.log_Z).mean(1)
    se = z_hat.std().item() / 20
    assert abs(z_hat.mean().item() - 1) > 4 * se


def test_reverse_kld_is_ln_Z_minus_a_gap_and_trains_every_parameter():
    target = Gauss(2)
    model = tiny(2, target)
    loss = model.reverse_kld(512)
    loss.backward()
    # E[ln q − ln r − ln π̃] = KL(extended) − ln Z ≥ −ln Z
    assert loss.item() > -target.log_Z - 0.05
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == [] or all("encoder" in n for n in missing), missing
    assert any("beta" in n for n, _ in model.named_parameters())


def test_training_reduces_the_bound_and_estimates_log_Z():
    torch.manual_seed(0)
    target = Banana()
    model = NHF(2, num_flows=2, hidden=(32, 32), encoder_hidden=(32,), target=target)
    before = model.reverse_kld(1024).item()
    info = sampling.fit_sampler(model, max_steps=150, max_time=60, batch=256, lr=3e-3, seed=0)
    after = model.reverse_kld(2048).item()
    assert info["steps"] == 150 and info["skipped"] == 0
    assert after < before - 1.0
    lz = model.log_normalizer(4000).item()
    assert abs(lz - target.log_Z) < 0.5, lz


def test_alpha_div_and_bootstrap_losses_are_finite_and_differentiable():
    model = tiny(2, Gauss(2))
    for loss in (model.reverse_alpha_div(64), sampling.bootstrap_kld(model, 32)):
        assert loss.shape == () and torch.isfinite(loss)
        loss.backward()
    with pytest.raises(ValueError, match="alpha"):
        model.reverse_alpha_div(8, alpha=1)


def test_ess_and_log_normalizer_of_an_exact_sampler():
    """A sampler equal to its target: every weight is Z, ESS is 1, ln Ẑ is ln Z exactly."""
    torch.manual_seed(0)
    t = Gauss(2, std=2.0, mean=0.0, log_Z=0.7)
    model = NHF(2, num_flows=1, hidden=(4,), encoder_hidden=(4,), friction=False)
    model = model.double()
    for f in model.flows:  # V = 0: the flow is a free drift q += dt p, then the affine map
        f.hamiltonian.potential.layers[-1].weight.data.zero_()
        f.dt.data.fill_(1e-12)
    sampling.attach_target(model, t, kicks=False)
    with torch.no_grad():
        model.affine.shift.zero_()
        model.affine.lower.zero_()
        model.affine.log_diag.fill_(math.log(2.0))
    assert abs(model.ess(500).item() - 1) < 1e-6
    assert abs(model.log_normalizer(500).item() - 0.7) < 1e-6


def test_without_target_nhf_is_unchanged():
    """target=None builds the very same model: same parameters, same losses under a seed."""
    torch.manual_seed(5)
    a = NHF(3, num_flows=2, hidden=(16,), encoder_hidden=(16,))
    torch.manual_seed(5)
    b = NHF(3, num_flows=2, hidden=(16,), encoder_hidden=(16,), target=None)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.target is None
    x = torch.randn(32, 3)
    torch.manual_seed(1)
    la = a.forward_kld(x)
    torch.manual_seed(1)
    lb = b.forward_kld(x)
    assert torch.equal(la, lb)
    with pytest.raises(ValueError, match="target"):
        b.reverse_kld(8)


def test_target_does_not_register_as_a_submodule():
    torch.manual_seed(0)
    plain = NHF(2, hidden=(8,), encoder_hidden=(8,))
    torch.manual_seed(0)
    model = NHF(2, hidden=(8,), encoder_hidden=(8,), target=nf.distributions.TwoMoons())
    sampling.configure(model, damping=False, kicks=True)
    extra = set(dict(model.named_parameters())) - set(dict(plain.named_parameters()))
    assert extra and all(name.endswith("hamiltonian.beta") for name in extra)
    assert "target" not in dict(model.named_modules())
    sampling.configure(model, damping=True, kicks=False)  # the flows are wrapped, not copied
    names = set(dict(model.named_parameters()))
    assert {n.replace(".flow.", ".") for n in names if "damping" not in n} == set(
        dict(plain.named_parameters())
    )
    assert any("damping" in n for n in names)


def test_bad_targets_are_named_in_the_error():
    def nan_target(x):
        return torch.full(x.shape[:1], float("nan"))

    model = NHF(2, hidden=(8,), encoder_hidden=(8,), target=nan_target)
    with pytest.raises(ValueError, match="nan_target.*NaN"):
        model.reverse_kld(8)
    with pytest.raises(ValueError, match="nan_target.*NaN"):  # met by a kick's gradient
        sampling.configure(model, kicks=True)
    model = tiny(2, lambda x: x.sum(-1, keepdim=True), kicks=False)
    with pytest.raises(ValueError, match="shape"):
        model.reverse_kld(8)
    with pytest.raises(ValueError, match="funnel.*10"):
        NHF(2, target=Funnel(10))
    with pytest.raises(TypeError, match="target"):
        NHF(2, target=3.0)


def test_fit_sampler_names_a_broken_target():
    calls = []

    def wrong_shape(x):
        calls.append(1)
        return x.sum(-1, keepdim=True)

    model = NHF(2, hidden=(8,), encoder_hidden=(8,), target=wrong_shape)
    with pytest.raises(ValueError, match="wrong_shape.*shape"):
        sampling.fit_sampler(model, max_steps=50, batch=8)
    assert len(calls) == 1  # raised at once, not skipped as a diverged draw

    def inf_target(x):
        return torch.full(x.shape[:1], math.inf)

    model = NHF(2, hidden=(8,), encoder_hidden=(8,), target=inf_target)
    with pytest.raises(ValueError, match="inf_target.*NaN or inf"):
        sampling.fit_sampler(model, max_steps=50, batch=8, max_failures=3)

    def nan_gradient(x):  # finite values, NaN gradient at every draw
        return torch.sqrt(torch.zeros_like(x[:, 0]) + (x[:, 0] * 0).abs())

    model = NHF(2, hidden=(8,), encoder_hidden=(8,), target=nan_gradient)
    with pytest.raises(ValueError, match="nan_gradient"):
        sampling.fit_sampler(model, max_steps=50, batch=8, max_failures=3)


def test_minus_inf_outside_the_support_is_a_zero_weight():
    model = tiny(2, lambda x: torch.where(x[:, 0] > 0, -0.5 * (x * x).sum(-1), -math.inf))
    x, log_w = model.importance_sample(200)
    assert torch.isneginf(log_w[x[:, 0] <= 0]).all() and torch.isfinite(log_w[x[:, 0] > 0]).all()


def test_correlated_gaussian_log_Z_by_sampling_its_own_law():
    t = CorrelatedGaussian(5, condition=50.0)
    x = torch.randn(4, 5, dtype=F64) @ t.chol.T
    log_density = torch.distributions.MultivariateNormal(
        torch.zeros(5, dtype=F64), t.covariance
    ).log_prob(x)
    assert torch.allclose(t.log_prob(x) - t.log_Z, log_density, atol=1e-9)


def test_a_saved_sampler_loads_with_its_target(tmp_path):
    torch.manual_seed(0)
    target = Banana()
    model = NHF(2, num_flows=2, hidden=(8,), encoder_hidden=(8,), target=target)
    sampling.fit_sampler(model, max_steps=5, batch=32)
    path = model.save(tmp_path / "sampler.pt")
    again = NHF.load(path, target=target)
    torch.manual_seed(3)
    _, a = model.importance_sample(64)
    torch.manual_seed(3)
    _, b = again.importance_sample(64)
    assert torch.equal(a, b)


def test_phase_space_flow_of_a_damped_sampler_is_its_exact_density():
    """``phase_space_flow().log_prob`` of a damped sampler equals the prior at the pulled-back
    state plus the log-det of the inverse map, taken from autograd's Jacobian in float64."""
    model = tiny(2, Funnel(2), kicks=False, damping=True)
    with torch.no_grad():
        for f in model.flows:
            f.damping.net[-1].weight.normal_(0, 0.5)  # a damping that varies with q
    flow = model.phase_space_flow()
    z = torch.randn(4, 4, dtype=F64)
    with torch.no_grad():
        lp = flow.log_prob(z)

    def pull_back(s):
        for layer in reversed(flow.flows):
            s = layer.inverse(s[None])[0][0]
        return s

    for i in range(4):
        jac = torch.autograd.functional.jacobian(pull_back, z[i])
        expected = model.prior.log_prob(pull_back(z[i])[None])[0] + torch.linalg.slogdet(jac)[1]
        assert torch.allclose(lp[i], expected, atol=1e-9)
    assert abs(float(torch.linalg.slogdet(jac)[1])) > 1e-3  # the dampings change the volume


@pytest.mark.parametrize("anneal", [None, 0.5, 0.0])
def test_fit_sampler_anneals_linearly_then_trains_on_the_target(monkeypatch, anneal):
    """``β`` rises linearly from ``beta0`` to 1 over the ``anneal`` fraction of the steps (by
    default :data:`DEFAULT_ANNEAL`) and stays at 1 after it; ``anneal=0`` never tempers."""
    betas = []
    original = sampling.reverse_kld

    def recording(model, num_samples, beta=1.0, **kwargs):
        betas.append(beta)
        return original(model, num_samples, beta=beta, **kwargs)

    monkeypatch.setattr(sampling, "reverse_kld", recording)
    model = tiny(2, Banana(), kicks=False)
    options = {} if anneal is None else {"anneal": anneal}
    sampling.fit_sampler(model, max_steps=40, batch=8, beta0=0.2, seed=0, **options)
    fraction = sampling.DEFAULT_ANNEAL if anneal is None else anneal
    expected = [
        1.0 if fraction <= 0 or k / 40 >= fraction else 0.2 + 0.8 * (k / 40) / fraction
        for k in range(40)
    ]
    assert betas == pytest.approx(expected)
