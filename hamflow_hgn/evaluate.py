"""Evaluate a trained run: Table-1 MSE, per-step MSE (Fig. 6), learned energy, VPT, rollouts.

API: :func:`evaluate`. CLI::

    python -m hamflow_hgn.evaluate RUN [--data DIR] [--split test] [--max-sequences N]
        [--horizon N]

writes ``RUN/eval/metrics.json``, ``RUN/eval/metrics.md`` (Markdown table), ``mse_curve.png``
and the rollout strips and GIFs of :mod:`hamflow_hgn.rollouts` (samples from the prior and
from a Gaussian fitted to the training posteriors, :mod:`hamflow_hgn.samples`, among them).

Metrics, per split, from the posterior mean of the initial state inferred from the protocol's
input frames and rolled out for T steps (30 with the default 31 frames):

- ``mse_x1e4``: per-sequence pixel MSE averaged over the protocol's target frames, then
  mean ± std over sequences, times 1e4 (Table 1's format);
- ``mse_curve``: the per-step MSE averaged over sequences (Fig. 6);
- ``energy``: the learned H along each rollout: its mean and variance over time per sequence,
  averaged over sequences (a symplectic rollout keeps the variance small, Fig. 6), and its
  ``relative_std``, ``std_t(H) / |mean_t(H)|`` per sequence, which does not depend on the
  learned energy's scale, so Euler and leapfrog rollouts compare directly (paper: about 10x);
- ``vpt``: valid prediction time, the number of target steps before the first whose MSE
  exceeds 0.025 times the truth's variance about its own mean colour (per frame and channel),
  mean ± std over sequences. The light background would otherwise dominate the normaliser
  (mean(truth^2) ≈ 0.8), and a model that draws an empty background would score the full VPT;
  normalised by the variance, that model scores 0, as on DeepMind's dark background.
  ``vpt_loose`` is the same count at 0.3 times the variance (:data:`VPT_LOOSE_THRESHOLD`), the
  reconstruction error that the default GECO setting asks of the model. On small frames every
  model's first frame already misses 0.025 (the CPU-scale Table 1 in docs/reproduction.md), so
  ``vpt`` is 0 everywhere and only the looser threshold separates the models. A blank
  background still scores 0 there: its error is at least the frame's variance, since the
  variance is the smallest mean squared distance to any one colour.
- ``tracking``: whether the rollout follows the bodies (:mod:`hamflow_hgn.tracking`): the mean
  distance in pixels between the model's and the truth's centroids of each body (told apart
  by colour; the frame's worst body counts) over the target frames (``error_px``), the share
  of those frames within a body's rendered radius (``frames``; the radius is ``radius_px``)
  and the share of sequences within it in every target frame (``sequences``).
- ``tracking_other_rollouts`` (:func:`evaluate` asks for it, on the first
  :data:`OTHER_ROLLOUT_SEQUENCES` sequences): the same tracking for the other
  rollouts of Fig. 7, each against its own truth: ``backward`` (``-dt`` from the last state,
  against the sequence reversed; models with ``rollout_from``), ``double_speed`` (``2dt``,
  against the system played twice as fast, :meth:`SequenceDataset.replay
  <hamflow_hgn.data.SequenceDataset.replay>`, over the frames whose time the data covers) and
  ``half_speed`` (``dt/2``, against the system played at half speed), over all frames.
- ``reference_mse_x1e4`` and ``mse_ratio_to_reference``: the same MSE for the mean training
  image drawn at every step (:func:`mean_image`), and the model's mean MSE over it; a ratio
  well below 1 means the model draws the motion, not only the background.
- ``horizon`` (with ``--horizon N``, on the first :data:`OTHER_ROLLOUT_SEQUENCES` sequences):
  a forward rollout of ``N`` steps, any number, scored against the truth simulated that far
  (:mod:`hamflow_hgn.horizon`): tracking inside the training span, past it, and in windows one
  span long past it (``N = 4T``: frames ``T+1 … 2T`` give the 2x figure, ``T+1 … 4T`` the 4x
  one), and the per-step MSE against the noise-free truth. The rollout strips and GIFs then
  run ``N`` steps too, the simulated truth beside the model.

Frames imported with ``hamflow-data import`` have no simulated system behind them
(:func:`has_system`): their MSE, VPT, learned energy, reference and rollout strips are computed
as above, while ``tracking`` is None, the other rollouts and the horizon are not scored, and the
double- and half-speed strips stand beside the stored frames. ``metrics["skipped"]`` says what
was left out and why, one line each (the CLI prints them). ``--horizon N`` past the stored
frames is refused for such data: there is no truth to compare with.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.imported import ImageSequenceDataset
from .horizon import check_horizon, horizon_errors, summarize_horizon
from .io import save_figure, write_json, write_text
from .models import row_name
from .models.hgn import HGN
from .runs import EVAL, load_run
from .samples import LatentGaussian
from .tracking import body_radius_px, centroid_error, summarize

__all__ = [
    "VPT_THRESHOLD",
    "VPT_LOOSE_THRESHOLD",
    "foreground_power",
    "evaluate_split",
    "evaluate",
    "has_system",
    "mean_image",
    "markdown_table",
    "reference_table",
    "horizon_table",
    "fitted_latent",
    "main",
]

VPT_THRESHOLD = 0.025
"""VPT's threshold on a frame's MSE over the truth's variance (DeepMind's value)."""
VPT_LOOSE_THRESHOLD = 0.3
"""A looser VPT threshold: the default GECO tolerance, ``ModelConfig().geco_tolerance``."""
BATCH_SIZE = 64
"""Sequences evaluated at once (``--batch-size``)."""
ROLLOUTS = 4
"""Test sequences drawn as rollout strips and GIFs (``--rollouts``)."""
LATENT_FIT_SEQUENCES = 2048
"""Training sequences whose posteriors the rollouts' ``fitted_samples`` Gaussian is fitted to."""


