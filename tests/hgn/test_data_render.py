"""The smooth-disc renderer (paper A.4): shapes, range, determinism and where the discs are."""

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
import torch

from hamflow_hgn.data.render import BACKGROUND, EDGE_FRACTION, alpha_masks, render, world_to_pixel
from hamflow_hgn.data.simulate import simulate_chunk
from hamflow_hgn.data.systems import SYSTEMS, get_system

NAMES = sorted(SYSTEMS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_range_and_determinism(name, dtype):
    system = get_system(name)
    states = torch.randn(2, 5, system.state_dim, dtype=dtype)
    images = render(system.positions(states), system, 16)
    assert images.shape == (2, 5, 3, 16, 16) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, render(system.positions(states), system, 16))
    # the frames of a batch are rendered exactly as one by one
    assert torch.equal(images[1, 3], render(system.positions(states[1, 3]), system, 16))


def test_background_is_not_black_and_disc_has_its_colour():
    system = get_system("pendulum")
    image = render(torch.tensor([[0.0, -1.0]]), system, 32)
    np.testing.assert_allclose(image[:, 0, 0].numpy(), BACKGROUND, atol=1e-6)
    assert min(BACKGROUND) > 0.2
    row, col = world_to_pixel(torch.tensor([0.0, -1.0]), system, 32).long().tolist()[::-1]
    np.testing.assert_allclose(image[:, row, col].numpy(), system.colors[0], atol=1e-6)


def test_edges_are_soft():
    system = get_system("mass_spring")
    alpha = alpha_masks(torch.zeros(1, 2), system, 64)
    partial = ((alpha > 0.02) & (alpha < 0.98)).sum()
    assert partial >= 2 * np.pi * system.disc_radius / (2 * system.extent / 64)  # a ring
    assert 0 < EDGE_FRACTION < 1


@lru_cache
def _noisy(name):
    return simulate_chunk(name, "test", 0, 4, seed=1, steps=31, dt=0.125)[1]


def _separated_frames(system, size):
    """Noisy simulated frames whose discs are all apart and fully inside the canvas."""
    noisy = _noisy(system.name)
    pos = system.positions(noisy.reshape(-1, system.state_dim).astype(np.float64))
    reach = system.disc_radius * (1 + EDGE_FRACTION) + 2 * (2 * system.extent / size)
    inside = (np.abs(pos) < system.extent - reach).all((-1, -2))
    dist = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1) + np.eye(system.n_bodies) * 99
    keep = inside & (dist.min((-1, -2)) > 2 * reach)
    assert keep.sum() >= 10
    return torch.from_numpy(pos[keep])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_disc_centroid_matches_projected_position(name, size):
    """Each disc's intensity-weighted centroid lies within 0.5 px of its projected position."""
    system = get_system(name)
    pos = _separated_frames(system, size)
    images = render(pos, system, size)
    weight = (images - torch.tensor(BACKGROUND).view(3, 1, 1)).abs().sum(-3)  # [F, H, W]
    centre = torch.arange(size, dtype=torch.float64) + 0.5
    cols, rows = centre.view(1, -1), centre.view(-1, 1)
    target = world_to_pixel(pos, system, size)  # [F, n, 2]
    reach_px = system.disc_radius * (1 + EDGE_FRACTION) * size / (2 * system.extent) + 1.5
    for body in range(system.n_bodies):
        tc, tr = target[:, body, 0].view(-1, 1, 1), target[:, body, 1].view(-1, 1, 1)
        window = ((cols - tc) ** 2 + (rows - tr) ** 2 < reach_px**2).double()
        w = weight.double() * window
        got_c = (w * cols).sum((-1, -2)) / w.sum((-1, -2))
        got_r = (w * rows).sum((-1, -2)) / w.sum((-1, -2))
        err = torch.hypot(got_c - tc.flatten(), got_r - tr.flatten())
        assert err.max() < 0.5, (body, err.max())
        # the same from the exact per-body opacity over the whole canvas
        a = alpha_masks(pos, system, size)[:, body].double()
        err_a = torch.hypot(
            (a * cols).sum((-1, -2)) / a.sum((-1, -2)) - tc.flatten(),
            (a * rows).sum((-1, -2)) / a.sum((-1, -2)) - tr.flatten(),
        )
        assert err_a.max() < 0.5


def test_world_to_pixel_orientation():
    """x grows to the right, y grows upwards (row 0 is the top)."""
    system = get_system("pendulum")
    px = world_to_pixel(torch.tensor([[1.0, 1.0]]), system, 32)[0]
    assert px[0] > 16 and px[1] < 16


def test_errors_name_the_argument():
    system = get_system("two_body")
    with pytest.raises(ValueError, match=r"positions: expected trailing shape .*\(2, 2\)"):
        render(torch.zeros(3, 1, 2), system, 32)
    with pytest.raises(ValueError, match="size: expected an int >= 8, got 4"):
        render(torch.zeros(2, 2), system, 4)
    with pytest.raises(TypeError, match="positions: expected torch.Tensor"):
        render(np.zeros((2, 2)), system, 32)


def test_three_body_big_discs_differs_from_three_body_only_in_disc_size():
    """The small-scale Table 1's three-body: the same dynamics, discs 0.5/0.3 wider."""
    small, big = get_system("three_body"), get_system("three_body_big_discs")
    assert dataclasses.replace(small, name=big.name, disc_radius=big.disc_radius) == big
    states = torch.from_numpy(big.sample_initial(np.random.default_rng(0))).float()[None]
    cover = [float(alpha_masks(big.positions(states), s, 16).sum()) for s in (small, big)]
    assert cover[1] / cover[0] == pytest.approx((0.5 / 0.3) ** 2, rel=0.25), cover
