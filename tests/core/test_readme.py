"""The README's "Use it" snippet runs as written and does what its comments say."""

import re
from pathlib import Path

import numpy as np
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_snippet_runs():
    use_it = README.read_text().split("## Use it", 1)[1].split("##", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", use_it, re.S)
    torch.set_num_threads(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    X_train, X_test = scope["X_train"], scope["X_test"]
    assert scope["samples"].shape == (5, X_train.shape[1])
    score = scope["est"].score(X_test)
    assert np.isfinite(score)
    # "In the data's units": the wine features correlate, and NHF starts at the data's
    # full-covariance Gaussian, so it must beat independent Gaussians fitted to the raw columns.
    mu, sd = X_train.mean(0), X_train.std(0)
    diagonal = (-0.5 * ((X_test - mu) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))).sum(1).mean()
    assert score > diagonal, (score, diagonal)
