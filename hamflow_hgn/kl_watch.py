"""A warning for the trainer: GECO's multiplier stuck at its cap, so the KL is switched off.

GECO raises λ while the reconstruction error stays above its tolerance (:class:`hamflow.GECO`).
When the model cannot reach the tolerance, λ climbs to ``lambda_max`` and stays there: the KL
weight is then ``1/lambda_max`` and the model trains as the deterministic variant in all but
name (docs/hgn/, "Balancing the KL"). That is GECO doing what it was asked, so the trainer
does not change it; it says so once, with the error the model does reach, so that the user can
ask for a reachable tolerance.
"""

from __future__ import annotations

__all__ = ["LambdaCapWatch"]


class LambdaCapWatch:
    """Watches a model's GECO and returns one message once λ has sat at its cap for a while.

    Args:
        model: the (unwrapped) model; a model without a GECO that adapts is never reported.
        patience: how many steps λ must stay at ``lambda_max`` before the message.

    Example:
        >>> from hamflow_hgn.config import ModelConfig
        >>> from hamflow_hgn.models import HGN
        >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4))
        >>> watch = LambdaCapWatch(model, patience=100)
        >>> _ = model.geco.lagrange.fill_(model.geco.lambda_max)
        >>> watch.check(50) is None, watch.check(160) is None  # at the cap since step 50
        (True, False)
        >>> watch.check(170) is None                            # said once
        True
    """

    def __init__(self, model, patience: int = 200) -> None:
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience: expected a positive integer, got {patience!r}")
        config = getattr(model, "config", None)
        geco = getattr(model, "geco", None)
        adaptive = (
            geco is not None
            and getattr(config, "stochastic", False)
            and getattr(config, "kl_balance", None) == "geco"
        )
        self.geco = geco if adaptive else None
        self.config = config
        self.patience = patience
        self.since: int | None = None
        self.said = False

    def check(self, step: int) -> str | None:
        """Call after an optimiser step (the trainer calls it at log steps); the message the
        first time λ has been at the cap for ``patience`` steps, else ``None``."""
        if self.geco is None or self.said:
            return None
        geco = self.geco
        if float(geco.lagrange) < geco.lambda_max * (1 - 1e-9):
            self.since = None
            return None
        if self.since is None:
            self.since = step
        if step - self.since < self.patience:
            return None
        self.said = True
        reached = (float(geco.constraint_ma) + 1.0) * self.config.geco_tolerance
        unit = (
            "of the pixel variance" if self.config.geco_units == "variance" else "(per-pixel MSE)"
        )
        return (
            f"warning: GECO's lambda has sat at its cap ({geco.lambda_max:g}) since step "
            f"{self.since}: the reconstruction error stays at about {reached:.3g} {unit}, above "
            f"the tolerance of {self.config.geco_tolerance:g}, so the KL weight is pinned at "
            f"{1 / geco.lambda_max:g} and the model trains like the deterministic variant. "
            f"Ask for an error it can reach with --geco-tolerance (for example "
            f"{1.1 * reached:.2g}), or train longer."
        )
