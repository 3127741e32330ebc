"""The sampling results page matches its results file, and its verdicts follow the spread rule
("ahead" only with a mean gap beyond two combined standard errors over seeds, else "level")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _helpers import benchmark_module

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "sampling.json"
PAGE = ROOT / "docs" / "benchmarks" / "sampling.md"


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("sampling_bench", "sampling.py") as module:
        yield module


@pytest.fixture(scope="module")
def table(bench):
    out = json.loads(RESULTS.read_text())
    return out, bench.summarise(out["rows"])


def test_published_block_is_the_results_file(bench, table):
    out, summary = table
    block = bench.markdown(out, summary)
    assert block in PAGE.read_text()


def verdict(summary, target, a, b, key, lower_is_better=True):
    mu_a, se_a, _ = summary[(target, a)][key]
    mu_b, se_b, _ = summary[(target, b)][key]
    gap = mu_a - mu_b if lower_is_better else mu_b - mu_a
    if abs(gap) <= 2 * math.hypot(se_a, se_b):
        return "level"
    return f"{a} ahead" if gap < 0 else f"{b} ahead"


# (target, a, b, metric, lower is better, what the page says)
CLAIMS = [
    ("grid16", "nhf", "realnvp_kl", "log_Z_err", True, "nhf ahead"),
    ("grid16", "nhf", "nsf_kl", "log_Z_err", True, "level"),
    ("grid16", "nhf", "realnvp_kl", "modes_covered", False, "level"),
    ("grid16", "nhf", "nhf_noanneal", "log_Z_err", True, "nhf ahead"),
    ("grid16", "nhf", "realnvp_anneal", "log_Z_err", True, "level"),
    ("grid16", "nhf", "nhf_kick", "log_Z_err", True, "nhf ahead"),
    ("funnel10", "nhf", "realnvp_kl", "log_Z_err", True, "realnvp_kl ahead"),
    ("funnel10", "nhf", "nhf_noanneal", "log_Z_err", True, "nhf_noanneal ahead"),
    ("funnel10", "nhf", "nhf_kick", "log_Z_err", True, "level"),
    ("banana", "nhf", "realnvp_kl", "ess", False, "realnvp_kl ahead"),
    ("gauss20", "nhf", "realnvp_kl", "log_Z_err", True, "level"),
    ("gauss20", "nhf", "realnvp_kl", "ess", False, "realnvp_kl ahead"),
    ("circular8", "nhf", "realnvp_kl", "log_Z_err", True, "level"),
    ("circular8", "nhf", "realnvp_kl", "ess", False, "realnvp_kl ahead"),
    ("logistic", "nhf", "realnvp_kl", "ess", False, "level"),
    ("funnel10", "nhf", "hmc", "mean_err", True, "hmc ahead"),
    ("banana", "nhf", "hmc", "mean_err", True, "hmc ahead"),
    ("grid16", "nhf", "hmc", "mean_err", True, "hmc ahead"),
    ("gauss20", "nhf", "hmc", "mean_err", True, "level"),
    ("circular8", "nhf", "hmc", "mean_err", True, "level"),
    ("logistic", "nhf", "hmc", "mean_err", True, "nhf ahead"),
]


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_page_verdicts_follow_the_spread_rule(table, claim):
    target, a, b, key, lower, says = claim
    assert verdict(table[1], target, a, b, key, lower) == says


KICK_CLAIMS = [
    ("funnel10", "nhf_kick_noanneal", "nhf_noanneal", "log_Z_err", True, "nhf_kick_noanneal ahead"),
    ("funnel10", "nhf_kick_noanneal", "nhf_noanneal", "ess", False, "nhf_noanneal ahead"),
    ("funnel10", "nhf_kick_noanneal", "nhf_noanneal", "mean_err", True, "nhf_noanneal ahead"),
    ("grid16", "nhf_kick_noanneal", "nhf_noanneal", "log_Z_err", True, "level"),
]


def test_kicks_block_and_verdicts(bench):
    out = json.loads((ROOT / "benchmarks" / "results" / "sampling_kicks.json").read_text())
    summary = bench.summarise(out["rows"])
    assert bench.markdown(out, summary, "sampling_kicks") in PAGE.read_text()
    for target, a, b, key, lower, says in KICK_CLAIMS:
        assert verdict(summary, target, a, b, key, lower) == says, (target, a, b, key)


BOOTSTRAP_CLAIMS = [
    ("grid16", "nhf_bootstrap", "nhf", "ess", False, "nhf_bootstrap ahead"),
    ("grid16", "nhf_bootstrap", "nhf", "log_Z_err", True, "level"),
    ("grid16", "nhf_bootstrap", "nhf", "mean_err", True, "level"),
    ("funnel10", "nhf_bootstrap", "nhf", "mean_err", True, "nhf_bootstrap ahead"),
    ("funnel10", "nhf_bootstrap", "nhf", "log_Z_err", True, "level"),
    ("funnel10", "nhf_bootstrap", "nhf", "ess", False, "level"),
]


def test_bootstrap_block_and_verdicts(bench):
    out = json.loads((ROOT / "benchmarks" / "results" / "sampling_bootstrap.json").read_text())
    summary = bench.summarise(out["rows"])
    assert bench.markdown(out, summary, "sampling_bootstrap") in PAGE.read_text()
    for target, a, b, key, lower, says in BOOTSTRAP_CLAIMS:
        assert verdict(summary, target, a, b, key, lower) == says, (target, a, b, key)


# The 60 s run (benchmarks/results/sampling_60s.json): NHF's defaults against RealNVP, three seeds
SIXTY_CLAIMS = [
    ("grid16", "nhf", "realnvp_kl", "log_Z_err", True, "nhf ahead"),
    ("grid16", "nhf", "realnvp_kl", "ess", False, "nhf ahead"),
    ("grid16", "nhf", "realnvp_kl", "modes_covered", False, "nhf ahead"),
    ("grid16", "nhf", "realnvp_kl", "mean_err", True, "nhf ahead"),
    ("grid16", "nhf", "hmc", "mean_err", True, "nhf ahead"),
    ("grid16", "nhf", "nhf_nodamp", "log_Z_err", True, "nhf ahead"),
    ("funnel10", "nhf", "realnvp_kl", "log_Z_err", True, "realnvp_kl ahead"),
    ("funnel10", "nhf", "realnvp_kl", "ess", False, "realnvp_kl ahead"),
    ("funnel10", "nhf", "nhf_nodamp", "log_Z_err", True, "nhf ahead"),
    ("funnel10", "nhf", "nhf_nodamp", "ess", False, "level"),
    ("funnel10", "nhf", "hmc", "mean_err", True, "level"),
    ("banana", "nhf", "realnvp_kl", "log_Z_err", True, "realnvp_kl ahead"),
    ("banana", "nhf", "realnvp_kl", "ess", False, "realnvp_kl ahead"),
    ("gauss20", "nhf", "realnvp_kl", "log_Z_err", True, "level"),
    ("gauss20", "nhf", "realnvp_kl", "ess", False, "nhf ahead"),
    ("gauss20", "nhf", "hmc", "mean_err", True, "level"),
    ("circular8", "nhf", "realnvp_kl", "log_Z_err", True, "level"),
    ("circular8", "nhf", "realnvp_kl", "ess", False, "level"),
    ("two_moons", "nhf", "realnvp_kl", "ess", False, "level"),
    ("logistic", "nhf", "realnvp_kl", "ess", False, "level"),
    ("logistic", "nhf", "realnvp_kl", "mean_err", True, "nhf ahead"),
    ("logistic", "nhf", "hmc", "mean_err", True, "nhf ahead"),
    # the coupling NSF's rows
    ("grid16", "nhf", "nsf_coupling_kl", "log_Z_err", True, "nhf ahead"),
    ("grid16", "nhf", "nsf_coupling_kl", "ess", False, "nhf ahead"),
    ("grid16", "nhf", "nsf_coupling_kl", "modes_covered", False, "nhf ahead"),
    ("grid16", "nhf", "nsf_coupling_kl", "mean_err", True, "nhf ahead"),
    ("grid16", "realnvp_kl", "nsf_coupling_kl", "modes_covered", False, "realnvp_kl ahead"),
    ("grid16", "realnvp_kl", "nsf_coupling_kl", "mean_err", True, "realnvp_kl ahead"),
    ("funnel10", "nhf", "nsf_coupling_kl", "log_Z_err", True, "nhf ahead"),
    ("funnel10", "nhf", "nsf_coupling_kl", "mean_err", True, "level"),
    ("funnel10", "nhf", "nsf_coupling_kl", "ess", False, "level"),
    ("banana", "nhf", "nsf_coupling_kl", "ess", False, "nsf_coupling_kl ahead"),
    ("banana", "nhf", "nsf_coupling_kl", "log_Z_err", True, "level"),
    ("banana", "realnvp_kl", "nsf_coupling_kl", "ess", False, "level"),
    ("gauss20", "nhf", "nsf_coupling_kl", "log_Z_err", True, "nhf ahead"),
    ("gauss20", "nhf", "nsf_coupling_kl", "ess", False, "nhf ahead"),
    ("gauss20", "nhf", "nsf_coupling_kl", "mean_err", True, "level"),
    ("circular8", "nhf", "nsf_coupling_kl", "ess", False, "level"),
    ("circular8", "nhf", "nsf_coupling_kl", "log_Z_err", True, "level"),
    ("logistic", "nhf", "nsf_coupling_kl", "ess", False, "nhf ahead"),
    ("logistic", "nhf", "nsf_coupling_kl", "mean_err", True, "nhf ahead"),
    ("logistic", "realnvp_kl", "nsf_coupling_kl", "ess", False, "realnvp_kl ahead"),
]
# the baselines' ln Z goal as the page states it: (target, method, met)
SIXTY_BASELINE_GOALS = [
    ("grid16", "realnvp_kl", False),
    ("grid16", "nsf_coupling_kl", False),
    ("two_moons", "realnvp_kl", False),
    ("two_moons", "nsf_coupling_kl", False),
    ("funnel10", "nsf_coupling_kl", False),
    ("funnel10", "realnvp_kl", True),
]
# the goals the page says are met (True) or not (False), as (target, key, bound, kind)
SIXTY_GOALS = [
    ("grid16", "log_Z_err", 0.1, "max", True),
    ("grid16", "ess", 0.1, "min", True),
    ("grid16", "modes_covered", 0.9, "min", True),
    ("funnel10", "log_Z_err", 0.1, "max", True),
    ("banana", "log_Z_err", 0.1, "max", True),
    ("gauss20", "log_Z_err", 0.1, "max", True),
    ("circular8", "log_Z_err", 0.1, "max", True),
    ("two_moons", "log_Z_err", 0.1, "max", False),
] + [
    (t, "ess", 0.1, "min", True)
    for t in ("funnel10", "banana", "grid16", "gauss20", "circular8", "two_moons", "logistic")
]


def test_60s_block_verdicts_and_goals(bench):
    out = json.loads((ROOT / "benchmarks" / "results" / "sampling_60s.json").read_text())
    assert out["settings"]["budget_s"] == 60 and len(out["settings"]["seeds"]) >= 3
    summary = bench.summarise(out["rows"])
    assert bench.markdown(out, summary, "sampling_60s") in PAGE.read_text()
    for target, a, b, key, lower, says in SIXTY_CLAIMS:
        assert verdict(summary, target, a, b, key, lower) == says, (target, a, b, key)
    for target, key, bound, kind, met in SIXTY_GOALS:
        mean = summary[(target, "nhf")][key][0]
        assert ((mean <= bound) if kind == "max" else (mean >= bound)) == met, (target, key)
    for target, method, met in SIXTY_BASELINE_GOALS:
        assert (summary[(target, method)]["log_Z_err"][0] <= 0.1) == met, (target, method)


def test_60s_noanneal_block_and_verdicts(bench):
    """The funnel without annealing, against the default's row of the 60 s run: level on the ESS
    and on ``ln Z``, both within 0.1 nats."""
    results = ROOT / "benchmarks" / "results"
    out = json.loads((results / "sampling_60s_noanneal.json").read_text())
    base = json.loads((results / "sampling_60s.json").read_text())
    summary = bench.summarise(out["rows"])
    assert bench.markdown(out, summary, "sampling_60s_noanneal") in PAGE.read_text()
    summary.update(bench.summarise(base["rows"]))
    a, b = "nhf_noanneal", "nhf"
    assert verdict(summary, "funnel10", a, b, "ess", False) == "level"
    assert verdict(summary, "funnel10", a, b, "log_Z_err", True) == "level"
    assert summary[("funnel10", a)]["log_Z_err"][0] <= 0.1
    assert summary[("funnel10", b)]["log_Z_err"][0] <= 0.1


def test_keep_rows_carries_the_other_methods_and_refuses_another_budget(bench):
    """``--keep-rows``: a rerun of NHF keeps the other methods' rows of a results file (not its
    HMC rows, which follow NHF's gradient count), names them in the caption, and refuses a file
    measured at another budget."""
    path = ROOT / "benchmarks" / "results" / "sampling_60s.json"
    old = json.loads(path.read_text())
    new_rows = [dict(r, log_Z_err=9.0) for r in old["rows"] if r["method"] in ("nhf", "hmc")]
    out = {
        "command": "python benchmarks/sampling.py --methods nhf",
        "settings": dict(old["settings"], methods=["nhf"]),
        "rows": new_rows,
    }
    bench.keep_rows(out, old, path)
    others = {r["method"] for r in old["rows"]} - {"nhf", "hmc"}
    assert out["settings"]["methods"][0] == "nhf" and set(out["settings"]["methods"]) == {
        "nhf",
        *others,
    }
    kept = [r for r in out["rows"] if r["method"] in others]
    assert kept == [r for r in old["rows"] if r["method"] in others]
    assert [r for r in out["rows"] if r["method"] in ("nhf", "hmc")] == new_rows
    block = bench.markdown(out, bench.summarise(out["rows"]), "sampling_60s")
    assert old["command"] in block and "9.000" in block
    with pytest.raises(ValueError, match="same budget"):
        bench.keep_rows(
            {"settings": dict(old["settings"], methods=["nhf"], budget_s=10.0), "rows": []},
            old,
            path,
        )


def test_realnvp_baseline_takes_any_dimension(bench):
    """The benchmark's RealNVP is ``_common.realnvp`` for an even dimension (same parameters from
    the same seed, so the published rows stand) and, for an odd one (the held-out 3-d and 5-d
    targets), an invertible flow whose sampling log-density matches ``log_prob``."""
    for dim in (2, 10):
        torch.manual_seed(0)
        ours = bench.realnvp(24, 8, dim).state_dict()
        torch.manual_seed(0)
        common = bench._common.realnvp(24, 8, dim).state_dict()
        assert ours.keys() == common.keys()
        assert all(torch.equal(ours[k], common[k]) for k in ours)
    for dim in (3, 5):
        model = bench.realnvp(16, 8, dim).double()
        for p in model.parameters():  # leave the identity the zero-initialised nets start at
            p.data += 0.1 * torch.randn_like(p)
        x, log_q = model.sample(6)
        assert x.shape == (6, dim)
        assert torch.allclose(model.log_prob(x), log_q, atol=1e-8)
        assert torch.allclose(model.forward(model.inverse(x)), x, atol=1e-8)


# The K sweep (benchmarks/results/sampling_momenta.json): (target, a, K of a, b, K of b, verdict)
# on the ESS (higher is better), over the fits' mean ESS across importance-sampling sets
MOMENTA_CLAIMS = [
    ("banana", "nhf", "64", "nhf", "16", "level"),
    ("funnel10", "nhf", "64", "nhf", "16", "level"),
    ("funnel10", "nhf", "16", "nhf", "1", "a ahead"),
    ("funnel10", "realnvp_kl", "-", "nhf", "64", "a ahead"),
    ("banana", "realnvp_kl", "-", "nhf", "64", "level"),
    ("banana", "realnvp_kl", "-", "nhf_rflow", "64", "a ahead"),
    ("funnel10", "realnvp_kl", "-", "nhf_rflow", "64", "a ahead"),
    ("banana", "nhf_rflow", "1", "nhf", "1", "level"),
    ("banana", "nhf_rflow", "16", "nhf", "16", "level"),
    ("banana", "nhf_rflow", "64", "nhf", "64", "level"),
    ("funnel10", "nhf_rflow", "1", "nhf", "1", "level"),
    ("funnel10", "nhf_rflow", "16", "nhf", "16", "b ahead"),
    ("funnel10", "nhf_rflow", "64", "nhf", "64", "level"),
]


def test_momenta_block_and_verdicts():
    out = json.loads((ROOT / "benchmarks" / "results" / "sampling_momenta.json").read_text())
    with benchmark_module("sampling_momenta_bench", "sampling_momenta.py") as module:
        assert module.markdown(out) in PAGE.read_text()

    def fits(target, method, k):
        rows = [r for r in out["rows"] if r["target"] == target and r["method"] == method]
        assert len(rows) >= 2, (target, method)
        values = [sum(r["ess"][k]) / len(r["ess"][k]) for r in rows]
        mean = sum(values) / len(values)
        se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
        return mean, se

    for target, a, ka, b, kb, says in MOMENTA_CLAIMS:
        (mu_a, se_a), (mu_b, se_b) = fits(target, a, ka), fits(target, b, kb)
        gap = mu_a - mu_b
        got = "level" if abs(gap) <= 2 * math.hypot(se_a, se_b) else ("a ahead", "b ahead")[gap < 0]
        assert got == says, (target, a, ka, b, kb, gap)
    # the page: none of NHF's sets on the banana, at any K, reaches RealNVP's lowest
    sets = {
        m: [
            v
            for r in out["rows"]
            if (r["target"], r["method"]) == ("banana", m)
            for vs in r["ess"].values()
            for v in vs
        ]
        for m in ("nhf", "realnvp_kl")
    }
    assert max(sets["nhf"]) < min(sets["realnvp_kl"])