OTHER_ROLLOUT_SEQUENCES = 256
"""Sequences per split whose backward, 2x and 1/2x rollouts :func:`evaluate` tracks."""


def foreground_power(images: torch.Tensor) -> torch.Tensor:
    """VPT's normaliser: each frame's variance about its mean colour, ``(B, T+1)``.

    The mean over pixels of ``(x - mean_hw(x))^2`` (per channel, then averaged over channels):
    what the moving bodies add to a uniform background, whatever its colour. An empty frame
    has 0 (clamped to 1e-12, so an empty truth makes any error count as large).

    Example:
        >>> x = torch.full((1, 1, 3, 4, 4), 0.9)  # light background
        >>> x[..., 0, 0] = 0.1                      # one dark pixel
        >>> round(float(foreground_power(x)), 4)    # 0.64 * (1/16) * (15/16)
        0.0375
    """
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    return centred.float().square().mean(dim=(2, 3, 4)).clamp_min(1e-12)


def has_system(dataset) -> bool:
    """Whether a simulated system stands behind ``dataset``'s frames (False for frames
    imported with ``hamflow-data import``, :mod:`hamflow_hgn.data.imported`).

    Tracking the bodies, replaying the truth at other speeds and simulating it past the stored
    frames need one; the MSE, VPT, the learned energy and the rollout strips do not.

    Example:
        >>> import numpy as np
        >>> from hamflow_hgn.data.imported import ImageSequenceDataset, ImportConfig
        >>> cfg = ImportConfig("clips", n_train=1, n_test=1, steps=3, size=8)
        >>> has_system(ImageSequenceDataset(cfg, np.zeros((1, 3, 3, 8, 8), np.uint8)))
        False
    """
    return not isinstance(dataset, ImageSequenceDataset)


def _no_system(dataset) -> str:
    return f"the imported dataset {dataset.config.name!r} has no simulated system"


