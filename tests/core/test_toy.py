"""hamflow.toy: samplers match log-densities, entropies are right, errors are clear."""

import math

import normflows as nf
import pytest
import torch

from hamflow.toy import TOY_DENSITIES, get_density

NAMES = sorted(TOY_DENSITIES)


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_integrates_to_one(name):
    d = get_density(name)
    x, area = d.grid(400)
    mass = d.log_prob(x).exp().sum().item() * area
    assert abs(mass - 1.0) < 1e-3, f"{name}: mass {mass}"


@pytest.mark.parametrize("name", NAMES)
def test_samples_match_log_prob(name):
    """The mean log-density of fresh samples is -entropy (grid), within 5 standard errors."""
    d = get_density(name)
    lp = d.log_prob(d.sample(20_000, seed=3, dtype=torch.float64))
    stderr = lp.std().item() / math.sqrt(len(lp))
    grid_h = d.entropy("grid", resolution=600).value
    assert abs(-lp.mean().item() - grid_h) < 5 * stderr + 2e-3


@pytest.mark.parametrize("name", NAMES)
def test_sample_determinism_and_dtype(name):
    d = get_density(name)
    a, b = d.sample(500, seed=7), d.sample(500, seed=7)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, d.sample(500, seed=8))
    x64 = d.sample(10, seed=0, dtype=torch.float64)
    assert x64.dtype == torch.float64 and d.log_prob(x64).dtype == torch.float64
    assert torch.isfinite(d.log_prob(x64)).all()


def test_eight_gaussians_entropy_matches_closed_form():
    # Well-separated equal-weight modes: H = ln 8 + ln(2 pi e sigma^2), sigma = 0.1.
    expected = math.log(8) + math.log(2 * math.pi * math.e * 0.01)
    assert abs(expected - 0.312) < 1e-3
    h = get_density("eight_gaussians").entropy(num_samples=50_000)
    assert h.method == "monte_carlo" and abs(h.value - expected) < 4 * h.stderr + 1e-3
    assert abs(get_density("eight_gaussians").entropy("grid").value - expected) < 2e-3


def test_two_moons_is_marked_numerical():
    d = get_density("two_moons")
    assert not d.exact and d.entropy().method == "grid"


@pytest.mark.parametrize(
    "name, ref",
    [
        ("ring_mixture", nf.distributions.target.RingMixture()),
        ("two_moons", nf.distributions.target.TwoMoons()),
        ("circular_gmm", nf.distributions.target.CircularGaussianMixture()),
    ],
)
def test_matches_normflows_targets_up_to_a_constant(name, ref):
    x = 2 * torch.randn(64, 2, dtype=torch.float64)
    diff = get_density(name).log_prob(x) - ref.double().log_prob(x)
    assert diff.std().item() < 1e-5


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"density: expected one of .*eight_gaussians.*'nope'"):
        get_density("nope")
    d = get_density("eight_gaussians")
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        d.sample(0)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 2\)"):
        d.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="method"):
        d.entropy("exact")
    with pytest.raises(TypeError, match="seed"):
        d.sample(3, seed=1.5)


def test_grid_gaussians_entropy():
    # Nine equal, well-separated modes (spacing 1.5 = 7.5 sigma): H = ln 9 + ln(2 pi e sigma^2).
    expected = math.log(9) + math.log(2 * math.pi * math.e * 0.04)
    h = get_density("grid_gaussians").entropy(num_samples=50_000)
    assert abs(h.value - expected) < 4 * h.stderr + 1e-3


def test_checkerboard_is_uniform_on_its_dark_squares():
    d = get_density("checkerboard")
    assert d.entropy().value == pytest.approx(math.log(32), abs=1e-12)  # 8 squares of side 2
    # lower-left square (column 0, row 0) is dark, its right neighbour light, off the board empty
    lp = d.log_prob(torch.tensor([[-3.0, -3.0], [-1.0, -3.0], [-3.0, -1.0], [-1.0, -1.0],
                                  [4.5, 0.5], [0.5, 0.5]]))  # fmt: skip
    assert lp[[0, 3, 5]].tolist() == pytest.approx([-math.log(32)] * 3)
    assert torch.isneginf(lp[[1, 2, 4]]).all()
    x = d.sample(8000, seed=1)
    square = ((x + 4) // 2).long()
    counts = torch.bincount(square[:, 0] + 4 * square[:, 1], minlength=16)
    assert (counts[[1, 3, 4, 6, 9, 11, 12, 14]] == 0).all()  # no sample on a light square
    assert counts.max() < 1.15 * counts[counts > 0].min()  # the dark ones equally often


def test_banana_entropy_is_the_unbent_gaussians():
    d = get_density("banana")
    expected = math.log(2 * math.pi * math.e * d.s1 * d.s2)
    h = d.entropy(num_samples=100_000)
    assert abs(h.value - expected) < 4 * h.stderr
    # the bend moves mass off the x1 axis: at x1 = ±2 the mode sits at b (4 - s1²), not at 0
    x2 = torch.linspace(-1, 3, 401)
    x = torch.stack([torch.full_like(x2, 2.0), x2], -1)
    assert x2[d.log_prob(x).argmax()].item() == pytest.approx(d.bend * (4 - d.s1**2), abs=0.01)
