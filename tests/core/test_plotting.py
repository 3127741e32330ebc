"""hamflow.plotting: a density image never paints NaN or +inf as a finite density."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from hamflow.plotting import plot_log_density  # noqa: E402


def _log_prob_with_holes(x: torch.Tensor) -> torch.Tensor:
    """A standard normal, except NaN on the left half-plane and +inf in a corner."""
    lp = -0.5 * x.square().sum(-1) - np.log(2 * np.pi)
    lp = torch.where(x[:, 0] < 0, torch.full_like(lp, float("nan")), lp)
    return torch.where((x[:, 0] > 3) & (x[:, 1] > 3), torch.full_like(lp, float("inf")), lp)


def test_non_finite_log_densities_are_masked_and_counted():
    fig, ax = plt.subplots()
    plot_log_density(ax, _log_prob_with_holes, (-4.0, 4.0), "model", resolution=40)
    image = ax.get_images()[0].get_array()
    assert np.ma.isMaskedArray(image)
    mask = np.ma.getmaskarray(image)
    # the left half (x < 0) and the corner are masked; the rest is the normal's density
    assert 0.5 < mask.mean() < 0.6
    assert not mask[:, 20:].all() and mask[:, :20].all()
    finite = image.compressed()
    assert np.isfinite(finite).all() and finite.max() <= 1 / (2 * np.pi) + 1e-6
    assert "NaN/inf" in ax.get_title() and "%" in ax.get_title()
    plt.close(fig)


def test_a_finite_density_is_drawn_whole_with_its_title_unchanged():
    fig, ax = plt.subplots()
    plot_log_density(ax, lambda x: -0.5 * x.square().sum(-1), (-4.0, 4.0), "model", 20)
    image = ax.get_images()[0].get_array()
    assert not np.ma.getmaskarray(image).any()
    assert ax.get_title() == "model"
    plt.close(fig)
