"""Rollout diagnostics: periods against closed forms, the encoder orbit, nearest distances."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ellipk

from hamflow_hgn.config import ModelConfig
from hamflow_hgn.data.systems import get_system
from hamflow_hgn.diagnostics import (
    encoder_orbit,
    nearest_distance,
    oscillation_period,
    true_period,
)
from hamflow_hgn.models.hgn import HGN


@settings(max_examples=40, deadline=None)
@given(
    period=st.floats(1.0, 4.0),
    dim=st.integers(2, 40),
    ratio=st.floats(0.2, 5.0),
    phase=st.floats(0, 2 * math.pi),
    seed=st.integers(0, 2**16),
)
def test_period_of_an_ellipse_embedded_anywhere(period, dim, ratio, phase, seed):
    dt = 0.125
    steps = int(3 * period / dt)  # three periods or more
    t = torch.arange(steps + 1, dtype=torch.float64) * dt
    w = 2 * math.pi / period
    plane = torch.stack([torch.cos(w * t + phase), ratio * torch.sin(w * t + phase)], -1)
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=gen, dtype=torch.float64))
    states = (plane @ basis.T + torch.randn(dim, generator=gen, dtype=torch.float64))[None]
    got = float(oscillation_period(states.view(1, steps + 1, dim), dt)[0])
    assert got == pytest.approx(period, rel=0.01)
    backwards = float(oscillation_period(states.flip(1), dt)[0])  # either sense of rotation
    assert backwards == pytest.approx(got, rel=1e-9)


@pytest.mark.parametrize("amplitude", [0.3, 1.3, 2.3])
def test_true_period_of_the_pendulum_is_the_elliptic_integral(amplitude):
    pendulum = get_system("pendulum")  # q'' = -6 sin q: ω0 = sqrt(6)
    omega0 = math.sqrt(pendulum.potential_factor * pendulum.g / pendulum.l)
    exact = 4 * ellipk(math.sin(amplitude / 2) ** 2) / omega0
    got = float(true_period(pendulum, np.array([[amplitude, 0.0]]), 0.125, 200)[0])
    assert got == pytest.approx(exact, rel=0.01)


def test_a_state_that_does_not_turn_has_no_finite_period():
    still = torch.zeros(1, 10, 3)
    still[..., 0] = torch.arange(10.0)  # a straight line
    assert float(oscillation_period(still, 0.1)[0]) > 1e3
    with pytest.raises(ValueError, match="states: expected"):
        oscillation_period(torch.zeros(1, 2, 3), 0.1)
    with pytest.raises(ValueError, match="dt: expected a positive number"):
        oscillation_period(torch.zeros(1, 5, 3), 0.0)


def test_encoder_orbit_encodes_each_shifted_window():
    torch.manual_seed(0)
    model = HGN(ModelConfig.reduced(4, frames=4, image_size=8)).eval()
    frames = torch.rand(2, 10, 3, 8, 8)
    q, p = encoder_orbit(model, frames, 6)
    for t in (0, 3, 6):
        q_t, p_t, _, _ = model.initial_state(frames[:, t : t + 4], sample=False)
        assert torch.equal(q[:, t], q_t) and torch.equal(p[:, t], p_t)
    q1, _ = encoder_orbit(model, frames[:, 1:], 5)
    assert torch.equal(q1, q[:, 1:])
    with pytest.raises(ValueError, match="frames: expected"):
        encoder_orbit(model, frames, 7)


def test_nearest_distance_is_the_brute_force_minimum():
    gen = torch.Generator().manual_seed(1)
    states, ref = torch.randn(37, 5, generator=gen), torch.randn(50, 5, generator=gen)
    brute = torch.tensor([min(float((s - r).norm()) for r in ref) for s in states])
    assert torch.allclose(nearest_distance(states, ref, chunk=8), brute, atol=1e-5)
    assert nearest_distance(ref, ref).abs().max() < 1e-5
    with pytest.raises(ValueError, match="reference: expected states of 5"):
        nearest_distance(states, torch.zeros(3, 4))


def test_reanchored_rollout_goes_on_from_its_own_frames_re_encoded():
    from hamflow_hgn.diagnostics import reanchored_rollout

    torch.manual_seed(2)
    model = HGN(ModelConfig.reduced(4, frames=5, image_size=8)).eval()
    images = torch.rand(3, 5, 3, 8, 8)
    frames = reanchored_rollout(model, images, 13)
    assert frames.shape == (3, 14, 3, 8, 8)
    plain = model.rollout(images, 13).frames
    assert torch.allclose(frames[:, :5], plain[:, :5])
    # frames 5-8 go on from the state the encoder reads off drawn frames 0-4
    q, p, _, _ = model.initial_state(frames[:, 0:5], sample=False)
    assert torch.allclose(frames[:, 5:9], model.rollout_from(q, p, 8).frames[:, 5:9], atol=1e-6)
    q, p, _, _ = model.initial_state(frames[:, 4:9], sample=False)  # frames 9-12 from 4-8
    assert torch.allclose(frames[:, 9:13], model.rollout_from(q, p, 8).frames[:, 5:9], atol=1e-6)
    assert (frames[:, 9:] - plain[:, 9:]).abs().max() > 1e-5  # not the plain rollout
    with pytest.raises(ValueError, match="model: expected the 'reconstruct' protocol"):
        predict = HGN(ModelConfig.reduced(4, frames=5, image_size=8, protocol="predict",
                                          predict_k=2))  # fmt: skip
        reanchored_rollout(predict, images, 8)
