"""The prior over HGN's z: the matched Gaussian's moments, KL and samples, and how HGN uses it."""

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from hamflow_hgn.config import ModelConfig
from hamflow_hgn.models.hgn import HGN
from hamflow_hgn.models.prior import MatchedGaussianPrior, StandardPrior, make_prior
from hamflow_hgn.train import _parser, config_from_args

SHAPE = (2, 2, 2)
N = 8


def random_posterior(batch: int = 5, seed: int = 1, shift: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    mean = shift + torch.randn(batch, *SHAPE, generator=gen, dtype=torch.float64)
    logvar = torch.randn(batch, *SHAPE, generator=gen, dtype=torch.float64)
    return mean, logvar


def random_prior(seed: int = 0) -> MatchedGaussianPrior:
    """A prior matched (momentum 0) to one batch of 20 correlated posteriors."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(N, N, generator=gen, dtype=torch.float64)
    mean = (torch.randn(20, N, generator=gen, dtype=torch.float64) @ mix + 0.5).reshape(20, *SHAPE)
    logvar = torch.randn(20, *SHAPE, generator=gen, dtype=torch.float64) - 1.0
    prior = MatchedGaussianPrior(SHAPE, momentum=0.0)
    prior.observe(mean, logvar)
    return prior


def test_observe_matches_the_aggregate_posterior_moments():
    mean, logvar = random_posterior(batch=7)
    prior = MatchedGaussianPrior(SHAPE, momentum=0.0, jitter=0.0)
    prior.observe(mean, logvar)
    mu = mean.flatten(1)
    expected = torch.cov(mu.T, correction=0) + torch.diag(logvar.flatten(1).exp().mean(0))
    torch.testing.assert_close(prior.loc, mu.mean(0))
    torch.testing.assert_close(prior.covariance, expected)


def test_observe_is_an_exponential_moving_average():
    a, b = random_posterior(seed=1), random_posterior(seed=2, shift=3.0)
    prior = MatchedGaussianPrior(SHAPE, momentum=0.75, jitter=0.0)
    prior.observe(*a)
    prior.observe(*b)
    ma, mb = a[0].flatten(1).mean(0), b[0].flatten(1).mean(0)
    expected = 0.75 * (0.75 * torch.zeros(N) + 0.25 * ma) + 0.25 * mb
    torch.testing.assert_close(prior.loc, expected.double())
    reduced = MatchedGaussianPrior(SHAPE, momentum=0.0)
    reduced.observe(*a, reduce=lambda x: 2 * x)  # what DDP's mean over ranks hands back
    torch.testing.assert_close(reduced.loc, 2 * ma)


def test_observe_refuses_non_finite_posteriors_and_keeps_its_state():
    prior = random_prior()
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    mean, logvar = random_posterior()
    mean[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="expected finite posteriors"):
        prior.observe(mean, logvar)
    for key, value in prior.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_matched_kl_matches_torch_distributions():
    prior = random_prior()
    mean, logvar = random_posterior()
    q = MultivariateNormal(mean.flatten(1), torch.diag_embed(logvar.flatten(1).exp()))
    p = MultivariateNormal(prior.loc, covariance_matrix=prior.covariance)
    expected = kl_divergence(q, p)
    got = prior.kl(mean, logvar)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_matched_kl_parts_split_width_and_mean():
    prior = random_prior()
    mean, logvar = random_posterior()
    width, shift = prior.kl_parts(mean, logvar)
    centred = prior.loc.reshape(1, *SHAPE).expand_as(mean)
    width_c, shift_c = prior.kl_parts(centred, logvar)
    torch.testing.assert_close(shift_c, torch.zeros_like(shift_c), atol=1e-12, rtol=0)
    torch.testing.assert_close(width_c, width)  # the width part does not see the mean
    torch.testing.assert_close(width + shift, prior.kl(mean, logvar))


def test_unobserved_matched_prior_is_the_standard_one():
    mean, logvar = random_posterior()
    matched, standard = MatchedGaussianPrior(SHAPE, jitter=0.0), StandardPrior(SHAPE)
    torch.testing.assert_close(matched.kl(mean, logvar), standard.kl(mean, logvar))
    for a, b in zip(matched.kl_parts(mean, logvar), standard.kl_parts(mean, logvar)):
        torch.testing.assert_close(a, b)


def test_matched_prior_samples_have_its_moments():
    prior = random_prior()
    z = prior.sample(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert z.shape == (200_000, *SHAPE)
    flat = z.flatten(1)
    cov = prior.covariance
    scale = cov.diagonal().sqrt()
    torch.testing.assert_close(flat.mean(0), prior.loc, atol=0.02 * scale.max(), rtol=0)
    err = (torch.cov(flat.T) - cov) / (scale[:, None] * scale[None, :])
    assert err.abs().max() < 0.02


def test_kl_refuses_a_posterior_of_another_shape():
    with pytest.raises(ValueError, match=r"expected two tensors of shape \(B, 2, 2, 2\)"):
        MatchedGaussianPrior(SHAPE).kl(torch.zeros(3, 8), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="latent_prior: expected one of"):
        make_prior("vamp", SHAPE)
    with pytest.raises(ValueError, match="latent_prior: expected one of"):
        ModelConfig.reduced(8, image_size=8, frames=4, latent_prior="vamp")


def small(**kw) -> ModelConfig:
    return ModelConfig.reduced(8, image_size=8, frames=4, latent_channels=2, **kw)


def test_hgn_matches_its_prior_to_training_batches_after_the_warmup():
    torch.manual_seed(0)
    model = HGN(small(latent_prior="matched", prior_warmup_steps=5))
    images = torch.rand(3, 4, 3, 8, 8)
    noise = torch.Generator().manual_seed(1)

    def draw(shape, dtype, device):
        return torch.randn(shape, generator=noise, dtype=dtype)

    for _ in range(5):  # the warm-up: the prior stays N(0, I)
        model(images, noise=draw)
    n = model.prior.loc.numel()  # 2 x 4 x 4
    torch.testing.assert_close(model.prior.loc, torch.zeros(n, dtype=torch.float64))
    torch.testing.assert_close(model.prior.second_moment, torch.eye(n, dtype=torch.float64))
    loss, metrics = model(images, noise=draw)
    mean, logvar = model.encode(images)
    reference = MatchedGaussianPrior(model.prior.shape)  # the KL is taken before the update
    torch.testing.assert_close(metrics["kl"], reference.kl(mean, logvar).mean().detach())
    reference.observe(mean, logvar)
    torch.testing.assert_close(model.prior.loc, reference.loc)
    torch.testing.assert_close(model.prior.covariance, reference.covariance)
    loss.backward()  # the update did not touch anything the backward pass needs
    assert next(model.encoder.parameters()).grad is not None
    assert int(model.prior.batches_seen) == 6
    model.eval()
    model(images)
    torch.testing.assert_close(model.prior.loc, reference.loc)  # evaluation leaves it alone


def test_hgn_samples_from_its_matched_prior():
    model = HGN(small(latent_prior="matched")).eval()
    with torch.no_grad():
        model.prior.first_moment.normal_()
        model.prior.second_moment.copy_(torch.outer(*(model.prior.first_moment,) * 2))
        model.prior.jitter = 1e-24  # a point mass at loc: every draw is the same z
    a = model.sample(2, steps=2, generator=torch.Generator().manual_seed(0)).frames
    b = model.sample(2, steps=2, generator=torch.Generator().manual_seed(1)).frames
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0], a[1])
    standard = HGN(small()).eval()
    c = standard.sample(2, steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert not torch.allclose(c[0], c[1])


def test_deterministic_variant_keeps_the_standard_prior():
    model = HGN(small(latent_prior="matched", variant="deterministic"))
    assert type(model.prior) is StandardPrior


def test_priors_in_the_state_dict():
    """The standard prior adds nothing to the state dict, so runs saved before it still load;
    the matched prior's moments are saved, so a resumed run goes on from them."""
    assert not any(key.startswith("prior.") for key in HGN(small()).state_dict())
    matched = HGN(small(latent_prior="matched"))
    assert {k for k in matched.state_dict() if k.startswith("prior.")} == {
        "prior.first_moment", "prior.second_moment", "prior.batches_seen"
    }  # fmt: skip


def test_trainer_cli_sets_the_prior():
    base = ["--data", "D", "--out", "R", "--width", "8"]
    model = config_from_args(_parser().parse_args(base)).model
    assert (model.latent_prior, model.prior_warmup_steps) == ("standard", 1500)
    args = _parser().parse_args([*base, "--latent-prior", "matched", "--prior-warmup-steps", "0"])
    model = config_from_args(args).model
    assert (model.latent_prior, model.prior_warmup_steps) == ("matched", 0)
    with pytest.raises(ValueError, match="prior_warmup_steps: expected an integer >= 0"):
        small(prior_warmup_steps=-1)


def test_a_state_without_the_batch_count_loads():
    """Checkpoints of the first matched prior (2026-12-06) had no count: a prior that has left
    N(0, I) is taken to be past its warm-up, one that has not to be at its start."""
    moved = random_prior().state_dict()
    del moved["batches_seen"]
    prior = MatchedGaussianPrior(SHAPE, warmup=7)
    prior.load_state_dict(moved)
    assert int(prior.batches_seen) == 7
    torch.testing.assert_close(prior.loc, moved["first_moment"])
    fresh = MatchedGaussianPrior(SHAPE, warmup=7).state_dict()
    del fresh["batches_seen"]
    prior = MatchedGaussianPrior(SHAPE, warmup=7)
    prior.load_state_dict(fresh)
    assert int(prior.batches_seen) == 0
