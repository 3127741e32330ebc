"""The one atomic writer of ``hamflow_hgn``: bytes, text, JSON, figures, torch files, arrays.

Everything the package writes (datasets, checkpoints, run files, evaluation, figures) goes
through :func:`atomic_path`: the content is written to a temporary sibling, flushed to disk and
renamed onto the target with ``os.replace``, so a reader (or a run killed at any moment) sees
either the old file or the new one, never a torn one.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "sub" / "a.json"
    >>> write_json(path, {"b": 1, "a": [1, 2]})
    >>> path.read_text()
    '{\\n  "a": [\\n    1,\\n    2\\n  ],\\n  "b": 1\\n}\\n'
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "save_figure", "save_torch"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it onto ``path`` on success.

    The parent folder is created. If the block raises, the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, *, sort_keys: bool = True, indent: int = 2) -> None:
    """Write ``data`` as JSON (sorted keys by default, trailing newline) atomically."""
    write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n")


def save_figure(fig, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the suffix), close it, return ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = savefig_kwargs.pop("format", path.suffix.lstrip(".") or "png")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, **savefig_kwargs)
    finally:
        plt.close(fig)
    return path


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
