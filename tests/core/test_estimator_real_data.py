"""NHFDensity on real tables: it never crashes and never ends worse than the standard-normal
prior (on the standardised columns) or than where it started.

The CI run fits two sets bundled with scikit-learn with two seeds on a short budget;
``HAMFLOW_SLOW=1`` runs all five with three seeds on the default 60 s budget, and the ten tables
of ``benchmarks/_tables.py`` too where ISLP and plotnine are installed
(``pip install --no-deps ISLP plotnine``)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm
from sklearn import datasets
from sklearn.model_selection import train_test_split

from hamflow import NHFDensity

SLOW = os.environ.get("HAMFLOW_SLOW") == "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _tables import TABLES, load_table  # noqa: E402


def table(name):
    rng = np.random.default_rng(0)
    if name == "iris":
        return np.log(datasets.load_iris().data + rng.uniform(-0.05, 0.05, (150, 4)))
    if name == "wine":
        return np.log(datasets.load_wine().data)
    if name == "diabetes":
        return np.delete(datasets.load_diabetes().data, 1, axis=1)
    if name == "breast_cancer":
        return np.log1p(datasets.load_breast_cancer().data)
    if name == "digits":
        return datasets.load_digits().data + rng.random((1797, 64))
    try:
        return load_table(name)
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


CASES = (
    [
        (s, seed)
        for s in ("iris", "wine", "diabetes", "breast_cancer", "digits", *TABLES)
        for seed in (0, 1, 2)
    ]
    if SLOW
    else [("wine", 0), ("breast_cancer", 1)]
)


@pytest.mark.parametrize("name, seed", CASES)
def test_fit_on_a_real_table_beats_the_prior_and_the_start(name, seed):
    x = table(name)
    train, test = train_test_split(x, test_size=0.2, random_state=seed)
    budget = dict(max_time=60.0) if SLOW else dict(max_time=None, max_steps=150)
    est = NHFDensity(random_state=seed, **budget).fit(train)
    scores = est.score_samples(test)
    assert np.isfinite(scores).all()
    z = (test - est.mean_) / est.scale_
    prior = norm.logpdf(z).sum(1) - np.log(est.scale_).sum()
    assert scores.mean() > prior.mean()
    # the model starts at the training rows' Gaussian; training must not end worse than that
    gaussian = multivariate_normal(train.mean(0), np.cov(train.T, bias=True)).logpdf(test)
    assert scores.mean() > gaussian.mean() - 0.5
    events = [h for h in est.history_ if "event" in h]
    restores = sum(r.restores for r in est.fit_results_)
    assert restores == sum(h["event"] == "restored" for h in events)
