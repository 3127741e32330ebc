"""``encoder_frames``: the encoder sees the first frames, the loss covers every frame."""

import dataclasses

import pytest
import torch

from hamflow_hgn.config import ModelConfig, config_to_dict, model_config_from_dict
from hamflow_hgn.models.hgn import HGN


def test_the_encoder_sees_only_its_frames_and_the_loss_every_frame():
    torch.manual_seed(0)
    cfg = ModelConfig.reduced(4, frames=7, image_size=8, encoder_frames=3)
    assert cfg.input_frames == (0, 1, 2) and cfg.target_frames == tuple(range(7))
    model = HGN(cfg).eval()
    images = torch.rand(2, 7, 3, 8, 8)
    later = images.clone()
    later[:, 3:] = torch.rand_like(later[:, 3:])  # frames the encoder does not see
    mean, _ = model.encode(images)
    assert torch.equal(mean, model.encode(later)[0])
    earlier = images.clone()
    earlier[:, 2] = 1 - earlier[:, 2]  # a frame it does see
    assert not torch.allclose(mean, model.encode(earlier)[0])
    torch.manual_seed(1)
    loss, metrics = model(images)
    torch.manual_seed(1)
    _, moved = model(later)  # same noise, same state: only the later targets differ
    assert moved["mse"] != metrics["mse"]
    assert model.rollout(images, 20).frames.shape == (2, 21, 3, 8, 8)
    assert model_config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "overrides",
    [{"encoder_frames": 0}, {"encoder_frames": 8}, {"encoder_frames": 3, "protocol": "predict"}],
)
def test_bad_encoder_frames_are_refused(overrides):
    with pytest.raises(ValueError, match="encoder_frames: expected"):
        ModelConfig.reduced(4, frames=7, image_size=8, **overrides)


def test_latent_consistency_asks_the_rollout_to_follow_the_encoder(monkeypatch):
    torch.manual_seed(0)
    base = ModelConfig.reduced(4, frames=7, image_size=8, encoder_frames=3)
    images = torch.rand(2, 7, 3, 8, 8)
    plain = HGN(base).train()
    weighted = HGN(dataclasses.replace(base, latent_consistency=0.5)).train()
    weighted.load_state_dict(plain.state_dict())
    monkeypatch.setattr(torch, "randint", lambda low, high, size: torch.tensor(2))
    noise = lambda shape, dtype, device: torch.zeros(shape, dtype=dtype)  # noqa: E731
    loss0, m0 = plain(images, noise=noise)
    loss1, m1 = weighted(images, noise=noise)
    assert "consistency" not in m0
    # by hand: the rollout's state at t = 2 against the encoder's state of frames 2-4
    q0, p0, _, _ = plain.initial_state(images, sample=False)
    qs, ps = plain.integrate(q0, p0, 6)
    mean, _ = plain.encoder(images[:, 2:5].flatten(1, 2))
    target = torch.cat([x.flatten(1) for x in plain.state_from_z(mean)], 1)
    state = torch.cat([qs[2].flatten(1), ps[2].flatten(1)], 1)
    expected = ((state - target).square().sum(1).mean() / target.var(0).sum()).detach()
    assert float(m1["consistency"]) == pytest.approx(float(expected), rel=1e-4)
    lam = float(plain.geco.lagrange)
    assert float(loss1) == pytest.approx(float(loss0) + 0.5 * lam * float(expected), rel=1e-4)
    # the term's gradient reaches the Hamiltonian (it shapes the dynamics, not only the encoder)
    weighted.zero_grad()
    q0, p0, _, _ = weighted.initial_state(images, sample=False)
    weighted._consistency(images, *weighted.integrate(q0, p0, 6)).backward()
    grads = [p.grad for p in weighted.hamiltonian.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().max()) > 0 for g in grads)
    weighted.eval()
    assert "consistency" not in weighted(images, noise=noise)[1]  # a training term only


@pytest.mark.parametrize(
    "overrides",
    [
        {"latent_consistency": 1.0},  # no encoder_frames
        {"latent_consistency": 1.0, "encoder_frames": 7},  # no window past the first
        {"latent_consistency": -1.0, "encoder_frames": 3},
        {"latent_consistency": float("nan"), "encoder_frames": 3},
    ],
)
def test_bad_latent_consistency_is_refused(overrides):
    with pytest.raises(ValueError, match="latent_consistency: "):
        ModelConfig.reduced(4, frames=7, image_size=8, **overrides)


def test_the_consistency_target_is_fixed(monkeypatch):
    """The encoder's state of the later window is a target: no gradient reaches the frames
    that only it reads (frames >= encoder_frames), nor the encoder through it."""
    torch.manual_seed(3)
    cfg = ModelConfig.reduced(4, frames=7, image_size=8, encoder_frames=3, latent_consistency=1.0)
    model = HGN(cfg).train()
    monkeypatch.setattr(torch, "randint", lambda low, high, size: torch.tensor(3))
    images = torch.rand(2, 7, 3, 8, 8, requires_grad=True)
    q0, p0, _, _ = model.initial_state(images, sample=False)
    model._consistency(images, *model.integrate(q0, p0, 6)).backward()
    assert images.grad[:, :3].abs().max() > 0  # through the rollout's first state
    assert torch.equal(images.grad[:, 3:], torch.zeros_like(images.grad[:, 3:]))
