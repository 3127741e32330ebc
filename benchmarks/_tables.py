"""Ten more real tables for benchmarks/tabular.py, read from data files that ship inside two
packages: ISLP (the tables of *An Introduction to Statistical Learning*) and plotnine.

Install them without their dependencies; only their CSV files are read, the packages are never
imported::

    pip install --no-deps ISLP plotnine

Each table keeps its continuous columns (6 to 12), a log of the counts and amounts whose
spread covers orders of magnitude, and the rows without missing values; the tables of
more than 5,000 rows are cut to 5,000 random ones (a fixed seed). Columns recorded at a fixed
resolution are dequantised by ``tabular.dequantise``.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

INSTALL = "pip install --no-deps ISLP plotnine"

COLLEGE_AMOUNTS = "Apps Accept Enroll F.Undergrad P.Undergrad Outstate Room.Board Books".split()
COLLEGE_AMOUNTS += ["Personal", "Expend"]
HITTERS_COUNTS = "AtBat Hits Runs RBI Walks CAtBat CHits CRuns CRBI CWalks".split()

# name: (package, file, columns, columns to log, columns to log1p, description)
TABLES = {
    "auto": (
        "ISLP",
        "Auto",
        ["mpg", "displacement", "horsepower", "weight", "acceleration", "year"],
        ["mpg", "displacement", "horsepower", "weight", "acceleration"],
        [],
        "ISLP Auto: log of 5 measurements, model year",
    ),
    "boston": (
        "ISLP",
        "Boston",
        [
            "crim",
            "zn",
            "indus",
            "nox",
            "rm",
            "age",
            "dis",
            "rad",
            "tax",
            "ptratio",
            "lstat",
            "medv",
        ],
        ["crim"],
        [],
        "ISLP Boston: 12 columns (the binary `chas` dropped), log of `crim`",
    ),
    "bikeshare": (
        "ISLP",
        "Bikeshare",
        ["temp", "atemp", "hum", "windspeed", "casual", "registered"],
        [],
        ["casual", "registered"],
        "ISLP Bikeshare: weather and log1p of the two rider counts, 5,000 of 8,645 hours",
    ),
    "smarket": (
        "ISLP",
        "Smarket",
        ["Lag1", "Lag2", "Lag3", "Lag4", "Lag5", "Volume", "Today"],
        [],
        [],
        "ISLP Smarket: five lagged daily returns, volume and the day's return",
    ),
    "weekly": (
        "ISLP",
        "Weekly",
        ["Lag1", "Lag2", "Lag3", "Lag4", "Lag5", "Volume", "Today"],
        ["Volume"],
        [],
        "ISLP Weekly: five lagged weekly returns, log volume and the week's return",
    ),
    "college": (
        "ISLP",
        "College",
        COLLEGE_AMOUNTS + ["PhD", "Grad.Rate"],
        [],
        COLLEGE_AMOUNTS,
        "ISLP College: log1p of 10 counts and costs, PhD share, graduation rate",
    ),
    "carseats": (
        "ISLP",
        "Carseats",
        ["Sales", "CompPrice", "Income", "Advertising", "Population", "Price", "Age", "Education"],
        [],
        [],
        "ISLP Carseats: the 8 numeric columns",
    ),
    "credit": (
        "ISLP",
        "Credit",
        ["Income", "Limit", "Rating", "Age", "Balance", "Cards", "Education"],
        ["Income"],
        ["Balance"],
        "ISLP Credit: log income, log1p balance (a quarter are zero), 5 more numeric columns",
    ),
    "diamonds": (
        "plotnine",
        "diamonds",
        ["carat", "depth", "table", "price", "x", "y", "z"],
        ["carat", "price"],
        [],
        "plotnine diamonds: log carat and price, 5 measurements, 5,000 of 53,940 stones",
    ),
    "hitters": (
        "ISLP",
        "Hitters",
        HITTERS_COUNTS,
        [],
        HITTERS_COUNTS,
        "ISLP Hitters: log1p of 10 season and career counts, players with a salary",
    ),
}
MAX_ROWS = 5000


def data_file(package: str, name: str) -> Path:
    """The CSV file ``name`` inside ``package``, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {package} tables need {package}: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.csv"


def load_table(name: str) -> np.ndarray:
    """The transformed rows of table ``name`` (before dequantisation and splitting).

    Example:
        >>> x = load_table("credit")  # doctest: +SKIP
        >>> x.shape  # doctest: +SKIP
        (400, 7)
    """
    package, file, columns, log, log1p, _ = TABLES[name]
    with open(data_file(package, file), newline="") as f:
        rows = list(csv.DictReader(f))
    keep = []
    for r in rows:
        try:
            keep.append([float(r[c]) for c in columns])
        except ValueError:  # "NA", "?" or an empty cell: a row with a missing value
            continue
    x = np.array(keep)
    if name == "diamonds":
        x = x[(x[:, 4:] > 0).all(1)]  # a few stones list a zero size
    if name == "hitters":
        salary = {i for i, r in enumerate(rows) if r["Salary"] not in ("", "NA")}
        x = np.array([[float(rows[i][c]) for c in columns] for i in sorted(salary)])
    for c in log:
        x[:, columns.index(c)] = np.log(x[:, columns.index(c)])
    for c in log1p:
        x[:, columns.index(c)] = np.log1p(x[:, columns.index(c)])
    if len(x) > MAX_ROWS:
        x = x[np.random.default_rng(7).permutation(len(x))[:MAX_ROWS]]
    return x
