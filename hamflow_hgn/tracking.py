"""Does a rollout follow the bodies? Foreground centroids of model and truth, frame by frame.

Pixel MSE cannot say whether a rollout tracks the system: a sharp body one pixel off can
score worse than a faint smear over the right place. Issue 10 asks that the example's rollout
"tracks the bob in every frame", so this module measures that directly (the paper has no such
measure; its Fig. 7 is judged by eye). In each frame, each body's centroid is found in the
model's frame and in the truth's, weighted by how much of the body's colour each pixel holds
(rendered pixels mix the background and the bodies' colours, :func:`_presence`); without the
colours, the whole foreground (what differs from the truth's background colour) is one body.
The distance between a body's two centroids, in pixels, is its error, and the frame's
**centroid error** is its worst body's. Blur about the right place costs nothing; a body in the
wrong place, a smear along an arc, two bodies that trade places, or a body not drawn at all
(which scores the frame's diagonal, the largest error there is) do. Bodies that are not in the
truth's frame are left out.

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
"""The weight below which a pixel counts as background: a body's opacity in it (with the
bodies' colours), or its colour distance to the background summed over channels (without;
colours in [0, 1]). It keeps faint decoder noise from pulling every centroid toward the
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


def _presence(frames: Tensor, background: Tensor, colors: Tensor | None, level: float) -> Tensor:
    """Each body's weight per pixel, ``(B, T, K, H, W)``, less ``level`` and at least 0.

    Rendered pixels are ``background + Σ_k w_k (c_k − background)`` with opacities ``w_k``
    (:func:`hamflow_hgn.data.render.render`), so the least-squares solve of the colour
    difference for the ``w_k`` recovers them exactly on the truth when the bodies' colour
    shifts are independent (up to three bodies in RGB). Without ``colors`` there is one "body",
    weighted by the colour distance to the background summed over channels.
    """
    diff = frames.float() - background.float()
    if colors is None:
        weight = diff.abs().sum(2, keepdim=True)
    else:
        shifts = colors.to(diff) - background.float().reshape(1, -1)  # (K, C)
        weight = torch.einsum("kc,btchw->btkhw", torch.linalg.pinv(shifts.T), diff)
    return (weight - level).clamp_min(0.0)


def foreground_centroids(
    frames: Tensor,
    background: Tensor,
    level: float = FOREGROUND_LEVEL,
    colors: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Each body's centroid ``(B, T, K, 2)`` (row, column, in pixels) and mass ``(B, T, K)``.

    ``background`` broadcasts against ``frames (B, T, C, H, W)`` (a colour per frame and
    channel; with ``colors``, one colour ``(C, 1, 1)`` for all frames). ``colors (K, C)`` are
    the bodies' colours: a pixel weighs each body's opacity in it, less ``level``. Without
    them there is one body (``K = 1``): a pixel weighs its colour distance to the background,
    summed over channels, less ``level``. Bodies with no weight in a frame get a NaN centroid
    and mass 0.

    Example:
        >>> x = torch.zeros(1, 1, 3, 8, 8)
        >>> x[..., 2, 5] = 1.0                      # one bright pixel at row 2, column 5
        >>> centre, mass = foreground_centroids(x, torch.zeros(1))
        >>> centre.tolist(), round(float(mass), 2)
        ([[[[2.0, 5.0]]]], 2.95)
        >>> x[:, :, 0, 6, 1] = 1.0                  # and a red one at row 6, column 1
        >>> red, white = torch.tensor([1.0, 0, 0]), torch.ones(3)
        >>> colors, black = torch.stack((red, white)), torch.zeros(3, 1, 1)
        >>> centre, _ = foreground_centroids(x, black, colors=colors)
        >>> centre.round(decimals=3).tolist()                # body 0 (red), body 1 (white)
        [[[[6.0, 1.0], [2.0, 5.0]]]]
    """
    _check(frames, "frames")
    if not (isinstance(level, (int, float)) and math.isfinite(level) and level >= 0):
        raise ValueError(f"level: expected a finite weight >= 0, got {level!r}")
    if colors is not None and background.numel() != frames.shape[2]:
        raise ValueError(
            f"background: with colors, expected one colour of {frames.shape[2]} channels, "
            f"got shape {tuple(background.shape)}"
        )
    weight = _presence(frames, background, colors, level)
    rows = torch.arange(frames.shape[-2], dtype=weight.dtype, device=weight.device)
    cols = torch.arange(frames.shape[-1], dtype=weight.dtype, device=weight.device)
    mass = weight.sum(dim=(-2, -1))
    row = (weight.sum(-1) * rows).sum(-1) / mass
    col = (weight.sum(-2) * cols).sum(-1) / mass
    centre = torch.stack((row, col), dim=-1)
    return torch.where((mass > 0).unsqueeze(-1), centre, torch.nan), mass


def centroid_error(
    model: Tensor,
    truth: Tensor,
    colors: Tensor | None = None,
    level: float = FOREGROUND_LEVEL,
) -> Tensor:
    """Per frame, the largest distance in pixels between a body's model and truth centroids,
    ``(B, T)``.

    ``colors (K, C)``, the bodies' colours (``system.colors``), give each body its own centroid,
    so that two bodies cannot trade places unnoticed; without them the frame's whole foreground
    is one body. The background is the truth's per-channel median (over all frames, with
    ``colors``; per frame without). A body that the model does not draw where the truth does
    scores the frame's diagonal, the largest error there is; bodies absent from the truth's
    frame are left out, and a frame with none scores NaN.

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
    if colors is None:
        background = truth.float().flatten(-2).median(-1).values[..., None, None]
    else:
        colors = torch.as_tensor(colors, dtype=torch.float32, device=truth.device)
        if colors.dim() != 2 or colors.shape[1] != truth.shape[2]:
            raise ValueError(
                f"colors: expected one colour of {truth.shape[2]} channels per body, "
                f"got shape {tuple(colors.shape)}"
            )
        pixels = truth.float().movedim(2, -1).reshape(-1, truth.shape[2])
        background = pixels.median(0).values.view(-1, 1, 1)
    truth_centre, truth_mass = foreground_centroids(truth, background, level, colors)
    model_centre, model_mass = foreground_centroids(model, background, level, colors)
    error = (model_centre - truth_centre).norm(dim=-1)  # (B, T, K)
    diagonal = math.hypot(truth.shape[-2], truth.shape[-1])
    error = torch.where(model_mass > 0, error, torch.full_like(error, diagonal))
    present = truth_mass > 0
    worst = torch.where(present, error, torch.full_like(error, -1.0)).amax(-1)
    return torch.where(present.any(-1), worst, torch.nan)


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
    model: Tensor,
    truth: Tensor,
    radius: float,
    frames: list[int] | None = None,
    colors: Tensor | None = None,
) -> dict[str, float]:
    """How well ``model`` follows ``truth`` (both ``(B, T, C, H, W)``), over ``frames`` (all).

    ``radius`` is the tracking radius in pixels, usually :func:`body_radius_px`; ``colors``
    the bodies' colours (see :func:`centroid_error`).

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
    error = centroid_error(model, truth, colors)
    if frames is not None:
        error = error[:, list(frames)]
    summary = summarize(error, radius)
    if summary is None:
        raise ValueError("truth: no frame has a foreground, so there is nothing to track")
    return summary
