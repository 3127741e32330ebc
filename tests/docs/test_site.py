"""The docs site builds with ``mkdocs build --strict``, offline: every nav page exists, every
internal link and anchor resolves, and every API block renders from the docstrings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

for _module in ("mkdocs", "material", "mkdocstrings"):
    pytest.importorskip(_module, reason=f"{_module} is not installed: pip install -e '.[docs]'")


def test_strict_build_passes(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "hamflow" / "index.html").read_text()
    import hamflow

    for name in hamflow.__all__:  # every public name got its rendered section
        assert f'id="hamflow.{name}"' in api, name
    assert (tmp_path / "site" / "reproduction" / "index.html").is_file()
