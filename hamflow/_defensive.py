"""The defensive mixture behind ``NHFDensity``: a classical density mixed into the flow's.

A flow fitted to a few hundred rows can be sharp, and a test row that falls outside what it
learned can score hundreds of nats below what a Gaussian fitted to the same rows gives it. The
mixture ``(1 − w) p_NHF + w g`` costs at most ``−ln(1 − w)`` nats on any row and bounds every
row's score below by ``ln w + ln g(x)``; ``w`` is chosen on the validation rows (defensive
importance sampling's mixture, Hesterberg 1995, used as a density).

``g`` is either the rows' full-covariance Gaussian, with ``w`` up to 0.2 (a guard only), or a
full-covariance Gaussian mixture whose number of components is chosen by BIC, with ``w`` up to
0.99. The second makes the estimator a validated mixture of two models: where the flow has too
few rows to learn more than a few clusters, the classical mixture carries most of the weight;
where the flow is better, ``w`` falls to the guard's 0.005. A mixture of several components
always keeps ``TAIL_GUARD`` of the rows' Gaussian blended in, for rows far from all of them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

GUARD_WEIGHTS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
"""The weights ``"auto"`` chooses among for the Gaussian guard."""

MIXTURE_WEIGHTS = GUARD_WEIGHTS + (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
"""The weights ``"auto"`` chooses among for the BIC mixture."""

TAIL_GUARD = 0.001
"""The weight of the rows' Gaussian always kept in a BIC mixture's blend: a Gaussian mixture's
components can be tighter than the rows' spread, so a row far from all of them would score far
below what the Gaussian gives it; with it, every row scores at least ``ln 0.001 + ln N(x)``, at
a cost of at most 0.001 nats on any row."""

MAX_COMPONENTS = 20
"""The most components the BIC search tries (as scikit-learn users often do, 1 to 20)."""
BIC_ROWS = 5000
"""The most rows the BIC search fits its candidates to: on a larger table it searches a random
subset of this many rows and fits the number of components it chose to all the rows."""


class DefensiveMixture:
    """A full-covariance Gaussian mixture fitted to rows, mixed into another density's scores.

    Parameters
    ----------
    rows : ndarray of shape (n, d)
        The rows it is fitted to.
    components : int or "bic"
        The number of components, or ``"bic"`` to choose it by the Bayesian information
        criterion among 1 to ``MAX_COMPONENTS`` (never more parameters than numbers in the
        rows), on at most ``BIC_ROWS`` of them.
    random_state : int
        Seeds the mixture's initialisation.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = DefensiveMixture(rng.normal(size=(500, 2)))        # one Gaussian
    >>> lp = np.array([-1.0, -500.0])                 # a sharp model misses the 2nd row
    >>> mixed = g.mix(lp, np.zeros((2, 2)), 0.01)
    >>> bool(abs(mixed[0] - lp[0]) < 0.011), bool(mixed[1] > -10)
    (True, True)
    >>> two = np.r_[rng.normal(-4, 1, (300, 1)), rng.normal(4, 1, (300, 1))]
    >>> DefensiveMixture(two, "bic").components
    2
    """

    def __init__(self, rows: np.ndarray, components: int | str = 1, random_state: int = 0) -> None:
        if components == "bic":
            self.mixture = _fit_by_bic(rows, random_state)
        elif isinstance(components, (int, np.integer)) and components >= 1:
            self.mixture = _fit(rows, int(components), random_state)
        else:
            raise ValueError(f"components: expected an integer >= 1 or 'bic', got {components!r}")
        self.by_bic = components == "bic"
        self.components = int(self.mixture.n_components)
        self.random_state = random_state
        self.chol = np.linalg.cholesky(self.mixture.covariances_)
        # a mixture of several components keeps TAIL_GUARD of the rows' Gaussian in the blend
        self.guard = _fit(rows, 1, random_state) if self.components > 1 else None

    def refit(self, rows: np.ndarray) -> DefensiveMixture:
        """The same kind of mixture fitted to ``rows`` (e.g. all the rows, once the weight has
        been chosen on held-out ones): its components chosen again by BIC, or as many."""
        return DefensiveMixture(rows, "bic" if self.by_bic else self.components, self.random_state)

    def log_prob(self, rows: np.ndarray) -> np.ndarray:
        """``ln g(row)`` per row."""
        return self.mixture.score_samples(rows)

    def mix(self, log_p: np.ndarray, rows: np.ndarray, weight: float) -> np.ndarray:
        """``ln((1 − w) e^{log_p} + w g(row))`` per row (with ``TAIL_GUARD`` of the rows'
        Gaussian blended in when ``g`` has several components and ``w > 0``)."""
        if weight == 0:
            return log_p
        out = np.logaddexp(np.log1p(-weight) + log_p, np.log(weight) + self.log_prob(rows))
        if self.guard is None:
            return out
        tail = np.log(TAIL_GUARD) + self.guard.score_samples(rows)
        return np.logaddexp(np.log1p(-TAIL_GUARD) + out, tail)

    def choose(self, log_p: np.ndarray, rows: np.ndarray, weights) -> tuple[float, dict]:
        """The weight with the highest mean mixed score on ``rows``, and every weight's."""
        scores = {float(w): float(self.mix(log_p, rows, w).mean()) for w in weights}
        return max(scores, key=scores.get), scores

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows drawn from ``g`` with ``rng``."""
        which = rng.choice(self.components, size=n, p=self.mixture.weights_)
        z = rng.standard_normal((n, self.mixture.means_.shape[1]))
        return self.mixture.means_[which] + np.einsum("nij,nj->ni", self.chol[which], z)

    def sample_tail(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows from the rows' Gaussian that ``TAIL_GUARD`` blends in."""
        guard = self.guard if self.guard is not None else self.mixture
        z = rng.standard_normal((n, guard.means_.shape[1]))
        return guard.means_[0] + z @ np.linalg.cholesky(guard.covariances_[0]).T


def _fit(rows: np.ndarray, k: int, seed: int) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=seed).fit(
            rows
        )


def _fit_by_bic(rows: np.ndarray, seed: int) -> GaussianMixture:
    if len(rows) > BIC_ROWS:
        subset = np.random.default_rng(seed).choice(len(rows), BIC_ROWS, replace=False)
        return _fit(rows, _fit_by_bic(rows[subset], seed).n_components, seed)
    n, d = rows.shape
    per_component = d + d * (d + 1) / 2 + 1  # mean, covariance and weight
    best, best_bic = None, np.inf
    for k in range(1, MAX_COMPONENTS + 1):
        if k > 1 and k * per_component >= n * d:  # no more parameters than numbers in the rows
            break
        model = _fit(rows, k, seed)
        bic = model.bic(rows)
        if bic < best_bic:
            best, best_bic = model, bic
    return best
