"""Fig. 6, 7 and 8 of the HGN paper, assembled from trained run directories.

* :func:`figure6`: average pixel MSE per rollout step on train and test sequences, one panel
  per system and split, one line per model; the legend gives the learned energy along the
  rollouts as ``E = mean ± variance·1e4`` (lower variance: better conservation).
* :func:`figure7`: a three-body train and test sequence, HGN's inferred forward, backward,
  double-speed and half-speed rollouts, and the baseline's forward rollout.
* :func:`figure8`: rollouts from prior samples of a trained HGN, for every system.

Runs are the folders written by ``python -m hamflow_hgn.train`` (``config.json`` and
``checkpoint.pt``); :func:`load_run` rebuilds any registered model from one.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Fig. 6, 7, 8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["load_run", "rollout_stats", "figure6", "figure7", "figure8", "make_all"]

LABELS = {
    "pixel_hnn_mlp": "HNN",
    "pixel_hnn_conv": "HNN (conv)",
    "hgn_euler": "HGN (Euler)",
    "hgn_deterministic": "HGN (determ)",
    "hgn_no_fpsi": "HGN (no f_psi)",
    "hgn_leapfrog": "HGN (leapfrog)",
}


def load_run(run: str | Path, device: str = "cpu") -> tuple[nn.Module, Any, Any]:
    """``(model, train_config, train_dataset)`` of a finished run, in eval mode."""
    from .checkpoint import load_checkpoint
    from .config import train_config_from_dict
    from .data import open_dataset
    from .train import build_model

    run = Path(run)
    state = load_checkpoint(run / "checkpoint.pt", map_location=device)
    config = train_config_from_dict(json.loads((run / "config.json").read_text()))
    dataset = open_dataset(config.data, "train", verify=False)
    config, model = build_model(config, dataset)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, dataset


@torch.no_grad()
def rollout_stats(model: nn.Module, images: torch.Tensor, dt: float | None = None) -> dict:
    """Per-step MSE ``(T+1,)`` and the learned-energy mean and variance along rollouts.

    The variance is taken over time for each sequence, then averaged over sequences.
    """
    out = model.rollout(images, images.shape[1] - 1, dt=dt)
    per_step = (out.frames.float() - images.float()).square().mean(dim=(0, 2, 3, 4))
    energy = out.energy.double()
    return {
        "mse_per_step": per_step.tolist(),
        "mse": float(per_step.mean()),
        "energy_mean": float(energy.mean()),
        "energy_var": float(energy.var(dim=1, unbiased=False).mean()),
    }


def _runs(root: Path, system: str, models) -> dict[str, Path]:
    return {
        m: root / "runs" / system / m
        for m in models
        if (root / "runs" / system / m / "checkpoint.pt").is_file()
    }


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


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
            images = ds.render_batch(range(min(n_sequences, len(ds))))
            ax = axes[r, c]
            for model_name, run in _runs(root, system, models).items():
                model, _, _ = load_run(run)
                s = rollout_stats(model, images)
                stats[system].setdefault(model_name, {})[split] = s
                label = (
                    f"{LABELS.get(model_name, model_name)}: "
                    f"E={s['energy_mean']:.2g}±{s['energy_var'] * 1e4:.2g}"
                )
                ax.plot(np.array(s["mse_per_step"]) * 1e4, label=label)
            ax.set_title(f"{system} ({split})")
            ax.set_xlabel("rollout step")
            ax.set_ylabel("pixel MSE ×1e4")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
    fig.suptitle("Average pixel MSE per rollout step (legend: learned E = mean ± var·1e4)")
    fig.tight_layout()
    return _save(fig, out), stats


def _strip(frames: torch.Tensor, every: int) -> np.ndarray:
    """``(T+1, C, H, W)`` to one image row of every ``every``-th frame, 1-px white gaps."""
    sel = frames[::every].clamp(0, 1)
    pad = torch.ones(sel.shape[0], sel.shape[1], sel.shape[2], 1)
    row = torch.cat([sel, pad], -1).permute(2, 0, 3, 1).reshape(sel.shape[2], -1, sel.shape[1])
    return row.numpy()


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
    hgn, _, _ = load_run(runs["hgn_leapfrog"])
    base = load_run(runs[baseline])[0] if baseline in runs else None
    dt = hgn.config.dt
    fig, axes = plt.subplots(2, 1, figsize=(10, 7))
    for ax, split in zip(axes, ("train", "test")):
        images = open_dataset(root / "data" / system, split, verify=False).render_batch([0])
        steps = images.shape[1] - 1
        every = max(1, steps // 10)
        fwd = hgn.rollout(images, steps)
        back = hgn.rollout_from(fwd.q[-1], fwd.p[-1], steps, dt=-dt)  # from the last state
        rows = [("data", images[0]), ("HGN forward", fwd.frames[0])]
        rows.append(("data reversed", images[0].flip(0)))
        rows.append(("HGN backward", back.frames[0]))
        rows.append(("HGN ×2 speed", hgn.rollout(images, steps, dt=2 * dt).frames[0]))
        rows.append(("HGN ×½ speed", hgn.rollout(images, steps, dt=dt / 2).frames[0]))
        if base is not None:
            rows.append((f"{LABELS[baseline]} forward", base.rollout(images, steps).frames[0]))
        strips = [_strip(f, every) for _, f in rows]
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
    """Rollouts from prior samples z ~ N(0, I) of the trained HGN (leapfrog), per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in systems if "hgn_leapfrog" in _runs(root, s, ("hgn_leapfrog",))]
    if not rows:
        return None
    images, titles = [], []
    for system in rows:
        model, _, _ = load_run(root / "runs" / system / "hgn_leapfrog")
        gen = torch.Generator().manual_seed(seed)
        frames = model.sample(n_samples, generator=gen).frames
        every = max(1, (frames.shape[1] - 1) // 10)
        images.append(np.concatenate([_strip(f, every) for f in frames]))
        titles.append(f"{system}: {n_samples} prior samples, every {every} frames")
    # Size each panel by its image's aspect, so the strips are not padded with white space.
    width = 10.0
    heights = [width * img.shape[0] / img.shape[1] + 0.35 for img in images]
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(width, sum(heights)), squeeze=False,
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
    (root / "figure_stats.json").write_text(json.dumps(stats, indent=1))
    return paths, stats


@torch.no_grad()
def evaluate_split(
    run: str | Path, split: str = "test", max_sequences: int | None = None, batch: int = 32
) -> dict:
    """Table-1 metrics of a run on one split, computed the same way for every model.

    The pixel MSE covers the protocol's target frames of a full-length rollout inferred by the
    model (``config.target_frames``); per-sequence values give the mean and std. Also returns
    the per-step MSE curve and the learned-energy statistics of Fig. 6.
    """
    from .data import open_dataset

    model, config, _ = load_run(run)
    ds = open_dataset(config.data, split, verify=False)
    n = len(ds) if max_sequences is None else min(max_sequences, len(ds))
    targets = list(model.config.target_frames)
    per_seq, per_step, e_mean, e_var = [], [], [], []
    for start in range(0, n, batch):
        images = ds.render_batch(range(start, min(n, start + batch)))
        out = model.rollout(images, images.shape[1] - 1)
        err = (out.frames.float() - images.float()).square().mean(dim=(2, 3, 4))  # (B, T+1)
        per_seq.append(err[:, targets].mean(1))
        per_step.append(err)
        energy = out.energy.double()
        e_mean.append(energy.mean(1))
        e_var.append(energy.var(dim=1, unbiased=False))
    mse = torch.cat(per_seq).double()
    return {
        "run": str(run),
        "split": split,
        "sequences": n,
        "protocol": model.config.protocol,
        "target_frames": [targets[0], targets[-1]],
        "mse_mean": float(mse.mean()),
        "mse_std": float(mse.std(unbiased=False)),
        "mse_per_step": torch.cat(per_step).mean(0).tolist(),
        "energy_mean": float(torch.cat(e_mean).mean()),
        "energy_var": float(torch.cat(e_var).mean()),
        "evaluator": "hamflow_hgn.figures.evaluate_split",
    }
