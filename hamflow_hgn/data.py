"""HGN datasets: simulate the four systems, cache the states, render image sequences on demand.

States are the truth: :func:`generate` stores clean and noisy phase-space trajectories
(float32, tens of MB at paper scale) and :class:`SequenceDataset` renders the frames when
asked, on the CPU or on the training GPU (:meth:`SequenceDataset.render_batch`). Images are
quantised to 8 bits, exactly as ``--materialize`` stores them, so both paths agree bit for bit.

CLI::

    python -m hamflow_hgn.data --system pendulum --n-train 50000 --n-test 10000 \\
        --size 32 --steps 31 --seed 0 --out data/pendulum [--materialize]
    python -m hamflow_hgn.data --preview docs/img      # one strip per system

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 4 (datasets) and A.4.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shlex
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .datasets import simulate, store
from .datasets.store import DatasetError
from .render import BACKGROUND, EDGE_FRACTION, render
from .systems import SYSTEMS, PhysicalSystem, get_system

__all__ = [
    "DataConfig",
    "DatasetError",
    "SequenceDataset",
    "generate",
    "open_dataset",
    "materialize",
    "make_loader",
    "render_states",
    "preview",
    "main",
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
    dt: float = 0.125
    seed: int = 0

    def __post_init__(self) -> None:
        get_system(self.system)
        _need_int("n_train", self.n_train, 1)
        _need_int("n_test", self.n_test, 1)
        _need_int("steps", self.steps, 2)
        _need_int("size", self.size, 8)
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


def _regenerate(config: DataConfig | None, out_dir: Path) -> str:
    if config is None:
        return "Regenerate with: python -m hamflow_hgn.data --system NAME ... --out " + str(out_dir)
    return f"Regenerate with: {config.command(out_dir)}"


def _system_record(system: PhysicalSystem) -> dict[str, Any]:
    return {
        "name": system.name,
        "n_bodies": system.n_bodies,
        "state_dim": system.state_dim,
        "noise_std": system.noise_std,
        "extent": system.extent,
        "disc_radius": system.disc_radius,
        "colors": [list(c) for c in system.colors],
        "background": list(BACKGROUND),
        "edge_fraction": EDGE_FRACTION,
    }


def _simulate_split(
    config: DataConfig, split: str, out_dir: Path, pool: ProcessPoolExecutor | None, progress: bool
) -> dict[str, dict[str, Any]]:
    system = get_system(config.system)
    n = config.count(split)
    shape = (n, config.steps, system.state_dim)
    chunks = [(s, min(s + simulate.CHUNK_SIZE, n)) for s in range(0, n, simulate.CHUNK_SIZE)]
    args = [(config.system, split, a, b, config.seed, config.steps, config.dt) for a, b in chunks]
    names = {"clean": f"{split}_clean.npy", "noisy": f"{split}_noisy.npy"}
    bar = tqdm(total=n, desc=f"{config.system} {split}", unit="seq", disable=not progress)
    with (
        store.array_file(out_dir / names["clean"], shape, "float32") as clean,
        store.array_file(out_dir / names["noisy"], shape, "float32") as noisy,
    ):
        if pool is not None:
            results = pool.map(simulate.simulate_chunk, *zip(*args))
        else:
            results = (simulate.simulate_chunk(*a) for a in args)
        _collect(results, chunks, clean, noisy, bar)
    bar.close()
    return {
        name: {
            "shape": list(shape),
            "dtype": "float32",
            "sha256": store.file_sha256(out_dir / name),
        }
        for name in names.values()
    }


def _collect(results, chunks, clean: np.ndarray, noisy: np.ndarray, bar) -> None:
    for (start, stop), (c, z) in zip(chunks, results):
        clean[start:stop] = c
        noisy[start:stop] = z
        bar.update(stop - start)


def generate(
    config: DataConfig,
    out_dir: str | Path,
    workers: int = 2,
    progress: bool = True,
    materialize_images: bool = False,
) -> Path:
    """Simulate ``config`` with ``solve_ivp`` and write its states (and metadata) to ``out_dir``.

    Results do not depend on ``workers``: every sequence's randomness comes from
    ``(seed, split, index)`` and chunks have a fixed size. Files are written atomically;
    ``metadata.json`` is written last, so an interrupted run leaves no openable dataset.

    Example:
        >>> import tempfile
        >>> cfg = DataConfig("mass_spring", n_train=3, n_test=2, steps=4, size=8)
        >>> out = generate(cfg, tempfile.mkdtemp(), workers=1, progress=False)
        >>> open_dataset(out, "test", expect=cfg).states.shape
        (2, 4, 2)
    """
    _need_int("workers", workers, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / store.METADATA).unlink(missing_ok=True)
    files: dict[str, dict[str, Any]] = {}
    n_chunks = math.ceil(max(config.n_train, config.n_test) / simulate.CHUNK_SIZE)
    pool = None
    if workers > 1 and n_chunks > 1:
        ctx = multiprocessing.get_context("spawn")  # safe with torch's threads in the parent
        pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        for split in simulate.SPLITS:
            files.update(_simulate_split(config, split, out, pool, progress))
    except BrokenProcessPool as err:
        raise RuntimeError(
            f"generate: a worker process died (workers={workers}). Workers start with 'spawn', "
            "which re-imports the calling script: put the call under "
            '`if __name__ == "__main__":`, or pass workers=1'
        ) from err
    finally:
        if pool is not None:
            pool.shutdown()
    cfg = asdict(config)
    meta = {
        "format_version": store.FORMAT_VERSION,
        "config": cfg,
        "system": _system_record(get_system(config.system)),
        "integrator": {
            "solver": f"scipy.integrate.solve_ivp({simulate.METHOD})",
            "per_component_rtol_atol": simulate.TOL,
            "chunk_size": simulate.CHUNK_SIZE,
            "screen_substeps": simulate.SCREEN_SUBSTEPS,
        },
        "files": files,
        "content_hash": store.content_hash(cfg, files),
        "command": config.command(out),
        "images": {},
    }
    store.write_json(out / store.METADATA, meta)
    if materialize_images:
        materialize(out, progress=progress)
    return out


def _quantize(images: torch.Tensor) -> torch.Tensor:
    return images.mul(255.0).round_().to(torch.uint8)


def _dequantize(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32).div_(255.0)


def render_states(states: torch.Tensor, system: PhysicalSystem, size: int) -> torch.Tensor:
    """Render ``states[..., state_dim]`` to 8-bit-exact float images ``[..., 3, size, size]``.

    This is the one rendering path of the datasets (on-the-fly, batched and materialised).

    Example:
        >>> from hamflow_hgn.systems import get_system
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
    ) -> None:
        self.config = config
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
        >>> cfg = DataConfig("pendulum", n_train=2, n_test=1, steps=3, size=8)
        >>> out = generate(cfg, tempfile.mkdtemp(), workers=1, progress=False)
        >>> open_dataset(out, expect=DataConfig("pendulum", 2, 1, steps=3, size=8, seed=1))
        Traceback (most recent call last):
        ...
        hamflow_hgn.datasets.store.DatasetError: ...: seed: stored 0, expected 1. Regenerate...
    """
    out = Path(out_dir)
    if split not in simulate.SPLITS:
        raise ValueError(f"split: expected one of {list(simulate.SPLITS)}, got {split!r}")
    meta = store.read_metadata(out, _regenerate(expect, out))
    try:
        config = DataConfig(**meta["config"])
    except (TypeError, ValueError) as err:
        regen = _regenerate(expect, out)
        raise DatasetError(f"{out}: invalid stored config ({err}). {regen}") from err
    if expect is not None and expect != config:
        diffs = [
            f"{f.name}: stored {getattr(config, f.name)!r}, expected {getattr(expect, f.name)!r}"
            for f in fields(DataConfig)
            if getattr(config, f.name) != getattr(expect, f.name)
        ]
        raise DatasetError(f"{out} does not match: {'; '.join(diffs)}. {_regenerate(expect, out)}")
    regen = _regenerate(config, out)
    arrays = {
        kind: store.load_checked(out, name, meta["files"][name], regen, verify)
        for kind, name in (("noisy", f"{split}_noisy.npy"), ("clean", f"{split}_clean.npy"))
    }
    return SequenceDataset(config, np.array(arrays["noisy"]), arrays["clean"], return_states)


def materialize(out_dir: str | Path, batch: int = 256, progress: bool = True) -> list[Path]:
    """Render every split to ``{split}_images.npy`` (uint8, memory-mappable), atomically.

    Example:
        >>> import tempfile
        >>> cfg = DataConfig("pendulum", n_train=2, n_test=1, steps=3, size=8)
        >>> out = generate(cfg, tempfile.mkdtemp(), workers=1, progress=False)
        >>> [p.name for p in materialize(out, progress=False)]
        ['train_images.npy', 'test_images.npy']
    """
    out = Path(out_dir)
    meta = store.read_metadata(out, _regenerate(None, out))
    written = []
    for split in simulate.SPLITS:
        ds = open_dataset(out, split)
        name = f"{split}_images.npy"
        shape = (len(ds), ds.config.steps, 3, ds.config.size, ds.config.size)
        with store.array_file(out / name, shape, "uint8") as images:
            for start in tqdm(range(0, len(ds), batch), disable=not progress, desc=name):
                idx = range(start, min(start + batch, len(ds)))
                images[start : idx.stop] = _quantize(ds.render_batch(list(idx))).numpy()
        meta["images"][name] = {"shape": list(shape), "dtype": "uint8"}
        written.append(out / name)
    store.write_json(out / store.METADATA, meta)
    return written


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


def preview(img_dir: str | Path, frames: int = 10, every: int = 3, size: int = 64) -> list[Path]:
    """Write ``data_<system>.png``: ``frames`` frames (every ``every``-th) of one sequence each.

    The sequence is train index 0 of seed 0, with noise, rendered at ``size`` px.
    """
    import matplotlib.pyplot as plt

    out = Path(img_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, system in SYSTEMS.items():
        steps = (frames - 1) * every + 1
        _, noisy = simulate.simulate_chunk(name, "train", 0, 1, 0, steps, 0.125)
        images = render_states(torch.from_numpy(noisy[0, ::every]), system, size)
        pad = torch.ones(frames, 3, size, 2)
        strip = torch.cat([images, pad], -1).permute(2, 0, 3, 1).reshape(size, -1, 3)
        path = out / f"data_{name}.png"
        with store.atomic_path(path) as tmp:
            plt.imsave(tmp, strip[:, :-2].numpy(), format="png")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hamflow_hgn.data", description=__doc__)
    d = DataConfig("pendulum")
    parser.add_argument("--system", choices=sorted(SYSTEMS))
    parser.add_argument("--n-train", type=int, default=d.n_train)
    parser.add_argument("--n-test", type=int, default=d.n_test)
    parser.add_argument("--steps", type=int, default=d.steps, help="frames per sequence (T+1)")
    parser.add_argument("--size", type=int, default=d.size)
    parser.add_argument("--dt", type=float, default=d.dt)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--materialize", action="store_true", help="also write uint8 images")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--preview", type=Path, metavar="DIR", help="write data_<system>.png")
    args = parser.parse_args(argv)
    if args.preview is not None:
        for path in preview(args.preview):
            print(path)
        return
    if args.system is None or args.out is None:
        parser.error("--system and --out are required (or use --preview DIR)")
    try:
        config = DataConfig(
            args.system, args.n_train, args.n_test, args.steps, args.size, args.dt, args.seed
        )
    except ValueError as err:
        parser.error(str(err))
    out = generate(config, args.out, args.workers, not args.no_progress, args.materialize)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
