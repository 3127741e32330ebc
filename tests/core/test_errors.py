"""Bad input gets a ValueError (or TypeError) naming the argument and the value received.

The conventions: wrong trailing dimension, odd phase-space width, a non-finite value,
``dt == 0``, ``steps < 1``, an unknown integrator name (listing the known ones). Never NaN.
"""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import (
    INTEGRATORS,
    oscillator,
    separable,
    single_thread,  # noqa: F401  (autouse fixture)
)

from hamflow import (
    NHF,
    HamiltonianFlow,
    MLPEnergy,
    MLPHamiltonian,
    QuadraticEnergy,
    SeparableHamiltonian,
    SoftUniform,
)
from hamflow.integrators import get_integrator, integrate, rollout

NAN, INF = math.nan, math.inf


def check_message(info: pytest.ExceptionInfo, argument: str, *received: str) -> None:
    """The message names ``argument`` and shows at least one form of the received value."""
    message = str(info.value)
    assert argument in message, message
    if received:
        low = message.lower()
        assert any(r.lower() in low for r in received), message


def check_lists_integrators(info: pytest.ExceptionInfo) -> None:
    for name in INTEGRATORS:
        assert name in str(info.value), str(info.value)


def _flow(**kw) -> HamiltonianFlow:
    return HamiltonianFlow(separable(2, seed=0, dtype=torch.float32), **kw)


def _nhf(**kw) -> NHF:
    return NHF(2, **{"num_flows": 1, "hidden": (8,), "encoder_hidden": (8,), **kw})


# -- HamiltonianFlow --------------------------------------------------------------------------


def test_flow_wrong_trailing_dimension():
    with pytest.raises(ValueError) as info:
        _flow()(torch.zeros(3, 6))
    check_message(info, "z", "6")
    with pytest.raises(ValueError) as info:
        _flow().inverse(torch.zeros(3, 2))
    check_message(info, "z", "2")


def test_flow_odd_width():
    with pytest.raises(ValueError) as info:
        _flow()(torch.zeros(3, 5))
    check_message(info, "z", "5")
    check_message(info, "even")


@pytest.mark.parametrize("shape", [(4,), (2, 2, 4)])
def test_flow_wrong_rank(shape):
    with pytest.raises(ValueError) as info:
        _flow()(torch.zeros(shape))
    check_message(info, "z", str(shape))


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_flow_non_finite(bad, direction):
    z = torch.zeros(3, 4)
    z[1, 2] = bad
    with pytest.raises(ValueError) as info:
        getattr(_flow(), direction)(z)
    check_message(info, "z", "nan", "inf", "finite")


def test_flow_not_a_tensor():
    with pytest.raises(TypeError) as info:
        _flow()([[0.0, 0.0, 0.0, 0.0]])
    check_message(info, "z", "list")


@pytest.mark.parametrize("dt", [0.0, NAN, INF])
def test_flow_bad_dt(dt):
    with pytest.raises(ValueError) as info:
        _flow(dt=dt)
    check_message(info, "dt", repr(dt))


@pytest.mark.parametrize("steps", [0, -1])
def test_flow_bad_steps(steps):
    with pytest.raises(ValueError) as info:
        _flow(steps=steps)
    check_message(info, "steps", repr(steps))


def test_flow_unknown_integrator():
    with pytest.raises(ValueError) as info:
        _flow(integrator="verlet")
    check_message(info, "integrator", "'verlet'")
    check_lists_integrators(info)


def test_flow_wrong_width_with_quadratic_kinetic():
    H = SeparableHamiltonian(QuadraticEnergy(2), MLPEnergy(2, (8,)))
    with pytest.raises(ValueError) as info:
        HamiltonianFlow(H, dt=0.1)(torch.zeros(3, 6))
    check_message(info, "z", "6")


# -- NHF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["elbo", "log_prob", "forward_kld"])
def test_nhf_wrong_trailing_dimension(method):
    with pytest.raises(ValueError) as info:
        getattr(_nhf(), method)(torch.zeros(3, 3))
    check_message(info, "x", "(3, 3)")


@pytest.mark.parametrize("bad", [NAN, INF])
@pytest.mark.parametrize("method", ["elbo", "log_prob"])
def test_nhf_non_finite(method, bad):
    x = torch.zeros(3, 2)
    x[0, 1] = bad
    with pytest.raises(ValueError) as info:
        getattr(_nhf(), method)(x)
    check_message(info, "x", "nan", "inf", "finite")


