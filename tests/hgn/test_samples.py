"""hamflow_hgn.samples: the Gaussian fitted to HGN's training posteriors, and the score of how
close sequences are to the training data."""

from __future__ import annotations

import math

import pytest
import torch

from hamflow_hgn.config import ModelConfig
from hamflow_hgn.models.hgn import HGN
from hamflow_hgn.samples import LatentGaussian, nearest_sequence_ratio


class FixedEncoder(torch.nn.Module):
    """``encode`` returns the next of the given posteriors, one batch per call."""

    def __init__(self, posteriors):
        super().__init__()
        self.posteriors = list(posteriors)

    def encode(self, images):
        return self.posteriors.pop(0)


def _posteriors(n, shape, seed, stochastic=True):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, *shape, generator=g, dtype=torch.float64) * torch.arange(
        1, math.prod(shape) + 1, dtype=torch.float64
    ).reshape(shape)
    mean = mean + mean[:, :1]  # correlated dimensions
    logvar = torch.randn(n, *shape, generator=g, dtype=torch.float64) if stochastic else None
    return mean, logvar


@pytest.mark.parametrize("stochastic", [True, False])
def test_fit_matches_the_aggregate_posteriors_moments(stochastic):
    shape = (2, 2, 1)
    batches = [_posteriors(n, shape, seed, stochastic) for seed, n in enumerate((7, 5, 9))]
    model = FixedEncoder(batches)
    model.train()
    latent = LatentGaussian.fit(model, [None] * 3, jitter=1e-3)
    assert model.training  # the mode is put back
    mu = torch.cat([b[0] for b in batches]).flatten(1)
    expected = torch.cov(mu.T) + 1e-3 * torch.eye(4, dtype=torch.float64)
    if stochastic:
        expected += torch.diag(torch.cat([b[1] for b in batches]).flatten(1).exp().mean(0))
    torch.testing.assert_close(latent.mean, mu.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(latent.covariance, expected, rtol=1e-12, atol=1e-12)
    assert latent.shape == shape and int(latent.num_sequences) == 21


def test_samples_have_the_fitted_mean_and_covariance():
    model = FixedEncoder([_posteriors(50, (3,), 0)])
    latent = LatentGaussian.fit(model, [None])
    z = latent.sample(200_000, generator=torch.Generator().manual_seed(1))
    assert z.shape == (200_000, 3)
    scale = latent.covariance.diagonal().sqrt()
    assert ((z.mean(0) - latent.mean).abs() / scale).max() < 0.02
    rel = (torch.cov(z.T) - latent.covariance) / torch.outer(scale, scale)
    assert rel.abs().max() < 0.02
    assert latent.sample(0).shape == (0, 3)


def test_fit_refuses_bad_posteriors_and_too_few_sequences():
    one = _posteriors(1, (3,), 0)
    with pytest.raises(ValueError, match="at least two sequences"):
        LatentGaussian.fit(FixedEncoder([one]), [None])
    with pytest.raises(ValueError, match="at least two sequences"):
        LatentGaussian.fit(FixedEncoder([]), [])
    mean, logvar = _posteriors(4, (3,), 0)
    mean[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        LatentGaussian.fit(FixedEncoder([(mean, logvar)]), [None])
    # a deterministic encoder on fewer sequences than dimensions, without jitter: singular
    few = _posteriors(3, (5,), 0, stochastic=False)
    with pytest.raises(ValueError, match="positive definite"):
        LatentGaussian.fit(FixedEncoder([few]), [None], jitter=0.0)
    with pytest.raises(ValueError, match="jitter"):
        LatentGaussian.fit(FixedEncoder([few]), [None], jitter=-1.0)
    with pytest.raises(ValueError, match="n: expected"):
        LatentGaussian((3,)).sample(-1)


def test_hgn_sample_draws_z_from_the_given_gaussian():
    model = HGN(ModelConfig.reduced(8, image_size=8, frames=4)).eval()
    c = model.config
    shape = (c.z_channels, c.latent_size, c.latent_size)
    latent = LatentGaussian(shape)
    latent.mean.copy_(torch.linspace(-2, 2, latent.mean.numel(), dtype=torch.float64))
    latent.scale_tril.zero_()  # every draw is the mean
    out = model.sample(3, steps=2, latent=latent)
    q, p = model.state_from_z(latent.mean.float().reshape(1, *shape).expand(3, *shape))
    torch.testing.assert_close(out.q[:, 0], q)
    torch.testing.assert_close(out.p[:, 0], p)
    prior = model.sample(3, steps=2, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(prior.q[:, 0], q)
    with pytest.raises(ValueError, match="latent: expected a Gaussian over z of shape"):
        model.sample(2, latent=LatentGaussian((1, 2, 2)))


def test_fit_on_a_real_hgn_and_save_load():
    model = HGN(ModelConfig.reduced(8, image_size=8, frames=4))
    images = torch.rand(40, 4, 3, 8, 8)
    latent = LatentGaussian.fit(model, images.split(16))
    with torch.no_grad():
        mean, _ = model.eval().encode(images)
    torch.testing.assert_close(latent.mean.float(), mean.flatten(1).mean(0), rtol=1e-5, atol=1e-6)
    again = LatentGaussian(latent.shape)
    again.load_state_dict(latent.state_dict())
    torch.testing.assert_close(again.covariance, latent.covariance)


def test_nearest_sequence_ratio_by_hand():
    ref = torch.zeros(3, 1, 1, 1, 2)
    ref[1] += 1.0
    ref[2] += 2.0  # mean image 1.0: its MSE on ref is (1 + 0 + 1) / 3
    seqs = torch.stack([ref[1], ref[2] + 0.5, torch.full_like(ref[0], 0.25)])
    ratio = nearest_sequence_ratio(seqs, ref)
    torch.testing.assert_close(
        ratio, torch.tensor([0.0, 0.25, 0.0625], dtype=torch.float64) / (2 / 3)
    )
    mean_image = ref.mean(0, keepdim=True)  # the nearest reference is 0 away: ratio 0
    assert nearest_sequence_ratio(mean_image, ref).item() == 0.0


def test_nearest_sequence_ratio_refuses_bad_input():
    ref = torch.rand(4, 3, 1, 2, 2)
    with pytest.raises(ValueError, match="expected \\(N, S, C, H, W\\)"):
        nearest_sequence_ratio(ref[0], ref)
    with pytest.raises(ValueError, match="shaped like the reference"):
        nearest_sequence_ratio(ref[:, :2], ref)
    bad = ref.clone()
    bad[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        nearest_sequence_ratio(bad, ref)
    with pytest.raises(ValueError, match="at least two"):
        nearest_sequence_ratio(ref, ref[:1])
