"""benchmarks/tabular.py: its data, its verdicts, and a smoke run that stays out of git."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import tabular  # noqa: E402


@pytest.mark.parametrize("name, shape", [("iris", (120, 4)), ("diabetes", (354, 9))])
def test_sets_are_split_and_standardised_on_the_training_rows(name, shape):
    train, test = tabular.load(name, seed=0)
    assert train.shape == shape and len(test) == round(0.25 * shape[0])
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-10)
    other, _ = tabular.load(name, seed=1)
    assert not np.allclose(np.sort(train[:, 0]), np.sort(other[:, 0]))  # another split
    with pytest.raises(ValueError, match="dataset"):
        tabular.load("mnist", seed=0)


def test_dequantise_spreads_repeated_values_over_one_step():
    rng = np.random.default_rng(0)
    x = np.stack([np.round(rng.uniform(1, 2, 500), 1), rng.uniform(1, 2, 500)], 1)
    y = tabular.dequantise(x, np.random.default_rng(1))
    assert len(np.unique(y[:, 0])) == 500 and np.abs(y[:, 0] - x[:, 0]).max() <= 0.05 + 1e-12
    np.testing.assert_array_equal(y[:, 1], x[:, 1])  # no repeats: left alone
    assert (y > 0).all()


@pytest.mark.parametrize(
    "gaps, word",
    [([-0.5, -0.4, -0.6], "ahead"), ([0.5, 0.4, 0.6], "behind"), ([-0.5, 0.4, 0.1], "level")],
)
def test_verdict_needs_two_standard_errors(gaps, word):
    mean, se, got = tabular.verdict(gaps)
    assert got == word and mean == pytest.approx(np.mean(gaps))
    assert se == pytest.approx(np.std(gaps, ddof=1) / np.sqrt(3))


def test_quick_run_writes_under_the_out_dir_only(tmp_path):
    out = tabular.main(["--quick", "--out-dir", str(tmp_path), "--models", "nhf", "gaussian"])
    split = out["results"]["iris"]["splits"]["0"]
    assert np.isfinite(split["nhf"]["test_nll"]) and split["nhf"]["steps"] >= 1
    assert abs(split["nhf"]["gap_to_4k"]) < 1.0 and split["nhf"]["score_samples_k"] == 2048
    assert split["nhf"]["made_by"]["command"] == out["command"]
    # a second run of one row keeps the other rows of the split file
    tabular.main(["--quick", "--out-dir", str(tmp_path), "--models", "nhf"])
    again = json.loads((tmp_path / "tabular_quick" / "iris_split0.json").read_text())
    rows = again["results"]["iris"]["splits"]["0"]
    assert (
        rows["gaussian"] == split["gaussian"]
        and "--models nhf gaussian" in rows["gaussian"]["made_by"]["command"]
    )
    page = (tmp_path / "tabular_quick" / "tabular.md").read_text()
    assert "| nhf |" in page and "| iris |" in page
    assert (tmp_path / "tabular_quick" / "iris_split0.json").exists()


def test_a_run_of_nhf_alone_tabulates_without_rivals(tmp_path):
    """With no classical row in the folder yet there is no verdict to give, and no crash."""
    tabular.main(["--quick", "--out-dir", str(tmp_path), "--models", "nhf"])
    summary = json.loads((tmp_path / "tabular_quick" / "summary.json").read_text())
    assert summary["sets"]["iris"]["nhf_vs_best_classical"] is None
