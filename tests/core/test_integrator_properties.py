"""Property tests of the symplectic integrators (paper Sec. 3.3 and A.5), over random Hamiltonians.

Every registered integrator with ``symplectic=True`` is covered automatically: a new scheme added
to :data:`hamflow.integrators.INTEGRATORS` gets the round-trip, volume and symplecticity checks
the moment it is registered.

Conditioning. The random Hamiltonians are separable, with each half a softplus MLP of random
depth (1-3) and widths (1-32) or a quadratic energy, in every combination. A default-initialised
softplus MLP is close to linear (its Hessian is a product of ``sigmoid'`` ≤ 1/4 and weights of
size ``1/sqrt(fan_in)``), which would make the flow map nearly a translation and the checks
nearly vacuous. The MLP output is therefore scaled by 1-20 and the quadratic stiffness drawn in
0.2-3: in a sweep of 150 draws over the full range (dim ≤ 8, |dt| ≤ 0.5, ≤ 10 steps) the largest
Jacobian entry stays below ~10, so float64 round-off in J is ~1e-14 and the 1e-8 tolerances
below test the scheme, not the arithmetic. The symplecticity residual is compared relative to
``max(1, max|J|²)``, the size of the entries of ``JᵀΩJ``. The same harness applied to ``euler``
and ``rk4`` gives ``|det J − 1|`` far above 1e-4 (see the last tests), so it can tell a
volume-preserving map from one that is not.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import (
    F64,
    INTEGRATORS,
    SYMPLECTIC,
    jacobian,
    omega,
    pendulum,
    separable,
    single_thread,  # noqa: F401  (autouse fixture)
)
from hypothesis import given, settings
from hypothesis import strategies as st

PROPERTY_SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


@st.composite
def cases(draw):
    """A random separable Hamiltonian, a random state, a step size and a step count."""
    dim = draw(st.integers(1, 8))
    kinetic = draw(st.sampled_from(["mlp", "quadratic"]))
    potential = draw(st.sampled_from(["mlp", "quadratic"]))
    hidden = tuple(draw(st.lists(st.integers(1, 32), min_size=1, max_size=3)))

    def scale(kind: str) -> float:
        return draw(st.floats(1.0, 20.0) if kind == "mlp" else st.floats(0.2, 3.0))

    k_scale, v_scale = scale(kinetic), scale(potential)
    # dt in [-0.5, 0.5] without a neighbourhood of 0 (a tiny dt makes every check vacuous)
    dt = draw(st.floats(1e-3, 0.5)) * draw(st.sampled_from([1.0, -1.0]))
    steps = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    H = separable(
        dim, kinetic, potential, hidden, kinetic_scale=k_scale, potential_scale=v_scale, seed=seed
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2 * dim, generator=gen, dtype=F64)  # a batch, for the round trip
    return {"H": H, "dim": dim, "dt": dt, "steps": steps, "x": x}


def _split(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return x[:, :dim], x[:, dim:]


@pytest.mark.parametrize("name", SYMPLECTIC)
@PROPERTY_SETTINGS
@given(case=cases())
def test_round_trip_is_identity(name, case):
    fn = INTEGRATORS[name].fn
    H, dt, steps, x = case["H"], case["dt"], case["steps"], case["x"]
    q, p = _split(x, case["dim"])
    q1, p1 = fn(H, q, p, dt, steps)
    # the map must actually move the state, or the round trip proves nothing
    assert (torch.cat([q1, p1], -1) - x).abs().max().item() > 1e-9
    q2, p2 = fn(H, q1, p1, dt, steps, inverse=True)
    back = torch.cat([q2, p2], -1)
    err = (back - x).abs().max().item()
    assert err <= 1e-10 * max(1.0, x.abs().max().item()), f"round trip error {err:.3g}"


@pytest.mark.parametrize("name", SYMPLECTIC)
@PROPERTY_SETTINGS
@given(case=cases())
def test_jacobian_determinant_is_one(name, case):
    J = jacobian(name, case["H"], case["x"][0], case["dt"], case["steps"])
    det = torch.linalg.det(J).item()
    assert abs(det - 1.0) <= 1e-8, f"det J = {det!r}"


@pytest.mark.parametrize("name", SYMPLECTIC)
@PROPERTY_SETTINGS
@given(case=cases())
def test_jacobian_is_symplectic(name, case):
    dim = case["dim"]
    J = jacobian(name, case["H"], case["x"][0], case["dt"], case["steps"])
    Om = omega(dim)
    residual = (J.T @ Om @ J - Om).abs().max().item()
    size = max(1.0, J.abs().max().item() ** 2)
    assert residual <= 1e-8 * size, f"|JᵀΩJ − Ω| = {residual:.3g} (|J|² = {size:.3g})"


@pytest.mark.parametrize("name", SYMPLECTIC)
@PROPERTY_SETTINGS
@given(case=cases())
def test_inverse_jacobian_is_inverse(name, case):
    """The inverse map's Jacobian, at the image point, inverts the forward Jacobian."""
    H, dt, steps, x = case["H"], case["dt"], case["steps"], case["x"][0]
    dim = case["dim"]
    fn = INTEGRATORS[name].fn
    q1, p1 = fn(H, x[None, :dim], x[None, dim:], dt, steps)
    y = torch.cat([q1[0], p1[0]])
    J = jacobian(name, H, x, dt, steps)
    J_inv = jacobian(name, H, y, dt, steps, inverse=True)
    eye = torch.eye(2 * dim, dtype=F64)
    size = max(1.0, J.abs().max().item() * J_inv.abs().max().item())
    assert (J_inv @ J - eye).abs().max().item() <= 1e-9 * size


# -- the same harness separates volume-preserving schemes from the others -------------------


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_volume_preservation_matches_registry_on_pendulum(name):
    """Nonlinear pendulum ``H = p²/2 + 4(1 − cos q)``, ``dt = 0.3``, 5 steps.

    ``ω·dt = 0.6`` is large enough that rk4 visibly changes volume (|det J − 1| ≈ 2e-3, euler
    ≈ 1.9), while every symplectic scheme keeps it to round-off. So the registry's ``symplectic``
    flag is checked, and the tolerance used above is shown to be discriminating.
    """
    H = pendulum(mass=1.0, g=4.0).to(F64)
    J = jacobian(name, H, torch.tensor([1.0, 0.5], dtype=F64), 0.3, 5)
    deviation = abs(torch.linalg.det(J).item() - 1.0)
    if INTEGRATORS[name].symplectic:
        assert deviation <= 1e-8
    else:
        assert deviation > 1e-4, f"{name} looks volume-preserving: |det J − 1| = {deviation:.3g}"


@pytest.mark.parametrize("seed", range(3))
def test_euler_not_volume_preserving_on_mlp_energy(seed):
    """A non-quadratic (softplus MLP) potential: euler changes volume by far more than 1e-4."""
    H = separable(2, "quadratic", "mlp", (16, 16), potential_scale=20.0, seed=seed)
    x = torch.randn(4, dtype=F64, generator=torch.Generator().manual_seed(seed))
    euler_dev = abs(torch.linalg.det(jacobian("euler", H, x, 0.3, 5)).item() - 1.0)
    assert euler_dev > 1e-3
    for name in SYMPLECTIC:
        assert abs(torch.linalg.det(jacobian(name, H, x, 0.3, 5)).item() - 1.0) <= 1e-8
