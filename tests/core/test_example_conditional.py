"""Smoke test of ``examples/conditional.py``: it trains, scores and draws, and what it learned
depends on the context (a larger radius gives larger samples)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))


def test_conditional_example_runs_and_learns_the_radius(tmp_path):
    import conditional

    out = conditional.main(["--seconds", "4", "--out", str(tmp_path / "ring.png")])
    assert (tmp_path / "ring.png").stat().st_size > 10_000
    assert math.isfinite(out["nll"]) and math.isfinite(out["true_nll"])
    assert out["gap"] > -0.05  # an IWAE estimate cannot beat the truth by more than noise
    saved = json.loads((tmp_path / "ring.json").read_text())  # the figure's provenance
    assert saved["command"].startswith("python examples/conditional.py --seconds 4 --out ")
    assert saved["date"] and saved["commit"] and saved["scores"]["nll"] == out["nll"]
    model = out["model"]
    torch.manual_seed(0)
    radii = [model.sample(2000, torch.tensor([r])).norm(dim=-1).mean().item() for r in (1.0, 2.5)]
    assert radii[1] > radii[0] + 0.5
