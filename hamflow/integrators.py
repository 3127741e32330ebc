"""Numerical integrators for Hamilton's equations (paper Sec. 3.1 and A.5).

Every integrator shares one signature::

    q, p = integrator(hamiltonian, q, p, dt, steps=1, *, inverse=False)

``q`` and ``p`` have any shape with a leading batch dimension. A negative ``dt`` runs time
backwards. ``inverse=True`` applies the exact inverse of the forward map with the same ``dt``:
the sub-steps run in reverse order with ``-dt``. Only the symplectic composition schemes have one;
for them ``integrator(H, *integrator(H, q, p, dt, n), dt, n, inverse=True)`` returns ``(q, p)`` to
round-off.

The symplectic schemes (``symplectic_euler``, ``leapfrog``, ``yoshida4``) are written as
sequences of *kicks* ``p ← p − c·dt·∂V/∂q(q)`` and *drifts* ``q ← q + c·dt·∂K/∂p(p)``. Each
sub-step is a shear, so its Jacobian determinant is exactly one. They need a separable
Hamiltonian and refuse any other. Consecutive sub-steps of the same kind are merged, so ``n``
leapfrog steps cost ``n + 1`` potential gradients instead of ``2n``; across calls, a
:class:`KickCache` carries the last gradient over, so a :func:`rollout` of ``n`` single steps
costs ``n + 1`` as well.

``euler`` and ``rk4`` work with any Hamiltonian but preserve neither volume nor energy; use them
for dynamics, never as a density flow.

Pick an integrator by name through :data:`INTEGRATORS` or :func:`get_integrator`.

The public functions validate their inputs (shapes, a finite state, ``dt``, ``steps``,
separability) once per call. Each registry entry also carries the unchecked map
(:attr:`IntegratorInfo.step`), which :func:`rollout` and the flows use inside their loops after
validating once, so that a long rollout does not pay a device synchronisation per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from .hamiltonians import Hamiltonian

__all__ = [
    "euler",
    "symplectic_euler",
    "leapfrog",
    "yoshida4",
    "rk4",
    "IntegratorInfo",
    "KickCache",
    "INTEGRATORS",
    "get_integrator",
    "integrate",
    "rollout",
]

Scheme = tuple[tuple[str, float], ...]


def check_dt_steps(dt: float | Tensor, steps: int) -> None:
    """Raise ``ValueError`` for a zero or non-finite ``dt`` or ``steps < 1``."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if isinstance(dt, Tensor):
        if dt.numel() != 1:
            raise ValueError(f"dt: expected a scalar, got a tensor of shape {tuple(dt.shape)}")
        if dt.requires_grad or dt.is_cuda:
            return  # checked where it is created; avoid a device sync in the inner loop
        dt = float(dt)
    if not isinstance(dt, (int, float)) or dt == 0 or not math.isfinite(dt):
        raise ValueError(f"dt: expected a non-zero finite number, got {dt!r}")


def _check_state(q: Tensor, p: Tensor) -> None:
    if q.shape != p.shape:
        raise ValueError(f"p: expected the same shape as q {tuple(q.shape)}, got {tuple(p.shape)}")
    if q.dim() < 1:
        raise ValueError("q: expected a leading batch dimension, got a 0-d tensor")
    for name, x in (("q", q), ("p", p)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf ({_first_bad(x)})")


def _first_bad(x: Tensor) -> str:
    bad = x[~torch.isfinite(x)]
    return f"{bad.numel()} non-finite entries, e.g. {bad.flatten()[0].item()}"


def _validate(
    name: str, hamiltonian: Hamiltonian, q: Tensor, p: Tensor, dt: float | Tensor, steps: int
) -> IntegratorInfo:
    """All input checks of a public integrator call; returns the registry entry."""
    info = get_integrator(name)
    check_dt_steps(dt, steps)
    _check_state(q, p)
    if info.needs_separable:
        _require_separable(hamiltonian, name)
    return info


def _require_separable(hamiltonian: Hamiltonian, name: str) -> None:
    if not getattr(hamiltonian, "separable", False):
        raise TypeError(
            f"hamiltonian: {name} is an explicit symplectic scheme and needs a separable "
            f"H(q, p) = K(p) + V(q) (e.g. SeparableHamiltonian), got "
            f"{type(hamiltonian).__name__}; use 'euler' or 'rk4' for a non-separable H"
        )


def _merged(scheme: Scheme, steps: int) -> Scheme:
    """Repeat ``scheme`` ``steps`` times and merge adjacent sub-steps of the same kind."""
    out: list[tuple[str, float]] = []
    for kind, c in scheme * steps:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + c)
        else:
            out.append((kind, c))
    return tuple(out)


