"""The prior over HGN's latent ``z`` and the KL of a diagonal posterior against it (Eq. 4).

The paper's prior is ``N(0, I)`` (:class:`StandardPrior`). :class:`MatchedGaussianPrior` is a
full-covariance Gaussian that follows the mean and covariance of the training posteriors taken
together (the *aggregate posterior*), the Gaussian prior that makes the KL term of the ELBO
smallest for the current encoder: an empirical-Bayes prior, updated like batch norm's running
statistics. Prior samples then land where the decoder has learned to draw a system; samples
from ``N(0, I)`` do not at the scales this project trains on (docs/hgn/, "Why prior
samples…").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import LATENT_PRIORS

__all__ = ["MatchedGaussianPrior", "StandardPrior", "make_prior"]


def _check_posterior(mean: Tensor, logvar: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(mean.shape[1:]) != shape or mean.shape != logvar.shape:
        raise ValueError(
            f"mean, logvar: expected two tensors of shape (B, {', '.join(map(str, shape))}), "
            f"got {tuple(mean.shape)} and {tuple(logvar.shape)}"
        )


class StandardPrior(nn.Module):
    """The prior ``z ~ N(0, I)`` of paper Sec. 3.2; it has no parameters.

    Args:
        shape: the shape of one ``z``, ``(channels, size, size)``.

    Example:
        >>> prior = StandardPrior((2, 4, 4))
        >>> mean, logvar = torch.zeros(3, 2, 4, 4), torch.zeros(3, 2, 4, 4)
        >>> prior.kl(mean, logvar).tolist()     # the posterior is the prior
        [0.0, 0.0, 0.0]
        >>> prior.sample(5).shape
        torch.Size([5, 2, 4, 4])
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def kl_parts(self, mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        """``KL(N(mean, e^logvar) ‖ N(0, I))`` per sequence, as (width part, mean part).

        The width part ``½ Σ (σ² − 1 − ln σ²)`` is the KL of a posterior centred on the prior's
        mean; the mean part ``½ |μ|²`` is the rest. Both ``(B,)``, in the inputs' dtype.
        """
        _check_posterior(mean, logvar, self.shape)
        width = 0.5 * (logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        return width, 0.5 * mean.square().flatten(1).sum(1)

    def kl(self, mean: Tensor, logvar: Tensor) -> Tensor:
        """``KL(q ‖ prior)`` per sequence, ``(B,)``: the sum of :meth:`kl_parts`."""
        _check_posterior(mean, logvar, self.shape)
        return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)

    def observe(self, mean: Tensor, logvar: Tensor, reduce=None) -> None:
        """Called on every training batch's posteriors; ``N(0, I)`` does not change."""

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` draws of ``z``, shape ``(n, *shape)``."""
        where = generator.device if generator is not None else device
        return torch.randn((n, *self.shape), generator=generator, dtype=dtype, device=where)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class MatchedGaussianPrior(StandardPrior):
    """A full-covariance Gaussian prior ``N(m, Σ)`` over ``z`` that follows the training posteriors.

    For a fixed encoder, the Gaussian that minimises the KL term of Eq. 4 summed over the
    training sequences matches the moments of their posteriors taken together: ``m = E[μ]`` and
    ``Σ = Cov(μ) + diag E[σ²]``. This prior keeps those moments as exponential moving averages
    over training batches (:meth:`observe`, which :class:`~hamflow_hgn.models.hgn.HGN` calls on
    each training batch, like batch norm's running statistics), so each step's KL is taken
    against the best Gaussian prior for the encoder of the last hundred or so steps. It has no
    parameters; its moments are buffers, saved with the model.

    It starts at ``N(0, I)`` and stays there for ``warmup`` batches. Matched from the first
    steps, the prior is as narrow as the untrained encoder's nearly identical posteriors; a
    posterior mean that moves away from the others then costs ``(μ − m)² / 2Σ`` nats with a tiny
    ``Σ``, and the encoder never learns to tell sequences apart (the pendulum example stays at
    the mean image without a warm-up, docs/hgn/). After the warm-up the encoder already
    encodes the state, and the prior follows it.

    The KL of a diagonal posterior ``N(μ, diag σ²)``, with ``Σ = L Lᵀ``, is in closed form,

        ``½ [ tr(Σ⁻¹ diag σ²) − n + ln det Σ − Σ ln σ² ] + ½ (μ − m)ᵀ Σ⁻¹ (μ − m)``,

    the first bracket being the width part and the second the mean part
    (:meth:`~StandardPrior.kl_parts`); ``Σ⁻¹`` is applied by triangular solves.

    Args:
        shape: the shape of one ``z``, ``(channels, size, size)``.
        warmup: the first ``warmup`` batches passed to :meth:`observe` leave the prior at
            ``N(0, I)`` (HGN passes ``config.prior_warmup_steps``).
        momentum: the weight of the old moments in each update (0.99: about the last 100
            batches count).
        jitter: added to the covariance's diagonal before its Cholesky factor is taken.

    Example:
        >>> prior = MatchedGaussianPrior((1, 2, 2), momentum=0.0)
        >>> mean = torch.tensor([[1.0, 2, 3, 4], [3, 2, 1, 0]]).reshape(2, 1, 2, 2)
        >>> logvar = torch.zeros(2, 1, 2, 2)
        >>> prior.observe(mean, logvar)       # momentum 0: the moments of this batch
        >>> prior.loc.tolist()
        [2.0, 2.0, 2.0, 2.0]
        >>> [round(v, 3) for v in prior.covariance.diagonal().tolist()]  # Cov(μ) + E[σ²]
        [2.0, 1.0, 2.0, 5.0]
        >>> prior.sample(3).shape
        torch.Size([3, 1, 2, 2])
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        warmup: int = 0,
        momentum: float = 0.99,
        jitter: float = 1e-6,
    ):
        super().__init__(shape)
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
            raise ValueError(f"warmup: expected an integer >= 0, got {warmup!r}")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        if not (isinstance(jitter, (int, float)) and jitter >= 0):
            raise ValueError(f"jitter: expected a number >= 0, got {jitter!r}")
        self.warmup, self.momentum, self.jitter = warmup, float(momentum), float(jitter)
        n = int(torch.Size(self.shape).numel())
        # E[μ] and E[μμᵀ + diag σ²] over the recent training posteriors (float64)
        self.register_buffer("first_moment", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("second_moment", torch.eye(n, dtype=torch.float64))
        self.register_buffer("batches_seen", torch.tensor(0))  # by observe, warm-up included

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written on 2026-12-06 before the count existed: a prior whose moments have
        # left N(0, I) is past its warm-up; one that has not is taken to be at its start.
        key = prefix + "batches_seen"
        if key not in state_dict and prefix + "first_moment" in state_dict:
            first, second = (
                state_dict[prefix + "first_moment"],
                state_dict[prefix + "second_moment"],
            )
            moved = bool(first.abs().max() > 0) or not torch.equal(second, torch.eye(len(first)))
            state_dict[key] = torch.tensor(self.warmup if moved else 0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def loc(self) -> Tensor:
        """The prior's mean ``m`` (float64)."""
        return self.first_moment

    @property
    def covariance(self) -> Tensor:
        """The prior's covariance ``Σ`` (float64), jitter included."""
        m = self.first_moment
        cov = self.second_moment - torch.outer(m, m)
        return cov + self.jitter * torch.eye(len(m), dtype=cov.dtype, device=cov.device)

    @property
    def scale_tril(self) -> Tensor:
        """``L``, the Cholesky factor of :attr:`covariance` (float64)."""
        tril, info = torch.linalg.cholesky_ex(self.covariance)
        if info != 0:
            raise FloatingPointError(
                "MatchedGaussianPrior: the running covariance is not positive definite; the "
                "posteriors it was matched to were probably not finite"
            )
        return tril

    @torch.no_grad()
    def observe(self, mean: Tensor, logvar: Tensor, reduce=None) -> None:
        """Count a training batch and, after the warm-up, move the moments toward those of
        its posteriors.

        ``reduce`` (as :class:`~hamflow_hgn.models.hgn.HGN` gets it from the trainer) averages
        the batch's moments over DDP processes, so every rank holds the same prior.
        """
        _check_posterior(mean, logvar, self.shape)
        mu = mean.detach().flatten(1).to(self.first_moment)
        var = logvar.detach().flatten(1).to(self.first_moment).exp()
        if not (torch.isfinite(mu).all() and torch.isfinite(var).all()):
            raise ValueError("observe: expected finite posteriors, got NaN or inf")
        self.batches_seen += 1
        if int(self.batches_seen) <= self.warmup:
            return
        first = mu.mean(0)
        second = mu.T @ mu / len(mu) + torch.diag(var.mean(0))
        if reduce is not None:
            packed = reduce(torch.cat([first[None], second]))
            first, second = packed[0], packed[1:]
        weight = 1.0 - self.momentum
        self.first_moment.lerp_(first, weight)
        self.second_moment.lerp_(second, weight)

    def kl(self, mean: Tensor, logvar: Tensor) -> Tensor:
        """``KL(q ‖ prior)`` per sequence, ``(B,)``: the sum of :meth:`kl_parts`."""
        width, shift = self.kl_parts(mean, logvar)
        return width + shift

    def kl_parts(self, mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        """``KL(N(mean, e^logvar) ‖ N(m, Σ))`` per sequence, as (width part, mean part)."""
        _check_posterior(mean, logvar, self.shape)
        dtype = mean.dtype
        tril64 = self.scale_tril
        # (Σ⁻¹)_jj = Σ_i (L⁻¹)_ij², so tr(Σ⁻¹ diag σ²) = σ² · that column sum.
        eye = torch.eye(len(tril64), dtype=tril64.dtype, device=tril64.device)
        precision_diag = torch.linalg.solve_triangular(tril64, eye, upper=False).square().sum(0)
        log_det = 2.0 * tril64.diagonal().log().sum()
        mu, lv = mean.flatten(1), logvar.flatten(1)
        n = mu.shape[1]
        width = 0.5 * (lv.exp() @ precision_diag.to(dtype) - n + log_det.to(dtype) - lv.sum(1))
        centred = (mu - self.loc.to(dtype)).T
        white = torch.linalg.solve_triangular(tril64.to(dtype), centred, upper=False)
        return width, 0.5 * white.square().sum(0)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` draws ``m + L ε`` of ``z``, shape ``(n, *shape)``, on the prior's device."""
        eps = super().sample(n, generator=generator, dtype=torch.float64, device=device)
        eps = eps.flatten(1).to(self.first_moment.device)
        z = self.loc + eps @ self.scale_tril.T
        return z.reshape(n, *self.shape).to(dtype)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, warmup={self.warmup}, momentum={self.momentum}"


def make_prior(name: str, shape: tuple[int, ...], warmup: int = 0) -> StandardPrior:
    """The prior named ``name`` (a key of :data:`LATENT_PRIORS`) over ``z`` of ``shape``;
    ``warmup`` is the matched prior's (:class:`MatchedGaussianPrior`).

    Example:
        >>> type(make_prior("matched", (4, 4, 4))).__name__
        'MatchedGaussianPrior'
    """
    if name == "standard":
        return StandardPrior(shape)
    if name == "matched":
        return MatchedGaussianPrior(shape, warmup)
    raise ValueError(f"latent_prior: expected one of {sorted(LATENT_PRIORS)}, got {name!r}")