@pytest.mark.parametrize("n", [0, -2])
def test_nhf_bad_num_samples(n):
    model = _nhf()
    calls = (lambda: model.sample(n),) if n < 0 else ()  # sample(0) is an empty batch
    for call in (
        *calls,
        lambda: model.log_prob(torch.zeros(3, 2), num_samples=n),
        lambda: model.elbo(torch.zeros(3, 2), num_samples=n),
        lambda: model.iwae(torch.zeros(3, 2), num_samples=n),
        lambda: model.forward_kld(torch.zeros(3, 2), num_samples=n),
    ):
        with pytest.raises(ValueError) as info:
            call()
        check_message(info, "num_samples", repr(n))
    with pytest.raises(ValueError) as info:
        _nhf(train_samples=n)
    check_message(info, "train_samples", repr(n))


@pytest.mark.parametrize("dt", [0.0, NAN])
def test_nhf_bad_dt(dt):
    with pytest.raises(ValueError) as info:
        _nhf(dt=dt)
    check_message(info, "dt", repr(dt))


def test_nhf_bad_steps_per_flow_names_the_argument():
    with pytest.raises(ValueError) as info:
        _nhf(steps_per_flow=0)
    check_message(info, "steps_per_flow", "0")


def test_nhf_unknown_integrator():
    with pytest.raises(ValueError) as info:
        _nhf(integrator="verlet")
    check_message(info, "integrator", "'verlet'")
    check_lists_integrators(info)


@pytest.mark.parametrize("name", sorted(n for n, i in INTEGRATORS.items() if not i.symplectic))
def test_nhf_non_volume_preserving_integrator(name):
    with pytest.raises(ValueError) as info:
        _nhf(integrator=name)
    check_message(info, "integrator", repr(name))


@pytest.mark.parametrize(
    ("kwargs", "argument", "received"),
    [
        ({"prior": "laplace"}, "prior", "'laplace'"),
        ({"kinetic": "relativistic"}, "kinetic", "'relativistic'"),
        ({"num_flows": 0}, "num_flows", "0"),
    ],
)
def test_nhf_bad_configuration(kwargs, argument, received):
    with pytest.raises(ValueError) as info:
        _nhf(**kwargs)
    check_message(info, argument, received)


def test_nhf_bad_dim():
    with pytest.raises(ValueError) as info:
        NHF(0)
    check_message(info, "dim", "0")


# -- integrators ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
@pytest.mark.parametrize("dt", [0.0, 0, NAN, INF, -INF])
def test_integrator_bad_dt(name, dt):
    with pytest.raises(ValueError) as info:
        INTEGRATORS[name].fn(oscillator(1), torch.ones(2, 1), torch.ones(2, 1), dt, 1)
    check_message(info, "dt", repr(dt))


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
@pytest.mark.parametrize("steps", [0, -3, 1.5])
def test_integrator_bad_steps(name, steps):
    with pytest.raises(ValueError) as info:
        INTEGRATORS[name].fn(oscillator(1), torch.ones(2, 1), torch.ones(2, 1), 0.1, steps)
    check_message(info, "steps", repr(steps))


def test_integrator_bad_dt_tensor():
    with pytest.raises(ValueError) as info:
        integrate(oscillator(1), torch.ones(2, 1), torch.ones(2, 1), torch.tensor(0.0))
    check_message(info, "dt", "0")
    with pytest.raises(ValueError) as info:
        integrate(oscillator(1), torch.ones(2, 1), torch.ones(2, 1), torch.ones(2))
    check_message(info, "dt", "(2,)")


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_integrator_mismatched_state(name):
    with pytest.raises(ValueError) as info:
        INTEGRATORS[name].fn(oscillator(2), torch.ones(3, 2), torch.ones(3, 3), 0.1)
    check_message(info, "p", "(3, 3)")


@pytest.mark.parametrize("name", ["leapfrog", "rk4"])
def test_integrator_non_finite_state(name):
    q = torch.tensor([[NAN], [0.0]])
    with pytest.raises(ValueError) as info:
        INTEGRATORS[name].fn(oscillator(1), q, torch.zeros(2, 1), 0.1)
    check_message(info, "q", "nan", "finite")


@pytest.mark.parametrize(
    "call",
    [
        lambda: get_integrator("verlet"),
        lambda: integrate(oscillator(1), torch.ones(1, 1), torch.ones(1, 1), 0.1, method="verlet"),
        lambda: rollout(oscillator(1), torch.ones(1, 1), torch.ones(1, 1), 0.1, 3, "verlet"),
    ],
)
def test_unknown_integrator_lists_known_names(call):
    with pytest.raises(ValueError) as info:
        call()
    check_message(info, "integrator", "'verlet'")
    check_lists_integrators(info)


def test_non_separable_refused_names_the_argument():
    with pytest.raises(TypeError) as info:
        integrate(MLPHamiltonian(1, (4,)), torch.ones(1, 1), torch.ones(1, 1), 0.1)
    check_message(info, "hamiltonian", "MLPHamiltonian")


# -- energies and the prior ------------------------------------------------------------------


