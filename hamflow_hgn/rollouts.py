"""Rollout pictures: PNG strips (paper Fig. 7 and 8) and animated GIFs.

:func:`save_rollouts` takes a trained model with HGN's rollout interface and a batch of
sequences, and writes, for each kind of rollout, ``KIND.png`` (rows of frames, every few steps,
the truth's row above the model's) and ``KIND_i.gif`` (one animation per sequence, the truth on
the left and the model on the right):

- ``forward``: inferred initial state, rolled out with ``+dt`` (ground truth on the row above);
- ``backward``: rolled forward to the last frame, then back with ``-dt`` (it should retrace the
  sequence in reverse, since leapfrog is time-reversible);
- ``double_speed`` / ``half_speed``: ``dt`` scaled by 2 and by 1/2, beside the true system
  played at that speed when a ``replay`` is given (:meth:`SequenceDataset.replay
  <hamflow_hgn.data.SequenceDataset.replay>`), else beside the data's own frames;
- ``samples``: initial states drawn from the model's prior over ``z`` (Fig. 8);
- ``fitted_samples`` (when given a :class:`~hamflow_hgn.samples.LatentGaussian`): initial
  states from a Gaussian fitted to the training posteriors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .io import atomic_path, save_figure

__all__ = ["to_uint8", "save_strip", "beside", "save_gif", "save_rollouts"]


def to_uint8(frames: Tensor, scale: int = 1) -> np.ndarray:
    """``(S, C, H, W)`` floats in [0, 1] to ``(S, H*scale, W*scale, 3)`` uint8 (nearest).

    Example:
        >>> to_uint8(torch.ones(2, 3, 4, 4), scale=2).shape
        (2, 8, 8, 3)
    """
    x = frames.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if scale > 1:
        x = x.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def save_strip(
    rows: Sequence[Tensor], labels: Sequence[str], path: str | Path, every: int = 1
) -> Path:
    """A PNG grid: one row per ``(S, C, H, W)`` tensor, every ``every``-th frame, labelled.

    Example:
        >>> import tempfile
        >>> p = save_strip([torch.rand(4, 3, 8, 8)], ["model"], Path(tempfile.mkdtemp()) / "s.png")
        >>> p.exists()
        True
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    idx = list(range(0, rows[0].shape[0], every))
    fig, axes = plt.subplots(
        len(rows), len(idx), figsize=(0.8 * len(idx) + 1, 0.85 * len(rows)), squeeze=False
    )
    for r, (row, label) in enumerate(zip(rows, labels)):
        imgs = to_uint8(row)
        for c, t in enumerate(idx):
            ax = axes[r][c]
            if t < len(imgs):
                ax.imshow(imgs[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t}", fontsize=7)
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    return save_figure(fig, path, dpi=100)


def beside(truth: Tensor, model: Tensor) -> Tensor:
    """``(S, C, H, W)`` truth and model frames side by side, a white column between them.

    Example:
        >>> beside(torch.zeros(5, 3, 8, 8), torch.ones(5, 3, 8, 8)).shape
        torch.Size([5, 3, 8, 17])
    """
    s = min(truth.shape[0], model.shape[0])
    gap = torch.ones_like(model[:s, ..., :1])
    return torch.cat([truth[:s].to(model), gap, model[:s]], dim=-1)


def save_gif(frames: Tensor, path: str | Path, fps: float = 8.0, scale: int = 4) -> Path:
    """An animated GIF of ``(S, C, H, W)`` frames, upscaled ``scale`` times (nearest)."""
    from PIL import Image

    images = [Image.fromarray(a) for a in to_uint8(frames, scale)]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:],
            duration=int(1000 / fps), loop=0,
        )  # fmt: skip
    return Path(path)


def _replayed(replay: Callable[[float], Tensor], speed: float, shape: torch.Size) -> Tensor:
    """``replay(speed)`` checked against the truth's ``(B, frames, C, H, W)`` and cut to it."""
    frames = replay(speed).cpu()
    if frames.dim() != 5 or frames.shape[0] != shape[0] or frames.shape[2:] != shape[2:]:
        raise ValueError(
            f"replay({speed:g}): expected frames of shape ({shape[0]}, >= {shape[1]}, "
            f"{', '.join(map(str, shape[2:]))}), got {tuple(frames.shape)}"
        )
    if frames.shape[1] < shape[1]:
        raise ValueError(
            f"replay({speed:g}): expected at least {shape[1]} frames, got {frames.shape[1]}"
        )
    return frames[:, : shape[1]]


