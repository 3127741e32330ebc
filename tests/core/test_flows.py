"""HamiltonianFlow: the normflows layer contract (paper Sec. 3.3; normflows' Flow API)."""

from __future__ import annotations

import io

import normflows as nf
import pytest
import torch
from _helpers import (
    DEVICE_PARAMS,
    DTYPES,
    F64,
    INTEGRATORS,
    NON_SYMPLECTIC,
    SYMPLECTIC,
    separable,
    single_thread,  # noqa: F401  (autouse fixture)
)

from hamflow import HamiltonianFlow, MLPHamiltonian

DIM = 3


def make_flow(name="leapfrog", *, dim=DIM, kinetic="mlp", seed=0, learn_dt=False, dt=0.25):
    """dt = 0.25 is exact in float32, so a float64 flow integrates with exactly this step."""
    H = separable(dim, kinetic, "mlp", (16, 16), kinetic_scale=3.0, potential_scale=3.0, seed=seed)
    return HamiltonianFlow(H, dt=dt, steps=2, integrator=name, learn_dt=learn_dt, dim=dim)


def _x(batch=5, dim=DIM, dtype=F64, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2 * dim, generator=gen, dtype=dtype).to(device)


# -- the layer itself ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SYMPLECTIC)
def test_forward_is_plus_dt_and_inverse_is_the_exact_inverse(name):
    flow = make_flow(name).to(F64)
    x = _x()
    q, p = x[:, :DIM], x[:, DIM:]
    fn = INTEGRATORS[name].fn
    y, _ = flow(x)
    qf, pf = fn(flow.hamiltonian, q, p, 0.25, 2)
    assert torch.equal(y, torch.cat([qf, pf], -1)), "forward must integrate +dt, q first"
    z, _ = flow.inverse(x)
    qi, pi = fn(flow.hamiltonian, q, p, 0.25, 2, inverse=True)
    assert torch.equal(z, torch.cat([qi, pi], -1))


@pytest.mark.parametrize("device", DEVICE_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SYMPLECTIC)
def test_round_trip_and_zero_log_det(name, dtype, device):
    flow = make_flow(name).to(dtype=dtype, device=device)
    x = _x(dtype=dtype, device=device)
    y, log_det = flow(x)
    assert not torch.allclose(y, x, atol=1e-3)
    x_back, log_det_inv = flow.inverse(y)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(x_back, x, atol=tol)
    assert torch.allclose(flow(flow.inverse(x)[0])[0], x, atol=tol)
    for ld in (log_det, log_det_inv):
        assert isinstance(ld, torch.Tensor) and ld.shape == (5,)
        assert ld.dtype == dtype and ld.device == x.device
        assert torch.count_nonzero(ld) == 0


@pytest.mark.parametrize("name", SYMPLECTIC)
def test_log_det_matches_autograd_jacobian(name):
    flow = make_flow(name).to(F64)
    x = _x(batch=1)[0]
    J = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x)
    sign, logabsdet = torch.linalg.slogdet(J)
    assert sign.item() == 1.0
    assert abs(logabsdet.item() - flow(x[None])[1].item()) <= 1e-10


@pytest.mark.parametrize("name", NON_SYMPLECTIC)
def test_non_volume_preserving_integrator_refused_as_density_but_integrates(name):
    flow = make_flow(name).to(F64)
    assert not flow.volume_preserving
    x = _x()
    for call in (flow.forward, flow.inverse):
        with pytest.raises(ValueError, match="integrator") as info:
            call(x)
        assert repr(name) in str(info.value)
    q, p = x[:, :DIM], x[:, DIM:]
    qi, pi = flow.integrate(q, p)
    qr, pr = INTEGRATORS[name].fn(flow.hamiltonian, q, p, 0.25, 2)
    assert torch.equal(qi, qr) and torch.equal(pi, pr)
    # a general Hamiltonian is fine for dynamics with these schemes
    general = HamiltonianFlow(MLPHamiltonian(DIM, (8,)), dt=0.1, integrator=name, dim=DIM)
    qg, pg = general.integrate(q.float(), p.float())
    assert qg.shape == q.shape and torch.isfinite(qg).all()


@pytest.mark.parametrize("name", SYMPLECTIC)
def test_non_separable_refused_by_symplectic_flow(name):
    with pytest.raises(TypeError, match="separable"):
        HamiltonianFlow(MLPHamiltonian(DIM, (8,)), dt=0.1, integrator=name)


