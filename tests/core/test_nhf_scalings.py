"""The non-volume-preserving layers NHF may use, and NHF's full log-weight with them, in float64.

Every claim is checked against autograd: the inverse round trip, and the log-det equal to
``ln |det J|`` of the Jacobian autograd computes, to 1e-8. The Hamiltonian layers themselves
(volume preservation, symplecticity) are covered for every registered scheme by
``test_integrator_properties.py``.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from hamflow import NHF, MLPEnergy, SeparableHamiltonian, rollout
from hamflow.integrators import KickCache, get_integrator
from hamflow.scaling import ConformalFriction, DiagonalAffine, TriangularAffine

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)


def _log_abs_det(fn, x: torch.Tensor) -> float:
    jac = torch.autograd.functional.jacobian(fn, x)
    return torch.linalg.slogdet(jac)[1].item()


@SETTINGS
@given(
    dim=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    spread=st.floats(0.01, 10.0),
)
def test_diagonal_affine_inverse_and_log_det(dim, seed, spread):
    gen = torch.Generator().manual_seed(seed)
    layer = DiagonalAffine(dim).double()
    data = spread * torch.randn(64, dim, generator=gen, dtype=F64) + 3.0
    layer.initialize(data)
    z = torch.randn(1, dim, generator=gen, dtype=F64)
    y, log_det = layer(z)
    back, inv_log_det = layer.inverse(y)
    assert torch.allclose(back, z, atol=1e-12)
    expected = _log_abs_det(lambda v: layer(v.unsqueeze(0))[0][0], z[0])
    assert abs(log_det.item() - expected) < 1e-8
    assert abs(inv_log_det.item() + expected) < 1e-8


def test_diagonal_affine_initialises_once_from_data():
    layer = DiagonalAffine(3).double()
    data = torch.randn(500, 3, dtype=F64) * torch.tensor([0.1, 1.0, 10.0], dtype=F64) + 5.0
    layer.maybe_initialize(data)
    z, _ = layer.inverse(data)
    assert torch.allclose(z.mean(0), torch.zeros(3, dtype=F64), atol=1e-12)
    assert torch.allclose(z.std(0), torch.ones(3, dtype=F64), atol=1e-12)
    before = layer.shift.clone()
    layer.maybe_initialize(data * 7.0)  # already initialised: nothing moves
    assert torch.equal(layer.shift, before)


def test_diagonal_affine_refuses_bad_initialisation_data():
    with pytest.raises(ValueError, match=r"x: expected shape \(N >= 2, 3\)"):
        DiagonalAffine(3).initialize(torch.zeros(1, 3))


@SETTINGS
@given(
    dim=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    spread=st.floats(0.01, 10.0),
    correlation=st.floats(-0.95, 0.95),
)
def test_triangular_affine_inverse_and_log_det(dim, seed, spread, correlation):
    gen = torch.Generator().manual_seed(seed)
    layer = TriangularAffine(dim).double()
    # correlated data, so that the initialised L has a non-trivial lower part
    mix = torch.eye(dim, dtype=F64) + correlation * torch.ones(dim, dim, dtype=F64).tril(-1)
    data = spread * torch.randn(64, dim, generator=gen, dtype=F64) @ mix.T + 3.0
    layer.initialize(data)
    with torch.no_grad():  # and a random one, away from any initialisation, scaled with the
        # data so that L stays well conditioned (a round trip through L loses cond(L) digits)
        layer.lower.add_(spread * torch.randn(layer.lower.shape, generator=gen, dtype=F64))
    z = torch.randn(1, dim, generator=gen, dtype=F64)
    y, log_det = layer(z)
    back, inv_log_det = layer.inverse(y)
    assert torch.allclose(back, z, atol=1e-9)
    expected = _log_abs_det(lambda v: layer(v.unsqueeze(0))[0][0], z[0])
    assert abs(log_det.item() - expected) < 1e-8
    assert abs(inv_log_det.item() + expected) < 1e-8


def test_triangular_affine_whitens_correlated_data_once():
    gen = torch.Generator().manual_seed(0)
    cov = torch.tensor([[4.0, 1.9, 0.0], [1.9, 1.0, 0.1], [0.0, 0.1, 0.25]], dtype=F64)
    data = torch.randn(4000, 3, generator=gen, dtype=F64) @ torch.linalg.cholesky(cov).T + 5.0
    layer = TriangularAffine(3).double()
    layer.maybe_initialize(data)
    z, log_det = layer.inverse(data)
    assert torch.allclose(z.mean(0), torch.zeros(3, dtype=F64), atol=1e-12)
    assert torch.allclose(torch.cov(z.T), torch.eye(3, dtype=F64), atol=1e-4)  # + min_std²
    # the diagonal map leaves the correlation of 0.95 between the first two features
    diag = DiagonalAffine(3).double()
    diag.initialize(data)
    assert torch.corrcoef(diag.inverse(data)[0].T)[0, 1] > 0.9
    # log-det of the whitening map: -ln sqrt(det cov) of the batch's covariance
    empirical = torch.cov(data.T) + 1e-6 * torch.eye(3, dtype=F64)
    assert abs(log_det[0].item() + 0.5 * torch.logdet(empirical).item()) < 1e-10
    before = layer.lower.clone()
    layer.maybe_initialize(data * 7.0)  # already initialised: nothing moves
    assert torch.equal(layer.lower, before)


def test_triangular_affine_falls_back_to_the_diagonal_on_too_few_rows():
    layer = TriangularAffine(4).double()
    data = torch.randn(3, 4, dtype=F64)  # 3 rows cannot estimate a 4x4 covariance
    layer.initialize(data)
    assert torch.equal(layer.lower, torch.zeros(6, dtype=F64))
    assert torch.allclose(layer.log_diag.exp() ** 2, data.var(0) + 1e-6)
    with pytest.raises(ValueError, match=r"x: expected shape \(N >= 2, 4\)"):
        TriangularAffine(4).initialize(torch.zeros(1, 4))


@pytest.mark.parametrize("kind", [DiagonalAffine, TriangularAffine])
def test_affine_maps_the_given_inputs_onto_the_datas_mean_and_covariance(kind):
    gen = torch.Generator().manual_seed(3)
    cov = torch.tensor([[4.0, 1.9, 0.0], [1.9, 1.0, 0.1], [0.0, 0.1, 0.25]], dtype=F64)
    data = torch.randn(2000, 3, generator=gen, dtype=F64) @ torch.linalg.cholesky(cov).T + 5.0
    # inputs that are neither centred, nor unit, nor uncorrelated
    mix = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 0.5, 0.0], [0.3, 0.2, 3.0]], dtype=F64)
    base = torch.randn(3000, 3, generator=gen, dtype=F64) @ mix.T - 2.0
    layer = kind(3).double()
    layer.initialize(data, base)
    y, _ = layer(base)
    assert torch.allclose(y.mean(0), data.mean(0), atol=1e-10)
    if kind is TriangularAffine:  # the whole covariance, up to the min_std² on the diagonal
        assert torch.allclose(torch.cov(y.T), torch.cov(data.T), atol=1e-5)
    else:  # the standard deviations only
        assert torch.allclose(y.std(0), data.std(0), atol=1e-10)
    # without inputs, standard-normal ones are assumed
    plain = kind(3).double()
    plain.initialize(data)
    assert torch.allclose(plain.shift, data.mean(0), atol=1e-12)


@pytest.mark.parametrize("kind", [DiagonalAffine, TriangularAffine])
def test_affine_refuses_bad_inputs_to_initialise_from(kind):
    data = torch.randn(50, 3, dtype=F64)
    layer = kind(3).double()
    with pytest.raises(ValueError, match=r"base: expected shape \(N >= 2, 3\)"):
        layer.initialize(data, torch.zeros(50, 2, dtype=F64))
    with pytest.raises(ValueError, match="base: expected finite values"):
        layer.initialize(data, torch.full((50, 3), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="x: expected finite values"):
        layer.initialize(torch.full((50, 3), float("inf"), dtype=F64))
    assert not bool(layer.initialized)  # a refused call changes nothing


@SETTINGS
@given(dim=st.integers(1, 5), seed=st.integers(0, 2**16), scale=st.floats(-3.0, 3.0))
def test_conformal_friction_inverse_and_log_det(dim, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    layer = ConformalFriction(dim).double()
    with torch.no_grad():
        layer.rate.copy_(scale * torch.randn(dim, generator=gen, dtype=F64))
    z = torch.randn(1, 2 * dim, generator=gen, dtype=F64)
    y, log_det = layer(z)
    back, inv_log_det = layer.inverse(y)
    assert torch.allclose(back, z, atol=1e-12)
    assert torch.equal(y[:, :dim], z[:, :dim])  # q untouched
    expected = _log_abs_det(lambda v: layer(v.unsqueeze(0))[0][0], z[0])
    assert abs(log_det.item() - expected) < 1e-8
    assert abs(inv_log_det.item() + expected) < 1e-8


def _randomised_nhf(seed: int, integrator: str, affine: str = "triangular") -> NHF:
    torch.manual_seed(seed)
    model = NHF(
        2, num_flows=3, hidden=(8, 8), encoder_hidden=(8,), integrator=integrator, affine=affine
    ).double()
    with torch.no_grad():
        for param in model.affine.parameters():
            param.normal_(0.0, 0.5)
        model.affine.initialized.fill_(True)
        for friction in model.frictions:
            friction.rate.normal_(0.0, 0.5)
    return model


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    integrator=st.sampled_from(["leapfrog", "symplectic_euler"]),
    affine=st.sampled_from(["triangular", "diagonal"]),
)
def test_nhf_log_weight_is_prior_plus_autograd_log_det(seed, integrator, affine):
    """ELBO weight = ln π(s₀) + ln|det ∂s₀/∂(x, p)| − ln f(p | q): the log-det from autograd."""
    model = _randomised_nhf(seed, integrator, affine)
    x = torch.randn(1, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))

    def data_to_prior(v: torch.Tensor) -> torch.Tensor:
        xv, pv = v[:2].unsqueeze(0), v[2:].unsqueeze(0)
        q, _ = model.affine.inverse(xv)
        q0, p0 = model.transport(q, pv, inverse=True)
        return torch.cat([q0, p0], -1)[0]

    torch.manual_seed(seed + 1)
    log_w = model._log_weights(x, 1)
    torch.manual_seed(seed + 1)
    q, _ = model.affine.inverse(x)
    p, log_f = model.encoder.rsample(q)
    v = torch.cat([x, p], -1)[0]
    s0 = data_to_prior(v)
    log_pi = model.prior.log_prob(s0.unsqueeze(0))
    expected = log_pi + _log_abs_det(data_to_prior, v) - log_f
    assert abs(log_w.item() - expected.item()) < 1e-8


@pytest.mark.parametrize("integrator", ["leapfrog", "symplectic_euler"])
def test_nhf_sample_then_inverse_returns_the_prior_state(integrator):
    model = _randomised_nhf(3, integrator)
    torch.manual_seed(4)
    x, p = model.sample(16, return_momentum=True)
    q, _ = model.affine.inverse(x)
    q0, p0 = model.transport(q, p, inverse=True)
    torch.manual_seed(4)
    s0, _ = model.prior(16)
    assert torch.allclose(torch.cat([q0, p0], -1), s0.double(), atol=1e-10)


def test_phase_space_flow_includes_the_frictions():
    model = _randomised_nhf(5, "leapfrog")
    flow = model.phase_space_flow()
    s = torch.randn(6, 4, dtype=F64)
    q0, p0 = model.transport(s[:, :2], s[:, 2:], inverse=True)
    expected = model.prior.log_prob(torch.cat([q0, p0], -1)) - model.flow_log_det()
    assert torch.allclose(flow.log_prob(s), expected, atol=1e-10)


# -- the kick cache ------------------------------------------------------------------------


class _Counting(MLPEnergy):
    calls = 0

    def grad(self, x):
        type(self).calls += 1
        return super().grad(x)


def test_rollout_reuses_the_gradient_between_steps():
    """``n`` single leapfrog steps cost ``n + 1`` gradients, not ``2n``, and the states agree."""
    torch.manual_seed(0)
    H = SeparableHamiltonian(MLPEnergy(2, (8,)), _Counting(2, (8,))).double()
    q, p = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    _Counting.calls = 0
    qs, ps = rollout(H, q, p, 0.1, 10)
    assert _Counting.calls == 11
    step = get_integrator("leapfrog").step
    for i in range(10):  # one uncached call per step
        q, p = step(H, q, p, 0.1, 1, False)
        assert torch.allclose(qs[i + 1], q, atol=1e-14) and torch.allclose(ps[i + 1], p)


def test_cache_never_returns_a_stale_gradient():
    torch.manual_seed(0)
    H = SeparableHamiltonian(MLPEnergy(2, (8,)), MLPEnergy(2, (8,))).double()
    other = SeparableHamiltonian(H.kinetic, MLPEnergy(2, (8,))).double()
    cache = KickCache()
    q = torch.randn(3, 2, dtype=F64)
    a = cache.dV_dq(H, q)
    assert torch.equal(cache.dV_dq(H, q), a) and cache.hits == 1
    assert not torch.allclose(cache.dV_dq(other, q), a)  # another potential: recomputed
    assert not torch.allclose(cache.dV_dq(H, q.clone() + 1.0), a)  # another q: recomputed
    assert cache.hits == 1


def test_shared_hamiltonian_flows_share_the_meeting_gradient():
    torch.manual_seed(0)
    model = NHF(
        2, num_flows=3, steps_per_flow=2, hidden=(8,), share_hamiltonian=True, integrator="leapfrog"
    ).double()
    potential = model.flows[0].hamiltonian.potential
    calls = []
    original = potential.grad
    potential.grad = lambda x: calls.append(1) or original(x)
    q, p = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    model.transport(q, p)
    # 3 flows x 2 leapfrog steps = 6 steps in a row of one Hamiltonian: 7 gradients, not 9.
    assert len(calls) == 7
    calls.clear()
    q0, p0 = model.transport(*model.transport(q, p), inverse=True)
    assert torch.allclose(q0, q, atol=1e-12) and torch.allclose(p0, p, atol=1e-12)


def test_friction_log_det_is_exactly_minus_sum_of_rates():
    model = _randomised_nhf(7, "leapfrog")
    total = sum(f.rate.sum() for f in model.frictions)
    assert model.flow_log_det().item() == pytest.approx(-total.item(), abs=1e-14)
    assert math.isfinite(model.flow_log_det().item())


def test_nhf_affine_choices_and_a_clear_error():
    assert isinstance(NHF(2).affine, TriangularAffine)  # the default: full covariance
    assert isinstance(NHF(2, affine="diagonal").affine, DiagonalAffine)
    assert isinstance(NHF(2, affine=True).affine, DiagonalAffine)
    assert NHF(2, affine="none").affine is None and NHF(2, affine=False).affine is None
    with pytest.raises(ValueError, match="affine: expected 'triangular', 'diagonal', 'none'"):
        NHF(2, affine="full")
