"""``NHFDensity``: a Neural Hamiltonian Flow behind scikit-learn's density-estimator interface.

It follows the contract of :class:`sklearn.neighbors.KernelDensity` and
:class:`sklearn.mixture.GaussianMixture`: ``fit(X)``, ``score_samples(X)`` (a log-density per
row), ``score(X)`` (their mean, higher is better) and ``sample(n)``; plain constructor
arguments, so that ``clone``, ``GridSearchCV``, ``cross_val_score`` and pipelines work; fitted
attributes end in ``_``. Inside, :func:`~hamflow.training.fit` trains an :class:`~hamflow.NHF`
with a validation split, early stopping, a cosine schedule and a divergence guard, and the
importance proposal of ``score_samples`` is calibrated on the validation rows.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from ._defensive import GUARD_WEIGHTS, MIXTURE_WEIGHTS, TAIL_GUARD, DefensiveMixture
from .marginals import MarginalGaussianizer
from .nhf import NHF, PROPOSAL_SCALES
from .training import fit

__all__ = ["NHFDensity"]

MARGINALS = ("gaussianize", "standardize", "none")
DEFENSIVE = ("mixture", "gaussian")
FAR = 40.0
"""Rows further out than this many standard deviations get their density from the defensive
density alone (see ``NHFDensity._nhf_log_prob``)."""
AUTO_MEMBERS = 3
"""The most flows ``n_members="auto"`` averages."""
MEMBER_SLACK = 2.0
"""``"auto"`` trains a further member only if it gets at least this many times the CPU time
the first member took to reach its best validation score."""
REPEATED_SHARE = 0.1
"""``fit`` warns when at least this share of the rows repeat another row exactly."""
CALIBRATION_ROWS = 128
"""The most validation rows a member's proposal width is chosen on (every row is scored once
per candidate width, with ``n_score_samples`` momenta each)."""
PROBE_ROWS = 64
"""Rows scored by an untrained member before training, to time the scoring that follows it."""


class NHFDensity(DensityMixin, BaseEstimator):
    """Density estimation on a table with a Neural Hamiltonian Flow (paper Sec. 3.3).

    ``fit`` standardises the columns and maps each to a standard normal through its own
    one-dimensional Gaussian mixture (:class:`~hamflow.marginals.MarginalGaussianizer`; the
    log-dets of both maps are counted, so every score is in the units of ``X``). It holds out
    ``validation_fraction`` of the rows, trains :class:`~hamflow.NHF` on its importance-weighted
    momentum bound with :func:`hamflow.training.fit` until ``max_time`` CPU seconds or
    ``max_steps`` steps (or ``patience`` validation scores without improvement), restores the
    best validation state and calibrates the width of the momentum proposal on the validation
    rows. When the flow stops early with much of ``max_time`` left (a small table), it trains
    up to two more in that time, each holding out its own validation rows, and averages their
    densities: flows of different splits and seeds err on different rows.
    The density it scores and samples is the NHF mixed with a classical density of the
    training rows (``defensive``: a Gaussian mixture with its components chosen by BIC, by
    default), with the weight chosen on the validation rows: a row the flow never learned cannot
    score far below what the classical density gives it, and where the flow has learned less
    than the classical density, the mixture leans on the latter.
    ``score_samples`` is the importance-weighted estimate of ``ln p(x)`` with
    ``n_score_samples`` quasi-random momenta per row, from a fixed seed: the same rows score the
    same on every call. docs/density/fitting.md says which options suit which data.

    Parameters
    ----------
    num_flows : int
        Hamiltonian flows in the stack (``NHF``'s ``num_flows``).
    hidden : tuple of int
        Hidden widths of the potentials' and the encoder's MLPs.
    prior : str
        ``"normal"`` or ``"generalized_normal"`` (learned tails), as in :class:`~hamflow.NHF`.
    affine : str
        ``"triangular"`` (full covariance) or ``"diagonal"`` data-initialised affine map.
    model_options : dict or None
        Any other :class:`~hamflow.NHF` keyword arguments.
    max_time : float or None
        Budget in CPU seconds for the whole fit: the marginal map and the defensive density
        are fitted first (the latter on all the rows, with as much time kept to fit it again on
        the rows no member held out, to choose its weight), and training gets what they leave
        (at least half of it), less the time each member's calibration and validation scores
        will take (timed on a few rows before training). One thread by default: about
        wall-clock seconds.
    max_steps : int or None
        Training budget in optimiser steps, per member. At least one budget must be set.
    n_members : int or "auto"
        Flows averaged in the density, trained one after the other, each on the rows outside
        its own validation slice (disjoint while ``n_members * validation_fraction <= 1``) and
        with its own seed. ``"auto"`` (with ``max_time``): the first member gets the whole
        training budget, and the time it leaves goes to up to ``AUTO_MEMBERS - 1`` more, as
        many as get ``MEMBER_SLACK`` times the time the first took to its best validation
        score (none when it used the budget); without ``max_time``, one. A number: each member
        gets an equal share of the time left when it starts (one left with under a twentieth
        of its share is dropped, with a warning). Each member's time covers calibrating its
        proposal (on at most ``CALIBRATION_ROWS`` of its validation rows) and scoring its
        validation rows.
    batch_size : int
        Rows per step (capped at the training rows).
    learning_rate : float
        AdamW's initial learning rate (cosine-decayed to a twentieth over the budget).
    weight_decay : float
        AdamW's decoupled weight decay.
    weight_average : float or None
        Keep an exponential moving average of the weights with this decay (e.g. ``0.99``) and
        validate and return it instead of the last weights (``None``: off).
    validation_fraction : float
        Share of the rows held out for early stopping and calibration (2 to 2,000 rows).
    patience : int or None
        Validation scores (every ``eval_every`` steps) without improvement before stopping.
    eval_every : int
        Steps between validation scores.
    n_score_samples : int
        Momenta per row in ``score_samples`` (the ``K`` of the importance-weighted estimate).
    defensive : str
        The classical density ``g`` mixed into the flow's: ``"mixture"``, a full-covariance
        Gaussian mixture of the training rows with 1 to 20 components chosen by BIC, whose
        weight ``"auto"`` chooses among 0.005-0.99; ``"gaussian"``, the rows' full-covariance
        Gaussian as a guard only, with weights 0.005-0.2. Its fit counts against ``max_time``.
        A conditional fit always uses ``"gaussian"``, of ``x`` alone.
    defensive_weight : float or "auto"
        The density is ``(1 − w) p_NHF + w g``: a row the flow misses scores at least
        ``ln w + ln g(x)``, at a cost of at most ``−ln(1 − w)`` nats on any row. ``"auto"``
        chooses ``w`` on the validation rows, then refits ``g`` (its components chosen again)
        on all the rows; ``0`` turns it off.
    marginals : str
        How the columns are mapped before the flow (the log-det is counted either way, so the
        scores stay in the units of ``X``): ``"gaussianize"`` standardises each column and maps
        it to a standard normal through its own one-dimensional Gaussian mixture
        (:class:`~hamflow.marginals.MarginalGaussianizer`), so that the flow learns only how the
        columns depend on each other; ``"standardize"`` only centres and scales them;
        ``"none"`` leaves them as they are.
    random_state : int, RandomState or None
        Seeds the split, the training and the scoring draws.
    verbose : bool
        Show a progress bar while fitting.
    n_threads : int or None
        torch threads during ``fit``, and the BLAS and OpenMP threads of its scikit-learn
        mixtures during ``fit`` and ``score_samples`` (``None``: leave the settings). One
        thread is fastest for small tables on a shared machine; raise it for wide tables and
        large batches.
    warm_start : bool
        With a fitted model, a new ``fit`` continues training it instead of starting afresh.

    Attributes
    ----------
    models_ : list of NHF
        The trained torch modules (in the coordinates the marginal map leads to), one per
        member; the density's flow part is their average.
    model_ : NHF
        The first member (the only one with ``n_members_ == 1``).
    n_members_ : int
        Flows averaged.
    history_ : list of dict
        Validation scores and training events of every member, each record with its
        ``member`` (see :class:`~hamflow.training.FitResult`).
    n_iter_ : int
        Optimiser steps taken, over all members.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    mean_, scale_ : ndarray
        The standardisation (zeros and ones with ``marginals="none"``).
    marginals_ : MarginalGaussianizer or None
        The fitted per-column map (``marginals="gaussianize"``), applied after the
        standardisation.
    defensive_ : DefensiveMixture
        The fitted classical density ``g`` (in standardised coordinates).
    defensive_weight_ : float
        The weight of ``g`` in the mixture.
    defensive_scores_ : dict
        The mean validation log-density for each candidate weight (``"auto"`` only).
    fit_results_ : list of FitResult
        Totals of each member's training run (best step, early stop, skipped steps, restores).
    fit_result_ : FitResult
        The first member's.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)) @ np.array([[1.0, 0.5, 0], [0, 1.0, 0], [0, 0, 2.0]])
    >>> est = NHFDensity(max_steps=40, max_time=None, hidden=(16, 16), random_state=0).fit(X)
    >>> est.score_samples(X[:4]).shape, est.sample(5, random_state=0).shape
    ((4,), (5, 3))
    >>> bool(np.array_equal(est.score_samples(X[:4]), est.score_samples(X[:4])))
    True
    """

    def __init__(
        self,
        num_flows: int = 4,
        hidden: tuple[int, ...] = (128, 128),
        prior: str = "normal",
        affine: str = "triangular",
        model_options: dict | None = None,
        max_time: float | None = 60.0,
        max_steps: int | None = None,
        n_members: int | str = "auto",
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        weight_average: float | None = None,
        validation_fraction: float = 0.1,
        patience: int | None = 40,
        eval_every: int = 25,
        n_score_samples: int = 2048,
        defensive: str = "mixture",
        defensive_weight: float | str = "auto",
        marginals: str = "gaussianize",
        random_state=None,
        verbose: bool = False,
        n_threads: int | None = 1,
        warm_start: bool = False,
    ) -> None:
        self.num_flows = num_flows
        self.hidden = hidden
        self.prior = prior
        self.affine = affine
        self.model_options = model_options
        self.max_time = max_time
        self.max_steps = max_steps
        self.n_members = n_members
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.weight_average = weight_average
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.eval_every = eval_every
        self.n_score_samples = n_score_samples
        self.defensive = defensive
        self.defensive_weight = defensive_weight
        self.marginals = marginals
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.warm_start = warm_start

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X, y=None) -> NHFDensity:
        """Train on the rows of ``X`` ``(n_samples, n_features)``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            The rows whose density is learned.
        y : array of shape (n_samples,) or (n_samples, n_context), optional
            A context per row: the estimator then learns the conditional density
            ``p(x | y)`` (``NHF(dim, context_dim=n_context)``), and ``score_samples``,
            ``score`` and ``sample`` take a ``y`` too.

        Returns
        -------
        NHFDensity
            ``self``, fitted.
        """
        with self._threads():
            return self._fit(X, y)

    def _threads(self):
        """Limit the BLAS and OpenMP threads of numpy and scikit-learn to ``n_threads`` (the
        mixtures' fits spin-wait on a busy machine: 0.8 CPU seconds on one thread against 41 on
        two for a BIC search on 300 rows under a load of 3)."""
        if self.n_threads is None:
            return contextlib.nullcontext()
        return threadpool_limits(limits=int(self.n_threads))

    def _fit(self, X, y) -> NHFDensity:
        start = time.process_time()
        warm = self.warm_start and hasattr(self, "model_")
        X = validate_data(self, X, dtype=np.float64, reset=not warm, ensure_min_samples=2)
        if self.defensive not in DEFENSIVE:
            raise ValueError(f"defensive: expected one of {DEFENSIVE}, got {self.defensive!r}")
        _warn_discrete(X)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        if warm and (y is None) != (self.context_dim_ is None):
            raise ValueError(
                "y: a warm start must keep the fitted model's context (y) or lack of one"
            )
        if not warm:
            self.seed_ = seed
            self.context_dim_ = None
            if y is not None:
                c = _check_context(y, len(X))
                self.context_dim_ = c.shape[1]
                self.context_mean_, self.context_scale_ = c.mean(0), c.std(0)
                self.context_scale_[self.context_scale_ <= 1e-12] = 1.0
            if self.marginals not in MARGINALS:
                raise ValueError(f"marginals: expected one of {MARGINALS}, got {self.marginals!r}")
            if self.marginals == "none":
                self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
            else:
                self.mean_ = X.mean(0)
                scale = X.std(0)
                self.scale_ = np.where(scale > 1e-12 * (1 + np.abs(self.mean_)), scale, 1.0)
            self.marginals_ = None
            if self.marginals == "gaussianize":
                standardized = (X - self.mean_) / self.scale_
                self.marginals_ = MarginalGaussianizer(random_state=seed % 2**31).fit(standardized)
        # one table of [latent rows u | standardised rows s | log-det of s -> u], split together
        u, s_rows, log_det = self._to_latent(X)
        rows = torch.as_tensor(np.c_[u, s_rows, log_det], dtype=torch.float64)
        if not (
            isinstance(self.validation_fraction, (int, float)) and 0 < self.validation_fraction < 1
        ):
            raise ValueError(
                "validation_fraction: expected a number in (0, 1) (early stopping and the "
                f"calibration need validation rows), got {self.validation_fraction!r}"
            )
        n_val = min(2000, max(2, int(round(self.validation_fraction * len(rows)))))
        if len(rows) - n_val < 2:
            raise ValueError(
                f"X: {len(rows)} rows leave too few for training after holding out "
                f"validation_fraction={self.validation_fraction}; pass more rows"
            )
        members = len(self.models_) if warm and self.n_members == "auto" else self._members()
        if warm and len(self.models_) != members:
            raise ValueError(
                f"n_members: a warm start must keep the fitted {len(self.models_)} member(s), "
                f"got {members}"
            )
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(rows), generator=gen)
        context = self._context(y, len(X))
        d = X.shape[1]
        components = "bic" if self.defensive == "mixture" and context is None else 1
        before = time.process_time()
        # g of all the rows, the one kept; the time it took is kept for fitting g again after
        # training, on the rows no member held out, to choose its weight on the held-out ones
        final = DefensiveMixture(rows[:, d:-1].numpy(), components, seed % 2**31)
        refit_time = time.process_time() - before
        scoring = 0.0 if self.max_time is None else self._scoring_seconds(rows, n_val, context)
        budget = self._training_budget(time.process_time() - start + refit_time + scoring)
        trained = 0.0  # CPU seconds in training, and in the scoring of members after the first
        if not warm:
            self.models_ = []
        results, val_log_p, val_rows = [], [], []
        for m in range(members):
            share = self._member_budget(m, members, budget, trained, results, warm, scoring)
            if share == 0.0:
                break
            began = time.process_time()
            train_idx, val_idx = _member_rows(order, m, n_val)
            result, seconds = self._train_member(m, rows, train_idx, val_idx, context, share, seed)
            results.append(result)
            val = rows[val_idx, :d].float()
            c_val = None if context is None else context[val_idx]
            lp = self._member_log_prob(self.models_[m], val, c_val)
            # the first member's scoring was set aside before training; the others' count here
            trained += seconds if m == 0 else time.process_time() - began
            val_log_p.append(lp + rows[val_idx, -1].numpy())
            val_rows.append(rows[val_idx, d:-1].numpy())
        self.model_, self.n_members_ = self.models_[0], len(self.models_)
        held = order[: min(len(rows), len(results) * n_val)]  # every member's validation rows
        rest = order[len(held) :] if len(rows) - len(held) > d else order[n_val:]
        g = final.refit(rows[rest, d:-1].numpy())  # g without any member's validation rows
        self._choose_defensive_weight(g, np.concatenate(val_log_p), np.concatenate(val_rows))
        self.defensive_ = final
        self.fit_results_, self.fit_result_ = results, results[0]
        self.history_ = [{**h, "member": m} for m, r in enumerate(results) for h in r.history]
        self.n_iter_ = sum(r.steps for r in results)
        return self

    def _train_member(self, m, rows, train_idx, val_idx, context, max_time, seed):
        """Build (unless warm) and train member ``m`` on ``rows[train_idx]``, validating on
        ``rows[val_idx]``, then calibrate its proposal there: ``(FitResult, training CPU s)``."""
        d = self.n_features_in_
        seed = (seed + m) % (2**31 - 1)
        train, val = rows[train_idx, :d].float(), rows[val_idx, :d].float()
        c_train = None if context is None else context[train_idx]
        c_val = None if context is None else context[val_idx]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if len(self.models_) == m:
                self.models_.append(self._build_model(d))
            model = self.models_[m]
            began = time.process_time()
            result = fit(
                model,
                train,
                val,
                context=c_train,
                context_val=c_val,
                max_time=max_time,
                max_steps=self.max_steps,
                batch_size=self.batch_size,
                lr=self.learning_rate,
                weight_decay=self.weight_decay,
                average=self.weight_average,
                patience=self.patience,
                eval_every=self.eval_every,
                threads=self.n_threads,
                seed=seed,
                verbose=self.verbose,
            )
            seconds = time.process_time() - began
            cal = slice(0, CALIBRATION_ROWS)  # the validation rows come in a random order
            c_cal = None if c_val is None else c_val[cal]
            model.calibrate_proposal(val[cal], c_cal, num_samples=self.n_score_samples, seed=seed)
        return result, seconds

    def _scoring_seconds(self, rows: torch.Tensor, n_val: int, context) -> float:
        """The CPU seconds one member's scoring after training will take: calibrating its
        proposal (every width of ``PROPOSAL_SCALES`` on up to ``CALIBRATION_ROWS`` rows) and
        scoring its ``n_val`` validation rows, timed on ``PROBE_ROWS`` rows through an
        untrained member (the random state is left as it was)."""
        d = self.n_features_in_
        probe = rows[:PROBE_ROWS, :d].float()
        c_probe = None if context is None else context[:PROBE_ROWS]
        with torch.random.fork_rng(devices=[]):
            model = self._build_model(d)
            began = time.process_time()
            self._member_log_prob(model, probe, c_probe)
            per_row = (time.process_time() - began) / len(probe)
        return per_row * (len(PROPOSAL_SCALES) * min(n_val, CALIBRATION_ROWS) + n_val)

    def _members(self) -> int:
        """The most flows to average: ``n_members``, or ``AUTO_MEMBERS`` for ``"auto"`` with a
        time budget (one without: a budget in steps alone leaves no time over)."""
        k = self.n_members
        if k == "auto":
            return AUTO_MEMBERS if self.max_time is not None else 1
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_members: expected 'auto' or an integer >= 1, got {k!r}")
        return int(k)

    def _member_budget(
        self, m, members, budget, trained, results, warm, scoring=0.0
    ) -> float | None:
        """Training CPU seconds for member ``m`` of at most ``members``, ``trained`` seconds
        into a ``budget`` (``None``: no time budget; ``0.0``: train no more members), where
        every member after the first also needs ``scoring`` seconds after its training (the
        first member's is not in ``budget``).

        ``"auto"``: the first member gets the whole budget, and the time it leaves goes to at
        most ``members - 1`` more, as many as get ``MEMBER_SLACK`` times the time the first
        took to reach its best validation score, and their scoring. A number of members: an
        equal share of what is left after the scoring, each (a member left with under a
        twentieth of its share is dropped with a warning; a warm start trains every fitted
        member on, at least for that twentieth).
        """
        if budget is None:
            return None
        left = budget - trained
        if self.n_members == "auto" and not warm:
            if m == 0:
                return budget
            need = max(MEMBER_SLACK * _seconds_to_best(results[0]), 1e-3 * budget) + scoring
            k = min(members - m, int(left // need))
            return left / k - scoring if k >= 1 else 0.0
        rest = members - m
        left -= scoring * (rest - 1 if m == 0 else rest)
        share, floor = left / rest, 0.05 * budget / members
        if share >= floor:
            return share
        if warm:
            return floor
        warnings.warn(
            f"max_time: the training budget ran out after {m} of {members} members; "
            "the density averages those. Raise max_time or lower n_members.",
            UserWarning,
            stacklevel=4,  # the caller of fit
        )
        return 0.0

    def _training_budget(self, spent: float) -> float | None:
        """The CPU seconds left for training once ``spent`` went into the preprocessing: the
        rest of ``max_time``, but at least half of it (with a warning when it is cut)."""
        if self.max_time is None:
            return None
        if spent > 0.5 * self.max_time:
            warnings.warn(
                f"max_time: fitting the marginal map and the defensive density, and scoring a "
                f"member's validation rows, take {spent:.1f} of {self.max_time} CPU seconds; "
                "training gets half the budget. Raise max_time, or pass defensive='gaussian' / "
                "marginals='standardize' / a lower n_score_samples for cheaper preprocessing.",
                UserWarning,
                stacklevel=4,  # the caller of fit
            )
        return max(self.max_time - spent, 0.5 * self.max_time)

    def _choose_defensive_weight(
        self, g: DefensiveMixture, log_p: np.ndarray, s_val: np.ndarray
    ) -> None:
        """Choose the weight of the defensive density from the validation rows' flow
        log-densities ``log_p`` (each row scored by the member that did not train on it), their
        standardised values ``s_val``, and ``g`` fitted on the rows no member held out."""
        w = self.defensive_weight
        self.defensive_scores_ = {}
        if w == "auto":
            wide = self.defensive == "mixture" and self.context_dim_ is None
            weights = MIXTURE_WEIGHTS if wide else GUARD_WEIGHTS
            w, self.defensive_scores_ = g.choose(log_p, s_val, weights)
        elif not (isinstance(w, (int, float)) and 0 <= w < 1):
            raise ValueError(f"defensive_weight: expected 'auto' or a number in [0, 1), got {w!r}")
        self.defensive_weight_ = float(w)

    def _to_latent(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(u, s, log_det)``: the rows the NHF models, the standardised rows, and
        ``ln |det ∂u/∂s|`` per row (zero without the marginal map)."""
        s_rows = (X - self.mean_) / self.scale_
        if self.marginals_ is None:
            return s_rows, s_rows, np.zeros(len(X))
        u, log_det = self.marginals_.transform(s_rows)
        return u, s_rows, log_det

    def _nhf_log_prob(self, z: torch.Tensor, context) -> np.ndarray:
        """The log-density of latent rows under the average of the members' densities."""
        lp = [self._member_log_prob(model, z, context) for model in self.models_]
        if len(lp) == 1:
            return lp[0]
        with np.errstate(divide="ignore"):
            return logsumexp(np.stack(lp), axis=0) - math.log(len(lp))

    def _member_log_prob(self, model: NHF, z: torch.Tensor, context) -> np.ndarray:
        """One member's log-density of latent rows, one shared set of momenta.

        A row more than ``FAR`` standard deviations out in some column (its log-density there
        is below -800 under the training rows' marginals) is not moved through the flows, whose
        float32 arithmetic would overflow: its NHF density is taken as 0 (``-inf``), and the
        defensive density ``g`` scores it. So does a row whose score overflows anyway.
        """
        lp = np.full(len(z), -np.inf)
        near = (z.abs() <= FAR).all(dim=1)
        if bool(near.any()):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed_)
                # one set of momenta for every row: a row's score depends on that row alone,
                # not on the order or the company it comes in
                lp[near.numpy()] = (
                    model.log_prob(
                        z[near],
                        None if context is None else context[near],
                        num_samples=self.n_score_samples,
                        sampler="common",
                    )
                    .double()
                    .numpy()
                )
        return np.where(np.isfinite(lp), lp, -np.inf)

    def _build_model(self, dim: int) -> NHF:
        options = dict(self.model_options or {})
        for name in ("num_flows", "prior", "affine"):
            options.setdefault(name, getattr(self, name))
        options.setdefault("hidden", tuple(self.hidden))
        options.setdefault("encoder_hidden", tuple(self.hidden))
        if self.context_dim_ is not None:
            options["context_dim"] = self.context_dim_
        return NHF(dim, **options)

    def _context(self, y, n: int) -> torch.Tensor | None:
        """The standardised context tensor for ``n`` rows, checked against the fit."""
        if y is None:
            if self.context_dim_ is not None:
                raise ValueError(
                    f"y: this estimator was fitted on a context of {self.context_dim_} "
                    "column(s): pass y, one context row per row of X"
                )
            return None
        if self.context_dim_ is None:
            raise ValueError("y: this estimator was fitted without a context; pass no y")
        c = _check_context(y, n)
        if c.shape[1] != self.context_dim_:
            raise ValueError(
                f"y: expected {self.context_dim_} context column(s), as in fit, got {c.shape[1]}"
            )
        c = (c - self.context_mean_) / self.context_scale_
        return torch.as_tensor(c, dtype=torch.float32)

    # -- scoring and sampling -------------------------------------------------------------------

    def score_samples(self, X, y=None) -> np.ndarray:
        """Log-density of each row of ``X``, in the units of ``X``, shape ``(n_samples,)``
        (given its context row of ``y``, for an estimator fitted with one).

        The importance-weighted estimate with ``n_score_samples`` quasi-random momenta, one set
        drawn from the fitted seed and shared by every row: a row gets the same score on every
        call, whatever rows come with it and in whatever order.
        """
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with self._threads():
            u, s_rows, log_det = self._to_latent(X)
            u = torch.as_tensor(u, dtype=torch.float32)
            lp = self._nhf_log_prob(u, self._context(y, len(X))) + log_det
            lp = self.defensive_.mix(lp, s_rows, self.defensive_weight_)
        return lp - float(np.log(self.scale_).sum())

    def score(self, X, y=None) -> float:
        """Mean log-density of the rows of ``X`` (higher is better), given ``y`` if fitted
        with a context."""
        return float(np.mean(self.score_samples(X, y)))

    def sample(self, n_samples: int = 1, random_state=None, y=None) -> np.ndarray:
        """Draw ``n_samples`` rows from the fitted density, shape ``(n_samples, n_features)``.

        An estimator fitted with a context needs ``y``: one context row for every sample,
        ``(n_context,)``, or one per sample, ``(n_samples, n_context)``.
        """
        check_is_fitted(self, "model_")
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples: expected an integer >= 1, got {n_samples!r}")
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        context = None
        if y is not None or self.context_dim_ is not None:
            rows = np.atleast_2d(np.asarray(y, dtype=np.float64)) if y is not None else None
            if rows is not None and self.context_dim_ == 1 and rows.shape == (1, n_samples):
                rows = rows.T
            if rows is not None and len(rows) == 1:
                rows = np.repeat(rows, n_samples, axis=0)
            context = self._context(rows, int(n_samples))
        z = self._sample_members(int(n_samples), context, seed)
        if self.marginals_ is not None:
            z = self.marginals_.inverse_transform(z)
        rng = np.random.default_rng(seed)
        broad = rng.random(len(z)) < self.defensive_weight_  # the defensive component's rows
        z[broad] = self.defensive_.sample(int(broad.sum()), rng)
        if self.defensive_weight_ > 0 and self.defensive_.guard is not None:
            tail = rng.random(len(z)) < TAIL_GUARD  # the blended-in Gaussian's rows
            z[tail] = self.defensive_.sample_tail(int(tail.sum()), rng)
        return z * self.scale_ + self.mean_

    def _sample_members(self, n: int, context, seed: int) -> np.ndarray:
        """``n`` latent rows from the average of the members: each row from a member drawn
        uniformly."""
        models = self.models_
        which = np.random.default_rng([seed, 1]).integers(len(models), size=n)
        z = np.empty((n, self.n_features_in_))
        for m, model in enumerate(models):
            pick = np.flatnonzero(which == m) if len(models) > 1 else np.arange(n)
            if len(pick) == 0:
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + m)
                c = None if context is None else context[torch.as_tensor(pick)]
                z[pick] = model.sample(len(pick), context=c).double().numpy()
        return z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _seconds_to_best(result) -> float:
    """CPU seconds a training run took to reach its best validation score."""
    at_best = [
        h["seconds"] for h in result.history if "val_nll" in h and h["step"] == result.best_step
    ]
    return at_best[0] if at_best else result.seconds