def test_integrate_defaults_and_negative_dt():
    flow = make_flow("leapfrog").to(F64)
    x = _x()
    q, p = x[:, :DIM], x[:, DIM:]
    y, _ = flow(x)
    qi, pi = flow.integrate(q, p)
    assert torch.equal(torch.cat([qi, pi], -1), y)
    qb, pb = flow.integrate(qi, pi, dt=-0.25)
    assert torch.allclose(qb, q, atol=1e-12) and torch.allclose(pb, p, atol=1e-12)
    q5, _ = flow.integrate(q, p, steps=5)
    assert torch.equal(q5, INTEGRATORS["leapfrog"].fn(flow.hamiltonian, q, p, 0.25, 5)[0])


def test_learn_dt_gives_dt_a_gradient():
    flow = make_flow("leapfrog", learn_dt=True).to(F64)
    assert isinstance(flow.dt, torch.nn.Parameter)
    assert any(p is flow.dt for p in flow.parameters())
    y, _ = flow(_x())
    (y**2).sum().backward()
    assert flow.dt.grad is not None and flow.dt.grad.abs().item() > 0
    fixed = make_flow("leapfrog")
    assert not any(isinstance(p, torch.Tensor) and p is fixed.dt for p in fixed.parameters())
    assert all(p is not flow.dt for p in fixed.parameters())


def test_float64_flow_uses_the_float64_dt():
    """dt = 0.1 is not exact in float32: a float64 flow must not round it to 0.10000000149."""
    flow = make_flow("leapfrog", dt=0.1).to(F64)
    x = _x()
    q, p = INTEGRATORS["leapfrog"].fn(flow.hamiltonian, x[:, :DIM], x[:, DIM:], 0.1, 2)
    assert torch.allclose(flow(x)[0], torch.cat([q, p], -1), rtol=0, atol=1e-14)


def test_state_dict_and_pickle_round_trip():
    flow = make_flow("yoshida4", learn_dt=True).to(F64)
    x = _x()
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    other = make_flow("yoshida4", seed=1, learn_dt=True, dt=0.5).to(F64)
    assert not torch.equal(other(x)[0], flow(x)[0])
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    assert torch.equal(other(x)[0], flow(x)[0])
    buf = io.BytesIO()
    torch.save(flow, buf)
    buf.seek(0)
    whole = torch.load(buf, weights_only=False)
    assert torch.equal(whole(x)[0], flow(x)[0])


# -- inside a normflows model --------------------------------------------------------------


def _model(dtype, device, coupling: bool = True, learn_dt: bool = False) -> nf.NormalizingFlow:
    layers = [
        make_flow("leapfrog", seed=1, learn_dt=learn_dt),
        nf.flows.Permute(2 * DIM, mode="swap"),
    ]
    if coupling:
        torch.manual_seed(7)
        net = nf.nets.MLP([DIM, 16, 2 * DIM])
        layers.append(nf.flows.AffineCouplingBlock(net))
    layers += [
        make_flow("yoshida4", seed=2, learn_dt=learn_dt),
        make_flow("symplectic_euler", seed=3, learn_dt=learn_dt),
    ]
    base = nf.distributions.DiagGaussian(2 * DIM)
    return nf.NormalizingFlow(base, layers).to(dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICE_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_normflows_model_consistency(dtype, device):
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    model = _model(dtype, device)
    x, log_q = model.sample(64)
    assert x.shape == (64, 2 * DIM) and x.dtype == dtype and x.device.type == device
    assert torch.allclose(model.log_prob(x), log_q, atol=tol)
    assert torch.allclose(model.forward(model.inverse(x)), x, atol=tol)
    z = torch.randn(8, 2 * DIM, dtype=dtype, device=device)
    assert torch.allclose(model.inverse(model.forward(z)), z, atol=tol)

    # with only volume-preserving layers, the density is the base density of the inverse
    vp = _model(dtype, device, coupling=False)
    x, log_q = vp.sample(64)
    assert torch.allclose(vp.log_prob(x), vp.q0.log_prob(vp.inverse(x)), atol=tol)
    assert torch.allclose(vp.log_prob(x), log_q, atol=tol)


def _train_step_grads(dtype):
    model = _model(dtype, "cpu", learn_dt=True)
    x = torch.randn(32, 2 * DIM, dtype=dtype)
    loss = -model.log_prob(x).mean()
    loss.backward()
    return model, x, loss


@pytest.mark.parametrize("dtype", DTYPES)
def test_normflows_model_trains(dtype):
    """Every parameter (energies, masses, dt, coupling, base) gets a non-zero gradient, and one
    Adam step lowers the loss."""
    model, x, loss = _train_step_grads(dtype)
    assert any(n.endswith(".dt") for n, _ in model.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient: {name}"
        assert p.grad.dtype == dtype and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.step()
    new_loss = -model.log_prob(x).mean()
    assert new_loss.item() != loss.item()
    assert new_loss.item() < loss.item()
