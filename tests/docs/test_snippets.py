"""Every ``python`` code fence in README.md and docs/ runs (pytest-markdown-docs, superfences
syntax). A fence too slow for CI is written ```` ```{.python notest} ````; the README's "Use it"
snippet is a plain ```` ```python ```` fence, so it always runs. About 20 s of CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip(
    "pytest_markdown_docs", reason="pytest-markdown-docs is not installed: pip install -e '.[docs]'"
)


def test_every_python_fence_in_readme_and_docs_runs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    report = tmp_path / "snippets.xml"
    cmd = [
        sys.executable, "-m", "pytest", "--markdown-docs", "--markdown-docs-syntax=superfences",
        "-m", "markdown-docs", "-o", "addopts=", "-p", "no:cacheprovider", "-q",
        f"--junitxml={report}", "README.md", "docs",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    readme = [c for c in cases if "README" in c.get("classname", "") + c.get("file", "")]
    assert readme, "no fence of README.md was collected"
    for case in readme:  # the "Use it" snippet is never skipped
        assert case.find("skipped") is None and case.find("failure") is None, case.attrib
