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
    geco = GECO(tolerance=tol, alpha=alpha, speed=speed, lambda_init=lam, max_log_step=None)
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
    kw = dict(tolerance=0.0, alpha=0.0, speed=10.0, lambda_init=1.0, max_log_step=None)
    geco = GECO(**kw, lambda_max=5.0)
    for _ in range(3):
        geco(torch.tensor(0.0), torch.tensor(10.0))
        geco.step()
    assert geco.multiplier == pytest.approx(5.0)
    assert geco.at_clamp
    geco = GECO(**kw, lambda_min=0.5)
    assert not geco.at_clamp
    geco(torch.tensor(0.0), torch.tensor(-10.0))
    geco.step()
    assert geco.multiplier == pytest.approx(0.5)
    assert geco.at_clamp


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
        ({"tolerance": 0.1, "lambda_max": math.inf}, "lambda_max"),
        ({"tolerance": 0.1, "max_log_step": 0.0}, "max_log_step"),
        ({"tolerance": 0.1, "max_log_step": -0.1}, "max_log_step"),
        ({"tolerance": 0.1, "max_log_step": math.nan}, "max_log_step"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument) as info:
        GECO(**kwargs)
    bad = kwargs.get(argument, next(iter(kwargs.values())))
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)


def _hgn_start(geco, steps=10, constraint=170.0):
    """Feed GECO what HGN gives it at the start of training: MSE/κ ≈ 0.17/1e-3 = 170."""
    history = []
    for _ in range(steps):
        geco(objective=torch.tensor(50.0), constraint=torch.tensor(constraint))
        geco.step()
        history.append(geco.multiplier)
    return history


def test_default_multiplier_stays_off_its_cap_at_the_start_of_hgn_training():
    # Issue 10: with the unbounded update, MSE/κ ≈ 170 multiplies λ by e^1.7 ≈ 5.4 per step,
    # so λ reached its cap of 1e6 by step 10 and the KL weight 1/λ was 1e-6 for the whole run.
    geco = GECO(tolerance=1.0)  # HGN's use: constraint MSE/κ against a tolerance of one
    history = _hgn_start(geco)
    assert not geco.at_clamp
    assert history[-1] == pytest.approx(math.exp(10 * 0.01), rel=1e-9)  # δ per step, no more
    assert all(b > a for a, b in zip(history, history[1:]))  # still rising: the sign is right
    # with a short moving average it turns back within a few steps once the constraint is met
    geco = GECO(tolerance=1.0, alpha=0.5)
    _hgn_start(geco)
    after = _hgn_start(geco, steps=20, constraint=0.5)
    assert all(b < a for a, b in zip(after[10:], after[11:])), after


def test_paper_setting_still_reaches_the_cap_by_step_ten():
    # the paper's configuration (unbounded multiplicative update) stays reproducible
    geco = GECO(tolerance=1.0, max_log_step=None)
    history = _hgn_start(geco)
    assert history[1] == pytest.approx(math.exp(0.01 * 169.0) ** 2, rel=1e-6)
    assert geco.at_clamp and geco.multiplier == pytest.approx(1e6)


def test_bounded_update_follows_the_formula():
    tol, alpha, speed, delta, lam = 0.2, 0.5, 0.3, 0.05, 2.0
    geco = GECO(tol, alpha=alpha, speed=speed, lambda_init=lam, max_log_step=delta)
    ma = None
    for c in (1.0, 0.3, -2.0, -2.0, 0.21):
        geco(torch.tensor(0.0, dtype=torch.float64), torch.tensor(c, dtype=torch.float64))
        geco.step()
        ma = (c - tol) if ma is None else alpha * ma + (1 - alpha) * (c - tol)
        lam *= math.exp(max(-delta, min(delta, speed * ma)))
        assert geco.multiplier == pytest.approx(lam, rel=1e-12)


