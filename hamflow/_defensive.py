"""The defensive mixture behind ``NHFDensity``: a little of the data's Gaussian, for the tails.

A flow fitted to a few hundred rows can be sharp, and a test row that falls outside what it
learned can score hundreds of nats below what the data's full-covariance Gaussian gives it. The
mixture ``(1 − ε) p_NHF + ε N(μ, Σ)`` costs at most ``−ln(1 − ε)`` nats on any row (0.01 for
``ε = 0.01``) and bounds every row's score below by ``ln ε + ln N(x; μ, Σ)``. ``ε`` is chosen on
the validation rows (defensive importance sampling's mixture, Hesterberg 1995, used as a
density).
"""

from __future__ import annotations

import numpy as np

WEIGHTS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
"""The weights ``"auto"`` chooses among on the validation rows."""


class DefensiveGaussian:
    """A full-covariance Gaussian fitted to rows, mixed into another density's log-scores.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> g = DefensiveGaussian(rng.normal(size=(500, 2)))
        >>> lp = np.array([-1.0, -500.0])                 # a sharp model misses the 2nd row
        >>> mixed = g.mix(lp, np.zeros((2, 2)), 0.01)
        >>> bool(abs(mixed[0] - lp[0]) < 0.011), bool(mixed[1] > -10)
        (True, True)
    """

    def __init__(self, rows: np.ndarray) -> None:
        self.mean = rows.mean(0)
        cov = np.cov(rows.T, bias=True).reshape(rows.shape[1], rows.shape[1])
        self.chol = np.linalg.cholesky(cov + 1e-6 * np.eye(rows.shape[1]))

    def log_prob(self, rows: np.ndarray) -> np.ndarray:
        """``ln N(row; μ, Σ)`` per row."""
        from scipy.linalg import solve_triangular

        white = solve_triangular(self.chol, (rows - self.mean).T, lower=True)
        d = rows.shape[1]
        log_det = np.log(np.diag(self.chol)).sum()
        return -0.5 * (white**2).sum(0) - log_det - 0.5 * d * np.log(2 * np.pi)

    def mix(self, log_p: np.ndarray, rows: np.ndarray, weight: float) -> np.ndarray:
        """``ln((1 − w) e^{log_p} + w N(row))`` per row."""
        if weight == 0:
            return log_p
        return np.logaddexp(np.log1p(-weight) + log_p, np.log(weight) + self.log_prob(rows))

    def choose(self, log_p: np.ndarray, rows: np.ndarray, weights=WEIGHTS) -> tuple[float, dict]:
        """The weight with the highest mean mixed score on ``rows``, and every weight's."""
        scores = {float(w): float(self.mix(log_p, rows, w).mean()) for w in weights}
        return max(scores, key=scores.get), scores

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.standard_normal((n, len(self.mean))) @ self.chol.T
