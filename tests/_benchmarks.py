"""A benchmark script imported as a module by the tests of every folder (``tests/`` is on
``sys.path`` through its ``conftest.py``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def benchmark_module(name: str, file: str) -> Iterator[object]:
    """Import ``benchmarks/<file>`` as a module called ``name``, with ``benchmarks/`` on
    ``sys.path`` (for its ``_common`` imports) while the module is in use."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(name, folder / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(folder))
