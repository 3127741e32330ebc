"""Saving a module with the constructor options that rebuild it (``NHF.save`` / ``NHF.load``).

The file is a ``torch.save`` archive of plain values only, so it loads with
``weights_only=True``: ``{"format", "version", "kind", "options", "unrecorded", "state_dict"}``.
Options that are objects (a normflows prior, a target callable) are listed in ``unrecorded``
and must be passed to ``load`` again. Writes go to a temporary file that is then renamed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

FORMAT = "hamflow-module"
VERSION = 1


def _plain(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def save_module(module: nn.Module, path: str | Path, kind: str, options: dict) -> Path:
    """Write ``module``'s weights and plain ``options`` to ``path`` atomically; return the path."""
    path = Path(path)
    recorded = {k: v for k, v in options.items() if _plain(v)}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "options": recorded,
        "unrecorded": sorted(set(options) - set(recorded)),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_payload(path: str | Path, kind: str) -> dict:
    """The checked contents of a file written by :func:`save_module` for a ``kind`` model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holding objects
        raise ValueError(
            f"{path}: not a readable hamflow model file ({type(err).__name__}: {err}); "
            "write it again with .save()"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a hamflow model file (no {FORMAT!r} header)")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{path}: format version {payload.get('version')!r}, this hamflow reads version "
            f"{VERSION}; save the model again with this version"
        )
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: holds a {payload.get('kind')!r} model, expected {kind!r}")
    return payload


def load_module(cls, path, kind: str, map_location=None, overrides: dict | None = None):
    """Rebuild ``cls(**options, **overrides)`` from ``path`` and load its weights."""
    payload = read_payload(path, kind)
    overrides = dict(overrides or {})
    missing = [k for k in payload["unrecorded"] if k not in overrides]
    if missing:
        raise ValueError(
            f"{path}: the options {missing} were objects and could not be saved; pass them to "
            f"load() again, e.g. {cls.__name__}.load(path, {missing[0]}=...)"
        )
    model = cls(**{**payload["options"], **overrides})
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the saved weights do not fit the options given: {err}") from err
    if map_location is not None:
        model = model.to(map_location)
    return model
