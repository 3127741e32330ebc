"""NHFDensity: the scikit-learn contract, the units of its scores, reproducibility, errors."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hamflow import NHF, NHFDensity
from hamflow._defensive import TAIL_GUARD, DefensiveMixture

TINY = dict(
    num_flows=2, hidden=(16, 16), max_steps=40, max_time=None, n_score_samples=32, n_members=1
)


def data(n=300, d=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])[:d, :d]
    return scale * rng.normal(size=(n, d)) @ mix + 3.0


@pytest.fixture(scope="module")
def fitted():
    return NHFDensity(random_state=0, **{**TINY, "n_members": 3}).fit(data())


def test_scores_are_in_the_units_of_x():
    """Scaling the data by c must shift every log-density by exactly -d ln c: the standardisation's
    log-det is counted. A model fitted on X and one on 10 X see the same standardised rows."""
    x = data()
    a = NHFDensity(random_state=0, **TINY).fit(x)
    b = NHFDensity(random_state=0, **TINY).fit(10 * x)
    np.testing.assert_allclose(
        b.score_samples(10 * x[:20]), a.score_samples(x[:20]) - 3 * np.log(10), atol=1e-4
    )


def test_score_is_mean_of_score_samples_and_matches_the_model(fitted):
    x = data(seed=1)[:50]
    assert fitted.score(x) == pytest.approx(fitted.score_samples(x).mean())
    # the same number straight from the torch modules: standardise, Gaussianise each column
    # (counting its log-det), average the members' densities, mix in the defensive density,
    # count the scaling
    assert fitted.n_members_ == len(fitted.models_) == 3
    s = (x - fitted.mean_) / fitted.scale_
    u, log_det = fitted.marginals_.transform(s)
    u = torch.as_tensor(u, dtype=torch.float32)
    densities = []
    for model in fitted.models_:
        with torch.random.fork_rng():
            torch.manual_seed(fitted.seed_)
            densities.append(model.log_prob(u, num_samples=32, sampler="common").double().exp())
    lp = torch.stack(densities).mean(0).log().numpy()
    mixed = fitted.defensive_.mix(lp + log_det, s, fitted.defensive_weight_)
    np.testing.assert_allclose(fitted.score_samples(x), mixed - np.log(fitted.scale_).sum())


def test_the_defensive_density_bounds_every_row_and_costs_little(fitted):
    """With weight w, every row scores at least ln w + ln g(row) (the defensive mixture) and
    ln 0.001 + ln N(row) (the rows' Gaussian blended in), and at most -ln(1 - w) below the flow
    alone, less the blend's 0.001; "auto" picks w on the validation rows."""
    assert fitted.defensive_weight_ in fitted.defensive_scores_
    best = max(fitted.defensive_scores_, key=fitted.defensive_scores_.get)
    assert fitted.defensive_weight_ == best
    x = np.concatenate([data(seed=3)[:20], [[30.0, -30.0, 30.0]]])  # the last row: far out
    w = fitted.defensive_weight_
    z = (x - fitted.mean_) / fitted.scale_
    log_det = np.log(fitted.scale_).sum()
    u, u_log_det = fitted.marginals_.transform(z)
    u = torch.as_tensor(u, dtype=torch.float32)
    flow_only = fitted._nhf_log_prob(u, None) + u_log_det - log_det
    both = fitted.score_samples(x)
    g = fitted.defensive_.log_prob(z) - log_det
    blend = np.log1p(-TAIL_GUARD)
    assert (both >= np.log(w) + g + blend - 1e-9).all()
    assert (both >= flow_only + np.log1p(-w) + blend - 1e-9).all()
    gauss = fitted.defensive_.guard or fitted.defensive_.mixture  # the rows' Gaussian
    assert gauss.n_components == 1
    assert (both >= np.log(TAIL_GUARD) + gauss.score_samples(z) - log_det - 1e-9).all()
    assert both[-1] > flow_only[-1] + 5  # the far row is rescued


def test_scores_do_not_depend_on_order_company_or_call(fitted):
    x = data(seed=2)[:30]
    s = fitted.score_samples(x)
    np.testing.assert_array_equal(s, fitted.score_samples(x))
    perm = np.random.default_rng(0).permutation(30)
    np.testing.assert_allclose(fitted.score_samples(x[perm]), s[perm], rtol=1e-5)
    np.testing.assert_allclose(fitted.score_samples(x[:1]), s[:1], rtol=1e-5)


def test_random_state_makes_fit_reproducible_and_differs_across_seeds():
    x = data()
    a = NHFDensity(random_state=3, **TINY).fit(x).score_samples(x[:10])
    b = NHFDensity(random_state=3, **TINY).fit(x).score_samples(x[:10])
    c = NHFDensity(random_state=4, **TINY).fit(x).score_samples(x[:10])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fitted_attributes(fitted):
    assert fitted.n_features_in_ == 3
    assert isinstance(fitted.model_, NHF) and not fitted.model_.training
    assert fitted.n_members_ == 3 and len(fitted.models_) == len(fitted.fit_results_) == 3
    assert fitted.model_ is fitted.models_[0] and fitted.fit_result_ is fitted.fit_results_[0]
    assert fitted.n_iter_ == 120 == sum(r.steps for r in fitted.fit_results_)
    scores = [(h["member"], h["step"]) for h in fitted.history_ if "val_nll" in h]
    assert scores == [(m, step) for m in range(3) for step in (25, 40)]
    # the members differ: their own seeds and validation rows
    first = [p.detach().clone() for p in fitted.models_[0].parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(first, fitted.models_[1].parameters()))


def test_sample_is_plain_in_data_units_and_seeded(fitted):
    s = fitted.sample(4000, random_state=0)
    assert isinstance(s, np.ndarray) and s.shape == (4000, 3)
    np.testing.assert_array_equal(s, fitted.sample(4000, random_state=0))
    assert not np.array_equal(s, fitted.sample(4000, random_state=1))
    # the model starts from the data's Gaussian: the samples' mean is the data's (3, not 0)
    np.testing.assert_allclose(s.mean(0), data().mean(0), atol=0.3)


def test_not_fitted_and_bad_input_errors(fitted):
    with pytest.raises(NotFittedError):
        NHFDensity().score_samples(data())
    with pytest.raises(ValueError, match="NaN"):
        NHFDensity(**TINY).fit(np.array([[0.0, np.nan], [1.0, 2.0], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="infinity|inf"):
        NHFDensity(**TINY).fit(np.array([[0.0, np.inf], [1.0, 2.0], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="2D"):
        NHFDensity(**TINY).fit(np.arange(10.0))
    with pytest.raises(ValueError, match="3 features"):
        fitted.score_samples(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)
    with pytest.raises(ValueError, match="validation_fraction"):
        NHFDensity(validation_fraction=0, **TINY).fit(data())
    with pytest.raises(ValueError, match="too few"):
        NHFDensity(**TINY).fit(data(n=3))
    with pytest.raises(ValueError, match="defensive_weight"):
        NHFDensity(defensive_weight=1.5, **TINY).fit(data())
    with pytest.raises(ValueError, match="marginals"):
        NHFDensity(marginals="rank", **TINY).fit(data())
    with pytest.raises(ValueError, match="defensive: expected one of"):
        NHFDensity(defensive="kde", **TINY).fit(data())


def test_gaussianized_marginals_learn_a_spike_that_standardising_cannot():
    """A column that is zero in a third of the rows (a count, a balance) and exponential
    otherwise: the per-column map learns its spike from every row, while a flow on the
    standardised column has to learn it in a few steps. Same budget, same seed."""
    rng = np.random.default_rng(0)
    n = 1200
    spike = rng.random(n) < 1 / 3
    x0 = np.where(spike, 1e-3 * rng.random(n), 1 + rng.exponential(size=n))
    x = np.c_[x0, x0 + rng.normal(size=n)]
    train, test = x[:1000], x[1000:]
    scores = {  # the Gaussian guard only: the BIC mixture would rescue either
        m: NHFDensity(marginals=m, defensive="gaussian", random_state=0, **TINY)
        .fit(train)
        .score(test)
        for m in ("gaussianize", "standardize")
    }
    assert scores["gaussianize"] > scores["standardize"] + 1.0, scores


def test_far_rows_get_the_defensive_score_not_an_error(fitted):
    """A row hundreds of standard deviations out is not pushed through the float32 flows
    (where it would overflow): the defensive density scores it, finitely."""
    far = np.array([[1e3, -1e3, 3.0], [3.0, 3.0, 1e4]])
    scores = fitted.score_samples(far)
    z = (far - fitted.mean_) / fitted.scale_
    no_flow = np.full(len(z), -np.inf)
    expected = fitted.defensive_.mix(no_flow, z, fitted.defensive_weight_)
    np.testing.assert_allclose(scores, expected - np.log(fitted.scale_).sum(), rtol=1e-9)


def test_discrete_column_warns():
    x = data()
    x[:, 0] = np.round(x[:, 0] > 3)
    with pytest.warns(UserWarning, match=r"columns \[0\]"):
        NHFDensity(**{**TINY, "max_steps": 2}).fit(x)


@pytest.mark.parametrize("case", ["counts", "copies", "continuous"])
def test_count_columns_and_repeated_rows_warn_and_continuous_rows_do_not(case):
    """A Poisson count column (about ten values in 300 rows) and a table whose rows are copies
    of 30 rows get a warning naming what repeats; continuous rows get none."""
    import warnings

    rng = np.random.default_rng(0)
    x = data()
    if case == "counts":
        x[:, 1] = rng.poisson(3.0, len(x))
    elif case == "copies":
        x = np.repeat(x[:30], 10, axis=0) + 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NHFDensity(**{**TINY, "max_steps": 2}).fit(x)
    said = " ".join(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    if case == "counts":
        assert "columns [1] take few distinct values" in said
    elif case == "copies":
        assert "270 of 300 rows repeat another row" in said
    else:
        assert "distinct" not in said and "repeat" not in said


def test_pickle_round_trip(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    x = data(seed=5)[:10]
    np.testing.assert_array_equal(again.score_samples(x), fitted.score_samples(x))


def test_clone_gridsearch_cross_val_and_pipeline():
    x = data(n=200)
    est = NHFDensity(random_state=0, **{**TINY, "max_steps": 10})
    assert clone(est).get_params() == est.get_params()
    search = GridSearchCV(est, {"num_flows": [1, 2]}, cv=2).fit(x)
    assert search.best_params_["num_flows"] in (1, 2)
    scores = cross_val_score(est, x, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    pipe = make_pipeline(StandardScaler(), est).fit(x)
    assert np.isfinite(pipe.score_samples(x[:5])).all()


def test_warm_start_continues_training():
    x = data()
    est = NHFDensity(random_state=0, warm_start=True, **TINY).fit(x)
    first = {k: v.clone() for k, v in est.model_.state_dict().items()}
    model = est.model_
    est.fit(x)
    assert est.model_ is model  # the same module, trained further
    assert any(not torch.equal(first[k], v) for k, v in est.model_.state_dict().items())


def conditional_data(n, seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, size=n)
    x = np.stack([2 * c, -c], 1) + 0.3 * rng.normal(size=(n, 2))
    return x, c


@pytest.fixture(scope="module")
def conditional():
    x, c = conditional_data(600, 0)
    opts = {**TINY, "max_steps": 300, "learning_rate": 3e-3}
    return NHFDensity(random_state=0, **opts).fit(x, c), NHFDensity(random_state=0, **opts).fit(x)


def test_fit_with_y_learns_the_conditional_density(conditional):
    """x given c has a 0.3 spread around (2c, -c): knowing c is worth about
    ln(1.2/0.3) + ln(0.67/0.3) ≈ 2.2 nats a row over the marginal; demand 1."""
    cond, marginal = conditional
    x, c = conditional_data(300, 1)
    assert cond.context_dim_ == 1 and cond.model_.context_dim == 1
    assert cond.score(x, c) > marginal.score(x) + 1.0
    s = cond.sample(2000, random_state=0, y=[0.5])
    np.testing.assert_allclose(s.mean(0), [1.0, -0.5], atol=0.15)
    per_row = cond.sample(3, random_state=0, y=np.array([[-1.0], [0.0], [1.0]]))
    assert per_row.shape == (3, 2)


def test_context_errors(conditional):
    cond, marginal = conditional
    x, c = conditional_data(10, 2)
    with pytest.raises(ValueError, match="pass y"):
        cond.score_samples(x)
    with pytest.raises(ValueError, match="without a context"):
        marginal.score_samples(x, c)
    with pytest.raises(ValueError, match="one context row per row"):
        cond.score_samples(x, c[:5])
    with pytest.raises(ValueError, match="finite"):
        NHFDensity(**TINY).fit(x, np.full(10, np.nan))


def clusters(n, seed):
    """Six tight, well-separated clusters in 3-D: a BIC Gaussian mixture finds them at once,
    a small flow trained for 40 steps does not."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=6.0, size=(6, 3))
    return centres[rng.integers(6, size=n)] + 0.3 * rng.normal(size=(n, 3))


def test_the_bic_mixture_carries_what_the_flow_has_not_learned():
    """Where the flow is far from the data, "auto" gives the BIC mixture most of the weight,
    and the estimator scores the held-out rows far better than with the Gaussian guard."""
    train, test = clusters(1200, 0), clusters(300, 1)
    guard = NHFDensity(defensive="gaussian", random_state=0, **TINY).fit(train)
    mixed = NHFDensity(random_state=0, **TINY).fit(train)
    assert mixed.defensive_.components >= 6 and guard.defensive_.components == 1
    assert mixed.defensive_weight_ >= 0.5 and guard.defensive_weight_ <= 0.2
    assert mixed.score(test) > guard.score(test) + 2.0, (mixed.score(test), guard.score(test))


def test_the_mixture_weight_is_refitted_on_all_rows_and_samples_follow_it():
    """After the weight is chosen, g is refitted on every row (BIC again); the
    samples come from (1 - w) NHF + w g, so a heavy weight puts most samples on the clusters."""
    train = clusters(1200, 0)
    est = NHFDensity(random_state=0, **TINY).fit(train)
    s = (train - est.mean_) / est.scale_
    on_all = DefensiveMixture(s, "bic", est.defensive_.random_state)
    np.testing.assert_allclose(est.defensive_.log_prob(s[:50]), on_all.log_prob(s[:50]))
    x = est.sample(3000, random_state=0)
    centres = np.random.default_rng(99).normal(scale=6.0, size=(6, 3))
    near = np.linalg.norm(x[:, None] - centres[None], axis=-1).min(1) < 1.5
    assert near.mean() >= 0.9 * est.defensive_weight_


def test_preprocessing_counts_against_max_time():
    est = NHFDensity(max_time=10.0)
    assert est._training_budget(2.0) == 8.0
    with pytest.warns(UserWarning, match="training gets half"):
        assert est._training_budget(7.0) == 5.0
    assert NHFDensity(max_time=None, max_steps=5)._training_budget(3.0) is None


def test_fit_holds_blas_and_openmp_to_n_threads(monkeypatch):
    """The mixtures' fits run under the thread limit: on a busy machine, spinning BLAS and
    OpenMP threads made a BIC search 50 times slower in CPU time."""
    from threadpoolctl import threadpool_info

    import hamflow.estimator as module

    seen = []

    def spy(*args, **kwargs):
        seen.append(max(pool["num_threads"] for pool in threadpool_info()))
        return DefensiveMixture(*args, **kwargs)

    monkeypatch.setattr(module, "DefensiveMixture", spy)
    NHFDensity(n_threads=1, random_state=0, **TINY).fit(data())
    assert seen == [1]


def test_auto_members_use_the_time_the_first_leaves_and_bad_counts_are_refused():
    """ "auto": the first member gets the whole training budget; what it leaves goes to at most
    two more, as many as get twice the time the first took to its best validation score."""
    from hamflow.estimator import AUTO_MEMBERS, MEMBER_SLACK
    from hamflow.training import FitResult

    assert AUTO_MEMBERS == 3 and MEMBER_SLACK == 2.0
    assert NHFDensity()._members() == 3 and NHFDensity(max_time=None, max_steps=9)._members() == 1
    assert NHFDensity(n_members=2)._members() == 2
    first = FitResult(steps=300, seconds=12.0, best_step=100)
    first.history = [
        {"step": 100, "seconds": 5.0, "val_nll": 1.0},
        {"step": 100, "event": "skipped"},
        {"step": 300, "seconds": 12.0, "val_nll": 2.0},
    ]
    auto = NHFDensity()
    share = lambda m, trained, first=first: auto._member_budget(m, 3, 60.0, trained, [first], False)  # noqa: E731
    assert share(0, 0.0) == 60.0  # the first member: all of it
    assert share(1, 12.0) == 24.0  # 48 s left, 10 s needed each: two more, 24 s each
    assert share(2, 36.0) == 24.0
    assert share(1, 45.0) == 15.0  # 15 s left: room for one more
    assert share(1, 52.0) == 0.0  # 8 s left: none
    assert auto._member_budget(1, 3, None, 5.0, [first], False) is None
    fixed = NHFDensity(n_members=3)
    assert fixed._member_budget(0, 3, 60.0, 0.0, [], False) == 20.0
    assert fixed._member_budget(1, 3, 60.0, 10.0, [first], False) == 25.0  # left time passes on
    for bad in (0, -1, 1.5, "three", True):
        with pytest.raises(ValueError, match="n_members"):
            NHFDensity(**{**TINY, "n_members": bad}).fit(data())


def test_members_hold_out_disjoint_rows_and_share_the_budget(monkeypatch):
    """Each member trains on the rows outside its own validation slice, the slices are
    disjoint, and each member gets an equal share of the training budget left when it starts
    (so what one leaves passes on). The defensive weight is chosen on all members' slices."""
    import hamflow.estimator as module

    calls, real = [], module.fit

    def spy(model, x, x_val, **kwargs):
        calls.append((x, x_val, kwargs["max_time"]))
        return real(model, x, x_val, **{**kwargs, "max_time": None, "max_steps": 5})

    monkeypatch.setattr(module, "fit", spy)
    chosen_on, choose = [], DefensiveMixture.choose
    monkeypatch.setattr(
        DefensiveMixture,
        "choose",
        lambda g, lp, r, w: chosen_on.append(len(lp)) or choose(g, lp, r, w),
    )
    est = NHFDensity(**{**TINY, "max_steps": None, "max_time": 30.0, "n_members": 3})
    est.set_params(random_state=0).fit(data())
    assert len(calls) == 3
    rows = lambda t: {tuple(r) for r in np.round(t.numpy(), 5)}  # noqa: E731
    vals = [rows(v) for _, v, _ in calls]
    assert all(len(v) == 30 for v in vals)  # a tenth of 300 rows each
    assert not (vals[0] & vals[1] or vals[0] & vals[2] or vals[1] & vals[2])
    for (x, _, _), v in zip(calls, vals):
        assert len(x) == 270 and not rows(x) & v
    budgets = [b for _, _, b in calls]
    assert budgets[0] == pytest.approx(est._training_budget(0.0) / 3, rel=0.1)
    assert budgets[1] > budgets[0] and budgets[2] > budgets[1]  # the 5-step members left time
    assert chosen_on == [90] and est.n_iter_ == 15  # every member's validation rows


def test_a_warm_start_keeps_its_member_count():
    x = data()
    est = NHFDensity(random_state=0, warm_start=True, **{**TINY, "n_members": 2}).fit(x)
    models = list(est.models_)
    est.fit(x)
    assert est.models_ == models  # the same modules, trained further
    with pytest.raises(ValueError, match="warm start must keep the fitted 2"):
        est.set_params(n_members=3).fit(x)


def test_members_that_find_the_budget_spent_are_dropped_with_a_warning(monkeypatch):
    """A first member that uses up the whole budget leaves none for the others: they are not
    trained (a warning says so), and the density is the first member's alone."""
    import hamflow.estimator as module

    clock, real = [0.0], module.fit

    class Clock:
        @staticmethod
        def process_time():
            return clock[0]

    def greedy(model, x, x_val, **kwargs):
        clock[0] += kwargs["max_time"] * 3  # the member and its calibration ran long
        return real(model, x, x_val, **{**kwargs, "max_time": None, "max_steps": 5})

    monkeypatch.setattr(module, "time", Clock)
    monkeypatch.setattr(module, "fit", greedy)
    est = NHFDensity(**{**TINY, "max_steps": None, "max_time": 30.0, "n_members": 3})
    with pytest.warns(UserWarning, match="ran out after 1 of 3 members") as record:
        est.set_params(random_state=0).fit(data())
    assert record[0].filename == __file__  # it points at the caller of fit
    assert est.n_members_ == len(est.models_) == 1 and est.n_iter_ == 5


def test_scoring_after_training_is_set_aside_from_max_time(monkeypatch):
    """``max_time`` covers the whole fit: the time a member's calibration and validation
    scores will take comes out of the training budget, each member after the first pays its
    own, and the proposal width is chosen on at most ``CALIBRATION_ROWS`` rows."""
    import hamflow.estimator as module
    from hamflow.estimator import CALIBRATION_ROWS
    from hamflow.training import FitResult

    fixed = NHFDensity(n_members=3)
    assert fixed._member_budget(0, 3, 60.0, 0.0, [], False, 5.0) == pytest.approx(50 / 3)
    assert fixed._member_budget(1, 3, 60.0, 20.0, [], False, 5.0) == pytest.approx(15.0)
    first = FitResult(steps=300, seconds=12.0, best_step=100)
    first.history = [{"step": 100, "seconds": 5.0, "val_nll": 1.0}]
    auto = NHFDensity()
    assert auto._member_budget(1, 3, 60.0, 12.0, [first], False, 5.0) == 19.0  # 48 s: 2 × 15
    assert auto._member_budget(1, 3, 60.0, 46.0, [first], False, 5.0) == 0.0  # 14 s < 15

    budgets, calibrated, real = [], [], module.fit
    monkeypatch.setattr(NHFDensity, "_scoring_seconds", lambda self, *a: 7.0)
    monkeypatch.setattr(
        module,
        "fit",
        lambda model, x, x_val, **kw: (
            budgets.append(kw["max_time"])
            or real(model, x, x_val, **{**kw, "max_time": None, "max_steps": 3})
        ),
    )
    calibrate = NHF.calibrate_proposal
    monkeypatch.setattr(
        NHF,
        "calibrate_proposal",
        lambda model, x, *a, **kw: calibrated.append(len(x)) or calibrate(model, x, *a, **kw),
    )
    est = NHFDensity(**{**TINY, "max_steps": None, "max_time": 30.0, "validation_fraction": 0.5})
    est.set_params(random_state=0).fit(data())
    assert 30.0 - 7.0 - 3.0 < budgets[0] < 30.0 - 7.0  # less the mixtures' fits, under 3 s
    assert CALIBRATION_ROWS < 150 and calibrated == [CALIBRATION_ROWS]  # of 150 validation rows


def test_bic_search_on_a_large_table_fits_a_subset_then_all_rows(monkeypatch):
    """Above ``BIC_ROWS`` rows the candidates are fitted to a random subset of that many, and
    the chosen number of components to every row."""
    import hamflow._defensive as module

    rng = np.random.default_rng(0)
    rows = np.r_[rng.normal(-4, 1, (3500, 2)), rng.normal(4, 1, (3500, 2))]
    sizes, real = [], module._fit
    monkeypatch.setattr(
        module, "_fit", lambda r, k, seed: sizes.append((len(r), k)) or real(r, k, seed)
    )
    g = DefensiveMixture(rows, "bic")
    assert g.components == 2
    assert {n for n, _ in sizes[:-2]} == {module.BIC_ROWS} and sizes[-2:] == [(7000, 2), (7000, 1)]
    assert abs(g.mixture.means_[:, 0]).min() > 3.5
