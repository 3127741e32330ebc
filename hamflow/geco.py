"""GECO: constrained optimisation of an ELBO (Rezende & Viola, 2018), used in paper A.1 and A.2.

Instead of a fixed weight between two loss terms, GECO minimises an *objective* subject to a
*constraint* ``C ≤ 0`` (written here as ``constraint_value - tolerance ≤ 0``) and adapts a Lagrange
multiplier ``λ``:

    loss = objective + λ · Ĉ
    C_ma ← α · C_ma + (1 − α) · C                    (moving average of the constraint)
    Ĉ    = C + stop_gradient(C_ma − C)               (value of the average, gradient of C)
    λ    ← clamp(λ · exp(ν · C_ma), λ_min, λ_max)    (after each step; multiplicative update)

In HGN the objective is the KL term and the constraint is the reconstruction error, so that the
effective multiplier in front of the KL term is ``1/λ`` (reported as :attr:`GECO.kl_weight`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GECO"]


class GECO(nn.Module):
    """Lagrange multiplier for ``objective`` subject to ``constraint ≤ tolerance``.

    The state (multiplier and moving average) lives in buffers, so it is saved in the
    ``state_dict`` and follows ``.to(device)``.

    Args:
        tolerance: the constraint's target value κ.
        alpha: moving-average factor of the constraint, in ``[0, 1)``.
        speed: step size ν of the multiplier's log update.
        lambda_init: initial multiplier.
        lambda_min, lambda_max: clamp range of the multiplier.

    Example:
        >>> geco = GECO(tolerance=0.1, speed=0.5)
        >>> rec, kl = torch.tensor(0.5, requires_grad=True), torch.tensor(2.0)
        >>> loss = geco(objective=kl, constraint=rec)   # λ grows while rec > tolerance
        >>> geco.step()
        >>> geco.multiplier > 1.0
        True

    References:
        Rezende & Viola, "Taming VAEs" / GECO (2018); paper Sec. A.1 and A.2.
    """

    def __init__(
        self,
        tolerance: float,
        *,
        alpha: float = 0.99,
        speed: float = 1e-2,
        lambda_init: float = 1.0,
        lambda_min: float = 1e-6,
        lambda_max: float = 1e6,
    ) -> None:
        super().__init__()
        if not math.isfinite(tolerance):
            raise ValueError(f"tolerance: expected a finite number, got {tolerance!r}")
        if not 0.0 <= alpha < 1.0:  # also refuses NaN
            raise ValueError(f"alpha: expected a value in [0, 1), got {alpha!r}")
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed: expected a positive number, got {speed!r}")
        if not 0 < lambda_min <= lambda_init <= lambda_max:
            raise ValueError(
                "lambda_init: expected 0 < lambda_min <= lambda_init <= lambda_max, got "
                f"{lambda_min!r} <= {lambda_init!r} <= {lambda_max!r}"
            )
        self.tolerance = float(tolerance)
        self.alpha = float(alpha)
        self.speed = float(speed)
        self.lambda_min = float(lambda_min)
        self.lambda_max = float(lambda_max)
        self.register_buffer("lagrange", torch.tensor(float(lambda_init), dtype=torch.float64))
        self.register_buffer("constraint_ma", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("initialized", torch.tensor(False))
        self._pending: Tensor | None = None

    @property
    def multiplier(self) -> float:
        """The current multiplier ``λ`` in front of the constraint."""
        return float(self.lagrange)

    @property
    def kl_weight(self) -> float:
        """``1/λ``: the weight in front of the objective when the constraint is scaled to one."""
        return 1.0 / float(self.lagrange)

    def forward(self, objective: Tensor, constraint: Tensor) -> Tensor:
        """The Lagrangian ``objective + λ · Ĉ`` for this step; call :meth:`step` after it."""
        c = constraint - self.tolerance
        c_detached = c.detach().to(self.constraint_ma.dtype)
        with torch.no_grad():
            if bool(self.initialized):
                ma = self.alpha * self.constraint_ma + (1 - self.alpha) * c_detached
            else:
                ma = c_detached.clone()
        self._pending = ma
        c_hat = c + (ma.to(c.dtype) - c.detach())
        return objective + self.lagrange.to(c.dtype) * c_hat

    @torch.no_grad()
    def step(self) -> None:
        """Commit the moving average of the last call and update ``λ`` multiplicatively."""
        if self._pending is None:
            raise RuntimeError("GECO.step() called before GECO(objective, constraint)")
        self.constraint_ma.copy_(self._pending)
        self.initialized.fill_(True)
        new = self.lagrange * torch.exp(self.speed * self.constraint_ma)
        self.lagrange.copy_(new.clamp(self.lambda_min, self.lambda_max))
        self._pending = None
