"""Tracking (issue 10, goal 1): does a rollout draw the bodies where the truth has them?"""

import math

import pytest
import torch

from hamflow_hgn.data import DataConfig, generate, open_dataset
from hamflow_hgn.data.dataset import render_states
from hamflow_hgn.data.render import BACKGROUND, world_to_pixel
from hamflow_hgn.data.systems import get_system
from hamflow_hgn.tracking import (
    body_radius_px,
    centroid_error,
    foreground_centroids,
    summarize,
    tracking,
)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    """Eight rendered pendulum sequences of 6 frames at 16×16, and their dataset."""
    cfg = DataConfig("pendulum", n_train=2, n_test=8, steps=6, size=16)
    root = generate(cfg, tmp_path_factory.mktemp("tracking"), workers=1, progress=False)
    data = open_dataset(root, "test")
    return data, data.render_batch(range(8))


def _blank(images):
    return torch.tensor(BACKGROUND).view(1, 1, 3, 1, 1).expand_as(images).clone()


def test_the_truth_tracks_itself_and_the_centroid_is_the_bob(pendulum):
    data, images = pendulum
    assert float(centroid_error(images, images).abs().max()) == 0.0
    exact = {"error_px": 0.0, "frames": 1.0, "sequences": 1.0}
    assert tracking(images, images, radius=1.0) == exact


def test_the_centroid_is_where_the_bob_is_rendered():
    system, size = get_system("pendulum"), 16
    angles = torch.linspace(-1.2, 1.2, 9, dtype=torch.float64)
    states = torch.stack((angles, torch.zeros_like(angles)), -1)[None]  # (1, 9, 2)
    frames = render_states(states, system, size)
    background = frames.flatten(-2).median(-1).values[..., None, None]
    centre, _ = foreground_centroids(frames, background)  # one body: (1, 9, 1, 2)
    col_row = world_to_pixel(torch.as_tensor(system.positions(states))[..., 0, :], system, size)
    expected = col_row.flip(-1).float() - 0.5  # (row, col), pixel k's centre at k + 0.5
    assert torch.allclose(centre[:, :, 0], expected, atol=0.1)


@pytest.mark.parametrize("name", ["two_body", "three_body_big_discs"])
def test_each_body_is_found_by_its_colour(tmp_path, name):
    # Generated (admissible) sequences: every body on the canvas. Frames where two discs
    # touch share pixels between them, so only well-separated frames are compared.
    root = generate(DataConfig(name, n_train=2, n_test=4, steps=4, size=32), tmp_path,
                    workers=1, progress=False)  # fmt: skip
    data = open_dataset(root, "test")
    frames = data.render_batch(range(4))
    colors = torch.tensor(data.system.colors)
    background = torch.tensor(BACKGROUND).view(3, 1, 1)
    centre, mass = foreground_centroids(frames, background, colors=colors)
    positions = torch.as_tensor(data.system.positions(data.states))  # (4, 4, K, 2)
    expected = world_to_pixel(positions, data.system, 32).flip(-1) - 0.5
    gaps = (positions[:, :, :, None] - positions[:, :, None]).norm(dim=-1)
    gaps = gaps + 1e9 * torch.eye(positions.shape[2])
    apart = gaps.amin(dim=(-2, -1)) > 2.5 * data.system.disc_radius
    assert bool(apart.any()) and bool((mass > 0).all())
    assert torch.allclose(centre[apart], expected[apart].float(), atol=0.25)


def test_bodies_that_trade_places_are_not_tracked(tmp_path):
    # Two bodies drawn where the other one is: the same shapes, so the colour-blind centroid
    # barely moves (it weighs the two colours' distances to the background a little
    # differently); by colour, each body is as far off as the two are apart.
    system = get_system("two_body")
    root = generate(DataConfig("two_body", n_train=2, n_test=4, steps=4, size=32), tmp_path,
                    workers=1, progress=False)  # fmt: skip
    data = open_dataset(root, "test")
    states = torch.as_tensor(data.states)
    truth = render_states(states, system, 32)
    q, p = states[..., :4].view(4, 4, 2, 2), states[..., 4:]
    swapped = render_states(torch.cat((q.flip(2).flatten(-2), p), -1), system, 32)
    by_colour = centroid_error(swapped, truth, colors=torch.tensor(system.colors))
    apart = world_to_pixel(torch.as_tensor(system.positions(states)), system, 32)
    distance = (apart[:, :, 0] - apart[:, :, 1]).norm(dim=-1)
    assert torch.allclose(by_colour, distance.float(), rtol=0.05, atol=0.3)
    assert bool((centroid_error(swapped, truth) < 0.2 * by_colour).all())
    assert tracking(swapped, truth, radius=2.0, colors=system.colors)["sequences"] == 0.0


