"""Vectorised smooth-disc renderer: body positions to RGB frames, in torch, on any device.

Each body is a disc of radius ``system.disc_radius`` (world units) in its own colour, with a
soft edge: the opacity falls from 1 to 0 along a C1 smoothstep ramp of total width
``2 * EDGE_FRACTION * disc_radius`` centred on the nominal radius. Discs are blended onto
a fixed light-grey background; where discs overlap they share the pixel in proportion to their
opacity, so the picture does not depend on body order. The canvas covers
``[-extent, extent]^2`` with y pointing up. All work is broadcasting over
``(..., bodies, rows, cols)``; there is no Python loop over pixels, frames or bodies.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, A.4 (circles with smoothed
    edges, one colour per body).
"""

from __future__ import annotations

import numpy as np
import torch

from .systems import PhysicalSystem

__all__ = ["BACKGROUND", "EDGE_FRACTION", "render", "world_to_pixel", "alpha_masks", "frame_strip"]

BACKGROUND: tuple[float, float, float] = (0.9, 0.9, 0.88)
"""Canvas colour (non-black, so a dark disc and an empty frame differ)."""

EDGE_FRACTION: float = 0.4
"""Half-width of the soft edge as a fraction of the disc radius."""


def _check(positions: torch.Tensor, system: PhysicalSystem, size: int) -> None:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions: expected torch.Tensor, got {type(positions).__name__}")
    expected = (system.n_bodies, 2)
    if positions.dim() < 2 or tuple(positions.shape[-2:]) != expected:
        raise ValueError(
            f"positions: expected trailing shape (n_bodies, 2) = {expected}, "
            f"got {tuple(positions.shape)}"
        )
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")


def world_to_pixel(positions: torch.Tensor, system: PhysicalSystem, size: int) -> torch.Tensor:
    """Map world xy to continuous pixel coordinates ``(col, row)``; pixel centres are at k + 0.5.

    Example:
        >>> from hamflow_hgn.data.systems import get_system
        >>> world_to_pixel(torch.zeros(1, 2), get_system("pendulum"), 32).tolist()
        [[16.0, 16.0]]
    """
    scale = size / (2.0 * system.extent)
    col = (positions[..., 0] + system.extent) * scale
    row = (system.extent - positions[..., 1]) * scale
    return torch.stack([col, row], -1)


def alpha_masks(positions: torch.Tensor, system: PhysicalSystem, size: int) -> torch.Tensor:
    """Opacity of each body's disc, ``[..., n_bodies, size, size]`` float32 in [0, 1].

    Example:
        >>> from hamflow_hgn.data.systems import get_system
        >>> a = alpha_masks(torch.zeros(1, 2), get_system("pendulum"), 32)
        >>> a.shape, float(a[0, 16, 16]), float(a[0, 0, 0])
        (torch.Size([1, 32, 32]), 1.0, 0.0)
    """
    _check(positions, system, size)
    pos = positions.to(torch.float32)
    step = 2.0 * system.extent / size
    centres = (torch.arange(size, device=pos.device, dtype=torch.float32) + 0.5) * step
    xs = centres - system.extent  # column centres, left to right
    ys = system.extent - centres  # row centres, top to bottom
    dx2 = (xs - pos[..., 0:1]).square_().unsqueeze(-2)  # [..., n, 1, W]
    dy2 = (ys - pos[..., 1:2]).square_().unsqueeze(-1)  # [..., n, H, 1]
    dist = (dx2 + dy2).sqrt_()
    half = EDGE_FRACTION * system.disc_radius
    # t = 1 inside (radius - half), 0 outside (radius + half); smoothstep t^2 (3 - 2t)
    t = dist.mul_(-0.5 / half).add_(0.5 + 0.5 * system.disc_radius / half).clamp_(0.0, 1.0)
    return t.square() * (3.0 - 2.0 * t)


def render(positions: torch.Tensor, system: PhysicalSystem, size: int = 32) -> torch.Tensor:
    """Render body positions to RGB frames, ``[..., n_bodies, 2] -> [..., 3, size, size]``.

    Output is float32 in [0, 1], on the device of ``positions``, deterministic for given input.

    Example:
        >>> from hamflow_hgn.data.systems import get_system
        >>> pend = get_system("pendulum")
        >>> states = torch.tensor([[0.3, 0.0], [0.5, 0.1]])  # two frames
        >>> img = render(pend.positions(states), pend, 32)
        >>> img.shape, img.dtype, bool(img.min() >= 0 and img.max() <= 1)
        (torch.Size([2, 3, 32, 32]), torch.float32, True)
    """
    alpha = alpha_masks(positions, system, size)  # [..., n, H, W]
    background = torch.tensor(BACKGROUND, dtype=torch.float32, device=alpha.device)
    colors = torch.tensor(system.colors, dtype=torch.float32, device=alpha.device)  # [n, 3]
    shift = (colors - background).view(-1, 3, 1, 1)  # colour minus background, per body
    if system.n_bodies == 1:
        return torch.addcmul(background.view(3, 1, 1), alpha, shift[0])
    # Overlapping discs share the pixel in proportion to their opacity (order-independent);
    # the weights sum to at most 1, so every pixel is a convex mix of background and colours.
    weights = alpha / alpha.sum(-3, keepdim=True).clamp_(min=1.0)
    image = (weights.unsqueeze(-3) * shift).sum(-4)  # [..., 3, H, W]
    return image.add_(background.view(3, 1, 1))


def frame_strip(frames: torch.Tensor, every: int = 1, gap: int = 1) -> np.ndarray:
    """Every ``every``-th frame of ``(S, C, H, W)`` in one ``(H, W', C)`` row, white gaps between.

    Example:
        >>> frame_strip(torch.zeros(5, 3, 8, 8), every=2, gap=1).shape  # frames 0, 2, 4
        (8, 26, 3)
    """
    sel = frames[::every].detach().float().clamp(0, 1).cpu()
    s, c, h, _ = sel.shape
    pad = torch.ones(s, c, h, gap)
    row = torch.cat([sel, pad], -1).permute(2, 0, 3, 1).reshape(h, -1, c)
    return row[:, : row.shape[1] - gap].numpy()
