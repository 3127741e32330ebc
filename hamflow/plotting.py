"""Plots for 2-D density models: KDEs, densities, energy landscapes and flows (paper Fig. 9).

Every function draws into a given matplotlib ``Axes`` and returns it, so panels compose into any
figure; :func:`plot_nhf_panels` assembles the six panels of the paper's Figure 9 (Sec. 4, A.2).
The KDE panels use, as the paper does, 1000 samples and an isotropic Gaussian kernel of
bandwidth 0.3.

matplotlib is imported lazily with the ``Agg`` backend when no backend has been chosen, so these
functions work on headless machines.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> _ = plot_kde(ax, torch.randn(200, 2), resolution=20)
    >>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .integrators import leapfrog

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .nhf import NHF

__all__ = [
    "KDE_BANDWIDTH",
    "KDE_SAMPLES",
    "grid_points",
    "kde_on_grid",
    "plot_kde",
    "plot_log_density",
    "plot_energy",
    "plot_leapfrog_step",
    "plot_flow",
    "plot_nhf_panels",
]

KDE_BANDWIDTH = 0.3
"""Isotropic Gaussian kernel bandwidth of the paper's KDE plots (A.2)."""
KDE_SAMPLES = 1000
"""Number of samples behind each of the paper's KDE plots (A.2)."""

Bounds = tuple[float, float]


def grid_points(bounds: Bounds, resolution: int) -> tuple[np.ndarray, np.ndarray, Tensor]:
    """Axis coordinates and the ``(resolution², 2)`` float32 tensor of grid points (x fastest)."""
    if resolution < 2:
        raise ValueError(f"resolution: expected an integer >= 2, got {resolution!r}")
    t = np.linspace(bounds[0], bounds[1], resolution)
    xx, yy = np.meshgrid(t, t, indexing="xy")
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1)).float()
    return t, t, pts


def kde_on_grid(
    samples: Tensor | np.ndarray,
    bounds: Bounds = (-4.0, 4.0),
    resolution: int = 120,
    bandwidth: float = KDE_BANDWIDTH,
) -> np.ndarray:
    """Gaussian KDE (sklearn ``KernelDensity``) of 2-D samples, evaluated on a square grid.

    Returns a ``(resolution, resolution)`` array of densities, rows along the second axis.
    """
    from sklearn.neighbors import KernelDensity

    x = np.asarray(samples.detach().cpu() if isinstance(samples, Tensor) else samples, float)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"samples: expected shape (n, 2), got {x.shape}")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth: expected a positive number, got {bandwidth!r}")
    kde = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(x)
    _, _, pts = grid_points(bounds, resolution)
    return np.exp(kde.score_samples(pts.numpy())).reshape(resolution, resolution)


def _image(ax: Axes, values: np.ndarray, bounds: Bounds, title: str, cmap: str = "viridis"):
    import matplotlib

    colours = matplotlib.colormaps[cmap].with_extremes(bad="red")  # masked cells: not a value
    ax.imshow(values, origin="lower", extent=(*bounds, *bounds), cmap=colours, aspect="equal")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_kde(
    ax: Axes,
    samples: Tensor | np.ndarray,
    bounds: Bounds = (-4.0, 4.0),
    title: str = "KDE",
    resolution: int = 120,
    bandwidth: float = KDE_BANDWIDTH,
) -> Axes:
    """Image of the Gaussian KDE of ``samples`` (bandwidth 0.3 by default, as in paper A.2)."""
    return _image(ax, kde_on_grid(samples, bounds, resolution, bandwidth), bounds, title)


@torch.no_grad()
def plot_log_density(
    ax: Axes,
    log_prob: Callable[[Tensor], Tensor],
    bounds: Bounds = (-4.0, 4.0),
    title: str = "density",
    resolution: int = 100,
) -> Axes:
    """Image of ``exp(log_prob(x))`` on a grid; ``log_prob`` maps ``(N, 2)`` to ``(N,)``.

    A log-density of ``−inf`` is drawn as zero density. NaN or ``+inf`` is not a density: those
    cells are drawn in red, and the title says what share of the grid they cover, rather than
    being painted as some finite density.
    """
    _, _, pts = grid_points(bounds, resolution)
    lp = torch.cat([log_prob(c) for c in pts.split(4096)]).float()
    bad = torch.isnan(lp) | torch.isposinf(lp)
    dens = lp.masked_fill(bad, float("-inf")).exp().reshape(resolution, resolution).numpy()
    mask = bad.reshape(resolution, resolution).numpy()
    if mask.any():
        title = f"{title} ({mask.mean():.0%} NaN/inf, red)"
    return _image(ax, np.ma.masked_array(dens, mask=mask), bounds, title)


@torch.no_grad()
def plot_energy(
    ax: Axes,
    energy: Callable[[Tensor], Tensor],
    bounds: Bounds = (-4.0, 4.0),
    title: str = "energy",
    resolution: int = 100,
    mark_minima: bool = False,
) -> Axes:
    """Filled contours of a scalar energy ``(N, 2) -> (N,)``; optionally mark its local minima.

    With ``mark_minima`` the grid's strict local minima (3×3 neighbourhood, away from the border)
    are drawn as white crosses: the attractors of a learned potential ``V(q)`` (paper Fig. 9).
    """
    ref = next(iter(getattr(energy, "parameters", lambda: iter(()))()), None)
    t, _, pts = grid_points(bounds, resolution)
    if ref is not None:
        pts = pts.to(ref)
    e = torch.cat([energy(c) for c in pts.split(4096)]).float().cpu().numpy()
    e = e.reshape(resolution, resolution)
    ax.contourf(t, t, e, levels=30, cmap="magma")
    if mark_minima:
        from scipy.ndimage import minimum_filter

        is_min = (e == minimum_filter(e, size=3, mode="nearest")) & (e < np.median(e))
        is_min[[0, -1], :] = is_min[:, [0, -1]] = False
        iy, ix = np.nonzero(is_min)
        ax.plot(t[ix], t[iy], "wx", ms=7, mew=2)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


