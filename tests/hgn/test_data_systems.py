"""Physics of the HGN systems (paper Sec. 4): Hamilton's equations, conservation, sampling."""

import numpy as np
import pytest

from hamflow_hgn.data.simulate import (
    draw_initial,
    integrate,
    sequence_rng,
    simulate_chunk,
)
from hamflow_hgn.data.systems import SYSTEMS, get_system

NAMES = sorted(SYSTEMS)


def _initial(system, count=12, steps=31, dt=0.125, seed=0):
    rngs = [sequence_rng(seed, "train", i) for i in range(count)]
    return draw_initial(system, rngs, steps, dt)


@pytest.mark.parametrize("name", NAMES)
def test_vector_field_is_hamiltons_equations(name):
    """dq/dt = dH/dp and dp/dt = -dH/dq, against central differences of H (a sign flip fails)."""
    system = get_system(name)
    states = _initial(system, count=5)
    eps = 1e-6
    half = system.state_dim // 2
    grad = np.zeros_like(states)
    for k in range(system.state_dim):
        step = np.zeros(system.state_dim)
        step[k] = eps
        grad[:, k] = (system.hamiltonian(states + step) - system.hamiltonian(states - step)) / (
            2 * eps
        )
    expected = np.concatenate([grad[:, half:], -grad[:, :half]], axis=-1)
    got = system.vector_field_batch(states)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(system.vector_field(0.0, states[0]), got[0])


@pytest.mark.parametrize("name", NAMES)
def test_clean_trajectories_conserve_energy(name):
    """Stacked solve_ivp keeps each sequence's true H to 1e-6 relative over the sequence."""
    system = get_system(name)
    states = integrate(system, _initial(system), 0.125 * np.arange(31))
    energy = system.hamiltonian(states)
    drift = np.abs(energy - energy[:, :1]).max(1) / np.abs(energy[:, 0])
    assert drift.max() <= 1e-6, drift
    # and the trajectories actually move
    assert np.abs(states[:, -1] - states[:, 0]).max() > 0.1


@pytest.mark.parametrize("name", ["mass_spring", "pendulum"])
def test_initial_states_lie_on_the_sampled_circle(name):
    system = get_system(name)
    radius = np.hypot(*_initial(system, count=200).T)
    lo, hi = system.r_range
    assert radius.min() >= lo and radius.max() <= hi
    assert radius.max() - radius.min() > 0.5 * (hi - lo)


@pytest.mark.parametrize("name", ["two_body", "three_body"])
def test_n_body_initial_states(name):
    """Zero total momentum, centre of mass at the origin, bound, admissible."""
    system = get_system(name)
    x = _initial(system, count=50)
    q, p = system.split(x)
    np.testing.assert_allclose(p.reshape(50, system.n, 2).sum(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(q.reshape(50, system.n, 2).mean(1), 0.0, atol=1e-12)
    assert (system.hamiltonian(x) < 0).all()
    traj = integrate(system, x, 0.125 * np.arange(31))
    pos = system.positions(traj)
    dist = np.linalg.norm(pos[:, :, :, None] - pos[:, :, None], axis=-1)
    dist += np.eye(system.n) * 1e9
    assert dist.min() > 0.9 * system.min_separation


def test_noise_is_gaussian_with_the_system_std():
    for name in ("pendulum", "three_body"):
        system = get_system(name)
        clean, noisy = simulate_chunk(name, "train", 0, 40, seed=3, steps=31, dt=0.125)
        residual = (noisy.astype(np.float64) - clean).ravel()
        assert abs(residual.std() - system.noise_std) < 0.1 * system.noise_std
        assert abs(residual.mean()) < 0.1 * system.noise_std


def test_sequences_depend_only_on_seed_split_index():
    a = simulate_chunk("pendulum", "train", 0, 6, seed=0, steps=5, dt=0.125)
    b = simulate_chunk("pendulum", "train", 4, 6, seed=0, steps=5, dt=0.125)
    np.testing.assert_allclose(a[1][4:], b[1], atol=1e-6)  # same draws, other chunking
    c = simulate_chunk("pendulum", "test", 0, 6, seed=0, steps=5, dt=0.125)
    assert not np.array_equal(a[1], c[1])


def test_get_system_lists_known_names():
    with pytest.raises(ValueError, match="mass_spring.*pendulum.*three_body.*two_body.*'nope'"):
        get_system("nope")


def test_wrong_trailing_dimension_is_refused():
    with pytest.raises(ValueError, match="state_dim=12"):
        get_system("three_body").hamiltonian(np.zeros((3, 8)))


def test_paper_pendulum_never_swings_over_the_top_and_the_mgl_one_often_does():
    # docs/data.md: with 2mgl(1 - cos q) the highest sampled energy (5.83 on the r = 2.3 circle)
    # stays below the 4mgl = 6 of the top; with mgl(1 - cos q) about 32 % of states pass 2mgl.
    rng = np.random.default_rng(0)
    paper, mgl = get_system("pendulum"), get_system("pendulum_mgl")
    states = np.stack([paper.sample_initial(rng) for _ in range(20_000)])
    top = np.array([np.pi, 0.0])
    assert paper.hamiltonian(states).max() < paper.hamiltonian(top) == pytest.approx(6.0)
    assert 5.7 < paper.hamiltonian(states).max() < 5.83 + 1e-6
    over = (mgl.hamiltonian(states) > mgl.hamiltonian(top)).mean()
    assert 0.30 < over < 0.34
    assert mgl.hamiltonian(top) == pytest.approx(3.0)
    # the vector fields are the Hamiltonians' (dp/dt = -dH/dq)
    eps, s = 1e-6, np.array([0.7, 0.3])
    for system in (paper, mgl):
        dh = (system.hamiltonian(s + [eps, 0]) - system.hamiltonian(s - [eps, 0])) / (2 * eps)
        assert system.vector_field_batch(s[None])[0, 1] == pytest.approx(-dh, rel=1e-6)