def _member_rows(order: torch.Tensor, m: int, n_val: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Member ``m``'s training and validation row indices: the ``m``-th slice of ``n_val`` rows
    of the shuffled ``order`` (wrapping around), and every other row."""
    val_idx = order[torch.arange(m * n_val, (m + 1) * n_val) % len(order)]
    keep = torch.ones(len(order), dtype=torch.bool)
    keep[val_idx] = False
    return order[keep[order]], val_idx


def _check_context(y, n: int) -> np.ndarray:
    """``y`` as a finite float array ``(n, n_context)``, or a clear error."""
    c = np.asarray(y, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or len(c) != n:
        raise ValueError(
            f"y: expected one context row per row of X, shape ({n},) or ({n}, n_context), "
            f"got {c.shape}"
        )
    if not np.isfinite(c).all():
        raise ValueError("y: expected finite context values, got NaN or inf")
    return c


def _warn_discrete(X: np.ndarray) -> None:
    """Warn about values that repeat: a column with at most ``√n`` distinct values in ``n``
    rows (counts, levels, a coarse resolution) and rows that repeat exactly (a tenth or
    more). A continuous density puts spikes on repeated values and scores them too well."""
    n = len(X)
    if n < 20:
        return
    most = max(2, math.isqrt(n))
    few = [j for j in range(X.shape[1]) if len(np.unique(X[:, j])) <= most]
    if few:
        warnings.warn(
            f"X: columns {few} take few distinct values ({most} or fewer in {n} rows); a "
            "continuous density will put spikes on them and score them too well. Dequantise "
            "them (add uniform noise of one step) or drop them.",
            UserWarning,
            stacklevel=4,  # the caller of fit
        )
    repeats = n - len(np.unique(X, axis=0))
    if repeats >= REPEATED_SHARE * n:
        warnings.warn(
            f"X: {repeats} of {n} rows repeat another row exactly; a continuous density will "
            "put spikes on them and score them too well. Drop the copies, or dequantise.",
            UserWarning,
            stacklevel=4,  # the caller of fit
        )
