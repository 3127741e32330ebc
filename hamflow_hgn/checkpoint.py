"""Atomic, versioned training checkpoints with every RNG state, and resume checks.

A checkpoint is one ``torch.save`` file holding ``format_version``, ``step``, ``config`` (the
resolved :class:`~hamflow_hgn.config.TrainConfig` as a dict), ``model`` (including the GECO
buffers), ``optimizer`` and ``rng`` (torch, numpy, python, CUDA if any, the data sampler's and
the reparametrisation noise's generators). It is written atomically (:mod:`hamflow_hgn.io`), so
a run killed at any moment leaves either the old or the new checkpoint, never a torn one.

Example:
    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> save_checkpoint(path, {"step": 3, "config": {}, "model": {}, "optimizer": {}, "rng": {}})
    >>> load_checkpoint(path)["step"]
    3
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import save_torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng",
    "restore_rng",
]

FORMAT_VERSION = 1
REQUIRED = ("step", "config", "model", "optimizer", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incompatible or from another configuration."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format version) atomically to ``path``."""
    save_torch(path, {"format_version": FORMAT_VERSION, **state})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; raise :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no file at {path}; start without --resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # any unpickling failure means a corrupt file
        raise CheckpointError(
            f"checkpoint: {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
            "delete it and retrain, or restore an earlier copy"
        ) from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint: {path} has format version {found!r}, expected {FORMAT_VERSION}; "
            "it was written by another version of hamflow_hgn, retrain to regenerate it"
        )
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint: {path} lacks {missing}; retrain to regenerate it")
    return state


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every global RNG state, plus the named ``generators`` (data sampler, noise)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global state
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    for name, gen in generators.items():
        state[name] = gen.get_state()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, gen in generators.items():
        if name not in state:
            raise CheckpointError(f"checkpoint: no RNG state for {name!r}; retrain")
        gen.set_state(state[name].cpu())
