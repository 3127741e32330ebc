"""``kl_warmup_steps``: the KL's weight in HGN's loss rises from 0 to full over the first steps
(KL annealing), off by default (the paper's loss)."""

import copy
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow_hgn.config import ModelConfig, config_to_dict, model_config_from_dict
from hamflow_hgn.models.hgn import HGN


def _fixed_noise(shape, dtype, device):
    return torch.linspace(-1.5, 1.5, int(torch.tensor(shape).prod())).reshape(shape).to(dtype)


def _loss(model: HGN, images: torch.Tensor, step: int) -> tuple[float, float]:
    """The loss and the KL of one call at ``step``, on a copy (GECO's state is left alone)."""
    loss, metrics = copy.deepcopy(model)(images, step, noise=_fixed_noise)
    return float(loss.detach()), float(metrics["kl"])


def test_off_by_default_so_the_paper_loss_is_unchanged():
    assert ModelConfig().kl_warmup_steps == 0 and ModelConfig.paper().kl_warmup_steps == 0


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_refuses_anything_but_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        ModelConfig(kl_warmup_steps=bad)


def test_round_trips_and_old_configs_load_without_it():
    cfg = ModelConfig.reduced(4, kl_warmup_steps=700)
    assert model_config_from_dict(config_to_dict(cfg)) == cfg
    old = config_to_dict(ModelConfig.reduced(4))
    old.pop("kl_warmup_steps")
    assert model_config_from_dict(old).kl_warmup_steps == 0


@settings(max_examples=8, deadline=None)
@given(
    warmup=st.integers(1, 50),
    step=st.integers(0, 120),
    variant=st.sampled_from(["leapfrog", "deterministic"]),
    balance=st.sampled_from(["calibrated", "geco", "fixed"]),
)
def test_the_loss_carries_the_kl_times_step_over_warmup_capped_at_one(
    warmup, step, variant, balance
):
    torch.manual_seed(0)
    base = ModelConfig.reduced(
        4,
        frames=4,
        image_size=8,
        variant=variant,
        kl_balance=balance,
        latent_prior="standard",
        geco_lambda_init=1.0,  # λ times the constraint of the KL's order: no float32 rounding
    )
    full = HGN(base).double()
    warm = HGN(dataclasses.replace(base, kl_warmup_steps=warmup)).double()
    warm.load_state_dict(full.state_dict())
    images = torch.rand(3, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1)).double()
    loss_full, kl = _loss(full, images, step)
    loss_warm, kl_warm = _loss(warm, images, step)
    assert kl_warm == pytest.approx(kl) and kl > 1e-3  # the KL itself is logged unweighted
    weight = min(1.0, step / warmup)
    assert loss_full - loss_warm == pytest.approx((1 - weight) * kl, rel=1e-4, abs=1e-4 * kl)
