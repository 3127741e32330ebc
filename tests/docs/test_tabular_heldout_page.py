"""The held-out table of docs/benchmarks/tabular.md is the one in its results file: every table,
the mean NLLs, each split's gap and the verdict by the two-standard-error rule."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "benchmarks" / "tabular.md"
RESULTS = ROOT / "benchmarks" / "results" / "tabular_heldout.json"
HEADER = "| table | rows × columns | NHF | best classical | gap per split | mean ± s.e. | verdict |"


def number(text: str) -> float:
    return float(text.replace("−", "-"))


def rows() -> dict[str, list[str]]:
    table = PAGE.read_text().split(HEADER, 1)[1]
    out = {}
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells[1:]
    return out


def test_every_held_out_table_is_on_the_page_with_its_numbers_and_verdict():
    data = json.loads(RESULTS.read_text())
    found = rows()
    assert sorted(found) == sorted(data["tables"])
    for name, splits in data["tables"].items():
        size, nhf, best, gaps, mean_se, says = found[name]
        runs = list(splits.values())
        assert size.endswith(f" × {runs[0]['dim']}"), name
        assert number(nhf) == round(statistics.fmean(r["nhf"]["test_nll"] for r in runs), 2)
        gap = [r["gap"] for r in runs]
        assert [number(g) for g in gaps.split(", ")] == [round(g, 2) for g in gap], name
        mean = statistics.fmean(gap)
        se = statistics.stdev(gap) / math.sqrt(len(gap))
        assert mean_se == f"{mean:+.2f} ± {se:.2f}".replace("-", "−"), name
        word = "ahead" if mean < -2 * se else "behind" if mean > 2 * se else "level"
        assert says == word, (name, says, word)
        names = {r["best_classical"] for r in runs}
        classical = statistics.fmean(r[r["best_classical"]]["test_nll"] for r in runs)
        assert best == f"{round(classical, 2):.2f} ({', '.join(sorted(names))})", name