def _state(geco):
    return {k: v.clone() for k, v in geco.state_dict().items()}, geco._pending


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_constraint_is_refused_and_leaves_the_state_untouched(bad):
    geco, twin = GECO(tolerance=0.1, alpha=0.5), GECO(tolerance=0.1, alpha=0.5)
    for g in (geco, twin):
        g(torch.tensor(0.0), torch.tensor(0.7))
        g.step()
    geco(torch.tensor(0.0), torch.tensor(0.4))  # a pending, valid call
    before, pending = _state(geco)
    with pytest.raises(ValueError, match=r"constraint: expected a finite value.*unchanged"):
        geco(torch.tensor(0.0), torch.tensor(bad, requires_grad=True))
    after, pending_after = _state(geco)
    assert pending_after is pending
    for k in before:
        assert torch.equal(before[k], after[k]), k
    geco.step()  # the valid call's update goes through, as if the bad one never happened
    twin(torch.tensor(0.0), torch.tensor(0.4))
    twin.step()
    assert geco.multiplier == twin.multiplier
    assert float(geco.constraint_ma) == float(twin.constraint_ma)


def test_non_finite_first_constraint_is_refused():
    geco = GECO(tolerance=0.1)
    with pytest.raises(ValueError, match="finite"):
        geco(torch.tensor(0.0), torch.tensor(math.nan))
    assert not bool(geco.initialized) and geco.multiplier == 1.0
    with pytest.raises(RuntimeError, match="step"):
        geco.step()  # nothing is pending


@pytest.mark.parametrize("shape", [(4,), (1, 3), (0,)])
def test_per_example_constraint_is_refused(shape):
    geco = GECO(tolerance=0.1)
    with pytest.raises(
        ValueError, match=r"constraint: expected a scalar.*\.mean\(\).*" + str(shape[0])
    ):
        geco(torch.tensor(0.0), torch.full(shape, 0.5))
    assert geco._pending is None and not bool(geco.initialized)


def test_single_element_constraint_is_accepted_and_non_tensor_refused():
    geco = GECO(tolerance=0.1)
    loss = geco(torch.tensor(1.0), torch.tensor([0.5]))
    assert loss.shape == ()
    with pytest.raises(TypeError, match="constraint"):
        GECO(tolerance=0.1)(torch.tensor(0.0), 0.5)


def test_step_toward_a_multiplier_moves_by_at_most_delta_in_log_space():
    # 100 is far above λ = 2: the first steps are bounded by δ; once within δ, λ lands on it
    geco = GECO(0.1, lambda_init=2.0, max_log_step=0.5)
    expected = 2.0
    for _ in range(12):
        geco(torch.tensor(0.0), torch.tensor(0.3))
        geco.step(toward=100.0)
        expected = expected * math.exp(min(0.5, math.log(100.0 / expected)))
        assert geco.multiplier == pytest.approx(expected, rel=1e-12)
    assert geco.multiplier == pytest.approx(100.0, rel=1e-12)
    geco(torch.tensor(0.0), torch.tensor(0.3))
    geco.step(toward=torch.tensor(50.0))  # and down again, a tensor target too
    assert geco.multiplier == pytest.approx(100.0 * math.exp(-0.5), rel=1e-12)
    assert float(geco.constraint_ma) == pytest.approx(0.2)  # the average is kept as usual
    unbounded = GECO(0.1, lambda_init=2.0, max_log_step=None)
    unbounded(torch.tensor(0.0), torch.tensor(0.3))
    unbounded.step(toward=1e5)
    assert unbounded.multiplier == pytest.approx(1e5, rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, [1.0, 2.0]])
def test_step_toward_a_bad_multiplier_is_refused_and_leaves_the_state_untouched(bad):
    geco = GECO(0.1, lambda_init=2.0)
    geco(torch.tensor(0.0), torch.tensor(0.3))
    before = {k: v.clone() for k, v in geco.state_dict().items()}
    with pytest.raises(ValueError, match="toward: expected a positive finite multiplier"):
        geco.step(toward=torch.tensor(bad) if isinstance(bad, list) else bad)
    after = geco.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    geco.step()  # the pending average is still there to commit
