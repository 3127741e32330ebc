"""HamiltonianFlow: a normflows layer that moves ``x = cat(q, p)`` along a learned Hamiltonian.

Paper Sec. 3.3: a symplectic integrator of Hamilton's equations is invertible (run it with
``-dt``, sub-steps in reverse) and volume-preserving, so as a normalising flow its log-det is
exactly zero.
"""

from __future__ import annotations

import normflows as nf
import torch
from torch import Tensor, nn

from .hamiltonians import Hamiltonian
from .integrators import KickCache, check_dt_steps, get_integrator

__all__ = ["HamiltonianFlow", "check_phase_space"]


def check_phase_space(x: Tensor, width: int | None, name: str = "x") -> None:
    """Validate a batch of flat phase-space vectors ``(B, 2·dim)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected shape (batch, 2*dim), got {tuple(x.shape)}")
    if x.shape[-1] % 2:
        raise ValueError(
            f"{name}: expected an even phase-space width (q and p halves), got {x.shape[-1]}"
        )
    if width is not None and x.shape[-1] != width:
        raise ValueError(f"{name}: expected trailing dimension {width}, got {x.shape[-1]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")


class HamiltonianFlow(nf.flows.Flow):
    """A normflows ``Flow`` integrating Hamilton's equations on ``x = cat(q, p)`` (Sec. 3.3).

    ``forward`` (base → data) integrates ``steps`` steps of ``+dt``; ``inverse`` runs the exact
    inverse, ``-dt`` with the sub-steps in reverse order. Both return a zero ``(B,)`` log-det on
    the input's dtype and device.

    Only the symplectic integrators (``leapfrog``, ``yoshida4``, ``symplectic_euler``) preserve
    volume, so only they are accepted as a density flow. ``euler`` and ``rk4`` are allowed for
    *dynamics* (:meth:`integrate`), where no density is assumed; ``forward`` and ``inverse``
    refuse them.

    Args:
        hamiltonian: the Hamiltonian; separable for the symplectic schemes.
        dt: step size (non-zero).
        steps: integrator steps per call.
        integrator: name in :data:`hamflow.integrators.INTEGRATORS`.
        learn_dt: make ``dt`` a trainable parameter.
        dim: size of ``q``; taken from ``hamiltonian.dim`` when it has one.

    Example:
        >>> import normflows as nf
        >>> from hamflow import SeparableHamiltonian, MLPEnergy
        >>> H = SeparableHamiltonian(MLPEnergy(2, (32,)), MLPEnergy(2, (32,)))
        >>> flow = HamiltonianFlow(H, dt=0.1, steps=2)
        >>> model = nf.NormalizingFlow(nf.distributions.DiagGaussian(4), [flow])
        >>> x = model.sample(8)[0]
        >>> model.log_prob(x).shape
        torch.Size([8])
        >>> y, log_det = flow(x)
        >>> bool(torch.allclose(flow.inverse(y)[0], x, atol=1e-5)), log_det.abs().max().item()
        (True, 0.0)
    """

    def __init__(
        self,
        hamiltonian: Hamiltonian,
        dt: float = 0.1,
        steps: int = 1,
        integrator: str = "leapfrog",
        *,
        learn_dt: bool = False,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        check_dt_steps(float(dt), steps)
        self.info = get_integrator(integrator)
        if self.info.needs_separable and not getattr(hamiltonian, "separable", False):
            raise TypeError(
                f"hamiltonian: integrator {integrator!r} needs a separable Hamiltonian "
                f"K(p) + V(q), got {type(hamiltonian).__name__}"
            )
        self.hamiltonian = hamiltonian
        self.integrator_name = integrator
        self.steps = int(steps)
        # A fixed dt stays a Python float, exact in float32 and float64 alike.
        self.dt: float | nn.Parameter = (
            nn.Parameter(torch.tensor(float(dt))) if learn_dt else float(dt)
        )
        if dim is None:
            for part in ("kinetic", "potential"):
                dim = dim or getattr(getattr(hamiltonian, part, None), "dim", None)
        self.dim = dim

    @property
    def volume_preserving(self) -> bool:
        return self.info.symplectic

    def _dt(self, like: Tensor) -> float | Tensor:
        return self.dt.to(like.dtype) if isinstance(self.dt, Tensor) else self.dt

    def integrate(
        self, q: Tensor, p: Tensor, dt: float | Tensor | None = None, steps: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Integrate ``(q, p)`` as dynamics; any registered integrator, any ``dt`` sign.

        ``dt`` and ``steps`` default to the layer's own.
        """
        dt = self._dt(q) if dt is None else dt
        return self.info.fn(self.hamiltonian, q, p, dt, self.steps if steps is None else steps)

    def _check_density(self) -> None:
        if not self.volume_preserving:
            raise ValueError(
                f"integrator: {self.integrator_name!r} is not volume-preserving, so the "
                "log-det is not zero and this layer cannot be a density flow; use 'leapfrog', "
                "'yoshida4' or 'symplectic_euler', or call integrate() for dynamics"
            )

    def _width(self) -> int | None:
        return None if self.dim is None else 2 * int(self.dim)

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_phase_space(z, self._width(), "z")
        return z.chunk(2, dim=-1)

    def _zero_log_det(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)

    def step(
        self, q: Tensor, p: Tensor, *, inverse: bool = False, cache: KickCache | None = None
    ) -> tuple[Tensor, Tensor]:
        """The flow map on an already validated ``(q, p)`` pair (no input checks).

        ``cache`` (a :class:`~hamflow.integrators.KickCache`) lets consecutive layers that share
        a potential reuse the gradient where they meet.
        """
        return self.info.step(self.hamiltonian, q, p, self._dt(q), self.steps, inverse, cache)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check_density()
        q, p = self._split(z)
        q, p = self.step(q, p)
        return torch.cat([q, p], dim=-1), self._zero_log_det(z)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check_density()
        q, p = self._split(z)
        q, p = self.step(q, p, inverse=True)
        return torch.cat([q, p], dim=-1), self._zero_log_det(z)

    def extra_repr(self) -> str:
        dt = float(self.dt.detach()) if isinstance(self.dt, Tensor) else self.dt
        learn = ", learn_dt=True" if isinstance(self.dt, nn.Parameter) else ""
        return f"dt={dt:.4g}, steps={self.steps}, integrator={self.integrator_name!r}{learn}"
