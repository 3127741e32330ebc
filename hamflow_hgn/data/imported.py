"""Your own image sequences as an HGN dataset: :func:`import_frames` and the dataset it opens.

A ``uint8`` array of RGB frames, shape ``(N, T, H, W, 3)`` (in memory, in a ``.npy`` or
``.npz`` file, or split over the ``.npy``/``.npz`` files of a folder), is checked, shuffled
with a seed, split into train and test sequences and written as a dataset directory::

    metadata.json          format version, kind "images", config, source hashes, per-file sha256
    train_images.npy       (n_train, T, 3, H, W) uint8
    test_images.npy        (n_test, T, 3, H, W) uint8

with the same atomic writes, hashes and checks as a generated dataset
(:mod:`hamflow_hgn.data.store`), so :func:`~hamflow_hgn.data.open_dataset`,
``hamflow-train --data DIR`` and :func:`~hamflow_hgn.runs.load_run` read it unchanged. The
frames stand in for the rendered ones of the four systems (paper Sec. 4): HGN learns from the
pixels alone, so nothing else is needed. What needs a known system, the replay at other speeds
and the body tracking of :mod:`hamflow_hgn.evaluate`, is not available for imported data;
``hamflow-evaluate`` scores such a run by its pixel MSE, VPT and rollouts and says what it
skipped.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 3.2 and 4.
"""

from __future__ import annotations

import shlex
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io import write_json
from . import store
from .store import DatasetError

__all__ = [
    "FRAME_SIZES",
    "MIN_FRAMES",
    "ImportConfig",
    "ImageSequenceDataset",
    "import_frames",
    "open_imported",
]

KIND = "images"
"""``metadata.json``'s ``kind`` of an imported dataset (a generated one has none)."""

FRAME_SIZES: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
"""Frame sizes HGN takes: square, 4 x 4 (the latent grid) times a power of two from 2 to 64.

The encoder halves the frames by stride-2 convolutions down to the 4 x 4 latent state and the
decoder doubles them back (:attr:`hamflow_hgn.config.ModelConfig.n_upsample`)."""

MIN_FRAMES = 2
"""Fewest frames per sequence: an initial frame and at least one integration step."""

_CHUNK = 64
"""Sequences copied at a time while writing a split."""


