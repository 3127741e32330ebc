"""Simulation workers: per-sequence seeding, stacked ``solve_ivp`` integration, noise.

numpy and scipy only (no torch), so process-pool workers start quickly.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 4 and A.4 (exact dynamics
    from scipy's initial value problem solver, then Gaussian noise on every coordinate).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from .systems import PhysicalSystem, get_system

__all__ = [
    "SPLITS",
    "TOL",
    "METHOD",
    "CHUNK_SIZE",
    "SCREEN_SUBSTEPS",
    "sequence_rng",
    "integrate",
    "coarse_trajectory",
    "draw_initial",
    "simulate_chunk",
]

SPLITS: tuple[str, ...] = ("train", "test")
TOL: float = 1e-10
"""Per-component relative and absolute tolerance of every integrated coordinate."""
METHOD: str = "DOP853"
"""8th-order Dormand-Prince: the cheapest scipy method at tolerances this tight."""
CHUNK_SIZE: int = 250
"""Sequences integrated together. Fixed (not tied to the worker count) so results are too."""
SCREEN_SUBSTEPS: int = 4
"""Fixed RK4 steps per frame interval of the cheap screening pass (:func:`coarse_trajectory`)."""
MAX_DRAWS: int = 1000


def sequence_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one sequence, derived from ``(seed, split, index)`` alone.

    Example:
        >>> a = sequence_rng(0, "train", 7).standard_normal()
        >>> b = sequence_rng(0, "train", 7).standard_normal()
        >>> a == b, a == sequence_rng(0, "test", 7).standard_normal()
        (True, False)
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(SPLITS.index(split), index))
    return np.random.default_rng(ss)


def integrate(
    system: PhysicalSystem, initial: np.ndarray, times: np.ndarray, tol: float = TOL
) -> np.ndarray:
    """Integrate ``initial[K, state_dim]`` together; return ``[K, len(times), state_dim]`` float64.

    The K systems are decoupled, so one ``solve_ivp`` call on the stacked state is exact.
    scipy accepts a step when the RMS of the scaled errors is <= 1, so the tolerance is divided
    by ``sqrt(K * state_dim)``: then every single component meets ``rtol = atol = tol``.

    Example:
        >>> from hamflow_hgn.data.systems import get_system
        >>> ms = get_system("mass_spring")
        >>> x = integrate(ms, np.array([[1.0, 0.0]]), np.array([0.0, math.pi / 2]))
        >>> np.round(x[0, -1], 6).tolist()  # omega = sqrt(k/m) = 2: half a period later
        [-1.0, 0.0]
    """
    initial = np.asarray(initial, dtype=np.float64)
    k, d = initial.shape
    eff = tol / math.sqrt(k * d)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        return system.vector_field_batch(y.reshape(k, d)).reshape(-1)

    sol = solve_ivp(
        rhs,
        (float(times[0]), float(times[-1])),
        initial.reshape(-1),
        method=METHOD,
        t_eval=times,
        rtol=eff,
        atol=eff,
    )
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed for {system.name}: {sol.message}")
    return sol.y.reshape(k, d, len(times)).transpose(0, 2, 1).copy()


def coarse_trajectory(
    system: PhysicalSystem, initial: np.ndarray, steps: int, dt: float
) -> np.ndarray:
    """Cheap fixed-step RK4 trajectory ``[K, (steps - 1) * SCREEN_SUBSTEPS + 1, d]``.

    Used only to screen initial states with :meth:`PhysicalSystem.admissible`; the stored
    data always comes from :func:`integrate`.
    """
    h = dt / SCREEN_SUBSTEPS
    f = system.vector_field_batch
    x = np.asarray(initial, dtype=np.float64)
    out = [x]
    for _ in range((steps - 1) * SCREEN_SUBSTEPS):
        k1 = f(x)
        k2 = f(x + 0.5 * h * k1)
        k3 = f(x + 0.5 * h * k2)
        k4 = f(x + h * k3)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out.append(x)
    return np.stack(out, axis=1)


def draw_initial(
    system: PhysicalSystem, rngs: list[np.random.Generator], steps: int, dt: float
) -> np.ndarray:
    """One admissible initial state per generator, ``[K, d]``; rejected ones are redrawn.

    Each row only ever uses its own generator, so a row's result does not depend on the others.
    """
    initial = np.stack([system.sample_initial(rng) for rng in rngs])
    pending = np.arange(len(rngs))
    for _ in range(MAX_DRAWS):
        ok = system.admissible(coarse_trajectory(system, initial[pending], steps, dt))
        pending = pending[~ok]
        if pending.size == 0:
            return initial
        for row in pending:
            initial[row] = system.sample_initial(rngs[row])
    raise RuntimeError(f"{system.name}: no admissible initial state in {MAX_DRAWS} draws")


def simulate_chunk(
    system_name: str, split: str, start: int, stop: int, seed: int, steps: int, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences ``start:stop`` of a split: ``(clean, noisy)``, each ``[K, steps, d]`` float32.

    Each sequence draws its initial state (redrawn until admissible), then its noise, from
    its own :func:`sequence_rng`.

    Example:
        >>> clean, noisy = simulate_chunk("pendulum", "train", 0, 2, seed=0, steps=5, dt=0.125)
        >>> clean.shape, noisy.dtype
        ((2, 5, 2), dtype('float32'))
    """
    system = get_system(system_name)
    d = system.state_dim
    rngs = [sequence_rng(seed, split, index) for index in range(start, stop)]
    initial = draw_initial(system, rngs, steps, dt)
    noise = np.stack([system.noise_std * rng.standard_normal((steps, d)) for rng in rngs])
    clean = integrate(system, initial, dt * np.arange(steps))
    return clean.astype(np.float32), (clean + noise).astype(np.float32)