def test_mlp_energy_wrong_features():
    energy = MLPEnergy(4, (8,))
    for method in (energy.forward, energy.grad):
        with pytest.raises(ValueError) as info:
            method(torch.zeros(3, 5))
        check_message(info, "x", "(3, 5)")


@pytest.mark.parametrize(
    ("kwargs", "argument", "received"),
    [({"dim": 0}, "dim", "0"), ({"dim": 2, "hidden": ()}, "hidden", "()")],
)
def test_mlp_energy_bad_configuration(kwargs, argument, received):
    with pytest.raises(ValueError) as info:
        MLPEnergy(**kwargs)
    check_message(info, argument, received)


def test_mlp_energy_non_finite():
    with pytest.raises(ValueError) as info:
        MLPEnergy(2, (8,))(torch.tensor([[NAN, 0.0]]))
    check_message(info, "x", "nan", "finite")


@pytest.mark.parametrize("mass", [0.0, -1.0, NAN, INF])
def test_quadratic_energy_bad_mass(mass):
    with pytest.raises(ValueError) as info:
        QuadraticEnergy(2, mass=mass)
    check_message(info, "mass", repr(mass))


def test_mlp_hamiltonian_bad_activation():
    with pytest.raises(ValueError) as info:
        MLPHamiltonian(2, activation="relu")
    check_message(info, "activation", "'relu'")


@pytest.mark.parametrize(("width", "sharpness"), [(0.0, 4.0), (4.0, -1.0)])
def test_soft_uniform_bad_parameters(width, sharpness):
    with pytest.raises(ValueError) as info:
        SoftUniform(2, width=width, sharpness=sharpness)
    check_message(
        info, "width" if width <= 0 else "sharpness", repr(width if width <= 0 else sharpness)
    )


def test_soft_uniform_wrong_trailing_dimension():
    with pytest.raises(ValueError) as info:
        SoftUniform(2).log_prob(torch.zeros(3, 5))
    check_message(info, "z", "5")


def test_soft_uniform_non_finite():
    with pytest.raises(ValueError) as info:
        SoftUniform(2).log_prob(torch.tensor([[NAN, 0.0]]))
    check_message(info, "z", "nan", "finite")


def test_soft_uniform_bad_dim():
    with pytest.raises(ValueError) as info:
        SoftUniform(0)
    check_message(info, "dim", "0")


# -- empty batches, dtypes, direct calls (issue 9's audit) --------------------------------------


def test_nhf_empty_batch_gives_empty_results():
    model = _nhf()
    empty = torch.zeros(0, 2)
    assert model.elbo(empty).shape == (0,)
    assert model.log_prob(empty).shape == (0,)
    assert model(empty).shape == (0,)
    assert model.sample(0).shape == (0, 2)
    q, p = model.sample(0, return_momentum=True)
    assert q.shape == p.shape == (0, 2)
    with pytest.raises(ValueError) as info:
        model.forward_kld(empty)
    check_message(info, "x", "at least one", "0")


def test_energies_and_flows_accept_an_empty_batch():
    energy = MLPEnergy(2, (8,))
    assert energy(torch.zeros(0, 2)).shape == (0,)
    assert energy.grad(torch.zeros(0, 2)).shape == (0, 2)
    flow = HamiltonianFlow(SeparableHamiltonian(QuadraticEnergy(2), energy), dt=0.1)
    z, log_det = flow(torch.zeros(0, 4))
    assert z.shape == (0, 4) and log_det.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_nhf_wrong_dtype_names_both(dtype):
    model = _nhf()  # float32
    for method in ("elbo", "log_prob", "forward_kld"):
        with pytest.raises(TypeError) as info:
            getattr(model, method)(torch.zeros(3, 2, dtype=dtype))
        message = str(info.value)
        assert "x:" in message and "torch.float32" in message and str(dtype) in message


def test_nhf_repr_is_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = repr(NHF(2))
    assert "dt=0.5" in text and "learn_dt=True" in text


def test_nhf_call_is_log_prob():
    model = _nhf()
    x = torch.randn(5, 2)
    torch.manual_seed(3)
    a = model(x, num_samples=8)
    torch.manual_seed(3)
    assert torch.equal(a, model.log_prob(x, num_samples=8))
    assert not a.requires_grad


def test_mlp_energy_grad_refuses_non_finite_input():
    energy = MLPEnergy(2, (8,))
    for closed_form in (True, False):
        energy.closed_form = closed_form
        with pytest.raises(ValueError) as info:
            energy.grad(torch.tensor([[0.0, NAN]]))
        check_message(info, "x", "finite")


def test_quadratic_energy_wrong_width():
    kinetic = QuadraticEnergy(3)
    for call in (kinetic, kinetic.grad):
        with pytest.raises(ValueError) as info:
            call(torch.zeros(4, 2))
        assert "(batch, 3)" in str(info.value) and "(4, 2)" in str(info.value), str(info.value)
