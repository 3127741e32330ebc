"""hamflow.fit: budgets, schedule, early stopping with restore, and the divergence guard."""

import math

import normflows as nf
import pytest
import torch
from torch import nn

from hamflow import NHF, FitConfig, fit


class Gaussian(nn.Module):
    """A unit-variance Gaussian with a learned mean: ``forward_kld`` and ``log_prob`` as a flow's.

    ``fail_at`` makes chosen steps return a NaN loss or raise, as a diverging model would.
    """

    def __init__(self, dim=2, nan_at=(), raise_at=()):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.calls, self.nan_at, self.raise_at = 0, set(nan_at), set(raise_at)

    def log_prob(self, x):
        return -0.5 * (x - self.mean).square().sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)

    def forward_kld(self, x):
        self.calls += 1
        if self.calls in self.raise_at:
            raise ValueError("x: expected finite values, got NaN or inf")
        loss = -self.log_prob(x).mean()
        return loss * float("nan") if self.calls in self.nan_at else loss


def test_steps_budget_schedule_and_history():
    model = Gaussian()
    x = torch.randn(400, 2) + 2.0
    r = fit(model, x, max_steps=100, max_time=None, eval_every=10, lr=0.05, patience=None)
    scores = [h for h in r.history if "val_nll" in h]
    assert r.steps == 100 and [h["step"] for h in scores] == list(range(10, 101, 10))
    lrs = [h["lr"] for h in scores]
    assert lrs[0] == pytest.approx(0.05 * (1 / 20 + 19 / 20 * 0.5 * (1 + math.cos(math.pi * 0.09))))
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # cosine: strictly decreasing
    assert lrs[-1] == pytest.approx(0.05 / 20, rel=0.05)
    assert torch.allclose(model.mean, x.mean(0), atol=0.3)  # it learned the mean


def test_time_budget_is_cpu_seconds():
    r = fit(Gaussian(), torch.randn(300, 2), max_time=0.3, eval_every=5, patience=None)
    assert 0.3 <= r.seconds < 3.0


def test_early_stopping_restores_the_best_state():
    """Validation rows far from the training rows: the validation score is best early and gets
    worse as the mean moves to the training rows; fit stops after ``patience`` scores and puts
    the best-scoring mean back."""
    model = Gaussian(1)
    x = torch.randn(500, 1) + 5.0
    x_val = torch.randn(100, 1) + 0.5
    seen = {}

    def remember(entry):  # what the mean was at each score
        if "val_nll" in entry:
            seen[entry["step"]] = model.mean.detach().clone()

    r = fit(
        model,
        x,
        x_val,
        max_steps=2000,
        max_time=None,
        eval_every=5,
        patience=4,
        lr=0.05,
        schedule="constant",
        callback=remember,
    )
    assert r.stopped_early and r.steps < 2000
    assert r.best_step == min(seen, key=lambda s: abs(seen[s].item() - x_val.mean().item()))
    assert torch.equal(model.mean.detach(), seen[r.best_step])
    assert not model.training


def test_nan_loss_is_skipped_and_recorded():
    model = Gaussian(nan_at={3, 7})
    r = fit(model, torch.randn(100, 2), max_steps=20, max_time=None, eval_every=10)
    skipped = [h["step"] for h in r.history if h.get("event") == "skipped"]
    assert skipped == [3, 7] and r.skipped_steps == 2 and r.restores == 0
    assert torch.isfinite(model.mean).all()


def test_a_run_of_bad_steps_or_an_exception_restores_and_halves_the_lr():
    model = Gaussian(nan_at=set(range(12, 20)), raise_at={30})
    r = fit(
        model,
        torch.randn(200, 2),
        max_steps=40,
        max_time=None,
        eval_every=5,
        schedule="constant",
        lr=0.01,
        patience=None,
    )
    restored = [h for h in r.history if h.get("event") == "restored"]
    assert len(restored) == 2 and r.restores == 2
    assert "non-finite" in restored[0]["reason"] and "ValueError" in restored[1]["reason"]
    lrs = [h["lr"] for h in r.history if "val_nll" in h]
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.0025)
    assert torch.isfinite(model.mean).all()


