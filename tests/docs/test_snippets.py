"""Every ``python`` code fence in README.md and docs/ runs (pytest-markdown-docs, superfences
syntax). A fence too slow for CI is written ```` ```{.python notest} ````; the README's "Use it"
snippet is a plain ```` ```python ```` fence, so it always runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip(
    "pytest_markdown_docs", reason="pytest-markdown-docs is not installed: pip install -e '.[docs]'"
)


def test_every_python_fence_in_readme_and_docs_runs():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "pytest", "--markdown-docs", "--markdown-docs-syntax=superfences",
        "-m", "markdown-docs", "-o", "addopts=", "-p", "no:cacheprovider", "-v",
        "README.md", "docs",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    readme = [line for line in done.stdout.splitlines() if line.startswith("README.md::")]
    assert readme and all("PASSED" in line for line in readme), readme  # run, never skipped
