"""What every trainable model shares: the :class:`Rollout` result and the
:class:`TrainableModel` interface the trainer, the evaluator and the figures rely on.

A model is trained by calling it, ``model(images, step, noise=..., reduce=...) -> (loss,
metrics)`` (its ``forward``, so DDP hooks run), then calling ``model.after_step()`` after each
optimiser step; it is evaluated through ``model.rollout(images, steps, dt=...)`` and
``model.config`` (``frames``, ``dt``, ``protocol``, ``target_frames``). Optional extras used by
the rollout pictures when present: ``rollout_from(q, p, steps, dt)`` and ``sample(n, steps)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Rollout", "TrainableModel", "NoiseFn", "ReduceFn", "standard_noise"]

NoiseFn = Callable[[tuple[int, ...], torch.dtype, torch.device], Tensor]
"""``noise(shape, dtype, device)``: standard normal samples (the trainer makes them DDP-exact)."""
ReduceFn = Callable[[Tensor], Tensor]
"""``reduce(x)``: the mean of a detached scalar over every process (identity on one process)."""


def standard_noise(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Default :data:`NoiseFn`: ``torch.randn`` from the global generator."""
    return torch.randn(shape, dtype=dtype, device=device)


@dataclass
class Rollout:
    """The result of a model's ``rollout`` / ``sample``.

    Attributes:
        frames: decoded images ``(B, S+1, C, H, W)``, the initial state first.
        q, p: latent states ``(B, S+1, ...)``, batch first like ``frames`` (HGN:
            ``(state_channels, 4, 4)`` per state; PixelHNN: ``(latent_dim / 2,)``).
        energy: the learned ``H(q_t, p_t)``, ``(B, S+1)``.
    """

    frames: Tensor
    q: Tensor
    p: Tensor
    energy: Tensor


@runtime_checkable
class TrainableModel(Protocol):
    """The interface :mod:`hamflow_hgn.train` and :mod:`hamflow_hgn.evaluate` use."""

    config: Any

    def __call__(
        self, images: Tensor, step: int = 0, *, noise: NoiseFn | None = ..., reduce: Any = ...
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss of a batch ``(B, T+1, C, H, W)`` and detached scalar metrics."""
        ...

    def after_step(self) -> None:
        """Called after every optimiser step (HGN updates GECO's multiplier here)."""
        ...

    def rollout(
        self, images: Tensor, steps: int | None = None, *, dt: float | None = None
    ) -> Rollout:
        """Infer the initial state from ``images`` and roll out ``steps`` steps."""
        ...
