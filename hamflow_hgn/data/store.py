"""On-disk format of a generated dataset: atomic writes, hashes, metadata checks.

A dataset directory holds::

    metadata.json          format version, config, system constants, per-file sha256, content hash
    train_clean.npy        (n_train, steps, state_dim) float32: exact trajectories
    train_noisy.npy        (n_train, steps, state_dim) float32: clean + Gaussian noise (rendered)
    test_clean.npy         likewise for the test split
    test_noisy.npy
    train_images.npy       optional (--materialize): (n, steps, 3, size, size) uint8
    test_images.npy

Every file is written under a temporary name and renamed into place (:mod:`hamflow_hgn.io`);
``metadata.json`` last.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "METADATA",
    "DatasetError",
    "array_file",
    "file_sha256",
    "content_hash",
    "read_metadata",
    "load_checked",
]

FORMAT_VERSION: int = 1
METADATA: str = "metadata.json"


class DatasetError(ValueError):
    """A dataset directory is missing, corrupt, truncated or does not match the request."""


@contextmanager
def array_file(path: Path, shape: tuple[int, ...], dtype: str) -> Iterator[np.memmap]:
    """A writable ``.npy`` memory map at a temporary name, renamed onto ``path`` on success."""
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=shape)
        try:
            yield array
            array.flush()
        finally:
            del array


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(config: dict[str, Any], files: dict[str, dict[str, Any]]) -> str:
    """One sha256 over the config and every state file's hash (identifies the dataset)."""
    payload = json.dumps(
        {"config": config, "files": {k: v["sha256"] for k, v in sorted(files.items())}},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def read_metadata(out_dir: Path, regenerate: str) -> dict[str, Any]:
    """Read and sanity-check ``metadata.json``; raise :class:`DatasetError` otherwise."""
    path = out_dir / METADATA
    if not path.is_file():
        raise DatasetError(f"{out_dir}: no {METADATA}; not a generated dataset. {regenerate}")
    try:
        meta = json.loads(path.read_text())
        version = meta["format_version"]
        meta["config"], meta["files"], meta["content_hash"]  # noqa: B018 (presence check)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: corrupt metadata ({err!r}). {regenerate}") from err
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version expected {FORMAT_VERSION}, got {version!r}. {regenerate}"
        )
    if content_hash(meta["config"], meta["files"]) != meta["content_hash"]:
        raise DatasetError(f"{path}: content_hash does not match its file list. {regenerate}")
    return meta


def load_checked(
    out_dir: Path, name: str, entry: dict[str, Any], regenerate: str, verify: bool = True
) -> np.ndarray:
    """Memory-map ``out_dir/name`` after checking existence, shape, dtype and (if asked) sha256."""
    path = out_dir / name
    if not path.is_file():
        raise DatasetError(f"{path}: missing file. {regenerate}")
    if verify and file_sha256(path) != entry["sha256"]:
        raise DatasetError(f"{path}: sha256 mismatch (corrupt or modified file). {regenerate}")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: unreadable or truncated ({err}). {regenerate}") from err
    if list(array.shape) != list(entry["shape"]) or str(array.dtype) != entry["dtype"]:
        raise DatasetError(
            f"{path}: expected shape {tuple(entry['shape'])} {entry['dtype']}, "
            f"got {array.shape} {array.dtype}. {regenerate}"
        )
    return array