@torch.no_grad()
def mean_image(dataset, batch_size: int = BATCH_SIZE, device=None) -> torch.Tensor:
    """The mean frame ``(C, H, W)`` over every frame of the first
    :data:`LATENT_FIT_SEQUENCES` sequences of ``dataset``: the "always draw the average
    training image" reference that ``reference_mse_x1e4`` scores.

    Example:
        >>> import numpy as np
        >>> from hamflow_hgn.data.imported import ImageSequenceDataset, ImportConfig
        >>> cfg = ImportConfig("clips", n_train=2, n_test=1, steps=3, size=8)
        >>> x = np.zeros((2, 3, 3, 8, 8), np.uint8)
        >>> x[1] = 255                       # one black and one white sequence
        >>> float(mean_image(ImageSequenceDataset(cfg, x)).mean())
        0.5
    """
    n = min(len(dataset), LATENT_FIT_SEQUENCES)
    total, count = None, 0
    for start in range(0, n, batch_size):
        images = dataset.render_batch(list(range(start, min(n, start + batch_size))), device)
        part = images.double().sum(dim=(0, 1))
        total = part if total is None else total + part
        count += images.shape[0] * images.shape[1]
    return (total / count).float()


def _valid_steps(ratio: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per sequence, the number of leading target steps whose error ratio is within
    ``threshold``, ``(B,)``: the index of the first step above it, or all of them."""
    bad = ratio > threshold
    every = torch.full(bad.shape[:1], bad.shape[1], dtype=torch.long, device=bad.device)
    return torch.where(bad.any(1), bad.float().argmax(1).long(), every)


def _summary(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(x)), "std": float(np.std(x))}


@torch.no_grad()
def evaluate_split(
    model,
    dataset,
    n: int | None = None,
    batch_size: int = 64,
    device=None,
    other_rollouts: int = 0,
    horizon: int | None = None,
    horizon_sequences: int | None = None,
    reference: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The metrics of one split (see the module docstring) on its first ``n`` sequences.

    ``device`` defaults to the model's. This is the one evaluator: the CLI, the figures and
    the reproduction script all score runs with it. ``other_rollouts = m > 0`` adds
    ``tracking_other_rollouts`` (backward, double and half speed against their own truth) over
    the first ``m`` of those sequences: replaying the truth runs the ODE solver on the CPU.
    ``horizon = N`` adds ``horizon``, a forward rollout of ``N`` steps scored against the truth
    simulated that far (:func:`hamflow_hgn.horizon.summarize_horizon`), over the first
    ``horizon_sequences`` of those sequences (default: all of them). ``reference``, one image
    ``(C, H, W)`` (:func:`mean_image`), adds ``reference_mse_x1e4``, its MSE over the same
    target frames, and ``mse_ratio_to_reference``, the model's mean MSE over it. On data
    without a simulated system (:func:`has_system`) ``tracking`` is None, and
    ``other_rollouts`` and ``horizon`` are refused.
    """
    if (
        not isinstance(other_rollouts, int)
        or isinstance(other_rollouts, bool)
        or other_rollouts < 0
    ):
        raise ValueError(f"other_rollouts: expected an integer >= 0, got {other_rollouts!r}")
    if horizon is not None:
        check_horizon(horizon)
    if horizon_sequences is not None:
        check_horizon(horizon_sequences, "horizon_sequences")
    cfg = model.config
    simulated = has_system(dataset)
    if not simulated and (other_rollouts or horizon is not None):
        raise ValueError(
            f"dataset: {_no_system(dataset)}, so no rollout can be scored against a replayed "
            f"or simulated truth; expected other_rollouts=0 and horizon=None, got "
            f"{other_rollouts!r} and {horizon!r}"
        )
    n = len(dataset) if n is None else min(int(n), len(dataset))
    n_far = n if horizon_sequences is None else min(n, horizon_sequences)
    far_rows: dict[str, list[torch.Tensor]] = {"centroid": [], "mse": []}
    device = next(model.parameters()).device if device is None else device
    targets = list(cfg.target_frames)
    mse_rows, energy_rows, centroid_rows, ref_rows = [], [], [], []
    other_rows: dict[str, list[torch.Tensor]] = {}
    vpt: dict[float, list[torch.Tensor]] = {VPT_THRESHOLD: [], VPT_LOOSE_THRESHOLD: []}
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        images = dataset.render_batch(idx, device)
        roll = model.rollout(images)
        err = (roll.frames.float() - images).square().mean(dim=(2, 3, 4))  # (B, T+1)
        mse_rows.append(err.cpu())
        if reference is not None:
            ref_err = (reference.to(images) - images).square().mean(dim=(2, 3, 4))
            ref_rows.append(ref_err[:, targets].mean(1).cpu())
        if simulated:
            centroid = centroid_error(roll.frames, images, colors=dataset.system.colors)
            centroid_rows.append(centroid[:, targets].cpu())
        ratio = (err / foreground_power(images))[:, targets]
        for threshold, rows in vpt.items():
            rows.append(_valid_steps(ratio, threshold).cpu())
        if getattr(roll, "energy", None) is not None:
            energy_rows.append(roll.energy.float().cpu())
        k = min(len(idx), other_rollouts - start)
        if k > 0:
            errors = other_rollout_errors(model, dataset, idx[:k], images[:k], roll.q, roll.p)
            for kind, error in errors.items():
                other_rows.setdefault(kind, []).append(error.cpu())
        k = min(len(idx), n_far - start)
        if horizon is not None and k > 0:
            far = horizon_errors(model, dataset, idx[:k], images[:k], horizon)
            for key, rows in far_rows.items():
                rows.append(far[key].cpu())
    mse = torch.cat(mse_rows).numpy()
    per_seq = mse[:, targets].mean(1)
    out: dict[str, Any] = {
        "sequences": int(n),
        "mse_x1e4": _summary(per_seq * 1e4),
        "mse_curve": mse.mean(0).tolist(),
        "vpt": _summary(torch.cat(vpt[VPT_THRESHOLD]).numpy().astype(np.float64)),
        "vpt_loose": _summary(torch.cat(vpt[VPT_LOOSE_THRESHOLD]).numpy().astype(np.float64)),
    }
    if simulated:
        radius = body_radius_px(dataset.system, dataset.config.size)
        tracked = summarize(torch.cat(centroid_rows), radius)
        out["tracking"] = None if tracked is None else {**tracked, "radius_px": radius}
    else:
        out["tracking"] = None
    if ref_rows:
        ref = torch.cat(ref_rows).numpy()
        out["reference_mse_x1e4"] = _summary(ref * 1e4)
        out["mse_ratio_to_reference"] = float(per_seq.mean() / max(ref.mean(), 1e-12))
    if other_rows:
        out["tracking_other_rollouts"] = {
            "sequences_scored": sum(len(rows) for rows in next(iter(other_rows.values()))),
            **{kind: summarize(torch.cat(rows), radius) for kind, rows in other_rows.items()},
        }
    if horizon is not None:
        far_mse = torch.cat(far_rows["mse"])
        out["horizon"] = {
            "sequences_scored": int(far_mse.shape[0]),
            **summarize_horizon(torch.cat(far_rows["centroid"]), radius, cfg.frames),
            "mse_curve": far_mse.mean(0).tolist(),
        }
    if energy_rows:
        energy = torch.cat(energy_rows).numpy().astype(np.float64)
        out["energy"] = {
            "mean": _summary(energy.mean(1)),
            "variance": _summary(energy.var(1)),
            "relative_std": _summary(energy.std(1) / np.maximum(np.abs(energy.mean(1)), 1e-12)),
        }
    return out


@torch.no_grad()
def other_rollout_errors(model, dataset, idx, images, q, p) -> dict[str, torch.Tensor]:
    """Per-frame centroid errors ``(B, frames)`` of the other rollouts of Fig. 7 (Sec. 4.2).

    For ``images``, sequences ``idx`` of ``dataset``: ``backward`` (``-dt`` from the forward
    rollout's last state ``q[:, -1]``, ``p[:, -1]``, against the sequence reversed; only for
    models with ``rollout_from``), ``double_speed`` (``2dt`` against the system played twice as
    fast, :meth:`~hamflow_hgn.data.SequenceDataset.replay`, over the frames whose time the data
    covers) and ``half_speed`` (``dt/2`` against the system played at half speed). Summarise
    them with :func:`hamflow_hgn.tracking.summarize`.

    Example:
        >>> import tempfile
        >>> from hamflow_hgn.config import ModelConfig
        >>> from hamflow_hgn.data import DataConfig, generate, open_dataset
        >>> from hamflow_hgn.models.hgn import HGN
        >>> cfg = DataConfig("pendulum", n_train=1, n_test=2, steps=6, size=16)
        >>> test = open_dataset(generate(cfg, tempfile.mkdtemp(), 1, False), "test")
        >>> model = HGN(ModelConfig.reduced(8, frames=6, image_size=16)).eval()
        >>> images = test.render_batch([0, 1])
        >>> roll = model.rollout(images)
        >>> errors = other_rollout_errors(model, test, [0, 1], images, roll.q, roll.p)
        >>> {kind: tuple(e.shape) for kind, e in errors.items()}
        {'backward': (2, 6), 'double_speed': (2, 3), 'half_speed': (2, 6)}
    """
    dt, colors = model.config.dt, dataset.system.colors
    last, b = images.shape[1] - 1, len(idx)
    errors = {}
    if hasattr(model, "rollout_from"):
        back = model.rollout_from(q[:b, -1], p[:b, -1], last, dt=-dt).frames
        errors["backward"] = centroid_error(back, images.flip(1), colors=colors)
    for kind, speed, frames in (("double_speed", 2.0, last // 2 + 1), ("half_speed", 0.5, None)):
        drawn = model.rollout(images, dt=speed * dt).frames
        truth = dataset.replay(idx, speed).to(drawn.device)
        errors[kind] = centroid_error(drawn, truth, colors=colors)[:, :frames]
    return errors


def markdown_table(metrics: dict[str, Any]) -> str:
    """Table 1's row format (MSE x1e4, mean ± std) plus VPT, the energy along rollouts and the
    tracked shares of frames and sequences (:mod:`hamflow_hgn.tracking`).

    Example:
        >>> m = {"model": "hgn_leapfrog", "splits": {"test": {"mse_x1e4": {"mean": 1.0, "std": 0.5},
        ...      "vpt": {"mean": 3.0, "std": 1.0}, "vpt_loose": {"mean": 30.0, "std": 0.0},
        ...      "tracking": {"error_px": 0.5, "frames": 0.99, "sequences": 0.9}}}}
        >>> print(markdown_table(m).splitlines()[2])
        | hgn_leapfrog | test | 1.00 ± 0.50 | 3.0 ± 1.0 | 30.0 ± 0.0 | – | – | 99.0 % / 90.0 % |
    """
    lines = [
        f"| model | split | MSE ×1e4 | VPT at {VPT_THRESHOLD:g} (steps) | VPT at "
        f"{VPT_LOOSE_THRESHOLD:g} | energy variance along rollout | relative std of energy | "
        "tracked frames / sequences |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, m in metrics["splits"].items():
        e = m.get("energy")
        ev = f"{e['variance']['mean']:.3g} ± {e['variance']['std']:.3g}" if e else "–"
        rel = e.get("relative_std") if e else None
        rs = f"{rel['mean']:.3g} ± {rel['std']:.3g}" if rel else "–"
        t = m.get("tracking")
        tr = f"{100 * t['frames']:.1f} % / {100 * t['sequences']:.1f} %" if t else "–"
        lines.append(
            f"| {metrics['model']} | {split} | {m['mse_x1e4']['mean']:.2f} ± "
            f"{m['mse_x1e4']['std']:.2f} | {_vpt_cell(m.get('vpt'))} | "
            f"{_vpt_cell(m.get('vpt_loose'))} | {ev} | {rs} | {tr} |"
        )
    return "\n".join(lines) + "\n"


def reference_table(metrics: dict[str, Any]) -> str:
    """The model's MSE beside the mean training image's, as a Markdown table ("" when no split
    has ``reference_mse_x1e4``): a ratio well below 1 means the model draws the motion, not
    only the background.

    Example:
        >>> m = {"model": "hgn_leapfrog", "splits": {"test": {"mse_x1e4": {"mean": 1.0,
        ...      "std": 0.5}, "reference_mse_x1e4": {"mean": 4.0, "std": 1.0},
        ...      "mse_ratio_to_reference": 0.25}}}
        >>> print(reference_table(m).splitlines()[2])
        | hgn_leapfrog | test | 1.00 | 4.00 | 0.250 |
    """
    rows = [(s, m) for s, m in metrics["splits"].items() if m.get("reference_mse_x1e4")]
    if not rows:
        return ""
    lines = [
        "| model | split | MSE ×1e4 | mean training image's MSE ×1e4 | ratio |",
        "|---|---|---|---|---|",
    ]
    for split, m in rows:
        lines.append(
            f"| {metrics['model']} | {split} | {m['mse_x1e4']['mean']:.2f} | "
            f"{m['reference_mse_x1e4']['mean']:.2f} | {m['mse_ratio_to_reference']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def horizon_table(metrics: dict[str, Any]) -> str:
    """The long-horizon tracking as a Markdown table ("" when no split has a ``horizon``):
    shares of frames / sequences tracked inside the training span, past it, and in each
    window one span long past it (:func:`hamflow_hgn.horizon.summarize_horizon`).

    Example:
        >>> t = lambda f, s: {"error_px": 1.0, "frames": f, "sequences": s}
        >>> h = {"steps": 30, "in_span": t(1.0, 1.0), "beyond": t(0.5, 0.25),
        ...      "windows": [{"frames_range": [16, 30], **t(0.5, 0.25)}]}
        >>> m = {"model": "hgn_leapfrog", "splits": {"test": {"horizon": h}}}
        >>> print(horizon_table(m).splitlines()[2])
        | hgn_leapfrog | test | 30 | 100.0 % / 100.0 % | 50.0 % / 25.0 % | 16-30: 50.0 % / 25.0 % |
    """
    rows = [(split, m["horizon"]) for split, m in metrics["splits"].items() if m.get("horizon")]
    if not rows:
        return ""

    def cell(t: dict[str, float] | None) -> str:
        return "–" if not t else f"{100 * t['frames']:.1f} % / {100 * t['sequences']:.1f} %"

    lines = [
        "| model | split | rollout steps | tracked in span (frames / sequences) | past the span "
        "| windows past the span |",
        "|---|---|---|---|---|---|",
    ]
    for split, h in rows:
        windows = "; ".join(
            f"{w['frames_range'][0]}-{w['frames_range'][1]}: {cell(w)}" for w in h["windows"]
        )
        lines.append(
            f"| {metrics['model']} | {split} | {h['steps']} | {cell(h['in_span'])} | "
            f"{cell(h['beyond'])} | {windows or '–'} |"
        )
    return "\n".join(lines) + "\n"


def _vpt_cell(summary: dict[str, float] | None) -> str:
    return "–" if summary is None else f"{summary['mean']:.1f} ± {summary['std']:.1f}"


def _plot_curves(metrics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for split, m in metrics["splits"].items():
        ax.plot(m["mse_curve"], label=split)
        if m.get("horizon"):
            ax.plot(m["horizon"]["mse_curve"], ls="--", label=f"{split}, simulated truth")
    if any(m.get("horizon") for m in metrics["splits"].values()):
        ax.axvline(metrics["rollout_steps"], color="grey", lw=0.8)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("pixel MSE")
    ax.set_title(f"{metrics['model']}: per-step MSE (Fig. 6)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def evaluate(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    splits: Sequence[str] = ("train", "test"),
    max_sequences: int | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    rollouts: int = ROLLOUTS,
    allow_other_data: bool = False,
    horizon: int | None = None,
) -> dict[str, Any]:
    """Compute the metrics of a run (see the module docstring) and write them to ``RUN/eval``.

    ``rollouts`` test sequences are also drawn as PNG strips and GIFs (0 to skip). A dataset
    other than the run's is refused unless ``allow_other_data``. ``horizon = N`` rolls out
    ``N`` steps, past the data's ``T`` if larger, scored against the truth simulated that far
    (``horizon`` in each split's metrics, :func:`horizon_table` in ``metrics.md``), and the
    strips and GIFs run ``N`` steps. On frames imported with ``hamflow-data import``
    (:func:`has_system` is False) what needs a simulated system is left out, each with its
    reason in ``metrics["skipped"]``, the strips run ``N`` steps beside the stored frames, and
    ``N`` past them is refused. Returns the metrics dict that is saved as ``metrics.json``.
    """
    from .data import open_dataset
    from .rollouts import save_rollouts

    if max_sequences is not None and (not isinstance(max_sequences, int) or max_sequences < 1):
        raise ValueError(f"max_sequences: expected a positive int or None, got {max_sequences!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if horizon is not None:
        check_horizon(horizon)
    config, model, train_set, data = load_run(
        run_dir, data_dir, device, allow_other_data=allow_other_data
    )
    dev = next(model.parameters()).device
    out_dir = Path(run_dir) / EVAL
    mcfg = model.config
    simulated = has_system(train_set)
    skipped = {} if simulated else _skipped(train_set, horizon, rollouts)
    if not simulated and horizon is not None and horizon > mcfg.frames - 1:
        raise ValueError(
            f"horizon: {_no_system(train_set)} and stores {mcfg.frames} frames per sequence, "
            f"so a rollout can be compared with the data for at most {mcfg.frames - 1} steps; "
            f"expected --horizon <= {mcfg.frames - 1}, got {horizon}"
        )
    reference = mean_image(train_set, batch_size, dev)
    metrics: dict[str, Any] = {
        "model": row_name(config),
        "protocol": mcfg.protocol,
        "rollout_steps": mcfg.frames - 1,
        "horizon": horizon,
        "target_frames": [mcfg.target_frames[0], mcfg.target_frames[-1]],
        "vpt_threshold": VPT_THRESHOLD,
        "vpt_loose_threshold": VPT_LOOSE_THRESHOLD,
        "data": str(data),
        "skipped": skipped,
        "splits": {},
    }
    for split in splits:
        dataset = open_dataset(data, split)
        metrics["splits"][split] = evaluate_split(
            model, dataset, max_sequences, batch_size, dev,
            other_rollouts=OTHER_ROLLOUT_SEQUENCES if simulated else 0,
            horizon=horizon if simulated else None,
            horizon_sequences=OTHER_ROLLOUT_SEQUENCES, reference=reference,
        )  # fmt: skip
    write_json(out_dir / "metrics.json", metrics, sort_keys=False)
    tables = [markdown_table(metrics), reference_table(metrics), horizon_table(metrics)]
    write_text(out_dir / "metrics.md", "\n".join(t for t in tables if t))
    _plot_curves(metrics, out_dir / "mse_curve.png")
    if rollouts > 0:
        split = "test" if "test" in splits else splits[0]
        dataset = open_dataset(data, split)
        shown = list(range(min(rollouts, len(dataset))))
        images = dataset.render_batch(shown, dev)
        latent = fitted_latent(model, open_dataset(data, "train"), batch_size, dev)
        frames = None if horizon is None else max(horizon + 1, mcfg.frames)
        replay = lambda speed: dataset.replay(shown, speed, frames)  # noqa: E731
        if not simulated:  # the other speeds stand beside the stored frames
            replay = None
        save_rollouts(
            model, images, out_dir / "rollouts", steps=horizon, latent=latent, replay=replay
        )
    return metrics


def _skipped(dataset, horizon: int | None, rollouts: int) -> dict[str, str]:
    """What :func:`evaluate` leaves out on data without a simulated system, and why (one line
    each)."""
    why = _no_system(dataset)
    out = {
        "tracking": f"{why}: its bodies' positions are unknown, so rollouts are scored by "
        "pixels (MSE, VPT) only",
        "tracking_other_rollouts": f"{why}: the backward, 2x and 1/2x rollouts have no "
        "replayed truth to be tracked against",
    }
    if horizon is not None:
        out["horizon"] = (
            f"{why}: no truth is simulated, so --horizon {horizon} only sets the rollout "
            "strips' length (the per-step MSE covers the stored frames)"
        )
    if rollouts > 0:
        out["replay"] = (
            f"{why}: the double- and half-speed strips stand beside the stored frames, not "
            "the system played at that speed"
        )
    return out


def fitted_latent(model, train, batch_size: int, device) -> LatentGaussian | None:
    """A :class:`~hamflow_hgn.samples.LatentGaussian` fitted to the posteriors of the first
    :data:`LATENT_FIT_SEQUENCES` training sequences, for models with an HGN latent (else None).

    Example:
        >>> import numpy as np
        >>> from hamflow_hgn.config import ModelConfig
        >>> from hamflow_hgn.data import DataConfig, SequenceDataset
        >>> states = np.random.default_rng(0).normal(size=(8, 4, 2)).astype(np.float32)
        >>> train = SequenceDataset(DataConfig("pendulum", 8, 1, steps=4, size=8), states, states)
        >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4)).eval()
        >>> int(fitted_latent(model, train, 4, "cpu").num_sequences)
        8
    """
    if not isinstance(model, HGN):
        return None
    n = min(len(train), LATENT_FIT_SEQUENCES)
    batches = (
        train.render_batch(list(range(i, min(n, i + batch_size))), device)
        for i in range(0, n, batch_size)
    )
    return LatentGaussian.fit(model, batches)


EXAMPLES = """\
  python -m hamflow_hgn.evaluate runs/pendulum                      # both splits, 4 rollouts
  python -m hamflow_hgn.evaluate runs/pendulum --split test --max-sequences 256 --rollouts 0
  python -m hamflow_hgn.evaluate runs/pendulum --data data/pendulum_seed1 --allow-other-data
  python -m hamflow_hgn.evaluate runs/pendulum --split test --horizon 60   # 4x the 16-frame span
"""


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    from .cli import make_parser, non_negative_int, positive_int

    p = make_parser(
        "python -m hamflow_hgn.evaluate",
        "Evaluate a trained run: Table-1 MSE (x1e4, mean and std over sequences), the per-step\n"
        "MSE of Fig. 6, the learned energy along rollouts and the valid prediction time; writes\n"
        "RUN/eval/metrics.json, metrics.md, mse_curve.png and rollout strips and GIFs.",
        EXAMPLES,
    )
    p.add_argument("run", help="run directory written by python -m hamflow_hgn.train")
    p.add_argument("--data", default=None, help="dataset directory; default: the run's")
    p.add_argument("--split", default=None, choices=["train", "test"], help="default: both")
    p.add_argument(
        "--max-sequences", type=positive_int, default=None, help="per split; default: all"
    )
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="sequences at once")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--rollouts", type=non_negative_int, default=ROLLOUTS, help="test sequences to draw"
    )
    p.add_argument(
        "--allow-other-data", action="store_true",
        help="evaluate on a dataset other than the one the run was trained on",
    )  # fmt: skip
    p.add_argument(
        "--horizon", type=positive_int, default=None, metavar="N",
        help="also roll out N steps (past the data's T if larger) against the truth simulated "
        "that far: tracking inside and past the training span, strips and GIFs of N steps "
        "(default: T only)",
    )  # fmt: skip
    args = p.parse_args(argv)
    splits = (args.split,) if args.split else ("train", "test")
    try:
        metrics = evaluate(
            args.run,
            args.data,
            splits,
            args.max_sequences,
            batch_size=args.batch_size,
            device=args.device,
            rollouts=args.rollouts,
            allow_other_data=args.allow_other_data,
            horizon=args.horizon,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for what, why in metrics["skipped"].items():
        print(f"skipped {what}: {why}", file=sys.stderr)
    tables = [markdown_table(metrics), reference_table(metrics), horizon_table(metrics)]
    print("\n".join(t for t in tables if t), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
