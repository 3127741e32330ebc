"""Fig. 6, 7 and 8 of the HGN paper, assembled from trained run directories.

* :func:`figure6`: average pixel MSE per rollout step on train and test sequences, one panel
  per system and split, one line per model; the legend gives the learned energy along the
  rollouts as ``E = mean ± variance·1e4`` (lower variance: better conservation).
* :func:`figure7`: a three-body train and test sequence, HGN's inferred forward, backward,
  double-speed and half-speed rollouts, and the baseline's forward rollout.
* :func:`figure8`: rollouts from prior samples of a trained HGN, for every system, and from a
  Gaussian fitted to its training posteriors.

Runs are the folders written by ``python -m hamflow_hgn.train``, read with
:func:`hamflow_hgn.runs.load_run`; the curves and energies are computed by
:func:`hamflow_hgn.evaluate.evaluate_split`, the same evaluator as Table 1's.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Fig. 6, 7, 8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data.render import frame_strip
from .evaluate import BATCH_SIZE, evaluate_split, fitted_latent
from .io import save_figure, write_json
from .models import TABLE1_ROWS
from .runs import CHECKPOINT, load_run

__all__ = ["figure6", "figure7", "figure8", "make_all"]

LABELS = {name: row.label for name, row in TABLE1_ROWS.items()}


def _model(run: Path):
    return load_run(run, device="cpu", verify=False).model


def _runs(root: Path, system: str, models) -> dict[str, Path]:
    return {
        m: root / "runs" / system / m
        for m in models
        if (root / "runs" / system / m / CHECKPOINT).is_file()
    }


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=110, bbox_inches="tight")


def figure6(
    root: Path, systems, models, out: Path, n_sequences: int = 32
) -> tuple[Path | None, dict]:
    """Per-step MSE curves (Fig. 6) and the stats behind them, ``{system: {model: {split:}}}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import open_dataset

    stats: dict = {}
    rows = [s for s in systems if _runs(root, s, models)]
    if not rows:
        return None, stats
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3 * len(rows)), squeeze=False)
    for r, system in enumerate(rows):
        stats[system] = {}
        data_dir = root / "data" / system
        for c, split in enumerate(("train", "test")):
            ds = open_dataset(data_dir, split, verify=False)
            ax = axes[r, c]
            for model_name, run in _runs(root, system, models).items():
                s = evaluate_split(_model(run), ds, n_sequences)
                stats[system].setdefault(model_name, {})[split] = s
                energy = s.get("energy", {"mean": {"mean": np.nan}, "variance": {"mean": np.nan}})
                label = (
                    f"{LABELS.get(model_name, model_name)}: E={energy['mean']['mean']:.2g}"
                    f"±{energy['variance']['mean'] * 1e4:.2g}"
                )
                ax.plot(np.array(s["mse_curve"]) * 1e4, label=label)
            ax.set_title(f"{system} ({split})")
            ax.set_xlabel("rollout step")
            ax.set_ylabel("pixel MSE ×1e4")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
    fig.suptitle("Average pixel MSE per rollout step (legend: learned E = mean ± var·1e4)")
    fig.tight_layout()
    return _save(fig, out), stats


