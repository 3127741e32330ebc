"""The four physical systems of the HGN paper: Hamiltonian, vector field, initial states.

Each system is one small frozen dataclass deriving from :class:`PhysicalSystem`. A flat state
vector is ``cat([q, p])`` with ``q`` first (as in :mod:`hamflow`). Everything here is numpy only
(no torch), so simulation workers start fast; :meth:`PhysicalSystem.positions` also accepts
torch tensors, so the renderer can compute body positions on the training device.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 4 ("Datasets") and A.4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "PhysicalSystem",
    "MassSpring",
    "Pendulum",
    "PendulumMGL",
    "NBody",
    "SYSTEMS",
    "get_system",
]

Array = Any  # np.ndarray or torch.Tensor (positions() accepts both)


def _xp(x: Array):
    """Return the array module (numpy or torch) that owns ``x``."""
    if isinstance(x, np.ndarray):
        return np
    import torch  # only reached for tensors, so workers never import torch

    if isinstance(x, torch.Tensor):
        return torch
    raise TypeError(f"states: expected np.ndarray or torch.Tensor, got {type(x).__name__}")


def _check_last_dim(states: Array, state_dim: int, name: str = "states") -> None:
    if states.shape[-1] != state_dim:
        raise ValueError(
            f"{name}: expected trailing dimension state_dim={state_dim}, "
            f"got shape {tuple(states.shape)}"
        )


@dataclass(frozen=True)
class PhysicalSystem:
    """Base class: a Hamiltonian system with a flat ``cat([q, p])`` state and a way to draw it.

    Subclasses set the class-level constants and implement :meth:`hamiltonian`,
    :meth:`vector_field_batch`, :meth:`sample_initial` and :meth:`positions`.

    Attributes:
        name: registry key.
        n_bodies: number of rendered discs.
        dim: spatial dimensions per body (1 for mass-spring and pendulum, 2 for n-body).
        noise_std: standard deviation of the Gaussian observation noise added to every
            phase-space coordinate (the paper's "sigma^2", read as a standard deviation).
        extent: canvas half-width in world units; the canvas covers ``[-extent, extent]^2``.
        disc_radius: rendered disc radius in world units.
        colors: ``(n_bodies, 3)`` RGB in [0, 1].

    Example:
        >>> sys = get_system("mass_spring")
        >>> sys.state_dim, sys.n_bodies
        (2, 1)
        >>> float(sys.hamiltonian(np.array([1.0, 0.0])))  # 1/2 k q^2 with k = 2
        1.0
    """

    name: ClassVar[str] = "base"
    n_bodies: ClassVar[int] = 1
    dim: ClassVar[int] = 1
    noise_std: float = 0.1
    extent: float = 1.6
    disc_radius: float = 0.3
    colors: tuple[tuple[float, float, float], ...] = ((0.85, 0.25, 0.15),)

    @property
    def state_dim(self) -> int:
        """Length of the flat state ``cat([q, p])``: ``2 * n_bodies * dim``."""
        return 2 * self.n_bodies * self.dim

    def split(self, states: Array) -> tuple[Array, Array]:
        """Split ``states[..., state_dim]`` into ``(q, p)``, each ``[..., state_dim // 2]``."""
        _check_last_dim(states, self.state_dim)
        half = self.state_dim // 2
        return states[..., :half], states[..., half:]

    def hamiltonian(self, states: np.ndarray) -> np.ndarray:
        """Total energy of ``states[..., state_dim]``, shape ``[...]``."""
        raise NotImplementedError

    def vector_field_batch(self, states: np.ndarray) -> np.ndarray:
        """Hamilton's equations ``(dH/dp, -dH/dq)`` for ``states[..., state_dim]``."""
        raise NotImplementedError

    def vector_field(self, t: float, state: np.ndarray) -> np.ndarray:
        """``d state / dt`` in the signature ``solve_ivp`` expects (``t`` is unused)."""
        return self.vector_field_batch(np.asarray(state, dtype=np.float64))

    def sample_initial(self, rng: np.random.Generator) -> np.ndarray:
        """One initial state, shape ``(state_dim,)`` float64."""
        raise NotImplementedError

    def admissible(self, trajectory: np.ndarray) -> np.ndarray:
        """Whether a (coarse) trajectory ``[..., T, state_dim]`` is kept; default: always.

        Data generation redraws the initial state of a rejected sequence.
        """
        return np.ones(trajectory.shape[:-2], dtype=bool)

    def positions(self, states: Array) -> Array:
        """World-space xy of each body, ``[..., n_bodies, 2]`` (numpy or torch, as given)."""
        raise NotImplementedError

    def colors_array(self) -> np.ndarray:
        """:attr:`colors` as a ``(n_bodies, 3)`` float64 array."""
        return np.asarray(self.colors, dtype=np.float64)


def _sample_on_circle(rng: np.random.Generator, r_min: float, r_max: float) -> np.ndarray:
    """Paper Sec. 4: radius ``r ~ U(r_min, r_max)``, then ``(q, p)`` uniform on that circle."""
    r = rng.uniform(r_min, r_max)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    return np.array([r * math.cos(theta), r * math.sin(theta)])


@dataclass(frozen=True)
class MassSpring(PhysicalSystem):
    """Frictionless mass-spring, ``H = k q^2 / 2 + p^2 / 2m`` (paper Sec. 4).

    The mass is drawn at ``(q, 0)``; the spring and pivot are invisible (A.4).

    Example:
        >>> ms = MassSpring()
        >>> ms.vector_field(0.0, np.array([1.0, 0.0])).tolist()  # dq/dt = p/m, dp/dt = -k q
        [0.0, -2.0]
    """

    name: ClassVar[str] = "mass_spring"
    k: float = 2.0
    m: float = 0.5
    r_range: tuple[float, float] = (0.1, 1.0)

    def hamiltonian(self, states: np.ndarray) -> np.ndarray:
        q, p = self.split(states)
        return (0.5 * self.k * q**2 + p**2 / (2.0 * self.m))[..., 0]

    def vector_field_batch(self, states: np.ndarray) -> np.ndarray:
        q, p = self.split(states)
        return np.concatenate([p / self.m, -self.k * q], axis=-1)

    def sample_initial(self, rng: np.random.Generator) -> np.ndarray:
        return _sample_on_circle(rng, *self.r_range)

    def positions(self, states: Array) -> Array:
        xp = _xp(states)
        q, _ = self.split(states)
        return xp.stack([q, xp.zeros_like(q)], -1)


@dataclass(frozen=True)
class Pendulum(PhysicalSystem):
    """Ideal pendulum, ``H = 2 m g l (1 - cos q) + p^2 / 2 m l^2`` (paper Sec. 4).

    The bob is drawn at ``(l sin q, -l cos q)`` around an invisible pivot at the origin (A.4).

    Example:
        >>> pend = Pendulum()
        >>> round(float(pend.hamiltonian(np.array([math.pi, 0.0]))), 6)  # top: 4 m g l
        6.0
        >>> pend.positions(np.array([0.0, 1.0])).round(6).tolist()
        [[0.0, -1.0]]
    """

    name: ClassVar[str] = "pendulum"
    g: float = 3.0
    m: float = 0.5
    l: float = 1.0
    r_range: tuple[float, float] = (1.3, 2.3)
    colors: tuple[tuple[float, float, float], ...] = ((0.15, 0.35, 0.85),)
    potential_factor: float = 2.0
    """``c`` in ``c m g l (1 - cos q)``: 2 in the paper's text, 1 in DeepMind's suite."""

    def hamiltonian(self, states: np.ndarray) -> np.ndarray:
        q, p = self.split(states)
        potential = self.potential_factor * self.m * self.g * self.l * (1.0 - np.cos(q))
        return (potential + p**2 / (2.0 * self.m * self.l**2))[..., 0]

    def vector_field_batch(self, states: np.ndarray) -> np.ndarray:
        q, p = self.split(states)
        dq = p / (self.m * self.l**2)
        dp = -self.potential_factor * self.m * self.g * self.l * np.sin(q)
        return np.concatenate([dq, dp], axis=-1)

    def sample_initial(self, rng: np.random.Generator) -> np.ndarray:
        return _sample_on_circle(rng, *self.r_range)

    def positions(self, states: Array) -> Array:
        xp = _xp(states)
        q, _ = self.split(states)
        return xp.stack([self.l * xp.sin(q), -self.l * xp.cos(q)], -1)


@dataclass(frozen=True)
class PendulumMGL(Pendulum):
    """The pendulum with ``H = m g l (1 - cos q) + p^2 / 2 m l^2``, as DeepMind's suite and the
    CampusAI reproduction write it (the paper's text has ``2 m g l``; :class:`Pendulum`).

    With the same initial-state radii about a third of the sequences swing over the top.

    Example:
        >>> round(float(PendulumMGL().hamiltonian(np.array([math.pi, 0.0]))), 6)  # top: 2 m g l
        3.0
    """

    name: ClassVar[str] = "pendulum_mgl"
    potential_factor: float = 1.0


def _ring_factor(n: int) -> float:
    """``S_n = 1/4 sum_k csc(pi k / n)``: inward force on a ring of n equal masses is
    ``g m^2 S_n / r^2``, so the circular-orbit speed is ``sqrt(g m S_n / r)``."""
    return 0.25 * sum(1.0 / math.sin(math.pi * k / n) for k in range(1, n))


@dataclass(frozen=True)
class NBody(PhysicalSystem):
    """Gravitational n-body problem in the plane (paper Sec. 4).

    ``H = sum_i |p_i|^2 / 2 m_i - sum_{i<j} g m_i m_j / |q_j - q_i|`` with equal masses ``m``.
    ``q = [x_1, y_1, x_2, y_2, ...]`` and ``p`` likewise.

    Initial states (the paper only gives the radius range): the bodies sit on a regular
    n-gon of radius ``r ~ U(r_range)`` centred on the origin, at a uniformly random rotation,
    each moving counter-clockwise at the exact circular-orbit speed ``sqrt(g m S_n / r)``.
    Each velocity then gets an isotropic Gaussian kick of standard deviation
    ``noise_std * v_circ`` (the system's noise level), and the mean velocity is removed so the
    centre of mass stays at rest at the origin (the picture stays centred).

    A sequence is :meth:`admissible` when no two bodies come closer than ``min_separation``
    (near-collisions are numerically singular, and the discs would merge) and every body stays
    inside the canvas by one disc radius; data generation redraws the others.

    Example:
        >>> two = get_system("two_body")
        >>> two.state_dim, two.n_bodies, two.dim
        (8, 2, 2)
        >>> s = two.sample_initial(np.random.default_rng(0))
        >>> bool(two.hamiltonian(s) < 0)  # near-circular orbits are bound
        True
    """

    name: str = "n_body"  # type: ignore[misc]  # instance field: one class, two systems
    n: int = 2
    dim: ClassVar[int] = 2
    m: float = 1.0
    g: float = 1.0
    r_range: tuple[float, float] = (0.5, 1.5)
    noise_std: float = 0.05
    extent: float = 2.5
    min_separation: float = 0.3
    colors: tuple[tuple[float, float, float], ...] = field(
        default=((0.85, 0.2, 0.15), (0.15, 0.35, 0.85), (0.1, 0.65, 0.25))
    )

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"n: expected at least 2 bodies, got {self.n}")
        if len(self.colors) < self.n:
            raise ValueError(f"colors: expected at least {self.n} colours, got {len(self.colors)}")
        object.__setattr__(self, "colors", tuple(self.colors[: self.n]))

    @property
    def n_bodies(self) -> int:  # type: ignore[override]
        return self.n

    def _pairs(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairwise displacements ``q_j - q_i`` at ``[..., i, j, :]`` and squared distances.

        The diagonal of the squared distances is set to 1 (its displacement is exactly 0), so
        no self-interaction term ever divides by zero.
        """
        qb = q.reshape(*q.shape[:-1], self.n, 2)
        diff = qb[..., None, :, :] - qb[..., :, None, :]
        r2 = np.einsum("...k,...k->...", diff, diff) + np.eye(self.n)
        return diff, r2

    def hamiltonian(self, states: np.ndarray) -> np.ndarray:
        q, p = self.split(states)
        kinetic = (p**2).sum(-1) / (2.0 * self.m)
        _, r2 = self._pairs(q)
        iu = np.triu_indices(self.n, k=1)
        potential = -(self.g * self.m * self.m / np.sqrt(r2[..., iu[0], iu[1]])).sum(-1)
        return kinetic + potential

    def vector_field_batch(self, states: np.ndarray) -> np.ndarray:
        q, p = self.split(states)
        diff, r2 = self._pairs(q)
        # force on body i: sum_j g m^2 (q_j - q_i) / |q_j - q_i|^3 = -dH/dq_i
        force = np.einsum("...ijk,...ij->...ik", diff, r2**-1.5)
        force *= self.g * self.m * self.m
        return np.concatenate([p / self.m, force.reshape(q.shape)], axis=-1)

    def sample_initial(self, rng: np.random.Generator) -> np.ndarray:
        r = rng.uniform(*self.r_range)
        angles = rng.uniform(0.0, 2.0 * math.pi) + 2.0 * math.pi * np.arange(self.n) / self.n
        radial = np.stack([np.cos(angles), np.sin(angles)], -1)
        tangent = np.stack([-radial[:, 1], radial[:, 0]], -1)
        v_circ = math.sqrt(self.g * self.m * _ring_factor(self.n) / r)
        vel = v_circ * (tangent + self.noise_std * rng.standard_normal((self.n, 2)))
        vel -= vel.mean(0, keepdims=True)
        return np.concatenate([(r * radial).ravel(), (self.m * vel).ravel()])

    def admissible(self, trajectory: np.ndarray) -> np.ndarray:
        q, _ = self.split(trajectory)
        _, r2 = self._pairs(q)
        r2 = r2 + np.eye(self.n) * self.min_separation**2  # ignore the diagonal
        close = (r2 < self.min_separation**2).any(axis=(-1, -2, -3))
        outside = (np.abs(q) > self.extent - self.disc_radius).any(axis=(-1, -2))
        return ~(close | outside)

    def positions(self, states: Array) -> Array:
        q, _ = self.split(states)
        return q.reshape(*q.shape[:-1], self.n, 2)


SYSTEMS: dict[str, PhysicalSystem] = {
    "mass_spring": MassSpring(),
    "pendulum": Pendulum(),
    "pendulum_mgl": PendulumMGL(),
    "two_body": NBody(name="two_body", n=2, r_range=(0.5, 1.5), noise_std=0.05),
    "three_body": NBody(name="three_body", n=3, r_range=(0.9, 1.2), noise_std=0.2),
    "three_body_big_discs": NBody(
        name="three_body_big_discs", n=3, r_range=(0.9, 1.2), noise_std=0.2, disc_radius=0.5
    ),
}
"""Registry of the paper's four systems (Sec. 4), keyed by name, the ``mgl`` pendulum, and
three-body drawn with discs of radius 0.5 instead of 0.3 (1.6 px instead of 1 px at 16×16,
for the small-scale Table 1; docs/reproduction.md)."""


def get_system(name: str) -> PhysicalSystem:
    """Look a system up in :data:`SYSTEMS`.

    Example:
        >>> get_system("pendulum").name
        'pendulum'
        >>> get_system("spring")
        Traceback (most recent call last):
        ...
        ValueError: system: expected one of ['mass_spring', ...], got 'spring'
    """
    if name not in SYSTEMS:
        raise ValueError(f"system: expected one of {sorted(SYSTEMS)}, got {name!r}")
    return SYSTEMS[name]
