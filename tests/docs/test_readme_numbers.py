"""Every number the README quotes is in the results file its row names, to the digits quoted.

The README's two tables ("What it does, and how well" and "Limits") name a results JSON in each
row; every number in a row's second column must be a value of that file, rounded as written.
The figure's caption line names its JSON too, and the sentence under it is checked the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NUMBER = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")
RESULTS = re.compile(r"`([\w./-]+\.json)`")


def numbers_in(obj) -> list[float]:
    """Every number in a JSON value, however deeply nested (keys that are numbers too)."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        keys = [float(k) for k in obj if re.fullmatch(r"[-+]?\d+(\.\d+)?", str(k))]
        return keys + [x for v in obj.values() for x in numbers_in(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in numbers_in(v)]
    return []


def quoted(text: str) -> list[tuple[str, float, int]]:
    """The numbers written in ``text``: (as written, value, decimals)."""
    out = []
    for m in NUMBER.finditer(text):
        s = m.group(0)
        v = float(s.replace(",", ""))
        decimals = len(s.split(".")[1]) if "." in s else 0
        out.append((s, v, decimals))
    return out


def matches(value: float, decimals: int, candidates: list[float]) -> bool:
    tol = 0.5 * 10**-decimals + 1e-9
    return any(abs(c - value) <= tol for c in candidates)


def claims() -> list[tuple[str, str, str]]:
    """(where, text with the numbers, results file) for each table row and the figure caption."""
    lines = README.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and not set(cells[1]) <= set("-: "):
            files = RESULTS.findall(cells[2])
            if cells[1] in ("how well", "measured"):
                continue  # a header
            out.append((f"README line {i + 1}", cells[1], files[0] if files else ""))
        elif "· results: `" in line:
            caption = next(x for x in lines[i + 1 :] if x.strip())
            out.append((f"README line {i + 2}", caption, RESULTS.findall(line)[-1]))
    return out


def test_the_readme_has_claims_to_check():
    found = claims()
    assert len(found) >= 8, found
    assert sum(1 for _, text, _ in found if quoted(text)) >= 8


@pytest.mark.parametrize("where, text, results", claims(), ids=lambda x: str(x)[:40])
def test_each_quoted_number_is_in_its_results_file(where, text, results):
    numbers = quoted(text)
    if not numbers:
        return  # a limit without a figure (e.g. "no figure"): nothing to trace
    assert results, f"{where}: {text!r} quotes numbers but names no results file"
    path = ROOT / results
    assert path.is_file(), f"{where}: {results} is not a file in the repository"
    values = numbers_in(json.loads(path.read_text()))
    missing = [s for s, v, d in numbers if not matches(v, d, values)]
    assert not missing, f"{where}: {missing} not found (to the digits quoted) in {results}"


def test_the_number_matcher_can_fail():
    assert matches(2.985, 3, [2.98466])
    assert not matches(2.97, 2, [2.98466])
    assert quoted("6,068 points/s, +0.207 and 1.28×") == [
        ("6,068", 6068.0, 0),
        ("+0.207", 0.207, 3),
        ("1.28", 1.28, 2),
    ]
    assert numbers_in({"a": [1, {"2.0": "x"}], "b": True}) == [1.0, 2.0]


def test_readme_is_short_and_its_use_it_snippet_runs_untagged():
    text = README.read_text()
    assert len(text.splitlines()) <= 120
    use_it = text.split("## Use it", 1)[1].split("##", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", use_it, re.S)  # plain `python`: never skipped
    assert len(code.strip().splitlines()) <= 15
    assert "notest" not in use_it
