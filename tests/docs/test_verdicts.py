"""The toy page's verdicts over seeds follow the rule the docs state: "ahead" only when the mean
gap is beyond two standard errors over the seeds (sd / sqrt(n)), otherwise "level"; and each
mean ± sd in the table is the one in the results files."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "benchmarks" / "toy.md"
FILES = ("toy_density_seeds.json", "toy_density_heldout_seeds.json")


def verdict(mean: float, sd: float, n: int) -> str:
    if abs(mean) <= 2 * sd / math.sqrt(n):
        return "level"
    return "NHF ahead" if mean < 0 else "RealNVP ahead"


def summaries() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in FILES:
        out.update(json.loads((ROOT / "benchmarks" / "results" / name).read_text())["summary"])
    return out


def rows() -> list[tuple[str, float, float, str]]:
    table = PAGE.read_text().split("| density | NHF − RealNVP (mean ± sd) | verdict |", 1)[1]
    out = []
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("|"):
            break
        density, gap, says = (c.strip() for c in line.strip("|").split("|"))
        m = re.fullmatch(r"([−+-]?[\d.]+) ± ([\d.]+)", gap)
        assert m, line
        mean = float(m.group(1).replace("−", "-"))
        out.append((density, mean, float(m.group(2)), says))
    return out


def test_rule():
    assert verdict(-0.048, 0.006, 3) == "NHF ahead"
    assert verdict(-0.333, 0.334, 3) == "level"
    assert verdict(0.007, 0.003, 3) == "RealNVP ahead"


def test_every_density_of_the_seed_files_has_a_verdict_by_the_rule():
    data = summaries()
    found = rows()
    assert sorted(d for d, *_ in found) == sorted(data)
    for density, mean, sd, says in found:
        s = data[density]
        assert round(s["gap_mean"], 3) == mean and round(s["gap_std"], 3) == sd, density
        expected = verdict(s["gap_mean"], s["gap_std"], s["gap_seeds"])
        assert says.startswith(expected), (density, says, expected)