def test_a_shifted_rollout_is_off_by_its_shift_and_blur_costs_nothing(pendulum):
    _, images = pendulum
    # Two pixels to the right, inside the canvas: every frame is 2 px off, none tracked at 1.5.
    inner = images[:, :, :, :, 2:14]
    truth = torch.cat([_blank(images)[..., :2], inner, _blank(images)[..., 14:]], -1)
    shifted = torch.cat([_blank(images)[..., :4], inner, _blank(images)[..., 16:]], -1)
    shifted = shifted[..., :16]
    err = centroid_error(shifted, truth)
    assert torch.allclose(err, torch.full_like(err, 2.0), atol=1e-4)
    assert tracking(shifted, truth, radius=1.5)["frames"] == 0.0
    # A symmetric blur about the bob moves no centroid: a smeared but placed bob is tracked.
    kernel = torch.tensor([0.25, 0.5, 0.25])
    blurred = truth.flatten(0, 1)
    pad = torch.nn.functional.pad(blurred, (1, 1, 1, 1), mode="replicate")
    blurred = sum(k * pad[..., i : i + 16, 1:17] for i, k in enumerate(kernel))
    pad = torch.nn.functional.pad(blurred, (1, 1, 0, 0), mode="replicate")
    blurred = sum(k * pad[..., :, i : i + 16] for i, k in enumerate(kernel)).view_as(truth)
    assert float(centroid_error(blurred, truth).max()) < 0.05
    assert tracking(blurred, truth, radius=1.5)["sequences"] == 1.0


def test_a_blank_rollout_and_the_mean_image_do_not_track(pendulum):
    _, images = pendulum
    blank = centroid_error(_blank(images), images)
    assert torch.equal(blank, torch.full_like(blank, math.hypot(16, 16)))  # the worst score
    mean = images.mean(dim=(0, 1), keepdim=True).expand_as(images)
    assert tracking(mean, images, radius=1.5)["sequences"] == 0.0


def test_frames_without_a_truth_foreground_are_left_out():
    truth = torch.full((1, 3, 3, 8, 8), 0.9)
    truth[:, :2, :, 4, 4] = 0.1  # the body leaves the canvas at t = 2
    model = truth.clone()
    model[:, 2, :, 0, 0] = 0.1  # whatever the model draws there is not scored
    assert torch.isnan(centroid_error(model, truth)[0, 2])
    assert tracking(model, truth, radius=1.0) == {"error_px": 0.0, "frames": 1.0, "sequences": 1.0}
    assert summarize(torch.full((2, 3), math.nan), radius=1.0) is None
    with pytest.raises(ValueError, match="no frame has a foreground"):
        tracking(_blank(truth), _blank(truth), radius=1.0)


def test_a_frame_of_nan_scores_the_worst_error_not_nan(pendulum):
    data, images = pendulum
    model = images.clone()
    model[0, 1] = float("nan")  # a diverged rollout frame counts as drawing nothing
    for colors in (None, data.system.colors):
        err = centroid_error(model, images, colors=colors)
        assert float(err[0, 1]) == pytest.approx(math.hypot(16, 16))
        assert not bool(err.isnan().any())


def test_bad_input_is_refused():
    x = torch.zeros(2, 3, 3, 8, 8)
    with pytest.raises(ValueError, match=r"expected frames \(B, T, C, H, W\)"):
        centroid_error(x[0], x[0])
    with pytest.raises(ValueError, match="expected the same shape"):
        centroid_error(x, x[:, :2])
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="radius"):
            summarize(torch.zeros(2, 3), radius=bad)
    for bad in (-0.1, math.nan):
        with pytest.raises(ValueError, match="level"):
            centroid_error(x, x, level=bad)
    with pytest.raises(ValueError, match="colors: expected one colour of 3 channels"):
        centroid_error(x, x, colors=torch.ones(2, 4))
    with pytest.raises(ValueError, match="background: with colors"):
        foreground_centroids(x, torch.zeros(2, 3, 1, 1), colors=torch.ones(1, 3))


def test_body_radius_follows_the_system_and_the_image_size():
    assert body_radius_px(get_system("pendulum"), 16) == pytest.approx(1.5)
    assert body_radius_px(get_system("pendulum"), 32) == pytest.approx(3.0)
    big = get_system("three_body_big_discs")
    assert body_radius_px(big, 16) == pytest.approx(0.5 * 16 / (2 * big.extent))
