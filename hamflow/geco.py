"""GECO: constrained optimisation of an ELBO (Rezende & Viola, 2018), used in paper A.1 and A.2.

Instead of a fixed weight between two loss terms, GECO minimises an *objective* subject to a
*constraint* ``C ≤ 0`` (written here as ``constraint_value - tolerance ≤ 0``) and adapts a Lagrange
multiplier ``λ``:

    loss = objective + λ · Ĉ
    C_ma ← α · C_ma + (1 − α) · C                    (moving average of the constraint)
    Ĉ    = C + stop_gradient(C_ma − C)               (value of the average, gradient of C)
    log λ ← clamp(log λ + clip(ν · C_ma, ±δ), log λ_min, log λ_max)      (after each step)

With ``max_log_step=None`` (no ``δ``) this is Rezende & Viola's multiplicative update
``λ ← λ · exp(ν · C_ma)``. That update is only stable when ``ν · C_ma`` is small: a constraint
stated relative to a small tolerance (HGN's ``MSE/κ − 1`` is about 170 at the start of
training) multiplies ``λ`` by ``exp(1.7) ≈ 5.4`` per step, so ``λ`` sits at ``λ_max`` after ten
steps and takes over a thousand steps to come back. The bound ``δ`` (default ``0.01``: at most
a factor ``e^0.01 ≈ 1.01`` per step, ×10 in about 230 steps) keeps the multiplier moving at a
rate the network can follow, whatever the constraint's units.

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
        max_log_step: bound δ on ``|Δ log λ|`` per :meth:`step`; ``None`` for Rezende &
            Viola's unbounded update (the paper's setting).

    Raises:
        ValueError: from the constructor for out-of-range settings; from ``forward`` for a
            constraint that is not a finite scalar (the state is left untouched).

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
        max_log_step: float | None = 0.01,
    ) -> None:
        super().__init__()
        if not math.isfinite(tolerance):
            raise ValueError(f"tolerance: expected a finite number, got {tolerance!r}")
        if not 0.0 <= alpha < 1.0:  # also refuses NaN
            raise ValueError(f"alpha: expected a value in [0, 1), got {alpha!r}")
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed: expected a positive number, got {speed!r}")
        if not math.isfinite(lambda_max):
            raise ValueError(f"lambda_max: expected a finite number, got {lambda_max!r}")
        if not 0 < lambda_min <= lambda_init <= lambda_max:
            raise ValueError(
                "lambda_init: expected 0 < lambda_min <= lambda_init <= lambda_max, got "
                f"{lambda_min!r} <= {lambda_init!r} <= {lambda_max!r}"
            )
        if max_log_step is not None and not (max_log_step > 0 and math.isfinite(max_log_step)):
            raise ValueError(
                f"max_log_step: expected a positive number or None, got {max_log_step!r}"
            )
        self.tolerance = float(tolerance)
        self.alpha = float(alpha)
        self.speed = float(speed)
        self.lambda_min = float(lambda_min)
        self.lambda_max = float(lambda_max)
        self.max_log_step = None if max_log_step is None else float(max_log_step)
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

    @property
    def at_clamp(self) -> bool:
        """Whether ``λ`` sits at ``lambda_min`` or ``lambda_max`` (to within 1e-9 relative)."""
        lam = float(self.lagrange)
        return lam >= self.lambda_max * (1 - 1e-9) or lam <= self.lambda_min * (1 + 1e-9)

    def forward(self, objective: Tensor, constraint: Tensor) -> Tensor:
        """The Lagrangian ``objective + λ · Ĉ`` for this step; call :meth:`step` after it.

        ``constraint`` must be a finite scalar (one number for the whole batch, e.g. the batch
        mean of the reconstruction error): a per-example constraint would need one multiplier
        per example, and a NaN/inf one would poison the moving average and ``λ`` for good.
        Either raises ``ValueError`` and leaves the state as it was.
        """
        if not isinstance(constraint, Tensor):
            raise TypeError(f"constraint: expected a torch.Tensor, got {type(constraint).__name__}")
        if constraint.numel() != 1:
            raise ValueError(
                "constraint: expected a scalar (reduce it over the batch, e.g. with .mean(), "
                f"before GECO sees it), got shape {tuple(constraint.shape)}"
            )
        c = constraint.reshape(()) - self.tolerance
        c_detached = c.detach().to(self.constraint_ma.dtype)
        if not bool(torch.isfinite(c_detached)):  # one host sync per step
            raise ValueError(
                f"constraint: expected a finite value, got {float(c_detached) + self.tolerance}; "
                "GECO's multiplier and moving average are left unchanged"
            )
        with torch.no_grad():
            ma = torch.where(
                self.initialized,
                self.alpha * self.constraint_ma + (1 - self.alpha) * c_detached,
                c_detached,
            )
        self._pending = ma
        c_hat = c + (ma.to(c.dtype) - c.detach())
        return objective + self.lagrange.to(c.dtype) * c_hat

    @torch.no_grad()
    def step(self, toward: float | Tensor | None = None) -> None:
        """Commit the moving average of the last call and update ``log λ`` (bounded by δ).

        With ``toward`` (a positive multiplier), ``log λ`` moves toward ``log(toward)`` instead
        of along ``ν·Ĉ``, still by at most δ: a multiplier set from outside (for instance the
        calibrated decoder of :class:`hamflow_hgn.HGN`) that GECO only slews.
        """
        if self._pending is None:
            raise RuntimeError("GECO.step() called before GECO(objective, constraint)")
        if toward is not None:
            target = torch.as_tensor(toward, dtype=self.lagrange.dtype, device=self.lagrange.device)
            if target.numel() != 1 or not bool(torch.isfinite(target) & (target > 0)):
                raise ValueError(
                    f"toward: expected a positive finite multiplier, got {toward!r}; "
                    "GECO's multiplier and moving average are left unchanged"
                )
        self.constraint_ma.copy_(self._pending)
        self.initialized.fill_(True)
        if toward is None:
            delta = self.speed * self.constraint_ma
        else:
            delta = torch.log(target.reshape(())) - torch.log(self.lagrange)
        if self.max_log_step is not None:
            delta = delta.clamp(-self.max_log_step, self.max_log_step)
        new = self.lagrange * torch.exp(delta)
        self.lagrange.copy_(new.clamp(self.lambda_min, self.lambda_max))
        self._pending = None
