"""``confinement``: the learned H plus c/2 (|q|^2 + |p|^2), off by default (the paper's H)."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow.hamiltonians import autograd_grad
from hamflow_hgn.config import ModelConfig, config_to_dict, model_config_from_dict
from hamflow_hgn.models.hgn import HGN
from hamflow_hgn.models.networks import ConfinedEnergy, ConvEnergy

DTYPES = [torch.float32, torch.float64]


def _pair(c: float, dtype=torch.float32) -> tuple[HGN, HGN]:
    """A plain HGN and a confined one with the same weights."""
    torch.manual_seed(0)
    base = ModelConfig.reduced(4, frames=5, image_size=8, state_channels=2)
    plain = HGN(base).to(dtype)
    confined = HGN(dataclasses.replace(base, confinement=c)).to(dtype)
    state = {
        k.replace("hamiltonian.kinetic.", "hamiltonian.kinetic.net.").replace(
            "hamiltonian.potential.", "hamiltonian.potential.net."
        ): v
        for k, v in plain.state_dict().items()
    }
    confined.load_state_dict(state)
    return plain, confined


def test_off_by_default_so_the_paper_hamiltonian_is_unchanged():
    assert ModelConfig().confinement == 0 and ModelConfig.paper().confinement == 0
    model = HGN(ModelConfig.reduced(4, frames=5, image_size=8))
    assert type(model.hamiltonian.kinetic) is ConvEnergy
    assert type(model.hamiltonian.potential) is ConvEnergy
    keys = [k for k in model.state_dict() if k.startswith("hamiltonian.")]
    assert keys and not any(".net." in k for k in keys)  # old checkpoints still load


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_well_adds_c_half_the_squared_norm_to_h_and_c_x_to_its_gradients(dtype):
    c = 1.7
    plain, confined = _pair(c, dtype)
    q = torch.randn(3, 2, 4, 4, dtype=dtype)
    p = torch.randn(3, 2, 4, 4, dtype=dtype)
    well = 0.5 * c * (q.square().flatten(1).sum(1) + p.square().flatten(1).sum(1))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    h_plain, h = plain.hamiltonian.energy(q, p), confined.hamiltonian.energy(q, p)
    assert h.dtype == dtype
    torch.testing.assert_close(h, h_plain + well, **tol)
    torch.testing.assert_close(
        confined.hamiltonian.grad_q(q, p), plain.hamiltonian.grad_q(q, p) + c * q, **tol
    )
    torch.testing.assert_close(
        confined.hamiltonian.grad_p(q, p), plain.hamiltonian.grad_p(q, p) + c * p, **tol
    )
    # the closed-form gradient is autograd's
    kinetic = confined.hamiltonian.kinetic
    torch.testing.assert_close(kinetic.grad(p), autograd_grad(kinetic, p), **tol)


def test_the_loss_and_the_hamiltonians_gradient_change_with_the_well():
    plain, confined = _pair(2.0)
    images = torch.rand(2, 5, 3, 8, 8)
    noise = lambda shape, dtype, device: torch.zeros(shape, dtype=dtype)  # noqa: E731
    loss0, m0 = plain(images, noise=noise)
    loss1, m1 = confined(images, noise=noise)
    assert float(m0["kl"]) == pytest.approx(float(m1["kl"]))  # same encoder, same posterior
    assert float(m0["mse"]) != pytest.approx(float(m1["mse"]), rel=1e-6)  # other dynamics
    loss1.backward()
    grads = [p.grad for p in confined.hamiltonian.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().max()) > 0 for g in grads)


@settings(max_examples=10, deadline=None)
@given(c=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_the_well_alone_turns_the_state_at_angular_frequency_c(c, seed):
    """With the learned energies at zero, H = c/2 (|q|^2 + |p|^2): every (q_i, p_i) turns at
    the angular frequency c, so a rollout returns to its start after a period 2 pi / c."""
    torch.manual_seed(seed)
    dt = 0.01
    cfg = ModelConfig.reduced(4, frames=5, image_size=8, state_channels=2, confinement=c, dt=dt)
    model = HGN(cfg).double()
    for energy in (model.hamiltonian.kinetic, model.hamiltonian.potential):
        torch.nn.init.zeros_(energy.net.readout.weight)
    q0 = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    p0 = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    steps = round(2 * math.pi / c / dt)
    with torch.no_grad():
        qs, ps = model.integrate(q0, p0, steps)
    radius = (qs.square() + ps.square()).flatten(2).sum(2)
    assert float((radius / radius[0] - 1).abs().max()) < 0.01  # bounded: a circle
    scale = float(radius[0].max().sqrt())  # the period rounded to whole steps: < 0.015 rad off
    assert float((qs[-1] - q0).abs().max()) < 0.05 * scale  # back after a period
    half = round(math.pi / c / dt)
    assert float((qs[half] + q0).abs().max()) < 0.05 * scale  # opposite after half of one
    assert float((qs[half // 2] - q0).abs().max()) > 0.1 * scale  # and away in between


def test_a_confined_rollout_stays_bounded_far_past_its_start():
    """The learned energies grow at most linearly, so with the well the level set of H is
    bounded and a long rollout cannot run away; the bound is measured against the start."""
    _, confined = _pair(1.0, torch.float64)
    torch.manual_seed(1)
    q0 = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    p0 = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        qs, ps = confined.integrate(q0, p0, 800)
    energy = confined.energy(qs, ps).detach()
    assert float(((energy - energy[:, :1]) / energy[:, :1].abs()).abs().max()) < 0.05
    radius = (qs.square() + ps.square()).flatten(2).sum(2).sqrt()
    assert float((radius.max(0).values / radius[0]).max()) < 3.0


def test_the_option_round_trips_through_the_saved_config():
    cfg = ModelConfig.reduced(4, frames=5, image_size=8, confinement=1.8)
    assert model_config_from_dict(config_to_dict(cfg)) == cfg
    assert isinstance(HGN(cfg).hamiltonian.potential, ConfinedEnergy)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), "1"])
def test_bad_confinement_is_refused(value):
    with pytest.raises(ValueError, match="confinement: expected a finite number >= 0"):
        ModelConfig.reduced(4, frames=5, image_size=8, confinement=value)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_bad_strength_is_refused(value):
    with pytest.raises(ValueError, match="strength: expected a positive finite number"):
        ConfinedEnergy(ConvEnergy(2, width=4, layers=2), value)


def _example():
    path = Path(__file__).resolve().parents[2] / "examples" / "pendulum_hgn.py"
    spec = importlib.util.spec_from_file_location("pendulum_hgn_confinement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_keeps_the_papers_h_unless_asked():
    example = _example()
    args = example.parse_args([])
    assert (args.confinement, args.state_channels, args.latent_size) == (0.0, None, None)
    args = example.parse_args(
        ["--confinement", "1.8", "--state-channels", "1", "--latent-size", "1"]
    )
    assert (args.confinement, args.state_channels, args.latent_size) == (1.8, 1, 1)
    # the Hamiltonian's learning rate: the small preset's unless asked
    assert example.parse_args([]).hamiltonian_lr == example.SMALL.hamiltonian_lr
    assert example.parse_args(["--hamiltonian-lr", "1e-3"]).hamiltonian_lr == 1e-3
    assert example.parse_args([]).variant == "leapfrog"  # the paper's full HGN unless asked
    assert example.parse_args(["--variant", "deterministic"]).variant == "deterministic"
    for flag, bad in (("--confinement", "-1"), ("--confinement", "nan"), ("--latent-size", "0"),
                      ("--state-channels", "0"), ("--hamiltonian-lr", "0"),
                      ("--hamiltonian-lr", "inf"), ("--variant", "rk5")):  # fmt: skip
        with pytest.raises(SystemExit):
            example.parse_args([flag, bad])