@torch.no_grad()
def save_rollouts(
    model,
    images: Tensor,
    out_dir: str | Path,
    steps: int | None = None,
    every: int = 3,
    latent=None,
    replay: Callable[[float], Tensor] | None = None,
) -> dict[str, list[Path]]:
    """Write the forward, backward, double/half-speed and prior-sample rollouts of ``model``.

    ``images`` is ``(B, T+1, C, H, W)``; one GIF is written per sequence and rollout kind,
    truth beside model (samples: the model alone). With ``latent`` (a fitted
    :class:`~hamflow_hgn.samples.LatentGaussian`) it also writes ``fitted_samples``: rollouts
    from that Gaussian over the training posteriors instead of the prior.
    ``replay(speed)`` gives the true frames of the same sequences played ``speed`` times as
    fast, ``(B, ≥ steps + 1, C, H, W)`` (for a dataset: ``lambda s: dataset.replay(indices, s)``);
    with it the double- and half-speed rows compare the model with the system at that speed.
    ``steps`` (default ``T``, the data's) may exceed ``T``: the forward and backward rows then
    stand beside the system simulated that far, ``replay(1.0)``, which is required for it
    (the data's own frames stop at ``T``). Returns the written paths by kind. Kinds the model
    cannot do (no ``rollout_from`` or ``sample``) are skipped.
    """
    out = Path(out_dir)
    model.eval()
    dt = model.config.dt
    steps = images.shape[1] - 1 if steps is None else steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1 (rollout steps), got {steps!r}")
    truth = images.cpu()
    if steps >= images.shape[1]:  # past the data: the truth simulated that far
        if replay is None:
            raise ValueError(
                f"replay: a rollout of {steps} steps runs past the data's {images.shape[1] - 1}; "
                "expected replay(speed) to simulate the truth that far, got None"
            )
        wanted = torch.Size((truth.shape[0], steps + 1, *truth.shape[2:]))
        truth = _replayed(replay, 1.0, wanted)
    else:
        truth = truth[:, : steps + 1]
    runs: dict[str, tuple[list[Tensor], list[str]]] = {}
    fwd = model.rollout(images, steps)
    runs["forward"] = ([truth, fwd.frames.cpu()], ["truth", "model"])
    if hasattr(model, "rollout_from"):
        back = model.rollout_from(fwd.q[:, -1], fwd.p[:, -1], steps, dt=-dt)
        reversed_truth = truth.flip(1)
        runs["backward"] = ([reversed_truth, back.frames.cpu()], ["truth reversed", "model -dt"])
    for kind, speed, label in (("double_speed", 2.0, "2dt"), ("half_speed", 0.5, "dt/2")):
        if replay is None:
            true_rows, true_label = truth, "truth"
        else:
            wanted = torch.Size((truth.shape[0], steps + 1, *truth.shape[2:]))
            true_rows, true_label = _replayed(replay, speed, wanted), f"truth x{speed:g}"
        runs[kind] = (
            [true_rows, model.rollout(images, steps, dt=speed * dt).frames.cpu()],
            [true_label, f"model {label}"],
        )
    if hasattr(model, "sample"):
        gen = torch.Generator().manual_seed(0)
        sampled = model.sample(images.shape[0], steps, generator=gen).frames.cpu()
        runs["samples"] = ([sampled], ["sample"])
        if latent is not None:
            gen = torch.Generator().manual_seed(0)
            fitted = model.sample(images.shape[0], steps, generator=gen, latent=latent)
            runs["fitted_samples"] = ([fitted.frames.cpu()], ["fitted"])
    written: dict[str, list[Path]] = {}
    for kind, (rows, labels) in runs.items():
        model_rows = rows[-1]
        paths = []
        strip_rows, strip_labels = [], []
        for i in range(images.shape[0]):
            for row, label in zip(rows, labels):
                strip_rows.append(row[i])
                strip_labels.append(f"{label} #{i}")
            gif = beside(rows[0][i], model_rows[i]) if len(rows) > 1 else model_rows[i]
            paths.append(save_gif(gif, out / f"{kind}_{i}.gif"))
        paths.insert(0, save_strip(strip_rows, strip_labels, out / f"{kind}.png", every))
        written[kind] = paths
    return written
