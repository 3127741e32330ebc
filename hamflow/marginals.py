"""Per-column Gaussianisation: a monotone map from each column to a standard normal.

Real tables have columns that are skewed, heavy-tailed, bounded, or that pile up on one value
(a count that is often zero, a balance that is often empty). A flow learns such a marginal
slowly and a few hundred rows are not enough to learn it well; a one-dimensional estimator
learns it from every row at once. :class:`MarginalGaussianizer` fits a Gaussian mixture to
each column (its number of components chosen by BIC) and maps the column through
``z = Φ⁻¹(F(x))``, with ``F`` that mixture's distribution function. The map is exact and
invertible, and its log-det is ``Σ_j ln f_j(x_j) − ln φ(z_j)``, so a density of ``z`` gives a
density of ``x``. :class:`~hamflow.NHFDensity` then learns only how the columns depend on each
other. This is the first step of Gaussianisation (Chen & Gopinath, 2000) and the marginal half
of a Gaussian-copula model; it is not part of the HGN paper.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtri_exp

__all__ = ["MarginalGaussianizer"]

_LOG_HALF = float(np.log(0.5))
_LOG_2PI = float(np.log(2 * np.pi))


class MarginalGaussianizer:
    """Map every column to a standard normal through its own fitted distribution function.

    Column ``j`` gets a one-dimensional Gaussian mixture ``F_j`` (1 to ``max_components``
    components, chosen by BIC, at most one per three rows) and is mapped to
    ``z_j = Φ⁻¹(F_j(x_j))``. The map is strictly increasing in each column, so
    :meth:`inverse_transform` undoes it, and :meth:`transform` returns the exact log-det
    ``Σ_j ln f_j(x_j) − ln φ(z_j)`` with the map. ``Φ⁻¹`` is evaluated from ``ln F`` or
    ``ln(1 − F)``, whichever is smaller, so rows far in either tail map to finite ``z``.
    A constant column is only centred. (Gaussianisation, Chen & Gopinath 2000.)

    Parameters
    ----------
    max_components : int
        The most mixture components a column may get.
    random_state : int
        Seed of the mixtures' initialisation.

    Attributes
    ----------
    components_ : list of tuple of ndarray
        Per column, the mixture's ``(log weights, means, standard deviations)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.c_[rng.exponential(size=500), rng.normal(size=500)]
    >>> g = MarginalGaussianizer().fit(x)
    >>> z, log_det = g.transform(x)
    >>> bool(abs(z[:, 0].mean()) < 0.1 and abs(z[:, 0].std() - 1) < 0.1)
    True
    >>> bool(np.allclose(g.inverse_transform(z), x, atol=1e-8))
    True
    """

    def __init__(self, max_components: int = 8, random_state: int = 0) -> None:
        if not isinstance(max_components, (int, np.integer)) or max_components < 1:
            raise ValueError(f"max_components: expected an integer >= 1, got {max_components!r}")
        self.max_components = int(max_components)
        self.random_state = random_state

    def fit(self, X) -> MarginalGaussianizer:
        """Fit one mixture per column of ``X`` ``(n_samples, n_features)``."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        X = _check_rows(X, "X")
        if len(X) < 2:
            raise ValueError(f"X: expected at least 2 rows to fit the marginals, got {len(X)}")
        self.components_ = []
        for column in X.T:
            x = column[:, None]
            var = float(x.var())
            if var <= 1e-24 * (1 + float(x.mean()) ** 2):  # constant: centre it, no more
                self.components_.append((np.zeros(1), np.array([x.mean()]), np.array([np.nan])))
                continue
            with warnings.catch_warnings():  # a column with few values: fewer clusters than k
                warnings.simplefilter("ignore", ConvergenceWarning)
                fits = [
                    GaussianMixture(k, reg_covar=1e-6 * var, random_state=self.random_state).fit(x)
                    for k in range(1, self.max_components + 1)
                    if k == 1 or 3 * k <= len(x)
                ]
            best = min(fits, key=lambda g: g.bic(x))
            self.components_.append(
                (np.log(best.weights_), best.means_[:, 0], np.sqrt(best.covariances_.ravel()))
            )
        return self

    def transform(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(Z, log_det)``: the Gaussianised rows and ``ln |det ∂z/∂x|`` per row."""
        X = self._check_width(X)
        Z = np.empty_like(X)
        log_det = np.zeros(len(X))
        for j, (log_w, mu, sd) in enumerate(self.components_):
            if np.isnan(sd[0]):
                Z[:, j] = X[:, j] - mu[0]
                continue
            u = (X[:, j : j + 1] - mu) / sd
            log_cdf = logsumexp(log_w + log_ndtr(u), axis=1)
            log_sf = logsumexp(log_w + log_ndtr(-u), axis=1)
            z = np.where(
                log_cdf < log_sf,
                ndtri_exp(np.minimum(log_cdf, _LOG_HALF)),
                -ndtri_exp(np.minimum(log_sf, _LOG_HALF)),
            )
            log_f = logsumexp(log_w - 0.5 * u**2 - np.log(sd), axis=1) - 0.5 * _LOG_2PI
            Z[:, j] = z
            log_det += log_f + 0.5 * z**2 + 0.5 * _LOG_2PI
        return Z, log_det

    def inverse_transform(self, Z, iterations: int = 200) -> np.ndarray:
        """The rows ``X`` that :meth:`transform` maps to ``Z`` (bisection in each column)."""
        Z = self._check_width(Z, "Z")
        X = np.empty_like(Z)
        for j, (log_w, mu, sd) in enumerate(self.components_):
            if np.isnan(sd[0]):
                X[:, j] = Z[:, j] + mu[0]
                continue
            z = Z[:, j]
            # the target in the tail where it is accurate: ln Φ(z) below the median, else ln Φ(−z)
            lower = z < 0
            target = log_ndtr(np.where(lower, z, -z))
            span = np.abs(z).max() + 10.0
            lo = np.full(len(z), (mu - span * sd).min())
            hi = np.full(len(z), (mu + span * sd).max())
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                u = (mid[:, None] - mu) / sd
                log_cdf = logsumexp(log_w + log_ndtr(u), axis=1)
                log_sf = logsumexp(log_w + log_ndtr(-u), axis=1)
                below = np.where(lower, log_cdf < target, log_sf > target)
                lo = np.where(below, mid, lo)
                hi = np.where(below, hi, mid)
                if np.all(hi - lo <= 4 * np.finfo(float).eps * np.maximum(1, np.abs(mid))):
                    break
            X[:, j] = 0.5 * (lo + hi)
        return X

    def _check_width(self, X, name: str = "X") -> np.ndarray:
        if not hasattr(self, "components_"):
            raise ValueError("MarginalGaussianizer: call fit before transform")
        X = _check_rows(X, name)
        if X.shape[1] != len(self.components_):
            raise ValueError(
                f"{name}: expected {len(self.components_)} columns, as in fit, got {X.shape[1]}"
            )
        return X


def _check_rows(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return X