def _need_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ImportConfig:
    """What an imported dataset holds: its name, split sizes, frames per sequence, frame size.

    It plays the part of :class:`~hamflow_hgn.data.DataConfig` for imported frames: training
    reads ``steps`` (frames per sequence) and ``size`` from it; ``system`` is ``"imported"``.

    Parameters
    ----------
    name : str
        A label (the source file's stem by default), recorded with the data.
    n_train, n_test : int
        Sequences in the train and test splits.
    steps : int
        Frames per sequence, at least :data:`MIN_FRAMES`.
    size : int
        Frame height and width, one of :data:`FRAME_SIZES`.
    seed : int
        Seed of the shuffle that made the split.

    Examples
    --------
    >>> ImportConfig("clips", n_train=8, n_test=2, steps=10, size=32).system
    'imported'
    >>> ImportConfig("clips", n_train=8, n_test=2, steps=10, size=24)
    Traceback (most recent call last):
    ...
    ValueError: size: expected one of (8, 16, 32, 64, 128, 256) ..., got 24
    """

    name: str
    n_train: int
    n_test: int
    steps: int
    size: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        _need_int("n_train", self.n_train, 1)
        _need_int("n_test", self.n_test, 1)
        _need_int("steps", self.steps, MIN_FRAMES)
        _need_int("seed", self.seed, 0)
        if self.size not in FRAME_SIZES:
            raise ValueError(
                f"size: expected one of {FRAME_SIZES} (HGN halves the frames down to 4x4), "
                f"got {self.size!r}"
            )

    @property
    def system(self) -> str:
        """``"imported"``: what a checkpoint records as the data's system."""
        return "imported"

    def count(self, split: str) -> int:
        """Number of sequences in ``split`` ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"split: expected one of ['train', 'test'], got {split!r}")
        return self.n_train if split == "train" else self.n_test


# -- reading and checking the source ---------------------------------------------------------


def _check_array(array: Any, where: str, frames: int | None) -> tuple[int, int, int]:
    """Check one source array; return its ``(T, H, W)``."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        hint = (
            " (floats in [0, 1]: pass (x * 255).round().astype(np.uint8))"
            if array.dtype.kind == "f"
            else ""
        )
        raise TypeError(f"{where}: expected dtype uint8 (RGB 0-255), got {array.dtype}{hint}")
    if array.ndim != 5 or array.shape[-1] != 3:
        hint = ""
        if array.ndim == 4 and array.shape[-1] == 3:
            hint = " (one sequence? pass array[None])"
        elif array.ndim == 5 and array.shape[2] == 3:
            hint = " (channels first? pass array.transpose(0, 1, 3, 4, 2))"
        elif array.ndim == 4 or (array.ndim == 5 and array.shape[-1] == 1):
            hint = " (grey frames? repeat them: np.repeat(x[..., None], 3, axis=-1))"
        raise ValueError(
            f"{where}: expected shape (N, T, H, W, 3): N sequences of T RGB frames, "
            f"got {array.shape}{hint}"
        )
    n, t, h, w, _ = array.shape
    if n < 1:
        raise ValueError(f"{where}: expected at least 1 sequence, got shape {array.shape}")
    if h != w or h not in FRAME_SIZES:
        raise ValueError(
            f"{where}: expected square frames of one of the sizes {FRAME_SIZES} (HGN's encoder "
            f"halves them down to its 4x4 latent grid, its decoder doubles them back), got "
            f"{h}x{w}; resize, crop or pad them first (docs/hgn/own-data.md shows how)"
        )
    need = MIN_FRAMES if frames is None else frames
    if t < need:
        why = (
            f"asked for with frames={frames}"
            if frames is not None
            else "HGN needs an initial frame and at least one step"
        )
        raise ValueError(
            f"{where}: expected at least {need} frames per sequence ({why}), got T={t} "
            f"in shape {array.shape}"
        )
    return t, h, w


