"""``encoder_frames``: the encoder sees the first frames, the loss covers every frame."""

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
