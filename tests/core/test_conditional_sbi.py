"""The SBI benchmark's loop and table (``benchmarks/sbi_tasks.py``), without and with sbibm.

The loop and the scoring pieces are tested on a conditional Gaussian whose posterior is known;
the end-to-end cell runs only where the optional ``sbibm`` is installed.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sbi_tasks  # noqa: E402

TINY = sbi_tasks.SBIConfig(budget_s=2.0, observations=1, posterior_samples=100, eval_every=20)


def linear_gaussian(n: int, seed: int = 0):
    """θ ~ N(0, I₂), x = θ + 0.3 ε: the posterior mean is x / (1 + 0.09)."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 2, generator=gen)
    return theta, theta + 0.3 * torch.randn(n, 2, generator=gen)


@pytest.mark.parametrize("name", ["nhf", "nsf"])
def test_the_loop_trains_either_model_towards_the_posterior(name):
    theta, x = linear_gaussian(2000)
    torch.manual_seed(0)
    model = sbi_tasks.build(name, 2, 2, TINY)
    # a budget in steps: a CPU-time budget gets fewer steps on a busy machine
    info = sbi_tasks.train(model, theta, x, replace(TINY, budget_s=120.0, max_steps=150), seed=0)
    assert info["steps"] > 20 and info["best_val_loss"] < 1.5  # prior alone: about 2.84 nats
    x_o = torch.tensor([[1.0, -1.0]])
    inside = lambda z: z[:, 0] < 2.0  # noqa: E731  (a support that rejects some samples)
    torch.manual_seed(0)
    z = sbi_tasks.posterior_samples(model, name, x_o, 500, inside)
    assert z.shape == (500, 2) and bool((z[:, 0] < 2.0).all())
    assert torch.allclose(z.mean(0), x_o[0] / 1.09, atol=0.3)


def test_summary_and_table_report_each_model_and_the_gap():
    cells = [
        {"task": "two_moons", "sims": 1000, "model": "nhf", "seed": s, "c2st_mean": v}
        for s, v in ((0, 0.6), (1, 0.7))
    ] + [{"task": "two_moons", "sims": 1000, "model": "nsf", "seed": 0, "c2st_mean": 0.55}]
    cfg = replace(TINY, tasks=("two_moons",), sims=(1000,), seeds=(0, 1))
    (row,) = sbi_tasks.summarise(cells, cfg)
    assert row["nhf"] == pytest.approx(0.65) and row["nhf_se"] == pytest.approx(0.05)
    assert row["gap"] == pytest.approx(0.10) and row["nsf_se"] is None
    text = sbi_tasks.markdown([row], cfg, "cmd", "res.json")
    assert "| two_moons | 1,000 | 0.650 ± 0.050 | 0.550 | +0.100 |" in text
    assert text.startswith("<!-- sbi_tasks:begin -->") and "`cmd`" in text


def test_arguments_are_checked():
    with pytest.raises(SystemExit):
        sbi_tasks.parse_args(["--sims", "10"])
    with pytest.raises(SystemExit):
        sbi_tasks.parse_args(["--quick", "--publish"])
    with pytest.raises(ValueError, match="model"):
        sbi_tasks.build("maf", 2, 2, TINY)


@pytest.mark.skipif(
    importlib.util.find_spec("sbibm") is None,
    reason="sbibm is an optional benchmark extra (pip install -e .[bench]; see TOOLING.md)",
)
def test_one_sbibm_cell_end_to_end(tmp_path):
    cfg = replace(TINY, budget_s=1.0)
    res = sbi_tasks.cell("two_moons", 300, "nhf", 0, cfg, tmp_path)
    assert 0.4 <= res["c2st_mean"] <= 1.0 and len(res["posterior_obs1"]) == 100
    again = sbi_tasks.cell("two_moons", 300, "nhf", 0, cfg, tmp_path)  # from the cache
    assert again == res
