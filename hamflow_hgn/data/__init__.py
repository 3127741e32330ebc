"""HGN datasets: simulate the four systems, store their states, render image sequences.

Modules, lowest first: :mod:`~hamflow_hgn.data.systems` (the Hamiltonians, numpy only),
:mod:`~hamflow_hgn.data.simulate` (workers, numpy and scipy only), :mod:`~hamflow_hgn.data.render`
(states to frames), :mod:`~hamflow_hgn.data.store` (the on-disk format),
:mod:`~hamflow_hgn.data.dataset` (:func:`open_dataset`), :mod:`~hamflow_hgn.data.generation`
(:func:`generate`), :mod:`~hamflow_hgn.data.imported` (:func:`import_frames`: your own frames)
and the CLI, ``python -m hamflow_hgn.data`` (:mod:`hamflow_hgn.data.__main__`).

The public names below are loaded on first use, so the simulation workers, which import
:mod:`hamflow_hgn.data.simulate`, start without importing torch.

Example:
    >>> from hamflow_hgn.data import DataConfig
    >>> DataConfig("pendulum", n_train=8, n_test=4).size
    32
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataConfig": "dataset",
    "DatasetError": "store",
    "SequenceDataset": "dataset",
    "make_loader": "dataset",
    "materialize": "dataset",
    "load_images": "dataset",
    "open_dataset": "dataset",
    "render_states": "dataset",
    "generate": "generation",
    "ImageSequenceDataset": "imported",
    "ImportConfig": "imported",
    "import_frames": "imported",
    "preview": "generation",
    "SYSTEMS": "systems",
    "PhysicalSystem": "systems",
    "get_system": "systems",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hamflow_hgn.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