@torch.no_grad()
def figure7(
    root: Path, out: Path, system: str = "three_body", baseline: str = "pixel_hnn_mlp"
) -> Path | None:
    """Train and test sequences with HGN forward, backward, ×2 and ×½ speed, and the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import open_dataset

    runs = _runs(root, system, ("hgn_leapfrog", baseline))
    if "hgn_leapfrog" not in runs:
        return None
    hgn = _model(runs["hgn_leapfrog"])
    base = _model(runs[baseline]) if baseline in runs else None
    dt = hgn.config.dt
    fig, axes = plt.subplots(2, 1, figsize=(10, 7))
    for ax, split in zip(axes, ("train", "test")):
        images = open_dataset(root / "data" / system, split, verify=False).render_batch([0])
        steps = images.shape[1] - 1
        every = max(1, steps // 10)
        fwd = hgn.rollout(images, steps)
        back = hgn.rollout_from(fwd.q[:, -1], fwd.p[:, -1], steps, dt=-dt)  # from the last state
        rows = [("data", images[0]), ("HGN forward", fwd.frames[0])]
        rows.append(("data reversed", images[0].flip(0)))
        rows.append(("HGN backward", back.frames[0]))
        rows.append(("HGN ×2 speed", hgn.rollout(images, steps, dt=2 * dt).frames[0]))
        rows.append(("HGN ×½ speed", hgn.rollout(images, steps, dt=dt / 2).frames[0]))
        if base is not None:
            rows.append((f"{LABELS[baseline]} forward", base.rollout(images, steps).frames[0]))
        strips = [frame_strip(f, every) for _, f in rows]
        gap = np.ones((2, strips[0].shape[1], strips[0].shape[2]))
        ax.imshow(np.concatenate([x for s in strips for x in (s, gap)][:-1]))
        h = strips[0].shape[0] + 2
        ax.set_yticks([h * i + h / 2 - 1 for i in range(len(rows))])
        ax.set_yticklabels([name for name, _ in rows], fontsize=8)
        ax.set_xticks([])
        ax.set_title(f"{system}, {split} sequence 0 (every {every} frames)")
    return _save(fig, out)


@torch.no_grad()
def figure8(root: Path, systems, out: Path, n_samples: int = 3, seed: int = 0) -> Path | None:
    """Rollouts from prior samples z ~ N(0, I) of the trained HGN (leapfrog), per system, and
    below them rollouts from a Gaussian fitted to its training posteriors
    (:class:`~hamflow_hgn.samples.LatentGaussian`; docs/hgn/ says why the prior's show less)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in systems if "hgn_leapfrog" in _runs(root, s, ("hgn_leapfrog",))]
    if not rows:
        return None
    images, titles = [], []
    for system in rows:
        loaded = load_run(root / "runs" / system / "hgn_leapfrog", device="cpu", verify=False)
        model = loaded.model
        latent = fitted_latent(model, loaded.dataset, BATCH_SIZE, "cpu")
        for name, z_dist in (("prior", None), ("fitted", latent)):
            gen = torch.Generator().manual_seed(seed)
            frames = model.sample(n_samples, generator=gen, latent=z_dist).frames
            every = max(1, (frames.shape[1] - 1) // 10)
            images.append(np.concatenate([frame_strip(f, every) for f in frames]))
            titles.append(f"{system}: {n_samples} {name} samples, every {every} frames")
    # Size each panel by its image's aspect, so the strips are not padded with white space.
    width = 10.0
    heights = [width * img.shape[0] / img.shape[1] + 0.35 for img in images]
    fig, axes = plt.subplots(
        len(images), 1, figsize=(width, sum(heights)), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for ax, img, title in zip(axes[:, 0], images, titles):
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    return _save(fig, out)


def make_all(root: str | Path, systems, models, img_dir: str | Path) -> tuple[list[Path], dict]:
    """Every figure the runs under ``root`` allow; returns ``(paths, fig6 stats)``.

    The stats are also written to ``root/figure_stats.json``.
    """
    root, img_dir = Path(root), Path(img_dir)
    paths: list[Path] = []
    p6, stats = figure6(root, systems, models, img_dir / "results_fig6_mse.png")
    if p6 is not None:
        paths.append(p6)
    if "three_body" in systems:
        p7 = figure7(root, img_dir / "results_fig7_three_body.png")
        if p7 is not None:
            paths.append(p7)
    p8 = figure8(root, systems, img_dir / "results_fig8_samples.png")
    if p8 is not None:
        paths.append(p8)
    write_json(root / "figure_stats.json", stats, indent=1)
    return paths, stats
