"""Samples of a trained HGN beyond the prior, and a score of how much they look like the data.

HGN's Fig. 8 (paper Sec. 4) draws ``z ~ N(0, I)`` and rolls it out. That shows the system only
when the training posteriors, taken together (the *aggregate posterior*), cover the unit prior.
At the scales this CPU allows they do not: the posterior means of the 256 latent dimensions
vary almost only along a few directions (8–27 of them carry 99 % of the variance, with
variances of 40–340 along the first), and each posterior is nearly a point (mean variance
0.0015–0.02); ``scripts/hgn_samples.py`` measures it (docs/hgn/). A prior draw is therefore
far from every training posterior in the directions the decoder has learned and lands near
the mean latent in the ones it uses.

:class:`LatentGaussian` fits a full-covariance Gaussian to the aggregate posterior of the
training sequences, after training, with no change to the model, and draws from it: *ex-post
density estimation* (Ghosh et al., 2020, "From variational to deterministic autoencoders").
:func:`nearest_sequence_ratio` scores any batch of sequences by their distance to the nearest
training sequence, in units of the mean image's error, so that prior samples, fitted samples and
real sequences compare on one scale.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["LatentGaussian", "nearest_sequence_ratio"]


class LatentGaussian(nn.Module):
    """A full-covariance Gaussian over HGN's latent ``z``, fitted to the aggregate posterior.

    :meth:`fit` encodes training sequences and matches the moments of the mixture of their
    posteriors ``q(z | x) = N(μ(x), σ²(x))``: mean ``E[μ]`` and covariance
    ``Cov(μ) + diag(E[σ²])`` (``Cov(μ)`` alone for the deterministic variant), plus
    ``jitter · I``. Pass it to :meth:`hamflow_hgn.models.hgn.HGN.sample` as ``latent``. Before
    :meth:`fit` it is the unit prior. Its buffers are saved with ``state_dict``.

    Args:
        shape: the shape of one ``z``, ``(channels, size, size)``.

    Example:
        >>> from hamflow_hgn.config import ModelConfig
        >>> from hamflow_hgn.models.hgn import HGN
        >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4)).eval()
        >>> latent = LatentGaussian.fit(model, [torch.rand(32, 4, 3, 8, 8)])
        >>> latent.sample(5).shape == (5, *latent.shape)
        True
        >>> model.sample(2, steps=3, latent=latent).frames.shape
        torch.Size([2, 4, 3, 8, 8])
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if not self.shape or any(s < 1 for s in self.shape):
            raise ValueError(f"shape: expected positive sizes, got {shape!r}")
        n = int(torch.Size(self.shape).numel())
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("scale_tril", torch.eye(n, dtype=torch.float64))
        self.register_buffer("num_sequences", torch.tensor(0))

    @classmethod
    @torch.no_grad()
    def fit(cls, model, batches: Iterable[Tensor], jitter: float = 1e-6) -> LatentGaussian:
        """Fit to the posteriors of every sequence in ``batches`` (each ``(B, T+1, C, H, W)``).

        ``model`` needs HGN's ``encode(images) -> (mean, logvar or None)``. Raises
        ``ValueError`` for fewer than two sequences, non-finite posteriors, or a covariance that
        is not positive definite even with ``jitter``.
        """
        if not (isinstance(jitter, (int, float)) and jitter >= 0):
            raise ValueError(f"jitter: expected a number >= 0, got {jitter!r}")
        was_training = model.training
        model.eval()
        means, variances, shape = [], [], None
        try:
            for images in batches:
                mean, logvar = model.encode(images)
                shape = tuple(mean.shape[1:])
                means.append(mean.flatten(1).double().cpu())
                if logvar is not None:
                    variances.append(logvar.flatten(1).double().exp().cpu())
        finally:
            model.train(was_training)
        if shape is None or sum(len(m) for m in means) < 2:
            raise ValueError("batches: expected at least two sequences to fit a covariance to")
        mu = torch.cat(means)
        cov = torch.cov(mu.T, correction=1).reshape(mu.shape[1], mu.shape[1])
        if variances:
            cov = cov + torch.diag(torch.cat(variances).mean(0))
        if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
            raise ValueError("LatentGaussian.fit: the encoder gave NaN or inf posteriors")
        cov = cov + jitter * torch.eye(len(cov), dtype=cov.dtype)
        tril, info = torch.linalg.cholesky_ex(cov)
        if info != 0:
            raise ValueError(
                "LatentGaussian.fit: the aggregate posterior's covariance is not positive "
                f"definite (deterministic variant with fewer sequences than the {len(cov)} "
                "latent dimensions?); fit on more sequences or pass a larger jitter"
            )
        out = cls(shape)
        out.mean.copy_(mu.mean(0))
        out.scale_tril.copy_(tril)
        out.num_sequences.fill_(len(mu))
        return out

    @property
    def covariance(self) -> Tensor:
        """The fitted covariance ``L Lᵀ`` (float64)."""
        return self.scale_tril @ self.scale_tril.T

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of ``z``, shape ``(n, *shape)``, float64 on the buffers' device."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n: expected an integer >= 0, got {n!r}")
        eps = torch.randn(
            n, len(self.mean), generator=generator, dtype=torch.float64,
            device=self.mean.device if generator is None else generator.device,
        )  # fmt: skip
        z = self.mean + eps.to(self.mean.device) @ self.scale_tril.T
        return z.reshape(n, *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, num_sequences={int(self.num_sequences)}"


@torch.no_grad()
def nearest_sequence_ratio(sequences: Tensor, reference: Tensor, chunk_size: int = 64) -> Tensor:
    """Per-pixel MSE of each sequence to its nearest ``reference`` sequence, over the mean
    image's MSE on ``reference``, shape ``(N,)``.

    ``sequences`` is ``(N, S, C, H, W)`` and ``reference`` ``(M, S, C, H, W)`` (the training
    sequences). The mean image is ``reference``'s mean over sequences, frame by frame; its MSE is
    what a model that draws no system scores. A real sequence that the reference set covers
    well scores near 0, a blank or blurred one near 1 or above. Comparing samples of a
    generative model with the same score for held-out real sequences says how plausible they
    look, in one number, without a trained critic.

    Example:
        >>> ref = torch.rand(10, 4, 3, 8, 8)
        >>> nearest_sequence_ratio(ref[:2], ref).tolist()
        [0.0, 0.0]
        >>> bool(nearest_sequence_ratio(ref.mean(0, keepdim=True), ref) < 1)
        True
    """
    for name, x in (("sequences", sequences), ("reference", reference)):
        if x.dim() != 5:
            raise ValueError(f"{name}: expected (N, S, C, H, W), got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if sequences.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"sequences: expected sequences shaped like the reference's "
            f"{tuple(reference.shape[1:])}, got {tuple(sequences.shape[1:])}"
        )
    if len(reference) < 2:
        raise ValueError("reference: expected at least two sequences")
    ref = reference.flatten(1).double()
    floor = (ref - ref.mean(0)).square().mean()
    best = []
    for chunk in sequences.flatten(1).double().split(chunk_size):
        d = torch.cdist(chunk, ref, compute_mode="donot_use_mm_for_euclid_dist")
        best.append(d.min(1).values.square() / ref.shape[1])
    return torch.cat(best) / floor