def _load(path: Path, key: str | None) -> np.ndarray:
    """One source file as an array (``.npy`` memory-mapped); refuse a corrupt one."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"source: expected a .npy or .npz file or a folder, got {str(path)!r}")
    unreadable = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile)
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        archive = np.load(path, allow_pickle=False)
    except unreadable as err:
        raise DatasetError(f"{path}: unreadable or corrupt {suffix} file ({err})") from err
    with archive:
        names = list(archive.files)
        if key is None and len(names) == 1:
            key = names[0]
        if key not in names:
            raise ValueError(
                f"key: {str(path)!r} holds the arrays {names}; pass key=NAME (--key) to pick "
                f"one, got {key!r}"
            )
        try:
            return archive[key]
        except unreadable as err:
            raise DatasetError(f"{path}: unreadable or corrupt {suffix} file ({err})") from err


def _sources(
    source: str | Path | np.ndarray, key: str | None, frames: int | None
) -> tuple[list[tuple[str, np.ndarray]], tuple[int, int, int]]:
    """The named source arrays, checked and consistent, and their common ``(T, H, W)``."""
    if isinstance(source, np.ndarray) or not isinstance(source, (str, Path)):
        arrays = [("source", source)]
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".npy", ".npz")
            )
            if not files:
                raise ValueError(f"source: the folder {str(path)!r} holds no .npy or .npz files")
        elif path.is_file():
            files = [path]
        else:
            raise ValueError(f"source: no file or folder at {str(path)!r}")
        arrays = [(str(p), _load(p, key)) for p in files]
    shapes = {}
    for where, array in arrays:
        shapes[where] = _check_array(array, where, frames)
    first = arrays[0][0]
    for where, thw in shapes.items():
        if thw != shapes[first]:
            raise ValueError(
                f"source: the arrays of a folder must share (T, H, W); {first} has "
                f"{shapes[first]}, {where} has {thw}"
            )
    return arrays, shapes[first]


# -- writing -----------------------------------------------------------------------------------


def _write_split(
    out: Path, name: str, arrays: list[np.ndarray], order: np.ndarray, steps: int, progress: bool
) -> dict[str, Any]:
    """Copy the sequences ``order`` (global indices over ``arrays``) to ``out/name``."""
    size = arrays[0].shape[2]
    shape = (len(order), steps, 3, size, size)
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    with store.array_file(out / name, shape, "uint8") as target:
        for start in tqdm(range(0, len(order), _CHUNK), disable=not progress, desc=name):
            block = order[start : start + _CHUNK]
            which = np.searchsorted(offsets, block, side="right") - 1
            rows = [arrays[f][g - offsets[f], :steps] for f, g in zip(which, block)]
            target[start : start + len(block)] = np.stack(rows).transpose(0, 1, 4, 2, 3)
    return {"shape": list(shape), "dtype": "uint8", "sha256": store.file_sha256(out / name)}


def import_frames(
    source: str | Path | np.ndarray,
    out_dir: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    frames: int | None = None,
    key: str | None = None,
    name: str | None = None,
    progress: bool = False,
) -> Path:
    """Write a dataset directory from ``uint8`` frames ``(N, T, H, W, 3)``; return its path.

    The sequences are shuffled with ``seed``; the first ``round(test_fraction * N)`` (at least
    one) become the test split, the rest the train split. The same source and arguments give
    the same bytes and the same content hash. Files are written atomically, ``metadata.json``
    last, so an interrupted import leaves no dataset that opens.

    Parameters
    ----------
    source : numpy.ndarray, str or Path
        The array itself; a ``.npy``/``.npz`` file holding it; or a folder whose
        ``.npy``/``.npz`` files, in name order, hold such arrays with the same ``T``, ``H``
        and ``W`` (their sequences are pooled). ``dtype`` uint8, RGB last, square frames of a
        size in :data:`FRAME_SIZES`, ``T >= MIN_FRAMES``.
    out_dir : str or Path
        The dataset directory to write (not the source folder).
    test_fraction : float
        Share of the sequences held out for the test split, in (0, 1).
    seed : int
        Seed of the shuffle that draws the split.
    frames : int or None
        Keep the first ``frames`` frames of each sequence (default: all ``T``).
    key : str or None
        The array of an ``.npz`` that holds several.
    name : str or None
        A label for the dataset (default: the source's file or folder name).
    progress : bool
        Show a progress bar per split.

    Returns
    -------
    Path
        ``out_dir``, ready for :func:`~hamflow_hgn.data.open_dataset` and ``hamflow-train``.

    Raises
    ------
    TypeError
        A dtype other than uint8, or a source that is not an array or a path.
    ValueError
        A wrong shape, a frame size HGN cannot take, fewer than :data:`MIN_FRAMES` (or
        ``frames``) frames, a folder of inconsistent arrays, fewer than two sequences or a bad
        argument; the message names the argument or file, what was expected and what came.
    DatasetError
        A source file that cannot be read (corrupt, truncated, not an array).

    Examples
    --------
    >>> import tempfile
    >>> from hamflow_hgn.data import open_dataset
    >>> x = np.random.default_rng(0).integers(0, 256, (10, 6, 16, 16, 3), dtype=np.uint8)
    >>> out = import_frames(x, tempfile.mkdtemp(), test_fraction=0.2)
    >>> train = open_dataset(out, "train")
    >>> len(train), len(open_dataset(out, "test")), tuple(train.render_batch([0]).shape)
    (8, 2, (1, 6, 3, 16, 16))
    >>> import_frames(x[..., 0], tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    ValueError: source: expected shape (N, T, H, W, 3): ..., got (10, 6, 16, 16) ...

    References
    ----------
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 4 (the datasets whose
    format this reuses).
    """
    fraction_ok = isinstance(test_fraction, (int, float)) and not isinstance(test_fraction, bool)
    if not (fraction_ok and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    _need_int("seed", seed, 0)
    if frames is not None:
        _need_int("frames", frames, MIN_FRAMES)
    out = Path(out_dir)
    if isinstance(source, (str, Path)) and Path(source).resolve() == out.resolve():
        raise ValueError(f"out_dir: expected a folder other than the source, got {str(out)!r}")
    arrays, (t, size, _) = _sources(source, key, frames)
    steps = t if frames is None else frames
    total = sum(len(a) for _, a in arrays)
    if total < 2:
        raise ValueError(
            f"source: expected at least 2 sequences (one to train on, one to test), got {total}"
        )
    n_test = min(total - 1, max(1, round(test_fraction * total)))
    if name is None:
        name = Path(source).stem if isinstance(source, (str, Path)) else "frames"
    config = ImportConfig(name, total - n_test, n_test, steps, size, seed)
    source_record: dict[str, Any] = {
        "path": str(source) if isinstance(source, (str, Path)) else None,
        "key": key,
        "arrays": [
            {
                "name": Path(where).name if isinstance(source, (str, Path)) else where,
                "shape": list(a.shape),
                "sha256": store.file_sha256(Path(where))
                if isinstance(source, (str, Path))
                else None,
            }
            for where, a in arrays
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / store.METADATA).unlink(missing_ok=True)
    order = np.random.default_rng(seed).permutation(total)
    splits = {"test": order[:n_test], "train": order[n_test:]}
    files = {}
    for split in ("train", "test"):
        files[f"{split}_images.npy"] = _write_split(
            out, f"{split}_images.npy", [a for _, a in arrays], splits[split], steps, progress
        )
    cfg = asdict(config)
    meta = {
        "format_version": store.FORMAT_VERSION,
        "kind": KIND,
        "config": cfg,
        "source": source_record,
        "files": files,
        "content_hash": store.content_hash(cfg, files),
        "command": _command(source, out, test_fraction, seed, frames, key, name),
        "images": files,
    }
    write_json(out / store.METADATA, meta)
    return out


def _command(source, out, test_fraction, seed, frames, key, name) -> str | None:
    """The CLI line that re-imports ``source`` into ``out`` (None for an in-memory array)."""
    if not isinstance(source, (str, Path)):
        return None
    args = ["hamflow-data", "import", str(source), "--out", str(out)]
    args += ["--test-fraction", str(test_fraction), "--seed", str(seed), "--name", name]
    if frames is not None:
        args += ["--frames", str(frames)]
    if key is not None:
        args += ["--key", key]
    return shlex.join(args)


# -- reading back ----------------------------------------------------------------------------


class _NoSystem:
    """An imported dataset's ``system``: any attribute is refused with a ``ValueError`` that
    says why (there is no simulator behind the frames) and what to do instead."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy, pickle and friends probe for these
            raise AttributeError(attr)
        raise ValueError(
            f"dataset: the imported dataset {self._name!r} has no simulated system (asked for "
            f"system.{attr}): HGN trains on it and hamflow-evaluate scores it by pixels, but "
            "the PixelHNN baselines, replays at other speeds and body tracking need a "
            "generated one (docs/hgn/own-data.md)"
        )

    def __repr__(self) -> str:
        return f"<no system: imported frames {self._name!r}>"


class ImageSequenceDataset(torch.utils.data.Dataset):
    """Stored uint8 frame sequences as float images in [0, 1] (an imported dataset's split).

    It answers what training and :func:`~hamflow_hgn.runs.load_run` ask of a
    :class:`~hamflow_hgn.data.SequenceDataset`: ``len``, ``dataset[i]`` (float32
    ``(steps, 3, size, size)``), :meth:`render_batch`, ``config``, ``content_hash`` and
    ``path``. There is no simulator behind the frames: :meth:`replay` and any attribute of
    ``system`` raise a ``ValueError`` that says so (the PixelHNN baselines and
    :func:`~hamflow_hgn.evaluate.evaluate`'s body tracking need a generated system).

    Parameters
    ----------
    config : ImportConfig
        What the split holds.
    images : numpy.ndarray
        ``(n, steps, 3, size, size)`` uint8 (a memory map when opened from disk).
    content_hash, path : str or Path, optional
        The stored dataset's identity, recorded by checkpoints.

    Examples
    --------
    >>> cfg = ImportConfig("clips", n_train=2, n_test=1, steps=3, size=8)
    >>> ds = ImageSequenceDataset(cfg, np.full((2, 3, 3, 8, 8), 255, np.uint8))
    >>> len(ds), tuple(ds[0].shape), float(ds.render_batch([0, 1]).max())
    (2, (3, 3, 8, 8), 1.0)
    """

    return_states = False

    def __init__(
        self,
        config: ImportConfig,
        images: np.ndarray,
        *,
        content_hash: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        expected = (config.steps, 3, config.size, config.size)
        if images.ndim != 5 or tuple(images.shape[1:]) != expected or images.dtype != np.uint8:
            raise ValueError(
                f"images: expected uint8 of shape (N, {', '.join(map(str, expected))}), "
                f"got {images.dtype} {images.shape}"
            )
        self.config = config
        self.system = _NoSystem(config.name)
        self.images = images
        self.content_hash = content_hash
        self.path = Path(path) if path is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.render_batch([index])[0]

    def render_batch(
        self, indices: Sequence[int] | torch.Tensor, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Sequences ``indices`` as float32 ``(B, steps, 3, size, size)`` on ``device``."""
        idx = torch.as_tensor(indices, dtype=torch.long).cpu().numpy().reshape(-1)
        batch = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        if device is not None:
            batch = batch.to(device)
        return batch.to(torch.float32).div_(255.0)

    def replay(self, indices: Any, speed: float, frames: int | None = None) -> torch.Tensor:
        """Refused: imported frames have no system to play again at another speed."""
        raise ValueError(
            f"replay: the imported dataset {self.config.name!r} has no simulator behind its "
            "frames, so it cannot be played at another speed (only generated systems can)"
        )


def open_imported(
    out_dir: Path, split: str, meta: dict[str, Any], expect: Any = None, verify: bool = True
) -> ImageSequenceDataset:
    """Open ``split`` of the imported dataset at ``out_dir`` whose checked metadata is ``meta``.

    Called by :func:`~hamflow_hgn.data.open_dataset` for a ``metadata.json`` of kind
    ``"images"``; refuses a bad config, another ``expect``, and a missing, resized or
    modified image file (:class:`~hamflow_hgn.data.DatasetError`).
    """
    command = meta.get("command")
    regen = f"Re-import with: {command}" if command else "Re-import it with import_frames"
    try:
        config = ImportConfig(**meta["config"])
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{out_dir}: invalid stored config ({err}). {regen}") from err
    if expect is not None and expect != config:
        if isinstance(expect, ImportConfig):
            diffs = [
                f"{f.name}: stored {getattr(config, f.name)!r}, "
                f"expected {getattr(expect, f.name)!r}"
                for f in fields(ImportConfig)
                if getattr(config, f.name) != getattr(expect, f.name)
            ]
        else:
            diffs = [f"it holds imported frames, expected {expect!r}"]
        raise DatasetError(f"{out_dir} does not match: {'; '.join(diffs)}")
    name = f"{split}_images.npy"
    entry = meta["files"].get(name)
    if entry is None:
        raise DatasetError(f"{out_dir / name}: not listed in {store.METADATA}. {regen}")
    images = store.load_checked(out_dir, name, entry, regen, verify)
    if len(images) != config.count(split):
        raise DatasetError(
            f"{out_dir / name}: expected {config.count(split)} sequences, got {len(images)}. "
            f"{regen}"
        )
    return ImageSequenceDataset(config, images, content_hash=meta["content_hash"], path=out_dir)