class KickCache:
    """The last potential gradient ``∂V/∂q(q)``, reused by a kick at the same ``q``.

    Two half-kicks of one potential at the same position, the last of a leapfrog step and the
    first of the next, need one gradient evaluation, not two. Within one call the merged scheme
    already does this; a cache passed from call to call (as :func:`rollout` and NHF's transport do)
    extends it across calls. A hit needs the same potential and the very same ``q`` tensor object,
    so a cache can never return a stale gradient.
    """

    __slots__ = ("_key", "_q", "_grad", "hits")

    def __init__(self) -> None:
        self._key: object = None
        self._q: Tensor | None = None
        self._grad: Tensor | None = None
        self.hits = 0

    def dV_dq(self, hamiltonian: Hamiltonian, q: Tensor) -> Tensor:
        key = getattr(hamiltonian, "potential", hamiltonian)
        if self._q is q and self._key is key:
            self.hits += 1
            return self._grad
        grad = hamiltonian.dV_dq(q)
        self._key, self._q, self._grad = key, q, grad
        return grad


def _run_scheme(
    scheme: Scheme,
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int,
    inverse: bool,
    cache: KickCache | None = None,
) -> tuple[Tensor, Tensor]:
    subs = _merged(scheme, steps)
    if inverse:
        subs = tuple((kind, -c) for kind, c in reversed(subs))
    for kind, c in subs:
        if kind == "kick":
            grad = hamiltonian.dV_dq(q) if cache is None else cache.dV_dq(hamiltonian, q)
            p = p - (c * dt) * grad
        else:
            q = q + (c * dt) * hamiltonian.dK_dp(p)
    return q, p


_SYMPLECTIC_EULER: Scheme = (("kick", 1.0), ("drift", 1.0))
_LEAPFROG: Scheme = (("kick", 0.5), ("drift", 1.0), ("kick", 0.5))
# Yoshida (1990): a leapfrog of dt*w1, one of dt*w0 and one of dt*w1, kicks merged.
_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
_W0 = 1.0 - 2.0 * _W1
_YOSHIDA4: Scheme = (
    ("kick", _W1 / 2),
    ("drift", _W1),
    ("kick", (_W1 + _W0) / 2),
    ("drift", _W0),
    ("kick", (_W0 + _W1) / 2),
    ("drift", _W1),
    ("kick", _W1 / 2),
)