@torch.no_grad()
def plot_leapfrog_step(
    ax: Axes,
    hamiltonian,
    q: Tensor,
    p: Tensor,
    dt: float | Tensor,
    title: str = "leapfrog step",
    step: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> Axes:
    """Arrows from each ``q`` to its position after one leapfrog step of ``hamiltonian``.

    ``step``, if given, replaces the leapfrog step (e.g. a flow's own ``flow.step``).
    """
    q1, _ = step(q, p) if step is not None else leapfrog(hamiltonian, q, p, dt, steps=1)
    q0n, dq = q.cpu().numpy(), (q1 - q).cpu().numpy()
    ax.quiver(
        q0n[:, 0],
        q0n[:, 1],
        dq[:, 0],
        dq[:, 1],
        angles="xy",
        scale_units="xy",
        scale=1,
        width=0.004,
        color="tab:blue",
    )
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_flow(
    ax: Axes,
    states: Sequence[tuple[Tensor, Tensor]],
    bounds: Bounds | None = None,
    title: str = "integrated flow",
) -> Axes:
    """Trajectories of positions ``q`` through a stack of flows (grey), ends in colour.

    ``states`` is the list returned by ``NHF.transport(q, p, return_all=True)``.
    """
    path = torch.stack([q for q, _ in states]).detach().cpu().numpy()  # (T+1, N, 2)
    ax.plot(path[:, :, 0], path[:, :, 1], color="0.6", lw=0.5, alpha=0.6)
    ax.plot(path[0, :, 0], path[0, :, 1], ".", color="tab:blue", ms=2, label="start")
    ax.plot(path[-1, :, 0], path[-1, :, 1], ".", color="tab:red", ms=2, label="end")
    if bounds is not None:
        ax.set_xlim(bounds)
        ax.set_ylim(bounds)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


@torch.no_grad()
def plot_nhf_panels(
    model: NHF,
    target_samples: Tensor,
    bounds: Bounds = (-4.0, 4.0),
    num_samples: int = KDE_SAMPLES,
    flow_index: int = -1,
    resolution: int = 100,
    suptitle: str | None = None,
) -> Figure:
    """The six panels of paper Fig. 9 for a trained 2-D :class:`~hamflow.NHF`.

    1. KDE of the target samples; 2. KDE of the model's samples; 3. the learned kinetic energy
    ``K(p)`` and 4. potential energy ``V(q)`` (with its local minima, the attractors) of flow
    ``flow_index``; 5. one step of the first flow applied to prior samples; 6. the prior
    samples' trajectories through all flows. Panels 4 and 6 are drawn in data coordinates: with
    the model's affine map, ``V`` is shown as a function of ``x = b + e^s ⊙ q``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from hamflow import NHF
        >>> model = NHF(2, num_flows=2, hidden=(8,), encoder_hidden=(8,))
        >>> fig = plot_nhf_panels(model, torch.randn(50, 2), num_samples=50, resolution=12)
        >>> len(fig.axes)
        6
    """
    import matplotlib.pyplot as plt

    if model.dim != 2:
        raise ValueError(f"model: expected a 2-D NHF (dim=2), got dim={model.dim}")
    was_training = model.training
    model.eval()
    ref = next(model.parameters())
    fig, axes = plt.subplots(1, 6, figsize=(19, 3.6))
    target = target_samples[:num_samples]
    plot_kde(axes[0], target, bounds, "1. target (KDE)", resolution)
    plot_kde(axes[1], model.sample(num_samples).cpu(), bounds, "2. learned (KDE)", resolution)
    flow = model.flows[flow_index]
    k = len(model.flows) if flow_index == -1 else flow_index + 1
    plot_energy(axes[2], flow.hamiltonian.kinetic, bounds, f"3. kinetic K(p), flow {k}", resolution)
    potential = flow.hamiltonian.potential
    plot_energy(
        axes[3],
        lambda x: potential(model.from_data(x.to(ref))[0]),
        bounds,
        f"4. potential V(q), flow {k} (x: minima)",
        resolution,
        mark_minima=True,
    )
    s0, _ = model.prior(min(num_samples, 400))
    q0, p0 = s0.to(ref).chunk(2, dim=-1)
    first = model.flows[0]
    dt = first.dt.detach().to(ref) if isinstance(first.dt, Tensor) else first.dt
    plot_leapfrog_step(
        axes[4],
        first.hamiltonian,
        q0,
        p0,
        dt,
        f"5. one {first.integrator_name} step (flow 1)",
        step=lambda q, p: first.step(q, p),
    )
    states = [(model.to_data(q), p) for q, p in model.transport(q0, p0, return_all=True)]
    plot_flow(axes[5], states, bounds, "6. integrated flow")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    model.train(was_training)
    return fig
