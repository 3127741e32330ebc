"""Fixtures shared by the script tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reproduce_table1.py"


def _load_script(path: Path, name: str):
    """Import the script at ``path`` as module ``name`` (registered, so dataclasses find it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """The function that imports a script by path: ``load_script(path, module_name)``."""
    return _load_script


@pytest.fixture(scope="module")
def example():
    """``examples/pendulum_hgn.py`` as a module."""
    return _load_script(ROOT / "examples" / "pendulum_hgn.py", "pendulum_hgn_example")


@pytest.fixture(scope="module")
def rt():
    """The CLI's ``main`` of ``scripts/reproduce_table1.py`` with the names of
    ``scripts/table1`` (paper, plan, report)."""
    module = _load_script(SCRIPT, "reproduce_table1")  # puts scripts/ on sys.path
    from table1 import paper, plan, report

    names = {**vars(paper), **vars(plan), **vars(report)}
    return SimpleNamespace(
        **{k: v for k, v in names.items() if not k.startswith("__")}, main=module.main
    )
