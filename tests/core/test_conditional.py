"""Conditional NHF: ``NHF(dim, context_dim=c)`` as a density ``p(x | context)``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow import NHF, GaussianMomentumEncoder
from hamflow.conditional import ConditionalMLPEnergy, check_context
from hamflow.conditional_toy import RingGivenRadius

DTYPES = [torch.float32, torch.float64]


def small(dim=2, context_dim=3, dtype=torch.float64, **kw) -> NHF:
    torch.manual_seed(0)
    kw = {"num_flows": 2, "hidden": (16, 16), "encoder_hidden": (16,), **kw}
    model = NHF(dim, context_dim=context_dim, **kw).to(dtype)
    with torch.no_grad():  # non-trivial frictions, so that the log-det is not zero
        for f in model.frictions:
            f.rate.uniform_(-0.3, 0.3)
    return model


# -- the potential: the context is read, never kicked -------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_potential_gradient_is_dV_dq_only(dtype):
    torch.manual_seed(1)
    V = ConditionalMLPEnergy(2, 3, hidden=(16, 16), gain=5.0).to(dtype)
    q, c = torch.randn(7, 2, dtype=dtype), torch.randn(7, 3, dtype=dtype)
    full = torch.func.grad(lambda z: V.forward(z[:, :2], z[:, 2:]).sum())(torch.cat([q, c], -1))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    # closed form = autograd of V with respect to q alone: the q columns of the full gradient
    assert V.grad(q, c).shape == q.shape
    assert torch.allclose(V.grad(q, c), full[:, :2], atol=tol)
    # the context's columns are not zero, so taking the wrong ones would show
    assert full[:, 2:].abs().max() > 1e-3
    assert not torch.allclose(V.grad(q, c), full[:, -2:], atol=1e-3)


def test_potential_refuses_a_context_of_the_wrong_shape():
    V = ConditionalMLPEnergy(2, 3, hidden=(8,))
    with pytest.raises(ValueError, match="context"):
        V.grad(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="context_dim"):
        ConditionalMLPEnergy(2, 0)


def test_transport_leaves_the_context_alone_and_is_row_wise():
    model = small()
    q, p = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    c = torch.randn(5, 3, dtype=torch.float64)
    c_before = c.clone()
    qa, pa = model.transport(q, p, context=c)
    assert torch.equal(c, c_before)
    for i in range(5):  # each row moves under its own context only
        qi, pi = model.transport(q[i : i + 1], p[i : i + 1], context=c[i : i + 1])
        assert torch.allclose(qi, qa[i : i + 1], atol=1e-12)
        assert torch.allclose(pi, pa[i : i + 1], atol=1e-12)


# -- property tests in float64: a fixed context gives an exact, invertible, volume-exact map ------


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 3.0))
def test_round_trip_and_log_det_for_a_fixed_context(seed, scale):
    model = small()
    gen = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(4, 4, generator=gen, dtype=torch.float64)
    c = torch.randn(1, 3, generator=gen, dtype=torch.float64)
    q, p = s.chunk(2, -1)
    qT, pT = model.transport(q, p, context=c.expand(4, 3))
    q0, p0 = model.transport(qT, pT, inverse=True, context=c.expand(4, 3))
    assert torch.allclose(q0, q, atol=1e-9) and torch.allclose(p0, p, atol=1e-9)

    def phase_map(z):
        a, b = model.transport(z[:2].unsqueeze(0), z[2:].unsqueeze(0), context=c)
        return torch.cat([a, b], -1)[0]

    for row in s:
        jac = torch.autograd.functional.jacobian(phase_map, row)
        log_det = torch.linalg.slogdet(jac)[1]
        assert log_det.detach().item() == pytest.approx(
            float(model.flow_log_det().detach()), abs=1e-8
        )


def test_log_density_changes_with_the_context():
    model = small()
    x = torch.randn(6, 2, dtype=torch.float64)
    c1, c2 = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)

    def lp(c):
        torch.manual_seed(7)
        return model.log_prob(x, c, num_samples=32)

    assert torch.equal(lp(c1), lp(c1))  # same context, same draws: the same values
    assert (lp(c1) - lp(c2)).abs().min() > 1e-4


def test_one_context_for_all_rows_equals_that_context_repeated():
    model = small()
    x = torch.randn(6, 2, dtype=torch.float64)
    c = torch.randn(3, dtype=torch.float64)
    for form in (c, c.unsqueeze(0)):
        torch.manual_seed(3)
        a = model.log_prob(x, form, num_samples=8)
        torch.manual_seed(3)
        b = model.log_prob(x, c.expand(6, 3).clone(), num_samples=8)
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_shapes_for_one_context_and_one_per_row(dtype):
    model = small(dtype=dtype)
    c = torch.randn(5, 3, dtype=dtype)
    assert model.sample(5, c).shape == (5, 2)
    assert model.sample(7, c[0]).shape == (7, 2)
    assert model.sample(7, c[:1]).shape == (7, 2)
    x, p = model.sample(4, c[0], return_momentum=True)
    assert x.shape == p.shape == (4, 2)
    assert model.sample(0, c[0]).shape == (0, 2)
    assert model.log_prob(x, c[:4], num_samples=4).shape == (4,)
    assert model.forward_kld(x, c[0]).shape == ()


def test_per_row_samples_follow_their_own_context():
    # Rows of one call with contexts (c1, c2, ...) are distributed as calls with each context.
    model = small()
    c = torch.randn(2, 3, dtype=torch.float64)
    torch.manual_seed(0)
    both = model.sample(4000, c.repeat_interleave(2000, 0))
    torch.manual_seed(1)
    first = model.sample(4000, c[0])
    torch.manual_seed(2)
    second = model.sample(4000, c[1])
    se = 4 * (both[:2000].std(0) / math.sqrt(2000))
    assert ((both[:2000].mean(0) - first.mean(0)).abs() < se).all()
    assert ((both[2000:].mean(0) - second.mean(0)).abs() < se).all()


def test_every_parameter_learns_from_a_conditional_loss():
    model = small(dtype=torch.float32)
    x, c = torch.randn(16, 2), torch.randn(16, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):  # the encoder's output layer starts at zero: its trunk learns from step 2
        opt.zero_grad()
        model.forward_kld(x, c).backward()
        opt.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_affine_map_is_initialised_under_the_batch_contexts():
    model = small(dtype=torch.float32)
    x = torch.randn(512, 2) * torch.tensor([3.0, 0.5]) + 2.0
    c = torch.randn(512, 3)
    model.train()
    model.forward_kld(x, c)
    assert bool(model.affine.initialized)
    with torch.no_grad():
        xs = model.sample(4000, c[torch.randint(512, (4000,))])
    assert ((xs.var(0) / x.var(0) - 1).abs() < 0.3).all()


def test_calibrate_proposal_takes_the_context():
    model = small(dtype=torch.float32)
    x, c = torch.randn(64, 2), torch.randn(64, 3)
    scores = model.calibrate_proposal(x, c, scales=(1.0, 2.0))
    assert sorted(scores) == [1.0, 2.0] and float(model.proposal_scale) in scores


def test_conditional_encoder_density_matches_its_sampler():
    torch.manual_seed(0)
    enc = GaussianMomentumEncoder(2, (16,), trunk="shared", context_dim=3).double()
    for p in enc.parameters():
        torch.nn.init.normal_(p, std=0.3)
    q, c = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    p, log_f = enc.rsample(q, context=c)
    assert torch.allclose(enc.log_prob(p, q, c), log_f)
    torch.manual_seed(1)
    a = enc.rsample(q, context=c)[0]
    torch.manual_seed(1)
    b = enc.rsample(q, context=c + 1)[0]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="context"):
        enc.rsample(q)


def test_save_and_load_keep_the_context_width(tmp_path):
    if not hasattr(NHF, "save"):
        pytest.skip("NHF.save is not available")
    model = small(dtype=torch.float32)
    path = model.save(tmp_path / "cond.pt")
    again = NHF.load(path)
    assert again.context_dim == 3
    x, c = torch.randn(4, 2), torch.randn(4, 3)
    torch.manual_seed(0)
    a = model.log_prob(x, c)
    torch.manual_seed(0)
    b = again.log_prob(x, c)
    assert torch.equal(a, b)


# -- bad input -----------------------------------------------------------------------------------


def test_errors_name_the_context_and_what_was_expected():
    model = small(dtype=torch.float32)
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"context: .*conditional .*got None"):
        model.forward_kld(x)
    with pytest.raises(ValueError, match=r"context: expected shape \(4, 3\).*got \(4, 2\)"):
        model.log_prob(x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"one row per row of x \(4\), got 3 rows"):
        model.log_prob(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"one row per row of the samples \(5\), got 4 rows"):
        model.sample(5, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"context: .*conditional.*\(5, 3\)"):
        model.sample(5)
    with pytest.raises(ValueError, match="finite"):
        model.forward_kld(x, torch.full((4, 3), float("nan")))
    with pytest.raises(TypeError, match="dtype"):
        model.forward_kld(x, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="by keyword"):
        model.log_prob(x, 16)
    with pytest.raises(ValueError, match="context_dim"):
        NHF(2, context_dim=0)


def test_an_unconditional_model_refuses_a_context():
    model = NHF(2, num_flows=1, hidden=(8,), encoder_hidden=(8,))
    x = torch.randn(4, 2)
    for call in (
        lambda: model.forward_kld(x, torch.zeros(4, 1)),
        lambda: model.log_prob(x, torch.zeros(4, 1)),
        lambda: model.sample(3, torch.zeros(1)),
        lambda: model.calibrate_proposal(x, torch.zeros(4, 1)),
    ):
        with pytest.raises(ValueError, match=r"context: this model is unconditional"):
            call()


def test_check_context_broadcasts_and_moves_to_the_model():
    ref = torch.zeros(1, dtype=torch.float64)
    c = check_context(torch.ones(1, 2, dtype=torch.float64), 2, 5, ref)
    assert c.shape == (5, 2) and c.dtype == torch.float64


# -- the toy with a known density -----------------------------------------------------------------


def test_ring_density_is_normalised_and_matches_its_sampler():
    ring = RingGivenRadius(noise=0.15)
    c = torch.tensor([[1.5]], dtype=torch.float64)
    grid = torch.linspace(-2.5, 2.5, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], -1)
    mass = ring.log_prob(pts, c).exp().sum() * (grid[1] - grid[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=2e-3)
    x, cs = ring.sample(20_000, c, seed=0, dtype=torch.float64)
    r = x.norm(dim=-1)
    assert r.mean().item() == pytest.approx(1.5, abs=0.01)
    assert r.std().item() == pytest.approx(0.15, abs=0.01)
    # the density is higher at the drawn points than at the same points on another ring
    assert ring.log_prob(x, cs).mean() > ring.log_prob(x, cs + 0.5).mean() + 1.0


def test_training_learns_the_context():
    # A few hundred steps on the ring: the model must prefer each point's own radius.
    torch.manual_seed(0)
    ring = RingGivenRadius()
    model = NHF(2, context_dim=1, num_flows=2, hidden=(32, 32), encoder_hidden=(32,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        x, c = ring.sample(128, seed=step)
        loss = model.forward_kld(x, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, c = ring.sample(512, seed=10_000)
    torch.manual_seed(0)
    own = model.log_prob(x, c).mean()
    torch.manual_seed(0)
    other = model.log_prob(x, ring.contexts(512, seed=5)).mean()
    assert own > other + 0.3


# -- the context-dependent affine option ----------------------------------------------------------


def test_context_affine_is_exact_and_invertible_for_a_fixed_context():
    model = small(context_affine=True)
    with torch.no_grad():
        for p in model.context_affine.parameters():
            p.normal_(0, 0.3)
    c = torch.randn(1, 3, dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64)
    q, log_det = model.from_data(x, c.expand(5, 3))
    assert torch.allclose(model.to_data(q, c.expand(5, 3)), x, atol=1e-10)
    for row, ld in zip(x, log_det):
        jac = torch.autograd.functional.jacobian(lambda z: model.from_data(z[None], c)[0][0], row)
        assert torch.linalg.slogdet(jac)[1].item() == pytest.approx(ld.item(), abs=1e-9)
    # the shift follows the context: the same x maps to different q under another context
    q2, _ = model.from_data(x, (c + 1).expand(5, 3))
    assert (q2 - q).abs().max() > 1e-3


def test_context_affine_starts_as_the_identity_and_needs_a_context():
    model = small(context_affine=True)
    x, c = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    plain = small()
    with torch.no_grad():
        plain.affine.load_state_dict(model.affine.state_dict())
    assert torch.equal(model.from_data(x, c)[0], plain.from_data(x, c)[0])
    with pytest.raises(ValueError, match="context_affine"):
        NHF(2, context_affine=True)
