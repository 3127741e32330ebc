"""Every image shown in README.md and docs/ traces to a committed results file (issue 36, goal 4).

An image traces when a results JSON (``docs/img/*.json`` or ``benchmarks/results/**/*.json``)
names its file, or when the image's caption line names such a JSON; and that JSON records the
command that makes the figure, the date it was made and the commit it was made at (the machine
and settings sit beside them). A new figure without one fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
CAPTION_JSON = re.compile(r"`([\w./-]+\.json)`")
RESULTS = sorted((ROOT / "docs" / "img").glob("*.json")) + sorted(
    (ROOT / "benchmarks" / "results").rglob("*.json")
)


def images() -> list[tuple[Path, int, str, list[str]]]:
    """``(page, line number, image file name, caption JSONs)`` for every image link."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            for match in IMAGE.finditer(line):
                target = match.group(1) or match.group(2)
                if target.startswith(("http://", "https://")):
                    continue
                # the caption: the first paragraph after the image (and its neighbours)
                caption, j = [], i + 1
                while j < len(lines) and (not lines[j].strip() or lines[j].startswith("![")):
                    j += 1
                while j < len(lines) and lines[j].strip():
                    caption += CAPTION_JSON.findall(lines[j])
                    j += 1
                found.append((page, i + 1, Path(target).name, caption))
    return found


def _keys(obj, depth: int = 0) -> dict:
    """Top-level keys of a JSON object, and those of its dict values one level down."""
    if not isinstance(obj, dict):
        return {}
    out = dict(obj)
    if depth == 0:
        for value in obj.values():
            for k, v in _keys(value, 1).items():
                out.setdefault(k, v)
    return out


def provenance_problem(path: Path) -> str | None:
    """Why ``path`` is not a results file with provenance (None when it is one)."""
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if not path.is_file():
        return f"{shown} does not exist"
    keys = _keys(json.loads(path.read_text()))
    missing = [k for k in ("command", "date", "commit") if not keys.get(k)]
    return f"{shown} records no {' or '.join(missing)}" if missing else None


IMAGES = images()


def test_the_scan_finds_the_figures_of_readme_and_docs():
    names = {name for _, _, name, _ in IMAGES}
    assert "multimodal.png" in names and "results_fig6_mse.png" in names
    assert len(IMAGES) >= 10


@pytest.mark.parametrize(
    "page, line, name, caption",
    IMAGES,
    ids=[f"{p.relative_to(ROOT)}:{n}:{name}" for p, n, name, _ in IMAGES],
)
def test_every_image_traces_to_a_results_file(page, line, name, caption):
    naming = [p for p in RESULTS if name in p.read_text()]
    named = [ROOT / c for c in caption if c.endswith(".json")]
    candidates = list(dict.fromkeys(naming + named))
    where = f"{page.relative_to(ROOT)}:{line} shows {name}"
    assert candidates, (
        f"{where}, but no results JSON names it and its caption names none: make the script "
        "that draws it write one (command, machine, date, commit, settings)"
    )
    problems = [provenance_problem(p) for p in candidates]
    assert None in problems, f"{where}: {'; '.join(problems)}"


def test_the_check_refuses_a_missing_file_and_one_without_a_command(tmp_path):
    assert provenance_problem(tmp_path / "none.json").endswith("does not exist")
    (tmp_path / "bare.json").write_text(json.dumps({"figure": "x.png", "settings": {"date": ""}}))
    assert provenance_problem(tmp_path / "bare.json").endswith(
        "records no command or date or commit"
    )
    (tmp_path / "nested.json").write_text(
        json.dumps(
            {"command": "python make.py", "machine": {"date": "2026-12-07", "commit": "abc"}}
        )
    )
    assert provenance_problem(tmp_path / "nested.json") is None
