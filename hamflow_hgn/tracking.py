"""Does a rollout follow the bodies? Foreground centroids of model and truth, frame by frame.

Pixel MSE cannot say whether a rollout tracks the system: a sharp body one pixel off can
score worse than a faint smear over the right place. Issue 10 asks that the example's rollout
"tracks the bob in every frame", so this module measures that directly (the paper has no such
measure; its Fig. 7 is judged by eye). In each frame, the *foreground* is what differs from the
truth's background colour (its per-channel median over the frame: the bodies cover a small part of
it). Its centroid, weighted by the colour distance to the background, is where the bodies
are, and the distance between the model's centroid and the truth's, in pixels, is the
frame's **centroid error**. Blur about the right place costs nothing; a body in the wrong
place, a smear along an arc, or a frame with nothing drawn does. A frame with no model
foreground counts as the frame's diagonal, the largest error there is; a frame whose truth
has no foreground is left out.

For several bodies the centroid is their common one, so the error measures whether the
drawn mass sits where the truth's does, not each body's place.

API: :func:`centroid_error` per frame, :func:`summarize` and :func:`tracking` summarised (the
example and :func:`hamflow_hgn.evaluate.evaluate_split` report it), :func:`body_radius_px` for
the radius within which a frame counts as tracked.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "FOREGROUND_LEVEL",
    "body_radius_px",
    "foreground_centroids",
    "centroid_error",
    "summarize",
    "tracking",
]

FOREGROUND_LEVEL = 0.05
"""Colour distance to the background (summed over channels, colours in [0, 1]) below which a
pixel counts as background: it keeps faint decoder noise from pulling every centroid toward the
frame's centre."""


def body_radius_px(system, size: int) -> float:
    """A body's rendered radius in pixels on ``size``×``size`` frames: the tracking radius.

    A frame counts as tracked when the model's centroid lies within it of the truth's, i.e.
    inside the true body (for one body).

    Example:
        >>> from hamflow_hgn.data.systems import get_system
        >>> round(body_radius_px(get_system("pendulum"), 16), 9)   # radius 0.3, canvas 3.2 wide
        1.5
    """
    return float(system.disc_radius) * int(size) / (2.0 * float(system.extent))


def _check(frames: Tensor, name: str) -> None:
    if frames.dim() != 5:
        shape = tuple(frames.shape)
        raise ValueError(f"{name}: expected frames (B, T, C, H, W), got shape {shape}")


def foreground_centroids(
    frames: Tensor, background: Tensor, level: float = FOREGROUND_LEVEL
) -> tuple[Tensor, Tensor]:
    """Foreground centroids ``(B, T, 2)`` (row, column, in pixels) and their mass ``(B, T)``.

    ``background`` broadcasts against ``frames (B, T, C, H, W)`` (a colour per frame and
    channel). A pixel weighs its colour distance to it, summed over channels, less ``level``
    (at least 0). Frames with no weight get a NaN centroid and mass 0.

    Example:
        >>> x = torch.zeros(1, 1, 3, 8, 8)
        >>> x[..., 2, 5] = 1.0                      # one bright pixel at row 2, column 5
        >>> centre, mass = foreground_centroids(x, torch.zeros(1))
        >>> centre.tolist(), round(float(mass), 2)
        ([[[2.0, 5.0]]], 2.95)
    """
    _check(frames, "frames")
    weight = ((frames.float() - background.float()).abs().sum(2) - level).clamp_min(0.0)
    rows = torch.arange(frames.shape[-2], dtype=weight.dtype, device=weight.device)
    cols = torch.arange(frames.shape[-1], dtype=weight.dtype, device=weight.device)
    mass = weight.sum(dim=(-2, -1))
    row = (weight.sum(-1) * rows).sum(-1) / mass
    col = (weight.sum(-2) * cols).sum(-1) / mass
    centre = torch.stack((row, col), dim=-1)
    return torch.where((mass > 0).unsqueeze(-1), centre, torch.nan), mass


