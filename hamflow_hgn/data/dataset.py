"""Open a generated dataset: its config, the checked state files, image sequences on demand.

States are the truth: :func:`~hamflow_hgn.data.generation.generate` stores clean and noisy
phase-space trajectories (float32, tens of MB at paper scale) and :class:`SequenceDataset`
renders the frames when asked, on the CPU or on the training GPU
(:meth:`SequenceDataset.render_batch`). Images are quantised to 8 bits, exactly as
:func:`materialize` stores them, so both paths agree bit for bit.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 4 (datasets) and A.4.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DT
from ..io import write_json
from . import simulate, store
from .render import render
from .store import DatasetError
from .systems import PhysicalSystem, get_system

__all__ = [
    "DataConfig",
    "DatasetError",
    "SequenceDataset",
    "open_dataset",
    "materialize",
    "load_images",
    "make_loader",
    "render_states",
]


def _need_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """What to generate: system, split sizes, frames per sequence, image size, frame spacing.

    ``steps`` is the number of frames per sequence (T + 1): 31 by default, 34 for the
    "infer from 5, predict 30" protocol. Frames are ``dt`` apart (paper: 0.125).

    Example:
        >>> DataConfig("pendulum", n_train=8, n_test=4).steps
        31
        >>> DataConfig("pendulum", size=4)
        Traceback (most recent call last):
        ...
        ValueError: size: expected an int >= 8, got 4
    """

    system: str
    n_train: int = 50_000
    n_test: int = 10_000
    steps: int = 31
    size: int = 32
    dt: float = DT
    seed: int = 0

    def __post_init__(self) -> None:
        get_system(self.system)
        _need_int("n_train", self.n_train, 1)
        _need_int("n_test", self.n_test, 1)
        _need_int("steps", self.steps, 2)
        _need_int("size", self.size, 8)
        if self.size & (self.size - 1) or self.size > 256:
            raise ValueError(
                f"size: expected a power of two from 8 to 256 (HGN halves the frames down to "
                f"4x4), got {self.size}"
            )
        _need_int("seed", self.seed, 0)
        if not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt: expected a finite float > 0, got {self.dt!r}")

    def count(self, split: str) -> int:
        """Number of sequences in ``split`` ("train" or "test")."""
        if split not in simulate.SPLITS:
            raise ValueError(f"split: expected one of {list(simulate.SPLITS)}, got {split!r}")
        return self.n_train if split == "train" else self.n_test

    def command(self, out_dir: str | Path) -> str:
        """The CLI line that (re)generates this config into ``out_dir``."""
        args = ["python", "-m", "hamflow_hgn.data"]
        for f in fields(self):
            args += [f"--{f.name.replace('_', '-')}", str(getattr(self, f.name))]
        return shlex.join(args + ["--out", str(out_dir)])


def regenerate_hint(config: DataConfig | None, out_dir: Path) -> str:
    """The sentence that tells how to regenerate ``out_dir`` (with ``config`` when known)."""
    if not isinstance(config, DataConfig):  # None, or an ImportConfig (imported frames)
        return "Regenerate with: python -m hamflow_hgn.data --system NAME ... --out " + str(out_dir)
    return f"Regenerate with: {config.command(out_dir)}"


def _quantize(images: torch.Tensor) -> torch.Tensor:
    return images.mul(255.0).round_().to(torch.uint8)


def _dequantize(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32).div_(255.0)


def render_states(states: torch.Tensor, system: PhysicalSystem, size: int) -> torch.Tensor:
    """Render ``states[..., state_dim]`` to 8-bit-exact float images ``[..., 3, size, size]``.

    This is the one rendering path of the datasets (on-the-fly, batched and materialised).

    Example:
        >>> from hamflow_hgn.data.systems import get_system
        >>> img = render_states(torch.zeros(2, 2), get_system("pendulum"), 8)
        >>> img.shape, bool(((img * 255).round() == img * 255).all())
        (torch.Size([2, 3, 8, 8]), True)
    """
    states = states.to(torch.float32)
    return _dequantize(_quantize(render(system.positions(states), system, size)))


class SequenceDataset(torch.utils.data.Dataset):
    """Image sequences rendered on demand from stored states (paper Sec. 4).

    ``dataset[i]`` is a float32 tensor ``(steps, 3, size, size)`` in [0, 1], or
    ``(images, states)`` with the noisy ``(steps, state_dim)`` states when ``return_states``.
    ``content_hash`` and ``path`` identify the stored dataset (set by :func:`open_dataset`).
    Use :meth:`render_batch` (or :func:`make_loader`) to render a whole batch on the GPU.

    Example:
        >>> cfg = DataConfig("pendulum", n_train=2, n_test=1, steps=3, size=8)
        >>> noisy = np.zeros((2, 3, 2), np.float32)
        >>> ds = SequenceDataset(cfg, noisy, noisy.copy())
        >>> len(ds), ds[0].shape, ds.render_batch([0, 1]).shape
        (2, torch.Size([3, 3, 8, 8]), torch.Size([2, 3, 3, 8, 8]))
    """

    def __init__(
        self,
        config: DataConfig,
        states: np.ndarray,
        clean_states: np.ndarray,
        return_states: bool = False,
        *,
        content_hash: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.config = config
        self.content_hash = content_hash
        self.path = Path(path) if path is not None else None
        self.system = get_system(config.system)
        expected = (config.steps, self.system.state_dim)
        for name, arr in (("states", states), ("clean_states", clean_states)):
            if arr.ndim != 3 or tuple(arr.shape[1:]) != expected:
                raise ValueError(
                    f"{name}: expected shape (N, {expected[0]}, {expected[1]}), got {arr.shape}"
                )
        self.states = np.ascontiguousarray(states, dtype=np.float32)
        self.clean_states = clean_states
        self.return_states = return_states
        self._states = torch.from_numpy(self.states)

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        states = self._states[index]
        images = render_states(states, self.system, self.config.size)
        return (images, states.clone()) if self.return_states else images

    def render_batch(
        self, indices: Sequence[int] | torch.Tensor, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Gather ``indices``, move their states to ``device`` and render there in one call."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        states = self._states[idx].to(device) if device is not None else self._states[idx]
        return render_states(states, self.system, self.config.size)

    def replay(
        self, indices: Sequence[int] | torch.Tensor, speed: float, frames: int | None = None
    ) -> torch.Tensor:
        """The true sequences ``indices`` played ``speed`` times as fast, as rendered frames.

        Each sequence's clean first state is integrated again (the same solver and tolerance
        as the data, :func:`~hamflow_hgn.data.simulate.integrate`) to the times
        ``speed · dt · k``, ``k = 0 … frames − 1`` (default: the dataset's frames), and rendered
        as the data is, without its observation noise. This is the ground truth for a model
        rolled out with ``speed · dt`` (paper Sec. 4.2, Fig. 7: rollouts at other speeds); at
        speed 2 it runs past the time the data covers. Returns ``(B, frames, 3, size, size)``
        on the CPU.

        Example:
            >>> from hamflow_hgn.data.generation import generate
            >>> import tempfile
            >>> cfg = DataConfig("mass_spring", n_train=1, n_test=2, steps=5, size=8)
            >>> test = open_dataset(generate(cfg, tempfile.mkdtemp(), 1, False), "test")
            >>> twice = test.replay([0, 1], speed=2.0, frames=3)
            >>> twice.shape
            torch.Size([2, 3, 3, 8, 8])
        """
        number = isinstance(speed, (int, float)) and not isinstance(speed, bool)
        if not (number and math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed: expected a finite number > 0, got {speed!r}")
        frames = self.config.steps if frames is None else frames
        _need_int("frames", frames, 1)
        idx = np.asarray(torch.as_tensor(indices, dtype=torch.long).cpu().numpy(), dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= len(self))):
            raise ValueError(
                f"indices: expected sequence numbers from 0 to {len(self) - 1}, got {idx.tolist()}"
            )
        first = np.asarray(self.clean_states[idx, 0], dtype=np.float64)
        times = speed * self.config.dt * np.arange(frames, dtype=np.float64)
        if frames == 1:
            states = first[:, None]
        else:
            states = simulate.integrate(self.system, first, times)
        return render_states(torch.from_numpy(states), self.system, self.config.size)


def open_dataset(
    out_dir: str | Path,
    split: str = "train",
    expect: DataConfig | None = None,
    return_states: bool = False,
    verify: bool = True,
) -> SequenceDataset:
    """Open one split of a generated dataset after checking it (format, hashes, ``expect``).

    Raises :class:`DatasetError` (a ``ValueError``) naming each differing field, or the bad
    file, and the command that regenerates the directory.

    Example:
        >>> import tempfile
        >>> from hamflow_hgn.data import generate
        >>> cfg = DataConfig("pendulum", n_train=2, n_test=1, steps=3, size=8)
        >>> out = generate(cfg, tempfile.mkdtemp(), workers=1, progress=False)
        >>> open_dataset(out, expect=DataConfig("pendulum", 2, 1, steps=3, size=8, seed=1))
        Traceback (most recent call last):
        ...
        hamflow_hgn.data.store.DatasetError: ...: seed: stored 0, expected 1. Regenerate...
    """
    out = Path(out_dir)
    if split not in simulate.SPLITS:
        raise ValueError(f"split: expected one of {list(simulate.SPLITS)}, got {split!r}")
    meta = store.read_metadata(out, regenerate_hint(expect, out))
    if meta.get("kind") == "images":  # frames imported with import_frames
        from .imported import open_imported

        if return_states:
            raise ValueError(f"return_states: {out} holds imported frames, which have no states")
        return open_imported(out, split, meta, expect, verify)
    try:
        config = DataConfig(**meta["config"])
    except (TypeError, ValueError) as err:
        regen = regenerate_hint(expect, out)
        raise DatasetError(f"{out}: invalid stored config ({err}). {regen}") from err
    if expect is not None and expect != config:
        diffs = [
            f"{f.name}: stored {getattr(config, f.name)!r}, expected {getattr(expect, f.name)!r}"
            for f in fields(DataConfig)
            if getattr(config, f.name) != getattr(expect, f.name)
        ]
        raise DatasetError(
            f"{out} does not match: {'; '.join(diffs)}. {regenerate_hint(expect, out)}"
        )
    regen = regenerate_hint(config, out)
    arrays = {
        kind: store.load_checked(out, name, meta["files"][name], regen, verify)
        for kind, name in (("noisy", f"{split}_noisy.npy"), ("clean", f"{split}_clean.npy"))
    }
    return SequenceDataset(
        config,
        np.array(arrays["noisy"]),
        arrays["clean"],
        return_states,
        content_hash=meta["content_hash"],
        path=out,
    )


def materialize(out_dir: str | Path, batch: int = 256, progress: bool = True) -> list[Path]:
    """Render every split to ``{split}_images.npy`` (uint8, memory-mappable), atomically.

    Example:
        >>> import tempfile
        >>> from hamflow_hgn.data import generate
        >>> cfg = DataConfig("pendulum", n_train=2, n_test=1, steps=3, size=8)
        >>> out = generate(cfg, tempfile.mkdtemp(), workers=1, progress=False)
        >>> [p.name for p in materialize(out, progress=False)]
        ['train_images.npy', 'test_images.npy']
    """
    out = Path(out_dir)
    meta = store.read_metadata(out, regenerate_hint(None, out))
    if meta.get("kind") == "images":  # imported frames are stored as images already
        return [out / name for name in meta["images"]]
    written = []
    for split in simulate.SPLITS:
        ds = open_dataset(out, split)
        name = f"{split}_images.npy"
        shape = (len(ds), ds.config.steps, 3, ds.config.size, ds.config.size)
        with store.array_file(out / name, shape, "uint8") as images:
            for start in tqdm(range(0, len(ds), batch), disable=not progress, desc=name):
                idx = range(start, min(start + batch, len(ds)))
                images[start : idx.stop] = _quantize(ds.render_batch(list(idx))).numpy()
        sha = store.file_sha256(out / name)
        meta["images"][name] = {"shape": list(shape), "dtype": "uint8", "sha256": sha}
        written.append(out / name)
    write_json(out / store.METADATA, meta)
    return written


def load_images(out_dir: str | Path, split: str = "train", verify: bool = True) -> np.ndarray:
    """The materialised uint8 images of a split, ``(n, steps, 3, size, size)``, memory-mapped.

    Checked like the states: existence, shape, dtype and (``verify``) the sha256 recorded by
    :func:`materialize`; raises :class:`DatasetError` naming the file and the fix.
    """
    out = Path(out_dir)
    if split not in simulate.SPLITS:
        raise ValueError(f"split: expected one of {list(simulate.SPLITS)}, got {split!r}")
    meta = store.read_metadata(out, regenerate_hint(None, out))
    name = f"{split}_images.npy"
    entry = meta.get("images", {}).get(name)
    regen = f"Rematerialise with: python -m hamflow_hgn.data ... --materialize --out {out}"
    if entry is None or "sha256" not in entry:
        raise DatasetError(f"{out / name}: not materialised with a recorded hash. {regen}")
    return store.load_checked(out, name, entry, regen, verify)


class _BatchLoader:
    """Shuffled index batches rendered with :meth:`SequenceDataset.render_batch`."""

    def __init__(self, dataset: SequenceDataset, batch_size: int, shuffle: bool, device, seed):
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.device, self.generator = device, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for idx in order.split(self.batch_size):
            images = self.dataset.render_batch(idx, self.device)
            if self.dataset.return_states:
                yield images, self.dataset._states[idx].to(images.device)
            else:
                yield images


def make_loader(
    dataset: SequenceDataset,
    batch_size: int = 16,
    shuffle: bool = True,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> _BatchLoader:
    """Iterate ``(B, steps, 3, H, W)`` batches rendered on ``device`` (the training fast path).

    Example:
        >>> cfg = DataConfig("pendulum", n_train=5, n_test=1, steps=3, size=8)
        >>> ds = SequenceDataset(cfg, np.zeros((5, 3, 2), np.float32), np.zeros((5, 3, 2)))
        >>> [b.shape[0] for b in make_loader(ds, batch_size=2)]
        [2, 2, 1]
    """
    _need_int("batch_size", batch_size, 1)
    return _BatchLoader(dataset, batch_size, shuffle, device, seed)
