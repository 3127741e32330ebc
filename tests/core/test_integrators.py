"""Integrators against analytic solutions and known long-run behaviour (paper Sec. 3.1 and A.5)."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import (
    ANY_HAMILTONIAN,
    DEVICE_PARAMS,
    DTYPES,
    F64,
    INTEGRATORS,
    MASS,
    SEPARABLE_ONLY,
    SPRING,
    SYMPLECTIC,
    oscillator,
    oscillator_exact,
    pendulum,
    separable,
    single_thread,  # noqa: F401  (autouse fixture)
)

from hamflow import MLPEnergy, MLPHamiltonian, QuadraticEnergy, SeparableHamiltonian
from hamflow.hamiltonians import autograd_grad
from hamflow.integrators import get_integrator, integrate, rollout

#: The orders the paper (A.5) and the literature give each scheme. Pinned here as well as read
#: from the registry, so that a registry entry with a wrong order is caught too.
EXPECTED_ORDER = {"euler": 1, "symplectic_euler": 1, "leapfrog": 2, "yoshida4": 4, "rk4": 4}

Q0 = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=F64)
P0 = torch.tensor([[0.2, 0.7], [-1.0, 0.1]], dtype=F64)


def _oscillator_error(name: str, T: float, n: int) -> float:
    H = oscillator(2).to(F64)
    q, p = INTEGRATORS[name].fn(H, Q0, P0, T / n, n)
    qe, pe = oscillator_exact(Q0, P0, T)
    return max((q - qe).abs().max().item(), (p - pe).abs().max().item())


def test_registry_orders_and_flags():
    assert {n: i.order for n, i in INTEGRATORS.items()} == EXPECTED_ORDER
    for name, info in INTEGRATORS.items():
        # an explicit scheme can only be symplectic for a separable H
        assert info.symplectic == info.needs_separable, name
        assert get_integrator(name) is info


# -- order of accuracy ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_order_of_accuracy_on_oscillator(name):
    """Halving dt divides the error at T = 1 by about 2^order.

    ω·dt = 2.1/16 and 2.1/32: in the asymptotic regime for every scheme (measured ratios: euler
    2.08, symplectic_euler 2.02, leapfrog 4.00, yoshida4 16.04, rk4 16.15), and the 4th-order
    errors (~3e-7 at n = 32) are far above float64 round-off. The non-unit mass makes a drift
    ``q += dt·p`` converge to a different oscillator, so its error stops shrinking.
    """
    order = INTEGRATORS[name].order
    coarse, fine = _oscillator_error(name, 1.0, 16), _oscillator_error(name, 1.0, 32)
    ratio = coarse / fine
    assert 0.85 * 2**order <= ratio <= 1.2 * 2**order, f"{name}: error ratio {ratio:.3f}"
    assert fine < 0.1  # and it converges to the analytic solution, not to something else


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_negative_dt_matches_analytic_solution_backwards(name):
    T, n = -1.0, 32
    H = oscillator(2).to(F64)
    q, p = INTEGRATORS[name].fn(H, Q0, P0, T / n, n)
    qe, pe = oscillator_exact(Q0, P0, T)
    err = max((q - qe).abs().max().item(), (p - pe).abs().max().item())
    assert err <= 2.0 * _oscillator_error(name, 1.0, n) + 1e-12
    # and it went somewhere else than forward in time
    qf, _ = oscillator_exact(Q0, P0, -T)
    assert (q - qf).abs().max().item() > 0.1


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_forward_then_negative_dt_returns(name):
    H = oscillator(2).to(F64)
    fn = INTEGRATORS[name].fn
    dt, n = 1 / 32, 32
    q, p = fn(H, *fn(H, Q0, P0, dt, n), -dt, n)
    err = max((q - Q0).abs().max().item(), (p - P0).abs().max().item())
    # accurate to the scheme's own error over the two legs; exact for the self-adjoint ones
    assert err <= 3.0 * _oscillator_error(name, 1.0, n) + 1e-12, f"{name}: {err:.3g}"


@pytest.mark.parametrize("name", ["leapfrog", "yoshida4"])
def test_self_adjoint_schemes_negative_dt_is_exact_inverse(name):
    H = separable(3, "mlp", "mlp", (8, 8), kinetic_scale=5.0, potential_scale=5.0, seed=3)
    q, p = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    fn = INTEGRATORS[name].fn
    q1, p1 = fn(H, *fn(H, q, p, 0.2, 5), -0.2, 5)
    assert torch.allclose(q1, q, rtol=0, atol=1e-12) and torch.allclose(p1, p, rtol=0, atol=1e-12)


def test_leapfrog_drift_uses_dK_dp_not_p():
    """One leapfrog step by hand, with a non-unit mass: the drift is ``dt · p_half / m``."""
    H = oscillator(1).to(F64)
    q, p, dt = torch.tensor([[0.7]], dtype=F64), torch.tensor([[-0.4]], dtype=F64), 0.3
    p_half = p - 0.5 * dt * SPRING * q
    q1 = q + dt * p_half / MASS
    p1 = p_half - 0.5 * dt * SPRING * q1
    q_lf, p_lf = INTEGRATORS["leapfrog"].fn(H, q, p, dt, 1)
    assert torch.allclose(q_lf, q1, rtol=0, atol=1e-14)
    assert torch.allclose(p_lf, p1, rtol=0, atol=1e-14)


# -- long runs -----------------------------------------------------------------------------


def _pendulum_energy_errors(name: str, steps: int, dt: float = 0.1) -> torch.Tensor:
    """``H(t) − H(0)`` along a rollout of 4 pendulums (from small swings to near the top)."""
    H = pendulum(mass=1.0, g=1.0).to(F64)
    q0 = torch.tensor([[0.5], [1.5], [2.5], [3.0]], dtype=F64)
    with torch.no_grad():
        qs, ps = rollout(H, q0, torch.zeros_like(q0), dt, steps, method=name)
        energy = H.energy(qs.reshape(-1, 1), ps.reshape(-1, 1)).reshape(steps + 1, -1)
    return energy - energy[0]


def test_long_run_energy_leapfrog_bounded_euler_drifts():
    """10⁴ steps of dt = 0.1 (t = 1000, ~150 periods) of ``H = p²/2 + 1 − cos q``.

    Leapfrog's energy error is O(dt²) and does not grow: measured max 3.3e-3, the same in both
    halves of the run. Euler's grows steadily (+48 at the end).
    """
    steps = 10_000
    lf = _pendulum_energy_errors("leapfrog", steps)
    lf_max = lf.abs().max().item()
    assert lf_max < 1e-2
    first, second = lf[: steps // 2].abs().max().item(), lf[steps // 2 :].abs().max().item()
    assert second <= 1.1 * first + 1e-9, "leapfrog energy error grows over time"

    eu = _pendulum_energy_errors("euler", steps)
    assert (eu[-1] > 0).all(), "euler energy should grow"
    assert eu[-1].min().item() > 1000 * lf_max
    # a secular drift: larger at the end than halfway
    assert (eu[-1] > 1.5 * eu[steps // 2]).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", SYMPLECTIC)
def test_long_run_energy_bounded_all_symplectic(name):
    steps = 100_000
    err = _pendulum_energy_errors(name, steps)
    first, second = err[: steps // 2].abs().max().item(), err[steps // 2 :].abs().max().item()
    assert max(first, second) < 0.1
    assert second <= 1.1 * first + 1e-9


# -- separability ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEPARABLE_ONLY)
def test_non_separable_refused(name):
    H = MLPHamiltonian(2, hidden=(8,))
    q, p = torch.randn(3, 2), torch.randn(3, 2)
    with pytest.raises((TypeError, ValueError), match="separable") as info:
        INTEGRATORS[name].fn(H, q, p, 0.1)
    message = str(info.value)
    assert "hamiltonian" in message and name in message and "MLPHamiltonian" in message


@pytest.mark.parametrize("name", ANY_HAMILTONIAN)
def test_non_separable_accepted_and_correct(name):
    """euler and rk4 integrate a general H(q, p); check against autograd and energy drift."""
    torch.manual_seed(1)
    H = MLPHamiltonian(2, hidden=(16,), activation="softplus").to(F64)
    q, p = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    fn = INTEGRATORS[name].fn
    # one step against the explicit formula, with autograd partials
    dt = 0.05
    dHdq = autograd_grad(lambda x: H.energy(x, p), q)
    dHdp = autograd_grad(lambda x: H.energy(q, x), p)
    q1, p1 = fn(H, q, p, dt, 1)
    if name == "euler":
        assert torch.allclose(q1, q + dt * dHdp, atol=1e-14)
        assert torch.allclose(p1, p - dt * dHdq, atol=1e-14)
    else:  # rk4 agrees with euler to O(dt²)
        assert (q1 - (q + dt * dHdp)).abs().max() < 10 * dt**2
    # H is conserved to the scheme's accuracy
    with torch.no_grad():
        qn, pn = fn(H, q, p, 0.01, 100)
        drift = (H.energy(qn, pn) - H.energy(q, p)).abs().max().item()
    assert drift < (1e-2 if name == "euler" else 1e-8)


@pytest.mark.parametrize("name", sorted(set(INTEGRATORS) - set(SYMPLECTIC)))
def test_non_symplectic_refuse_inverse(name):
    H = oscillator(1)
    with pytest.raises(ValueError, match="inverse"):
        INTEGRATORS[name].fn(H, torch.ones(1, 1), torch.ones(1, 1), 0.1, inverse=True)


# -- shapes, dtypes, devices ---------------------------------------------------------------


def _feature_map_hamiltonian(dtype, device) -> SeparableHamiltonian:
    """HGN-shaped state: (B, 16, 4, 4); the energy is summed over every non-batch dimension."""
    torch.manual_seed(2)
    H = SeparableHamiltonian(QuadraticEnergy((16, 4, 4), mass=2.0), MLPEnergy(256, (32,)))
    return H.to(dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICE_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_any_shape_dtype_device(name, dtype, device):
    H = _feature_map_hamiltonian(dtype, device)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 16, 4, 4, generator=gen, dtype=dtype).to(device)
    p = torch.randn(3, 16, 4, 4, generator=gen, dtype=dtype).to(device)
    fn = INTEGRATORS[name].fn
    q1, p1 = fn(H, q, p, 0.1, 2)
    for t in (q1, p1):
        assert t.shape == q.shape and t.dtype == dtype and t.device == q.device
    assert not torch.equal(q1, q)
    # batch elements do not interact: each one alone gives the same result
    for b in range(3):
        qb, pb = fn(H, q[b : b + 1], p[b : b + 1], 0.1, 2)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert torch.allclose(qb[0], q1[b], atol=tol) and torch.allclose(pb[0], p1[b], atol=tol)
    if INTEGRATORS[name].symplectic:
        q2, p2 = fn(H, q1, p1, 0.1, 2, inverse=True)
        tol = 1e-4 if dtype == torch.float32 else 1e-12
        assert torch.allclose(q2, q, atol=tol) and torch.allclose(p2, p, atol=tol)


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_rollout_and_integrate_agree(name):
    """rollout (one step at a time) ends where integrate (merged sub-steps) does."""
    H = separable(2, "quadratic", "mlp", (8,), potential_scale=5.0, seed=4)
    q, p = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    qs, ps = rollout(H, q, p, 0.1, 7, method=name)
    assert qs.shape == (8, 3, 2) and ps.shape == (8, 3, 2)
    assert torch.equal(qs[0], q) and torch.equal(ps[0], p)
    qn, pn = integrate(H, q, p, 0.1, 7, method=name)
    assert torch.allclose(qs[-1], qn, atol=1e-12) and torch.allclose(ps[-1], pn, atol=1e-12)
    qd, pd = INTEGRATORS[name].fn(H, q, p, 0.1, 7)
    assert torch.equal(qd, qn) and torch.equal(pd, pn)


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_unchecked_step_is_the_same_map(name):
    """Flows and rollouts call ``info.step`` (no input checks): it must be ``info.fn``'s map."""
    info = INTEGRATORS[name]
    H = separable(2, "mlp", "mlp", (8,), kinetic_scale=3.0, potential_scale=3.0, seed=6)
    q, p = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    for dt in (0.15, -0.15):
        a, b = info.fn(H, q, p, dt, 4), info.step(H, q, p, dt, 4, False)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        if info.symplectic:
            a = info.fn(H, q, p, dt, 4, inverse=True)
            b = info.step(H, q, p, dt, 4, True)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_leapfrog_merges_kicks():
    """n leapfrog steps cost n + 1 potential gradients and n kinetic ones (module docstring)."""
    calls = {"kinetic": 0, "potential": 0}

    class Counting(QuadraticEnergy):
        def __init__(self, key: str) -> None:
            super().__init__(1)
            self.key = key

        def grad(self, x):
            calls[self.key] += 1
            return super().grad(x)

    H = SeparableHamiltonian(Counting("kinetic"), Counting("potential"))
    INTEGRATORS["leapfrog"].fn(H, torch.ones(1, 1), torch.ones(1, 1), 0.1, 10)
    assert calls == {"kinetic": 10, "potential": 11}


def test_dt_tensor_gets_gradient():
    H = oscillator(1).to(F64)
    dt = torch.tensor(0.1, dtype=F64, requires_grad=True)
    for name in INTEGRATORS:
        q, _ = INTEGRATORS[name].fn(
            H, torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), dt, 3
        )
        (g,) = torch.autograd.grad(q.sum(), dt)
        # d q / d dt at t = 0.3 is dq/dt · steps ≈ −ω² q t-ish: just non-zero and finite
        assert math.isfinite(g.item()) and g.item() != 0.0
