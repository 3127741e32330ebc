"""Atomic, versioned training checkpoints with every RNG state, and resume checks.

A checkpoint is one ``torch.save`` file holding ``format_version``, ``step``, ``config`` (the
resolved :class:`~hamflow_hgn.config.TrainConfig` as a dict), ``dataset`` (the training data's
content hash, system and path), ``model`` (including the GECO buffers), ``optimizer`` and
``rng`` (torch, numpy, python, CUDA if any, the data sampler's and
the reparametrisation noise's generators). It is written atomically (:mod:`hamflow_hgn.io`), so
a run killed at any moment leaves either the old or the new checkpoint, never a torn one.
It carries a ``checksum``: a sha256 over every value it holds, checked on loading, so a
modified or bit-flipped file is refused instead of resumed. It holds only tensors and plain
Python values, so it loads with ``torch.load(weights_only=True)``: a run directory from
someone else cannot execute code.

Example:
    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> state = {"step": 3, "config": {}, "model": {"w": torch.ones(2)}, "optimizer": {}, "rng": {}}
    >>> save_checkpoint(path, state)
    >>> load_checkpoint(path)["step"]
    3
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import save_torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "state_digest",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng",
    "restore_rng",
]

FORMAT_VERSION = 2
REQUIRED = ("step", "config", "model", "optimizer", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incompatible or from another configuration."""


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{t.dtype}{tuple(obj.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(b"{")
        for key in sorted(obj, key=repr):
            digest.update(repr(key).encode() + b":")
            _feed(digest, obj[key])
        digest.update(b"}")
    elif isinstance(obj, (list, tuple)):
        digest.update(b"[")
        for item in obj:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def state_digest(state: dict[str, Any]) -> str:
    """sha256 over every key and value of ``state`` (tensors by dtype, shape and bytes).

    Example:
        >>> a = state_digest({"w": torch.zeros(2), "step": 1})
        >>> a == state_digest({"step": 1, "w": torch.zeros(2)})
        True
        >>> a == state_digest({"w": torch.ones(2), "step": 1})
        False
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != "checksum"})
    return digest.hexdigest()


def _check_finite_model(state: dict[str, Any]) -> None:
    for name, value in state.get("model", {}).items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(
                    f"checkpoint: model entry {name!r} holds NaN or inf; refusing to save it"
                )


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with the format version and its checksum atomically to ``path``.

    Raises :class:`CheckpointError` rather than save non-finite model weights.
    """
    _check_finite_model(state)
    full = {"format_version": FORMAT_VERSION, **state}
    full["checksum"] = state_digest(full)
    save_torch(path, full)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; raise :class:`CheckpointError` saying what is wrong.

    Loads with ``weights_only=True`` and verifies the format version and the checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no file at {path}; start without --resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise CheckpointError(
            f"checkpoint: {path} is corrupt, unreadable or holds more than tensors and plain "
            f"values ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "delete it and retrain, or restore an earlier copy"
        ) from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint: {path} has format version {found!r}, expected {FORMAT_VERSION}; "
            "it was written by another version of hamflow_hgn, retrain to regenerate it"
        )
    missing = [k for k in (*REQUIRED, "checksum") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint: {path} lacks {missing}; retrain to regenerate it")
    if state_digest(state) != state["checksum"]:
        raise CheckpointError(
            f"checkpoint: {path} does not match its checksum: the file was modified or "
            "corrupted after it was written; restore an earlier copy or retrain"
        )
    return state


def _numpy_state() -> dict[str, Any]:
    """numpy's legacy global state as tensors and plain values (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    keys = torch.from_numpy(keys.astype(np.int64))
    return {
        "name": name,
        "keys": keys,
        "pos": pos,
        "has_gauss": has_gauss,
        "cached_gaussian": cached,
    }


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every global RNG state, plus the named ``generators`` (data sampler, noise)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    for name, gen in generators.items():
        state[name] = gen.get_state()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    keys = n["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))  # noqa: NPY002
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, gen in generators.items():
        if name not in state:
            raise CheckpointError(f"checkpoint: no RNG state for {name!r}; retrain")
        gen.set_state(state[name].cpu())
