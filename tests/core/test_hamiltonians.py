"""Energies and Hamiltonians: closed-form gradients against autograd (paper Sec. 3.1 and A.2)."""

from __future__ import annotations

import pytest
import torch
from _helpers import (
    F64,
    single_thread,  # noqa: F401  (autouse fixture)
)
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow import (
    MLPEnergy,
    MLPHamiltonian,
    QuadraticEnergy,
    SeparableHamiltonian,
)
from hamflow.hamiltonians import autograd_grad


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    scale = max(1.0, a.abs().max().item(), b.abs().max().item())
    return (a - b).abs().max().item() <= rel * scale


@st.composite
def mlp_cases(draw):
    """A random softplus MLP and an input of a random shape whose trailing size is its dim."""
    trailing = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    dim = 1
    for s in trailing:
        dim *= s
    hidden = tuple(draw(st.lists(st.integers(1, 24), min_size=1, max_size=4)))
    batch = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    out_scale = draw(st.floats(0.1, 10.0))
    return dim, hidden, (batch, *trailing), seed, out_scale


def _build(dim, hidden, shape, seed, out_scale, dtype=F64):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        energy = MLPEnergy(dim, hidden, out_scale=out_scale).to(dtype)
        # non-zero biases and a spread of pre-activations, so every sigmoid factor matters
        with torch.no_grad():
            for layer in energy.layers:
                if layer.bias is not None:
                    layer.bias.normal_()
        x = 2 * torch.randn(shape, dtype=dtype)
    return energy, x


def _compare_first_and_second_order(energy: MLPEnergy, x: torch.Tensor, rel: float) -> None:
    x = x.detach().requires_grad_(True)
    weights = torch.randn_like(x)

    def run(closed_form: bool):
        energy.closed_form = closed_form
        g = energy.grad(x)
        # a loss of the gradient, as in training a Hamiltonian flow: linear and quadratic parts
        loss = (weights * g).sum() + (g * g).sum()
        params = list(energy.parameters())
        dx, *grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
        return g.detach(), grads, dx

    g_cf, grads_cf, dx_cf = run(True)
    g_ag, grads_ag, dx_ag = run(False)
    energy.closed_form = True
    assert g_cf.shape == x.shape
    assert _close(g_cf, g_ag, rel), "closed-form dE/dx differs from autograd"
    assert _close(dx_cf, dx_ag, rel), "second derivative w.r.t. x differs"
    names = [n for n, _ in energy.named_parameters()]
    for name, a, b in zip(names, grads_cf, grads_ag):
        assert (a is None) == (b is None), name
        if a is not None:
            assert _close(a, b, rel), f"second derivative w.r.t. {name} differs"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=mlp_cases())
def test_mlp_energy_closed_form_matches_autograd(case):
    energy, x = _build(*case)
    _compare_first_and_second_order(energy, x, 1e-10)


@pytest.mark.parametrize("hidden", [(32,), (64, 64), (16, 32, 8)])
def test_mlp_energy_closed_form_feature_maps(hidden):
    """The HGN shape: (B, 16, 4, 4) states, dim = 256."""
    energy, x = _build(256, hidden, (3, 16, 4, 4), seed=5, out_scale=1.0)
    assert energy(x).shape == (3,)
    _compare_first_and_second_order(energy, x, 1e-10)


def test_mlp_energy_closed_form_float32():
    energy, x = _build(6, (16, 16), (4, 6), seed=1, out_scale=3.0, dtype=torch.float32)
    assert energy.grad(x).dtype == torch.float32
    _compare_first_and_second_order(energy, x, 1e-5)


class _GradOf(torch.nn.Module):
    """``x -> energy.grad(x)`` as a module, so its parameters can be swapped functionally."""

    def __init__(self, energy: MLPEnergy) -> None:
        super().__init__()
        self.energy = energy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy.grad(x)