def symplectic_euler(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int = 1,
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """First-order symplectic Euler: ``p ← p − dt·∂V/∂q(q)``, then ``q ← q + dt·∂K/∂p(p)``.

    Example:
        >>> from hamflow import SeparableHamiltonian, QuadraticEnergy
        >>> H = SeparableHamiltonian(QuadraticEnergy(1), QuadraticEnergy(1))
        >>> q, p = symplectic_euler(H, torch.ones(1, 1), torch.zeros(1, 1), 0.1)
        >>> [round(v, 4) for v in (q.item(), p.item())]
        [0.99, -0.1]
    """
    return _validate("symplectic_euler", hamiltonian, q, p, dt, steps).step(
        hamiltonian, q, p, dt, steps, inverse
    )


def leapfrog(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int = 1,
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Störmer–Verlet leapfrog, second order, time-reversible and symplectic (paper A.5).

    In its general form: half kick ``p ← p − dt/2·∂V/∂q(q)``, drift
    ``q ← q + dt·∂K/∂p(p_half)`` (not ``dt·p_half``: the kinetic energy is learned), half kick.

    Example:
        >>> from hamflow import SeparableHamiltonian, QuadraticEnergy
        >>> H = SeparableHamiltonian(QuadraticEnergy(1), QuadraticEnergy(1))  # oscillator
        >>> q0, p0 = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
        >>> q, p = leapfrog(H, q0, p0, dt=0.01, steps=100)       # t = 1: q ≈ cos 1
        >>> abs(q.item() - math.cos(1.0)) < 1e-4
        True
        >>> q, p = leapfrog(H, q, p, dt=0.01, steps=100, inverse=True)
        >>> bool(torch.allclose(q, q0, atol=1e-13))
        True
    """
    return _validate("leapfrog", hamiltonian, q, p, dt, steps).step(
        hamiltonian, q, p, dt, steps, inverse
    )


def yoshida4(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int = 1,
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Fourth-order symplectic composition of three leapfrog steps (Yoshida, 1990).

    Example:
        >>> from hamflow import SeparableHamiltonian, QuadraticEnergy
        >>> H = SeparableHamiltonian(QuadraticEnergy(1), QuadraticEnergy(1))
        >>> q0 = torch.ones(1, 1, dtype=torch.float64)
        >>> q, p = yoshida4(H, q0, torch.zeros_like(q0), dt=0.1, steps=10)
        >>> abs(q.item() - math.cos(1.0)) < 1e-5
        True
    """
    return _validate("yoshida4", hamiltonian, q, p, dt, steps).step(
        hamiltonian, q, p, dt, steps, inverse
    )


def _no_inverse(name: str) -> None:
    raise ValueError(
        f"inverse: {name} has no exact inverse; integrate with a negative dt for an "
        "approximate backward run, or use a symplectic scheme (leapfrog, yoshida4, "
        "symplectic_euler)"
    )


def euler(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int = 1,
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Explicit Euler on ``(q, p)``: first order, neither symplectic nor volume-preserving.

    This is the "HGN Euler" variant of the paper (Table 1). Any Hamiltonian is accepted.

    Example:
        >>> from hamflow import SeparableHamiltonian, QuadraticEnergy
        >>> H = SeparableHamiltonian(QuadraticEnergy(1), QuadraticEnergy(1))
        >>> q, p = euler(H, torch.ones(1, 1), torch.zeros(1, 1), 0.1)
        >>> [round(v, 4) for v in (q.item(), p.item())]
        [1.0, -0.1]
    """
    return _validate("euler", hamiltonian, q, p, dt, steps).step(
        hamiltonian, q, p, dt, steps, inverse
    )


def _euler_steps(hamiltonian, q, p, dt, steps, inverse, cache=None):
    if inverse:
        _no_inverse("euler")
    for _ in range(steps):
        dq = hamiltonian.grad_p(q, p)
        dp = hamiltonian.grad_q(q, p)
        q, p = q + dt * dq, p - dt * dp
    return q, p


def rk4(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int = 1,
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Classical fourth-order Runge–Kutta on Hamilton's equations (paper A.5).

    Accurate per step, but not symplectic: energy drifts over long rollouts and volume is not
    preserved. Any Hamiltonian is accepted.

    Example:
        >>> from hamflow import SeparableHamiltonian, QuadraticEnergy
        >>> H = SeparableHamiltonian(QuadraticEnergy(1), QuadraticEnergy(1))
        >>> q0 = torch.ones(1, 1, dtype=torch.float64)
        >>> q, p = rk4(H, q0, torch.zeros_like(q0), dt=0.1, steps=10)
        >>> abs(q.item() - math.cos(1.0)) < 1e-5
        True
    """
    return _validate("rk4", hamiltonian, q, p, dt, steps).step(
        hamiltonian, q, p, dt, steps, inverse
    )


def _rk4_steps(hamiltonian, q, p, dt, steps, inverse, cache=None):
    if inverse:
        _no_inverse("rk4")

    def field(q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        return hamiltonian.grad_p(q, p), -hamiltonian.grad_q(q, p)

    for _ in range(steps):
        k1q, k1p = field(q, p)
        k2q, k2p = field(q + 0.5 * dt * k1q, p + 0.5 * dt * k1p)
        k3q, k3p = field(q + 0.5 * dt * k2q, p + 0.5 * dt * k2p)
        k4q, k4p = field(q + dt * k3q, p + dt * k3p)
        q = q + (dt / 6) * (k1q + 2 * k2q + 2 * k3q + k4q)
        p = p + (dt / 6) * (k1p + 2 * k2p + 2 * k3p + k4p)
    return q, p


Integrator = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class IntegratorInfo:
    """A registered integrator and its properties.

    Attributes:
        fn: the integrator function (shared signature, see the module docstring).
        step: the same map without input checks, ``step(H, q, p, dt, steps, inverse, cache)``,
            for inner loops whose inputs were validated once (rollouts, flows); ``cache`` is an
            optional :class:`KickCache` (used by the kick-drift schemes, ignored by the others).
        order: global order of accuracy.
        symplectic: preserves the symplectic form, hence volume (log-det exactly zero).
        needs_separable: only accepts ``H = K(p) + V(q)``.
    """

    fn: Integrator
    step: Integrator
    order: int
    symplectic: bool
    needs_separable: bool

    def __call__(self, *args, **kwargs) -> tuple[Tensor, Tensor]:
        return self.fn(*args, **kwargs)


def _scheme(scheme: Scheme) -> Integrator:
    return partial(_run_scheme, scheme)


INTEGRATORS: dict[str, IntegratorInfo] = {
    "euler": IntegratorInfo(euler, _euler_steps, 1, symplectic=False, needs_separable=False),
    "symplectic_euler": IntegratorInfo(
        symplectic_euler, _scheme(_SYMPLECTIC_EULER), 1, symplectic=True, needs_separable=True
    ),
    "leapfrog": IntegratorInfo(
        leapfrog, _scheme(_LEAPFROG), 2, symplectic=True, needs_separable=True
    ),
    "yoshida4": IntegratorInfo(
        yoshida4, _scheme(_YOSHIDA4), 4, symplectic=True, needs_separable=True
    ),
    "rk4": IntegratorInfo(rk4, _rk4_steps, 4, symplectic=False, needs_separable=False),
}
"""Integrators by name. A scheme registered here is covered by the property tests."""


def get_integrator(name: str) -> IntegratorInfo:
    """Look up an integrator by name, with an error that lists the known ones.

    Example:
        >>> get_integrator("leapfrog").order
        2
    """
    try:
        return INTEGRATORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"integrator: expected one of {sorted(INTEGRATORS)}, got {name!r}"
        ) from None


def integrate(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int = 1,
    method: str = "leapfrog",
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Integrate with the integrator called ``method``; the final state only."""
    return get_integrator(method).fn(hamiltonian, q, p, dt, steps, inverse=inverse)


def rollout(
    hamiltonian: Hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    steps: int,
    method: str = "leapfrog",
) -> tuple[Tensor, Tensor]:
    """Every state of a rollout: tensors of shape ``(steps + 1, *q.shape)``, the start first.

    A negative ``dt`` rolls backwards in time; scaling ``dt`` speeds the dynamics up or slows
    them down (paper Fig. 7).

    Example:
        >>> from hamflow import SeparableHamiltonian, QuadraticEnergy
        >>> H = SeparableHamiltonian(QuadraticEnergy(1), QuadraticEnergy(1))
        >>> qs, ps = rollout(H, torch.ones(2, 1), torch.zeros(2, 1), dt=0.125, steps=30)
        >>> qs.shape
        torch.Size([31, 2, 1])
    """
    info = _validate(method, hamiltonian, q, p, dt, steps)
    qs, ps = [q], [p]
    cache = KickCache()  # the closing half-kick of a step and the next opening one share ∂V/∂q
    for _ in range(steps):
        q, p = info.step(hamiltonian, q, p, dt, 1, False, cache)
        qs.append(q)
        ps.append(p)
    return torch.stack(qs), torch.stack(ps)
