"""Rollouts of any length, scored against the truth simulated as far (paper Sec. 4.2).

A model is trained on sequences of ``T + 1`` frames; a user predicts further than that. To
score a rollout of ``N > T`` steps, the truth must exist that far: :func:`horizon_errors`
rolls the model out ``N`` steps from the state it infers from the data's frames and scores
each frame against the same sequence simulated again from its clean first state to
``N · dt`` (:meth:`SequenceDataset.replay <hamflow_hgn.data.SequenceDataset.replay>`, the data's
solver and tolerance, rendered without the observation noise). :func:`summarize_horizon`
splits the frames into the training span (frames ``0 … T``) and the frames past it, and the
frames past it into windows one span long (``T+1 … 2T``, ``2T+1 … 3T``, ...), so that one
rollout four spans long gives the 2x and the 4x figures at once.

API: :func:`check_horizon`, :func:`horizon_errors`, :func:`summarize_horizon`;
``python -m hamflow_hgn.evaluate RUN --horizon N`` reports them (:mod:`hamflow_hgn.evaluate`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .tracking import centroid_error, summarize

__all__ = ["check_horizon", "horizon_errors", "summarize_horizon"]


def check_horizon(steps: Any, name: str = "horizon") -> int:
    """``steps`` as an int >= 1, else a ``ValueError`` naming ``name``.

    Parameters
    ----------
    steps : int
        Rollout steps.
    name : str
        The argument's name in the error message.

    Returns
    -------
    int
        ``steps``.

    Examples
    --------
    >>> check_horizon(30)
    30
    >>> check_horizon(0)
    Traceback (most recent call last):
    ...
    ValueError: horizon: expected an integer >= 1 (rollout steps), got 0
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{name}: expected an integer >= 1 (rollout steps), got {steps!r}")
    return steps


@torch.no_grad()
def horizon_errors(model, dataset, idx, images: Tensor, steps: int) -> dict[str, Tensor]:
    """Per-frame errors of a ``steps``-step forward rollout against the simulated truth
    (paper Sec. 4.2: rollouts past the training sequences).

    Parameters
    ----------
    model
        A model with ``rollout(images, steps)`` (HGN, or a PixelHNN baseline).
    dataset : SequenceDataset
        The split ``images`` come from; its ``replay`` simulates the truth.
    idx : sequence of int
        The sequences' numbers in ``dataset``.
    images : Tensor
        ``(B, T+1, C, H, W)``: the model infers its initial state from them (its protocol's
        input frames) and rolls out ``steps`` steps with its own ``dt``.
    steps : int
        Rollout steps, any number >= 1; the truth is ``dataset.replay(idx, 1.0, steps + 1)``.

    Returns
    -------
    dict
        ``centroid`` (centroid error in pixels, :func:`hamflow_hgn.tracking.centroid_error`)
        and ``mse`` (pixel MSE against the noise-free truth), each ``(B, steps + 1)``, and
        ``frames``, the model's rollout ``(B, steps + 1, C, H, W)``.

    Examples
    --------
    >>> import tempfile
    >>> from hamflow_hgn.config import ModelConfig
    >>> from hamflow_hgn.data import DataConfig, generate, open_dataset
    >>> from hamflow_hgn.models.hgn import HGN
    >>> data = DataConfig("mass_spring", n_train=1, n_test=3, steps=5, size=8)
    >>> test = open_dataset(generate(data, tempfile.mkdtemp(), 1, False), "test")
    >>> hgn = HGN(ModelConfig.reduced(4, frames=5, image_size=8)).eval()
    >>> errors = horizon_errors(hgn, test, [0, 2], test.render_batch([0, 2]), 16)  # T = 4
    >>> tuple(errors["centroid"].shape), tuple(errors["mse"].shape)
    ((2, 17), (2, 17))
    """
    check_horizon(steps, "steps")
    drawn = model.rollout(images, steps).frames
    truth = dataset.replay(list(idx), 1.0, steps + 1).to(drawn.device)
    return {
        "centroid": centroid_error(drawn, truth, colors=dataset.system.colors),
        "mse": (drawn.float() - truth.float()).square().mean(dim=(2, 3, 4)),
        "frames": drawn,
    }


def summarize_horizon(error: Tensor, radius: float, span: int) -> dict[str, Any]:
    """Tracking of per-frame centroid errors inside and past a training span.

    Parameters
    ----------
    error : Tensor
        ``(B, N+1)`` centroid errors in pixels (:func:`horizon_errors`).
    radius : float
        The tracking radius in pixels (:func:`~hamflow_hgn.tracking.body_radius_px`).
    span : int
        The frames the model was trained on, ``T + 1``.

    Returns
    -------
    dict
        ``steps`` (``N``), ``span_frames``, ``in_span`` (frames ``0 … T``), ``beyond`` (frames
        ``T+1 … N``; ``None`` when ``N <= T``) and ``windows``: the frames past the span cut
        into windows of ``T`` frames, ``[T+1, 2T]``, ``[2T+1, 3T]``, ... (the last one may be
        shorter), each a :func:`~hamflow_hgn.tracking.summarize` dict with its
        ``frames_range``. For ``T = 15`` and ``N = 60``, ``beyond`` covers frames 16-60 (the 4x
        figure) and the first window frames 16-30 (the 2x figure).

    Examples
    --------
    >>> error = torch.tensor([[0.0, 0.5, 0.5, 2.0, 0.1, 3.0, 0.2]])   # T = 2, N = 6
    >>> s = summarize_horizon(error, radius=1.0, span=3)
    >>> s["steps"], round(s["in_span"]["frames"], 3), round(s["beyond"]["frames"], 3)
    (6, 1.0, 0.5)
    >>> [(w["frames_range"], w["frames"]) for w in s["windows"]]
    [([3, 4], 0.5), ([5, 6], 0.5)]
    """
    if error.dim() != 2:
        raise ValueError(f"error: expected per-frame errors (B, N+1), got {tuple(error.shape)}")
    check_horizon(span, "span")
    if span < 2:
        raise ValueError(f"span: expected the training frames T + 1 >= 2, got {span}")
    last = error.shape[1] - 1
    t = span - 1
    out: dict[str, Any] = {
        "steps": last,
        "span_frames": span,
        "in_span": summarize(error[:, :span], radius),
        "beyond": summarize(error[:, span:], radius) if last >= span else None,
        "windows": [],
    }
    for start in range(span, last + 1, t):
        stop = min(start + t - 1, last)
        summary = summarize(error[:, start : stop + 1], radius)
        out["windows"].append({"frames_range": [start, stop], **(summary or {})})
    return out
