"""Generate a dataset: simulate a system's sequences in worker processes and store them.

:func:`generate` writes the states and ``metadata.json`` (see :mod:`hamflow_hgn.data.store`);
:func:`preview` draws one strip of frames per system (``docs/img/data_<system>.png``).

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 4 (datasets) and A.4.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DT
from ..io import atomic_path, write_json
from . import simulate, store
from .dataset import DataConfig, _need_int, materialize, render_states
from .render import BACKGROUND, EDGE_FRACTION, frame_strip
from .systems import SYSTEMS, PhysicalSystem, get_system

__all__ = ["generate", "preview"]


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
        >>> from hamflow_hgn.data import open_dataset
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
    write_json(out / store.METADATA, meta)
    if materialize_images:
        materialize(out, progress=progress)
    return out


PREVIEW_RECORD = "data_preview.json"
"""What :func:`preview` writes beside its strips: the command, settings and provenance."""


def preview(img_dir: str | Path, frames: int = 10, every: int = 3, size: int = 64) -> list[Path]:
    """Write ``data_<system>.png``: ``frames`` frames (every ``every``-th) of one sequence each.

    The sequence is train index 0 of seed 0, with noise, rendered at ``size`` px. Beside the
    strips, :data:`PREVIEW_RECORD` holds the command that draws them again, the settings, the
    figures' names, the date, the commit and the library versions.
    """
    import platform
    import subprocess
    from datetime import date

    import matplotlib
    import matplotlib.pyplot as plt

    out = Path(img_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, system in SYSTEMS.items():
        steps = (frames - 1) * every + 1
        _, noisy = simulate.simulate_chunk(name, "train", 0, 1, 0, steps, DT)
        images = render_states(torch.from_numpy(noisy[0, ::every]), system, size)
        path = out / f"data_{name}.png"
        with atomic_path(path) as tmp:
            plt.imsave(tmp, frame_strip(images, gap=2), format="png")
        paths.append(path)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    args = "" if (frames, every, size) == (10, 3, 64) else f" ({frames=}, {every=}, {size=})"
    record = {
        "command": f"python -m hamflow_hgn.data --preview {img_dir}{args}",
        "date": date.today().isoformat(),
        "commit": commit,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
        "settings": {
            "sequence": "train index 0", "seed": 0, "noise": True, "dt": DT,
            "frames": frames, "every": every, "size": size,
        },
        "figures": [p.name for p in paths],
    }  # fmt: skip
    write_json(out / PREVIEW_RECORD, record, sort_keys=False)
    return paths