def _saturated_energy() -> MLPEnergy:
    """One unit at ``z = x − 50`` and an output weight of 1e-20: ``dE/dx = σ(−50)·1e-20`` at
    ``x = 0``, about 1.9e-42, a float32 subnormal."""
    energy = MLPEnergy(1, hidden=(1,))
    with torch.no_grad():
        energy.layers[0].weight.fill_(1.0)
        energy.layers[0].bias.fill_(-50.0)
        energy.layers[1].weight.fill_(1e-20)
    return energy


def test_mlp_energy_closed_form_flushes_subnormals_and_restores_the_setting(monkeypatch):
    """The closed-form kernel flushes subnormals (slow on x86) on the CPU, and only inside."""
    if not torch.set_flush_denormal(False):
        pytest.skip("torch cannot flush subnormals on this CPU")
    from hamflow import _mlp_grad

    energy = _saturated_energy()
    x = torch.zeros(3, 1, requires_grad=True)
    reference = autograd_grad(energy, x)  # unflushed: the subnormal itself
    assert (reference > 0).all() and (reference < torch.finfo(torch.float32).tiny).all()
    g = energy.grad(x)
    assert torch.equal(g, torch.zeros_like(g))
    assert not _mlp_grad.denormals_flushed()  # the setting it found, restored
    g.sum().backward()  # the hand-written backward runs flushed too, and restores
    assert not _mlp_grad.denormals_flushed()
    # a caller who flushes keeps flushing
    torch.set_flush_denormal(True)
    try:
        energy.grad(x)
        assert _mlp_grad.denormals_flushed()
    finally:
        torch.set_flush_denormal(False)
    # with the switch off the kernel gives the subnormal, as autograd does
    monkeypatch.setattr(_mlp_grad, "FLUSH_DENORMALS", False)
    assert torch.equal(energy.grad(x), reference.detach())


