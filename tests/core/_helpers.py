"""Shared builders for the core's tests: Hamiltonians with known behaviour, phase-space maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
from _benchmarks import benchmark_module  # noqa: F401  (the core tests import it from here)
from torch import Tensor

from hamflow import Energy, MLPEnergy, QuadraticEnergy, SeparableHamiltonian
from hamflow.integrators import INTEGRATORS

F64 = torch.float64

SYMPLECTIC = sorted(name for name, info in INTEGRATORS.items() if info.symplectic)
NON_SYMPLECTIC = sorted(name for name, info in INTEGRATORS.items() if not info.symplectic)
SEPARABLE_ONLY = sorted(name for name, info in INTEGRATORS.items() if info.needs_separable)
ANY_HAMILTONIAN = sorted(name for name, info in INTEGRATORS.items() if not info.needs_separable)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]

#: a device parameter that is skipped, not silently dropped, where there is no GPU
DEVICE_PARAMS = [
    pytest.param("cpu"),
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


class Pendulum(Energy):
    """``V(q) = g·(1 − cos q)``, summed over every non-batch dimension."""

    def __init__(self, g: float = 1.0) -> None:
        super().__init__()
        self.g = g

    def forward(self, q: Tensor) -> Tensor:
        return (self.g * (1.0 - torch.cos(q))).flatten(1).sum(-1)

    def grad(self, q: Tensor) -> Tensor:
        return self.g * torch.sin(q)


#: Oscillator constants whose logarithms are exact in float32 (``QuadraticEnergy`` stores
#: ``log(mass)`` and is created in the default dtype), so a float64 oscillator has exactly these
#: constants and float64 errors reach round-off. ``mass != 1`` so that a leapfrog drifting with
#: ``dt·p`` instead of ``dt·∂K/∂p`` converges to the wrong solution. ω = sqrt(k/m) = e^0.75.
MASS = math.exp(-0.75)
SPRING = math.exp(0.75)


def oscillator(dim: int = 1, mass: float = MASS, spring: float = SPRING) -> SeparableHamiltonian:
    """``H = p²/(2m) + k q²/2``: the potential is a quadratic energy with "mass" ``1/k``."""
    return SeparableHamiltonian(
        QuadraticEnergy(dim, mass=mass, learnable=False),
        QuadraticEnergy(dim, mass=1.0 / spring, learnable=False),
    )


def oscillator_exact(
    q0: Tensor, p0: Tensor, t: float, mass: float = MASS, spring: float = SPRING
) -> tuple[Tensor, Tensor]:
    """The analytic solution of :func:`oscillator` at time ``t`` (negative allowed)."""
    w = math.sqrt(spring / mass)
    c, s = math.cos(w * t), math.sin(w * t)
    return q0 * c + p0 / (mass * w) * s, p0 * c - q0 * mass * w * s


def pendulum(mass: float = 1.0, g: float = 1.0) -> SeparableHamiltonian:
    return SeparableHamiltonian(QuadraticEnergy(1, mass=mass, learnable=False), Pendulum(g))


def energy_from_spec(kind: str, dim: int, hidden: Sequence[int], scale: float) -> Energy:
    """``"mlp"``: a softplus MLP whose output is scaled by ``scale``; ``"quadratic"``: a
    quadratic energy with mass ``1/scale`` (so ``scale`` is its stiffness)."""
    if kind == "mlp":
        return MLPEnergy(dim, hidden, out_scale=scale)
    if kind == "quadratic":
        return QuadraticEnergy(dim, mass=1.0 / scale)
    raise ValueError(kind)


def separable(
    dim: int,
    kinetic: str = "mlp",
    potential: str = "mlp",
    hidden: Sequence[int] = (16, 16),
    *,
    kinetic_scale: float = 1.0,
    potential_scale: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = F64,
) -> SeparableHamiltonian:
    """A random separable Hamiltonian with reproducible weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        H = SeparableHamiltonian(
            energy_from_spec(kinetic, dim, hidden, kinetic_scale),
            energy_from_spec(potential, dim, hidden, potential_scale),
        )
    return H.to(dtype)


def phase_map(name: str, H, dt: float, steps: int, dim: int, *, inverse: bool = False):
    """The integrator as a map of one flat ``(2·dim,)`` vector, for autograd Jacobians."""
    fn = INTEGRATORS[name].fn

    def f(x: Tensor) -> Tensor:
        q, p = x[:dim].unsqueeze(0), x[dim:].unsqueeze(0)
        q, p = fn(H, q, p, dt, steps, inverse=inverse)
        return torch.cat([q[0], p[0]])

    return f


def jacobian(name: str, H, x: Tensor, dt: float, steps: int, **kw) -> Tensor:
    dim = x.shape[0] // 2
    return torch.autograd.functional.jacobian(phase_map(name, H, dt, steps, dim, **kw), x)


def omega(dim: int, dtype: torch.dtype = F64) -> Tensor:
    """The symplectic form ``[[0, I], [−I, 0]]``."""
    eye = torch.eye(dim, dtype=dtype)
    zero = torch.zeros(dim, dim, dtype=dtype)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread per test. These tests run many tiny ops; on a shared 2-core CI
    machine a second OpenMP thread only spins, and made the suite ~6x slower (130 s vs 20 s
    wall) under load. Imported (autouse) by each core test module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
