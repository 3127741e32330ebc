"""The sampler's calibrated momentum density ``r(p | x)`` (``calibrate_momentum``): the weights
stay exact and unbiased at any width, the chosen width raises the ESS on independent draws, and
it is saved and loaded with the model."""

from __future__ import annotations

import math

import pytest
import torch
from test_sampling import Gauss, tiny

from hamflow import NHF, sampling
from hamflow.targets import Banana

F64 = torch.float64


@pytest.mark.parametrize("scale", [0.7, 1.1])
def test_weights_at_another_width_are_the_identity_and_unbiased(scale):
    """``ln w`` uses ``N(μ(q), (scale·σ(q))²)`` for ``r``, and ``E[w] = Z`` still (4 s.e.)."""
    target = Gauss(2, std=0.6, log_Z=1.5)
    model = tiny(2, target, kicks=False, scale=1.6)
    model.momentum_scale.fill_(scale)
    torch.manual_seed(2)
    d = sampling.extended_sample(model, 64)
    q = model.affine.inverse(d["x"])[0]
    mu, log_s = model.encoder.params(q)
    normal = torch.distributions.Normal(mu, scale * log_s.exp())
    assert torch.allclose(d["log_r"], normal.log_prob(d["p"]).sum(-1), atol=1e-9)
    torch.manual_seed(1)
    _, log_w = model.importance_sample(100000)
    z_hat = torch.exp(log_w.reshape(1000, 100) - target.log_Z).mean(1)
    mean, se = z_hat.mean().item(), z_hat.std().item() / math.sqrt(len(z_hat))
    assert se < 0.08
    assert abs(mean - 1) < 4 * se, (mean, se)


def test_calibration_narrows_a_too_wide_r_and_raises_the_ess_on_other_draws():
    """An untrained sampler's encoder is ``N(0, I)`` while its momenta given ``x`` are narrower
    (the drifts mix ``p`` into ``q``): the chosen width is below 1, and fresh draws, not the
    ones it was chosen on, have a higher ESS at that width than at the encoder's own. One
    momentum per draw (``n_momenta=1``), the extended-space weights, where the width matters
    most."""
    torch.manual_seed(0)
    model = NHF(2, num_flows=2, hidden=(8,), encoder_hidden=(8,), target=Gauss(2)).double()
    torch.manual_seed(1)
    chosen = sampling.calibrate_momentum(model, 4096, n_momenta=1)
    assert chosen < 1 and float(model.momentum_scale) == chosen
    torch.manual_seed(2)
    ess_chosen = model.ess(8000, n_momenta=1).item()
    model.momentum_scale.fill_(1.0)
    torch.manual_seed(2)
    ess_one = model.ess(8000, n_momenta=1).item()
    assert ess_chosen > ess_one + 0.02, (ess_chosen, ess_one)


def test_fit_sampler_calibrates_at_the_end_and_trains_at_the_encoders_width(monkeypatch):
    seen = []
    original = sampling.reverse_kld

    def recording(model, num_samples, **kwargs):
        seen.append(float(model.momentum_scale))
        return original(model, num_samples, **kwargs)

    monkeypatch.setattr(sampling, "reverse_kld", recording)
    model = tiny(2, Banana(), kicks=False)
    model.momentum_scale.fill_(0.5)  # e.g. left by an earlier fit: training resets it
    info = sampling.fit_sampler(model, max_steps=5, batch=16, seed=0)
    assert seen == [1.0] * 5
    assert info["momentum_scale"] in sampling.MOMENTUM_SCALES
    assert float(model.momentum_scale) == info["momentum_scale"]
    seen.clear()
    model.momentum_scale.fill_(0.5)  # calibrate=False: a width set by hand is kept, and used
    info = sampling.fit_sampler(model, max_steps=2, batch=16, seed=0, calibrate=False)
    assert "momentum_scale" not in info and float(model.momentum_scale) == 0.5
    assert seen == [0.5] * 2


def test_the_width_is_saved_and_an_older_file_without_it_loads_at_one(tmp_path):
    torch.manual_seed(0)
    target = Banana()
    model = NHF(2, num_flows=2, hidden=(8,), encoder_hidden=(8,), target=target)
    model.momentum_scale.fill_(0.85)
    again = NHF.load(model.save(tmp_path / "sampler.pt"), target=target)
    assert float(again.momentum_scale) == 0.85
    state = {k: v for k, v in model.state_dict().items() if k != "momentum_scale"}
    again.load_state_dict(state)
    assert float(again.momentum_scale) == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 1}, "num_samples"),
        ({"scales": ()}, "scales"),
        ({"scales": (1.0, -0.5)}, "scales"),
    ],
)
def test_bad_calibration_arguments_are_refused(kwargs, match):
    model = tiny(2, Banana(), kicks=False)
    with pytest.raises(ValueError, match=match):
        sampling.calibrate_momentum(model, **kwargs)


@pytest.mark.parametrize("lr_end", [0.0, 1.5, float("nan")])
def test_fit_sampler_refuses_a_bad_lr_end(lr_end):
    model = tiny(2, Banana(), kicks=False)
    with pytest.raises(ValueError, match="lr_end"):
        sampling.fit_sampler(model, max_steps=1, lr_end=lr_end)


def test_calibration_needs_a_target():
    model = NHF(2, num_flows=1, hidden=(8,), encoder_hidden=(8,))
    with pytest.raises(ValueError, match="target"):
        sampling.calibrate_momentum(model)
