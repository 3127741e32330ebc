"""The learning-rate schedule: constant, then linear toward zero over the last fraction."""

import math

import pytest

from hamflow_hgn.schedule import lr_factor


@pytest.mark.parametrize("steps,decay", [(10, 0.3), (3000, 0.25), (7, 1.0), (5, 0.5)])
def test_constant_then_strictly_decreasing_to_one_over_n_plus_one(steps, decay):
    factors = [lr_factor(s, steps, decay) for s in range(1, steps + 1)]
    n = round(decay * steps)
    assert factors[: steps - n] == [1.0] * (steps - n)
    tail = factors[steps - n :]
    assert all(a > b for a, b in zip(tail, tail[1:], strict=False))
    assert tail[-1] == pytest.approx(1 / (n + 1), rel=1e-12)
    # linear: equal decrements of 1/(n+1) from the last full-rate step on
    steps_down = [a - b for a, b in zip([1.0, *tail], tail, strict=False)]
    assert steps_down == pytest.approx([1 / (n + 1)] * n, rel=1e-12)


def test_no_decay_is_constant():
    assert {lr_factor(s, 50, 0.0) for s in range(1, 51)} == {1.0}


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, "0.3"])
def test_a_decay_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"lr_decay: expected .* in \[0, 1\]"):
        lr_factor(1, 10, bad)
