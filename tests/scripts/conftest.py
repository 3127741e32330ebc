"""Fixtures shared by the script tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reproduce_table1.py"


@pytest.fixture(scope="module")
def rt():
    """The CLI's ``main`` of ``scripts/reproduce_table1.py`` with the names of
    ``scripts/table1`` (paper, plan, report)."""
    spec = importlib.util.spec_from_file_location("reproduce_table1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # puts scripts/ on sys.path
    from table1 import paper, plan, report

    names = {**vars(paper), **vars(plan), **vars(report)}
    return SimpleNamespace(
        **{k: v for k, v in names.items() if not k.startswith("__")}, main=module.main
    )