def centroid_error(model: Tensor, truth: Tensor, level: float = FOREGROUND_LEVEL) -> Tensor:
    """Per frame, the distance in pixels between model and truth foreground centroids, ``(B, T)``.

    The background is the truth's per-channel median in each frame. A model frame with no
    foreground scores the frame's diagonal; a truth frame with none scores NaN (left out).

    Example:
        >>> truth = torch.full((1, 2, 3, 8, 8), 0.9)       # light background
        >>> truth[:, :, :, 3, 3] = 0.1                      # a dark body at (3, 3)
        >>> model = truth.clone()
        >>> model[:, 1] = torch.roll(truth[:, 1], shifts=2, dims=-1)   # frame 1: two columns off
        >>> centroid_error(model, truth).tolist()
        [[0.0, 2.0]]
    """
    _check(model, "model")
    _check(truth, "truth")
    if model.shape != truth.shape:
        raise ValueError(
            f"model and truth: expected the same shape, got {tuple(model.shape)} and "
            f"{tuple(truth.shape)}"
        )
    background = truth.float().flatten(-2).median(-1).values[..., None, None]
    truth_centre, truth_mass = foreground_centroids(truth, background, level)
    model_centre, model_mass = foreground_centroids(model, background, level)
    error = (model_centre - truth_centre).norm(dim=-1)
    diagonal = math.hypot(truth.shape[-2], truth.shape[-1])
    error = torch.where(model_mass > 0, error, torch.full_like(error, diagonal))
    return torch.where(truth_mass > 0, error, torch.nan)


def summarize(error: Tensor, radius: float) -> dict[str, float] | None:
    """Summarise per-frame centroid errors ``(B, T)`` (NaN: no truth foreground, left out).

    Returns the mean error in pixels (``error_px``), the share of frames within ``radius``
    pixels (``frames``) and the share of sequences within it in *every* frame
    (``sequences``); ``None`` when no frame has a truth foreground.

    Example:
        >>> summary = summarize(torch.tensor([[0.5, 2.0], [0.2, float("nan")]]), radius=1.0)
        >>> {k: round(v, 3) for k, v in summary.items()}
        {'error_px': 0.9, 'frames': 0.667, 'sequences': 0.5}
    """
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius: expected a positive number of pixels, got {radius!r}")
    known = ~error.isnan()
    if not bool(known.any()):
        return None
    tracked = (error <= radius) | ~known
    return {
        "error_px": float(error[known].mean()),
        "frames": float(tracked[known].float().mean()),
        "sequences": float(tracked.all(1).float().mean()),
    }


def tracking(
    model: Tensor, truth: Tensor, radius: float, frames: list[int] | None = None
) -> dict[str, float]:
    """How well ``model`` follows ``truth`` (both ``(B, T, C, H, W)``), over ``frames`` (all).

    ``radius`` is the tracking radius in pixels, usually :func:`body_radius_px`.

    :func:`summarize` of :func:`centroid_error`: the mean centroid error in pixels
    (``error_px``), the share of frames tracked to within ``radius`` pixels (``frames``) and
    the share of sequences tracked in *every* frame (``sequences``), over the frames whose
    truth has a foreground.

    Example:
        >>> truth = torch.full((2, 3, 3, 8, 8), 0.9)
        >>> truth[..., 4, 4] = 0.1
        >>> model = truth.clone()
        >>> model[1, 2] = 0.9                               # sequence 1 draws nothing at t = 2
        >>> {k: round(v, 3) for k, v in tracking(model, truth, radius=1.0).items()}
        {'error_px': 1.886, 'frames': 0.833, 'sequences': 0.5}
    """
    error = centroid_error(model, truth)
    if frames is not None:
        error = error[:, list(frames)]
    summary = summarize(error, radius)
    if summary is None:
        raise ValueError("truth: no frame has a foreground, so there is nothing to track")
    return summary
