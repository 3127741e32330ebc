"""Learning-rate schedule: constant, then a linear decay over the last part of the run.

The last ``decay`` fraction of the steps scales every parameter group's learning rate down
linearly, from its full value to ``1/(n + 1)`` of it at the last step (``n`` decaying steps).
Before that the rate is constant, so the early part of a run (GECO's multiplier finding its
level, in particular) is the same with or without the decay. Averaging out the noise of the
last steps is what the decay buys: at a constant rate the final weights are one noisy sample
of where Adam wanders, at a decaying one they settle (docs/hgn/, "Learning-rate decay").

The factor is a pure function of ``(step, steps)``, so a run killed and resumed with the same
``--steps`` follows exactly the same schedule.
"""

from __future__ import annotations

import math

__all__ = ["check_decay", "lr_factor"]


def check_decay(decay: float) -> None:
    """Raise ``ValueError`` unless ``decay`` is a fraction in ``[0, 1]``."""
    if not (isinstance(decay, (int, float)) and math.isfinite(decay) and 0.0 <= decay <= 1.0):
        raise ValueError(
            f"lr_decay: expected the fraction of the steps to decay over, in [0, 1], got {decay!r}"
        )


def lr_factor(step: int, steps: int, decay: float) -> float:
    """The multiplier of the base learning rates at ``step`` (1-based) of a ``steps``-step run.

    Example:
        >>> [round(lr_factor(s, 10, 0.3), 3) for s in range(1, 11)]
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
        >>> lr_factor(5, 10, 0.0)
        1.0
    """
    check_decay(decay)
    n = round(decay * steps)
    start = steps - n  # the last step at the full rate
    if step <= start:
        return 1.0
    return (steps - step + 1) / (n + 1)