def test_mlp_energy_gradcheck():
    """Finite differences against the closed form's hand-written backward, for the input and
    for every weight: the training step's second derivatives come from that backward."""
    energy, x = _build(3, (5, 4), (2, 3), seed=2, out_scale=2.0)
    assert torch.autograd.gradcheck(energy.grad, (x.clone().requires_grad_(True),))
    module = _GradOf(energy)
    names = [n for n, _ in module.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

    def with_params(*ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(with_params, values)


def test_mlp_energy_no_grad_and_detached_input():
    energy, x = _build(4, (8,), (3, 4), seed=0, out_scale=1.0)
    with torch.no_grad():
        g = energy.grad(x)
    assert g.grad_fn is None and not g.requires_grad
    assert torch.allclose(g, autograd_grad(energy, x), atol=1e-12)


@pytest.mark.parametrize("gain", [1.0, 5.0])
def test_mlp_energy_in_scale_steepens_the_first_layer_only(gain):
    """``E_s(x) = E_1`` with its first layer's weights and biases times ``s``, at any gain."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        base = MLPEnergy(3, (8, 8), gain=gain).double()
        torch.manual_seed(3)
        steep = MLPEnergy(3, (8, 8), gain=gain, in_scale=3.0).double()
    x = torch.randn(16, 3, dtype=F64)
    first_base, first_steep = base._params()[:2], steep._params()[:2]
    for a, b in zip(first_base, first_steep):
        assert torch.allclose(b, 3.0 * a, rtol=1e-6, atol=0)  # scaled in float32
    for a, b in zip(base._params()[2:], steep._params()[2:]):
        assert torch.equal(a, b)
    # the function: the steep energy at x is the base one with its first affine map scaled
    z = 3.0 * (x @ first_base[0].t() + first_base[1])
    h = torch.nn.functional.softplus(z)
    rest = base._params()[2:]
    for w, b in zip(rest[0:-1:2], rest[1:-1:2]):
        h = torch.nn.functional.softplus(h @ w.t() + b)
    assert torch.allclose(steep(x), (h @ rest[-1].t()).squeeze(-1), atol=1e-5)
    assert not torch.allclose(steep(x), base(x))
    assert torch.allclose(steep.grad(x), autograd_grad(steep, x), atol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_mlp_energy_refuses_a_bad_in_scale(bad):
    with pytest.raises(ValueError, match="in_scale: expected a positive finite number"):
        MLPEnergy(2, (4,), in_scale=bad)


# -- quadratic kinetic energy ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [3, (16, 4, 4)])
def test_quadratic_energy(shape):
    kinetic = QuadraticEnergy(shape, mass=0.5).to(F64)
    dims = (shape,) if isinstance(shape, int) else shape
    p = torch.randn(2, *dims, dtype=F64)
    assert torch.allclose(kinetic(p), (p * p).flatten(1).sum(-1), atol=1e-6)  # ½ p²/0.5
    assert torch.allclose(kinetic.grad(p), autograd_grad(kinetic, p), atol=1e-12)
    assert torch.allclose(kinetic.grad(p), p / 0.5, atol=1e-6)
    kinetic(p).sum().backward()
    (param,) = kinetic.parameters()
    assert param.grad is not None and param.grad.abs().sum() > 0


def test_quadratic_energy_fixed_mass_is_a_buffer():
    kinetic = QuadraticEnergy(2, mass=3.0, learnable=False)
    assert list(kinetic.parameters()) == []
    assert kinetic.state_dict()  # the (fixed) mass still travels with the model
    other = QuadraticEnergy(2, mass=3.0, learnable=False)
    other.load_state_dict(kinetic.state_dict())
    p = torch.ones(1, 2)
    assert torch.allclose(other.grad(p), p / 3.0)


@pytest.mark.parametrize("learnable", [True, False])
def test_quadratic_energy_float64_mass_is_exact(learnable):
    """A float64 model has exactly the mass it was given (not a float32-rounded one)."""
    kinetic = QuadraticEnergy(1, mass=0.3, learnable=learnable).to(F64)
    p = torch.tensor([[1.0]], dtype=F64)
    assert abs(kinetic.grad(p).item() - 1 / 0.3) <= 1e-15
    assert abs(kinetic(p).item() - 0.5 / 0.3) <= 1e-15


# -- Hamiltonians ---------------------------------------------------------------------------


def test_separable_hamiltonian_partials():
    torch.manual_seed(3)
    H = SeparableHamiltonian(MLPEnergy(3, (8, 8)), MLPEnergy(3, (8,))).to(F64)
    q, p = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    assert torch.allclose(H.energy(q, p), H.kinetic(p) + H.potential(q))
    assert torch.allclose(H(q, p), H.energy(q, p))
    dq = autograd_grad(lambda x: H.energy(x, p), q)
    dp = autograd_grad(lambda x: H.energy(q, x), p)
    assert torch.allclose(H.grad_q(q, p), dq, atol=1e-12)
    assert torch.allclose(H.dV_dq(q), dq, atol=1e-12)
    assert torch.allclose(H.grad_p(q, p), dp, atol=1e-12)
    assert torch.allclose(H.dK_dp(p), dp, atol=1e-12)
    assert H.separable


def test_non_separable_hamiltonian_partials_vs_finite_differences():
    torch.manual_seed(4)
    H = MLPHamiltonian(2, hidden=(16,)).to(F64)
    assert not H.separable
    q, p = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    eps = 1e-6
    for which, grad in (("q", H.grad_q(q, p)), ("p", H.grad_p(q, p))):
        for i in range(2):
            e = torch.zeros_like(q)
            e[:, i] = eps
            if which == "q":
                fd = (H.energy(q + e, p) - H.energy(q - e, p)) / (2 * eps)
            else:
                fd = (H.energy(q, p + e) - H.energy(q, p - e)) / (2 * eps)
            assert torch.allclose(grad[:, i], fd, atol=1e-7), (which, i)


def test_autograd_grad_keeps_graph_only_when_grad_enabled():
    energy = MLPEnergy(2, (4,), closed_form=False)
    x = torch.randn(3, 2)
    g = autograd_grad(energy, x)
    assert g.requires_grad  # differentiable w.r.t. the weights while training
    with torch.no_grad():
        assert not autograd_grad(energy, x).requires_grad
