"""examples/sampling.py: a short run fits the mixture and reports finite, sane scores."""

import importlib.util
import math
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sampling.py"


def test_example_runs_and_improves_on_the_untrained_sampler():
    spec = importlib.util.spec_from_file_location("sampling_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        out = module.main(seconds=4.0, seed=0, num_samples=2000)
    finally:
        torch.set_num_threads(threads)
    assert out["steps"] > 20
    assert math.isfinite(out["log_Z_hat"]) and 0 < out["ess"] <= 1
    # a 4 s fit already covers most of the grid from the broad start
    assert out["modes_covered"] >= 8, out
    assert abs(out["log_Z_hat"] - out["log_Z"]) < 1.5, out
