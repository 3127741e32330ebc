"""GECO Lagrange multiplier (Rezende & Viola 2018; paper A.1, A.2)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from hamflow import GECO


def test_multiplier_rises_above_tolerance_and_falls_below():
    geco = GECO(tolerance=0.1, alpha=0.5, speed=0.5)
    history = [geco.multiplier]
    for _ in range(5):  # constraint 0.6 > 0.1: λ must grow every step
        geco(objective=torch.tensor(1.0), constraint=torch.tensor(0.6))
        geco.step()
        history.append(geco.multiplier)
    assert all(b > a for a, b in zip(history, history[1:])), history
    peak = geco.multiplier
    for _ in range(20):  # constraint 0.0 < 0.1: once the average is below, λ must shrink
        geco(objective=torch.tensor(1.0), constraint=torch.tensor(0.0))
        geco.step()
    assert geco.multiplier < peak
    before = geco.multiplier
    geco(objective=torch.tensor(1.0), constraint=torch.tensor(0.0))
    geco.step()
    assert geco.multiplier < before
    assert geco.kl_weight == pytest.approx(1.0 / geco.multiplier)


def test_moving_average_and_update_follow_the_formula():
    tol, alpha, speed, lam = 0.2, 0.9, 0.3, 2.0
    geco = GECO(tolerance=tol, alpha=alpha, speed=speed, lambda_init=lam)
    constraints = [1.0, 0.5, -0.3, 0.25, 0.05]
    ma = None
    for c in constraints:
        loss = geco(
            objective=torch.tensor(0.7, dtype=torch.float64),
            constraint=torch.tensor(c, dtype=torch.float64),
        )
        ma = (c - tol) if ma is None else alpha * ma + (1 - alpha) * (c - tol)  # first call: C
        # the loss has the value of objective + λ · C_ma (the value of Ĉ is the average)
        assert loss.item() == pytest.approx(0.7 + lam * ma, rel=1e-12)
        geco.step()
        lam = lam * math.exp(speed * ma)
        assert float(geco.constraint_ma) == pytest.approx(ma, rel=1e-12, abs=1e-15)
        assert geco.multiplier == pytest.approx(lam, rel=1e-12)


def test_loss_gradient_is_lambda_times_constraint_gradient():
    geco = GECO(tolerance=0.1, alpha=0.9, lambda_init=3.0)
    for c in (0.9, 0.4):  # move λ and the average away from their initial values
        geco(torch.tensor(0.0), torch.tensor(c))
        geco.step()
    lam = geco.multiplier
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.5, 2.0, -0.5], dtype=torch.float64, requires_grad=True)

    def constraint(x):
        return (x**2).sum() * 0.1

    objective = (w * x).sum()
    loss = geco(objective, constraint(x))
    gx, gw = torch.autograd.grad(loss, (x, w))
    (gc,) = torch.autograd.grad(constraint(x), x)
    assert torch.allclose(gx, w.detach() + lam * gc, atol=1e-12)
    assert torch.allclose(gw, x.detach(), atol=1e-12)  # the objective enters with weight one


def test_multiplier_is_clamped():
    geco = GECO(tolerance=0.0, alpha=0.0, speed=10.0, lambda_init=1.0, lambda_max=5.0)
    for _ in range(3):
        geco(torch.tensor(0.0), torch.tensor(10.0))
        geco.step()
    assert geco.multiplier == pytest.approx(5.0)
    geco = GECO(tolerance=0.0, alpha=0.0, speed=10.0, lambda_init=1.0, lambda_min=0.5)
    geco(torch.tensor(0.0), torch.tensor(-10.0))
    geco.step()
    assert geco.multiplier == pytest.approx(0.5)


def test_follows_constraint_dtype():
    geco = GECO(tolerance=0.1)
    for dtype in (torch.float32, torch.float64):
        c = torch.tensor(0.5, dtype=dtype, requires_grad=True)
        loss = geco(torch.tensor(1.0, dtype=dtype), c)
        assert loss.dtype == dtype
        loss.backward()
        assert c.grad.dtype == dtype


def test_state_dict_round_trip():
    geco = GECO(tolerance=0.1, alpha=0.8, speed=0.2)
    for c in (0.9, 0.3, 0.7):
        geco(torch.tensor(0.0), torch.tensor(c))
        geco.step()
    buf = io.BytesIO()
    torch.save(geco.state_dict(), buf)
    buf.seek(0)
    other = GECO(tolerance=0.1, alpha=0.8, speed=0.2)
    other.load_state_dict(torch.load(buf))
    assert other.multiplier == geco.multiplier
    assert float(other.constraint_ma) == float(geco.constraint_ma)
    # and they continue identically (the restored one is not re-initialising its average)
    for g in (geco, other):
        g(torch.tensor(0.0), torch.tensor(0.05))
        g.step()
    assert other.multiplier == geco.multiplier
    assert float(other.constraint_ma) == float(geco.constraint_ma)


def test_step_before_forward_raises():
    with pytest.raises(RuntimeError, match="step"):
        GECO(tolerance=0.1).step()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"tolerance": math.nan}, "tolerance"),
        ({"tolerance": math.inf}, "tolerance"),
        ({"tolerance": 0.1, "alpha": 1.0}, "alpha"),
        ({"tolerance": 0.1, "alpha": -0.1}, "alpha"),
        ({"tolerance": 0.1, "speed": 0.0}, "speed"),
        ({"tolerance": 0.1, "speed": -1.0}, "speed"),
        ({"tolerance": 0.1, "speed": math.nan}, "speed"),
        ({"tolerance": 0.1, "lambda_init": 0.0}, "lambda_init"),
        ({"tolerance": 0.1, "lambda_init": 2.0, "lambda_max": 1.0}, "lambda_init"),
        ({"tolerance": 0.1, "lambda_init": 1.0, "lambda_min": 2.0}, "lambda_init"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument) as info:
        GECO(**kwargs)
    bad = kwargs.get(argument, next(iter(kwargs.values())))
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)
