"""The context shift of a conditional NHF (``hamflow.conditional.ContextShift``): a pure
translation by ``W c`` (no volume change), fitted by least squares with the affine map, and
absent from an unconditional model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow import NHF
from hamflow.conditional import ContextShift

SMALL = dict(num_flows=2, hidden=(16,), encoder_hidden=(16,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_the_shift_translates_the_density_without_changing_its_values(dtype, seed):
    """With ``W`` set, ``ln p(x + W c | c)`` is the unshifted model's ``ln p(x | c)``: a
    translation, log-det zero; and the maps to and from data invert each other."""
    torch.manual_seed(seed)
    model = NHF(2, context_dim=3, **SMALL).to(dtype)
    x, c = torch.randn(6, 2, dtype=dtype), torch.randn(6, 3, dtype=dtype)
    model.initialize_affine(
        torch.randn(64, 2, dtype=dtype), context=torch.randn(64, 3, dtype=dtype)
    )
    with torch.no_grad():
        model.context_shift.weight.zero_()
    torch.manual_seed(1)
    before = model.log_prob(x, c, num_samples=8)
    with torch.no_grad():
        model.context_shift.weight.normal_()
    torch.manual_seed(1)
    after = model.log_prob(x + model.context_shift(c).detach(), c, num_samples=8)
    torch.testing.assert_close(after, before)
    q = torch.randn(6, 2, dtype=dtype)
    back, _ = model.from_data(model.to_data(q, c), c)
    torch.testing.assert_close(back, q, rtol=1e-4, atol=1e-4)


def test_initialisation_fits_the_slope_and_starts_at_the_linear_gaussian_fit():
    """``initialize_affine`` sets ``W`` to the least-squares slope of x on the context; the
    untrained model's draws for one context then sit at the fit's prediction with the
    residuals' spread. Without the shift they have the marginal's spread, 10 times wider."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3000, 1, generator=g)
    x = torch.cat([4 * c, -2 * c], 1) + 0.4 * torch.randn(3000, 2, generator=g)
    spreads = {}
    for shift in (True, False):
        torch.manual_seed(0)
        model = NHF(2, context_dim=1, **SMALL, context_shift=shift)
        model.initialize_affine(x, context=c)
        with torch.no_grad():
            draws = model.sample(4000, torch.tensor([[1.0]]))
        spreads[shift] = draws.std(0)
        if shift:
            w = model.context_shift.weight.flatten()
            assert torch.allclose(w, torch.tensor([4.0, -2.0]), atol=0.05), w
            assert torch.allclose(draws.mean(0), torch.tensor([4.0, -2.0]), atol=0.1)
    assert ((spreads[True] - 0.4).abs() < 0.06).all(), spreads[True]
    assert (spreads[False] > 1.5).all(), spreads[False]


def test_unconditional_models_have_no_shift_and_old_files_load_with_a_zero_one():
    assert not hasattr(NHF(2, **SMALL), "context_shift")
    assert not any("context_shift" in k for k in NHF(2, **SMALL).state_dict())
    model = NHF(2, context_dim=1, **SMALL)
    state = {k: v for k, v in model.state_dict().items() if k != "context_shift.weight"}
    with torch.no_grad():
        model.context_shift.weight.fill_(3.0)
    model.load_state_dict(state)  # a conditional model saved before the shift existed
    assert torch.equal(model.context_shift.weight, torch.zeros(2, 1))


def test_too_few_rows_leave_the_slope_alone():
    shift = ContextShift(2, 3)
    x, c = torch.randn(4, 2), torch.randn(4, 3)
    assert torch.equal(shift.initialize(x, c), x) and torch.equal(shift.weight, torch.zeros(2, 3))


def test_conditional_potentials_start_steeper_unless_told_otherwise():
    """``potential_in_scale=None`` means 3 with a context (CONDITIONAL_IN_SCALE) and 1 without:
    under one seed the conditional default's first layers are 3 times those of an explicit 1;
    an unconditional model's equal an explicit 1."""

    def first_layers(**kwargs):
        torch.manual_seed(0)
        model = NHF(2, **SMALL, **kwargs)
        return torch.stack([f.hamiltonian.potential.layers[0].weight for f in model.flows])

    cond, cond_one = (
        first_layers(context_dim=1),
        first_layers(context_dim=1, potential_in_scale=1.0),
    )
    torch.testing.assert_close(cond, 3 * cond_one)
    torch.testing.assert_close(first_layers(), first_layers(potential_in_scale=1.0))