def test_an_error_on_the_first_step_is_the_users():
    with pytest.raises(ValueError, match="finite"):
        fit(Gaussian(raise_at={1}), torch.randn(50, 2), max_steps=5, max_time=None)


def test_state_is_left_as_found():
    threads = torch.get_num_threads()
    x = torch.randn(50, 2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(Gaussian(), x, max_steps=5, max_time=None, threads=1)
    assert torch.equal(torch.rand(3), expected)  # the global RNG is untouched
    assert torch.get_num_threads() == threads


def test_trains_nhf_and_a_normflows_flow_alike():
    torch.manual_seed(0)
    x = torch.randn(300, 2) * torch.tensor([1.0, 0.3]) + 1.0
    flow = nf.NormalizingFlow(
        nf.distributions.DiagGaussian(2, trainable=False),
        [
            nf.flows.AffineCouplingBlock(nf.nets.MLP([1, 8, 2], init_zeros=True)),
            nf.flows.Permute(2, mode="swap"),
        ]
        * 2,
    )
    for model in (NHF(2, num_flows=1, hidden=(8,), encoder_hidden=(8,)), flow):
        r = fit(model, x, max_steps=60, max_time=None, eval_every=20, lr=3e-3)
        first, best = r.history[0]["val_nll"], r.best_val_nll
        assert math.isfinite(best) and best <= first


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(max_steps=None, max_time=None), "budget"),
        (dict(max_steps=0), "max_steps"),
        (dict(max_time=-1.0), "max_time"),
        (dict(lr=0.0), "lr"),
        (dict(schedule="linear"), "schedule"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(batch_size=0), "batch_size"),
        (dict(clip=-1.0), "clip"),
    ],
)
def test_bad_options_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**bad)


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="finite"):
        fit(Gaussian(), torch.tensor([[0.0, float("nan")], [1.0, 1.0], [2.0, 2.0]]), max_steps=1)
    with pytest.raises(ValueError, match="shape"):
        fit(Gaussian(), torch.zeros(5), max_steps=1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        fit(Gaussian(), [[0.0, 1.0]], max_steps=1)


class ConditionalGaussian(nn.Module):
    """``x | c ~ N(w c, 1)`` with a learned ``w``: a conditional model's two-argument calls."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def log_prob(self, x, context):
        return -0.5 * (x - self.w * context).square().sum(1) - 0.5 * math.log(2 * math.pi)

    def forward_kld(self, x, context):
        return -self.log_prob(x, context).mean()


def test_context_rows_travel_with_their_data_rows():
    """Only if every batch and the validation split keep each row's own context can w reach 3."""
    c = torch.rand(600, 1) * 4 - 2
    x = 3 * c + 0.1 * torch.randn(600, 1)
    model = ConditionalGaussian()
    r = fit(model, x, context=c, max_steps=300, max_time=None, lr=0.05, eval_every=50)
    assert model.w.item() == pytest.approx(3.0, abs=0.05)
    assert r.best_val_nll < 1.0
    with pytest.raises(ValueError, match="one row per data row"):
        fit(ConditionalGaussian(), x, context=c[:10], max_steps=1)


def test_ctrl_c_ends_training_with_the_best_state():
    class Interrupted(Gaussian):
        def forward_kld(self, x):
            if self.calls == 30:
                raise KeyboardInterrupt
            return super().forward_kld(x)

    model, seen = Interrupted(), {}

    def remember(entry):
        if "val_nll" in entry:
            seen[entry["step"]] = model.mean.detach().clone()

    r = fit(
        model,
        torch.randn(200, 2) + 3,
        max_steps=100,
        max_time=None,
        eval_every=10,
        lr=0.05,
        callback=remember,
    )
    assert r.history[-1] == {"event": "interrupted", "step": 30} and r.steps == 30
    assert sorted(seen) == [10, 20, 30] and torch.equal(model.mean.detach(), seen[r.best_step])
    assert not model.training
