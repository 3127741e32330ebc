"""Why a rollout leaves the truth past the training span: period, manifold, decoder.

A rollout that conserves the learned energy can still drift from the truth in two ways: its
oscillation runs at the wrong period (the phase slips a little every step), or its latent state
wanders where the decoder has never been (the picture fades or smears). These functions
measure both for an HGN (paper Sec. 3.2), and what the decoder makes of states on the true
orbit past the span:

- :func:`oscillation_period`: the period of a trajectory of any dimension, from the angle it
  sweeps in its own top-two principal-component plane (for a latent rollout, the learned
  period; for the simulator's ``(q, p)``, the true one: :func:`true_period`);
- :func:`encoder_orbit`: the states the encoder infers from the true sequence shifted by
  ``t = 0, 1, …`` frames, i.e. the true orbit in the model's own coordinates, the reference
  against which the rollout's latent path is drawn;
- :func:`nearest_distance`: how far each state lies from a reference set, such as the states
  the encoder gives the training sequences;
- :func:`reanchored_rollout`: a rollout that, every span, re-encodes its own last frames and
  goes on from the state the encoder infers, so that the state cannot leave the encoder's
  states by more than a span's drift (an inference-time remedy, measured against the plain
  rollout).

``scripts/hgn_rollout_diagnosis.py`` runs them on the pendulum example and draws the figure
of docs/hgn/rollouts.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "oscillation_period",
    "true_period",
    "encoder_orbit",
    "nearest_distance",
    "reanchored_rollout",
]


def oscillation_period(states: Tensor, dt: float) -> Tensor:
    """The period of each trajectory sampled every ``dt``.

    Each trajectory is centred and projected on its top two principal components; each
    component is scaled to unit variance, so that an elliptic orbit becomes a circle; the
    angle about the centre is unwrapped and the period is ``2π / |ω|`` with ``ω`` the
    least-squares slope of the angle against time. The trajectory should cover about a
    period or more (over 2.5 periods of a circle the estimate is within 0.3 %); one that does
    not turn (a fixed point, a line) gets ``inf``.

    Parameters
    ----------
    states : Tensor
        ``(B, S, ...)``: ``B`` trajectories of ``S >= 3`` states of any shape.
    dt : float
        Time between states.

    Returns
    -------
    Tensor
        ``(B,)`` periods, in the units of ``dt``.

    Examples
    --------
    >>> t = torch.arange(80) * 0.1
    >>> circle = torch.stack([torch.cos(math.pi * t), 2 * torch.sin(math.pi * t), 0 * t], -1)
    >>> round(float(oscillation_period(circle[None], 0.1)[0]), 4)   # ω = π: period 2
    2.0
    """
    if states.dim() < 3 or states.shape[1] < 3:
        raise ValueError(f"states: expected (B, S >= 3, ...), got shape {tuple(states.shape)}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a positive number, got {dt!r}")
    x = states.detach().flatten(2).double()
    x = x - x.mean(1, keepdim=True)
    _, sv, vh = torch.linalg.svd(x, full_matrices=False)
    plane = x @ vh[:, :2].transpose(1, 2)  # (B, S, 2)
    plane = plane / plane.std(1, keepdim=True).clamp_min(1e-12)
    angle = torch.atan2(plane[..., 1], plane[..., 0])
    step = torch.remainder(angle.diff(dim=1) + math.pi, 2 * math.pi) - math.pi
    swept = torch.cat([angle.new_zeros(angle.shape[0], 1), step.cumsum(1)], 1)
    t = torch.arange(x.shape[1], dtype=x.dtype, device=x.device) * dt
    tc = t - t.mean()
    omega = ((swept - swept.mean(1, keepdim=True)) * tc).sum(1) / tc.square().sum()
    period = 2 * math.pi / omega.abs()
    flat = sv[:, 1] <= 1e-6 * sv[:, 0]  # no second direction: the state does not turn
    return torch.where(flat, torch.full_like(period, math.inf), period).float()


def true_period(system, first: np.ndarray, dt: float, steps: int) -> Tensor:
    """The simulator's period from clean initial states (paper Sec. 4: the physical systems).

    The system is integrated for ``steps`` steps of ``dt`` (the data's solver,
    :func:`hamflow_hgn.data.simulate.integrate`) and measured with
    :func:`oscillation_period` in its own phase space.

    Parameters
    ----------
    system : PhysicalSystem
        The simulated system (``dataset.system``).
    first : ndarray
        ``(B, d)`` initial states (``dataset.clean_states[:, 0]``).
    dt : float
        Time between frames.
    steps : int
        Steps to integrate; cover a period or more.

    Returns
    -------
    Tensor
        ``(B,)`` periods.

    Examples
    --------
    >>> from hamflow_hgn.data.systems import get_system
    >>> spring = get_system("mass_spring")          # k = 2, m = 1/2: ω = sqrt(k / m) = 2
    >>> period = true_period(spring, np.array([[1.0, 0.0]]), 0.125, 80)
    >>> abs(float(period[0]) - math.pi) < 0.01             # 2π / ω, to within 0.3 %
    True
    """
    from .data import simulate

    times = dt * np.arange(steps + 1, dtype=np.float64)
    states = simulate.integrate(system, np.asarray(first, dtype=np.float64), times)
    return oscillation_period(torch.from_numpy(states), dt)


@torch.no_grad()
def encoder_orbit(model, frames: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """The states ``(q_t, p_t)`` the encoder infers from ``frames[:, t : t + T + 1]``: the true
    orbit as the model's encoder sees it (paper Sec. 3.2's inference network).

    Parameters
    ----------
    model : HGN
        A model with ``initial_state`` and ``config.frames = T + 1``.
    frames : Tensor
        ``(B, steps + T + 1, C, H, W)``, a true sequence at least ``steps`` frames longer than
        the model's ``T + 1`` (:meth:`SequenceDataset.replay
        <hamflow_hgn.data.SequenceDataset.replay>`); each window is encoded (posterior mean)
        as a training sequence would be.
    steps : int
        The last shift ``t``.

    Returns
    -------
    tuple of Tensor
        ``q, p``, each ``(B, steps + 1, ...)``.

    Examples
    --------
    >>> from hamflow_hgn.config import ModelConfig
    >>> from hamflow_hgn.models.hgn import HGN
    >>> hgn = HGN(ModelConfig.reduced(4, frames=3, image_size=8)).eval()
    >>> q, p = encoder_orbit(hgn, torch.rand(2, 7, 3, 8, 8), 4)
    >>> tuple(q.shape), tuple(p.shape)
    ((2, 5, 16, 4, 4), (2, 5, 16, 4, 4))
    """
    window = model.config.frames
    if frames.dim() != 5 or frames.shape[1] < steps + window:
        raise ValueError(
            f"frames: expected (B, >= steps + {window}, C, H, W) for steps={steps}, "
            f"got shape {tuple(frames.shape)}"
        )
    qs, ps = [], []
    for t in range(steps + 1):
        q, p, _, _ = model.initial_state(frames[:, t : t + window], sample=False)
        qs.append(q)
        ps.append(p)
    return torch.stack(qs, 1), torch.stack(ps, 1)


def nearest_distance(states: Tensor, reference: Tensor, chunk: int = 1024) -> Tensor:
    """Euclidean distance from each state to its nearest reference state.

    Parameters
    ----------
    states : Tensor
        ``(N, ...)`` states, flattened to vectors.
    reference : Tensor
        ``(M, ...)`` states of the same size.
    chunk : int
        States compared at once.

    Returns
    -------
    Tensor
        ``(N,)`` distances.

    Examples
    --------
    >>> ref = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> nearest_distance(torch.tensor([[0.0, 1.0], [3.0, 3.0]]), ref).tolist()
    [1.0, 1.0]
    """
    x, ref = states.flatten(1).double(), reference.flatten(1).double()
    if x.shape[1] != ref.shape[1]:
        raise ValueError(
            f"reference: expected states of {x.shape[1]} numbers each, got {ref.shape[1]}"
        )
    out = [torch.cdist(part, ref).amin(1) for part in x.split(chunk)]
    return torch.cat(out).float()


@torch.no_grad()
def reanchored_rollout(model, images: Tensor, steps: int) -> Tensor:
    """A rollout re-encoded from its own frames every span (an inference-time remedy).

    The first ``E`` frames (the encoder's window, ``len(model.config.input_frames)``) are the
    plain rollout's. Then, for each following chunk of ``E - 1`` frames, the encoder reads the
    last ``E`` frames drawn so far (as it reads a training sequence: the frames it does not
    see are zeros) and the model rolls out from the state it infers, past the frames it read.
    Only the ``"reconstruct"`` protocol, whose encoder sees the first frames, is supported.

    Parameters
    ----------
    model : HGN
        The model.
    images : Tensor
        ``(B, T+1, C, H, W)``: the sequences the first state is inferred from.
    steps : int
        Rollout steps.

    Returns
    -------
    Tensor
        ``(B, steps + 1, C, H, W)`` frames.

    Examples
    --------
    >>> from hamflow_hgn.config import ModelConfig
    >>> from hamflow_hgn.models.hgn import HGN
    >>> hgn = HGN(ModelConfig.reduced(4, frames=4, image_size=8)).eval()
    >>> x = torch.rand(2, 4, 3, 8, 8)
    >>> frames = reanchored_rollout(hgn, x, 10)
    >>> tuple(frames.shape), torch.allclose(frames[:, :4], hgn.rollout(x).frames)
    ((2, 11, 3, 8, 8), True)
    """
    cfg = model.config
    if cfg.protocol != "reconstruct":
        raise ValueError(f"model: expected the 'reconstruct' protocol, got {cfg.protocol!r}")
    window = len(cfg.input_frames)
    first = model.rollout(images, min(steps, window - 1)).frames
    drawn = [first[:, t] for t in range(first.shape[1])]
    while len(drawn) < steps + 1:
        start = len(drawn) - window
        seen = torch.stack(drawn[start:], 1)
        padded = torch.zeros_like(images)
        padded[:, :window] = seen
        q, p, _, _ = model.initial_state(padded, sample=False)
        chunk = min(window - 1, steps + 1 - len(drawn))
        more = model.rollout_from(q, p, window - 1 + chunk).frames
        drawn += [more[:, t] for t in range(window, window + chunk)]
    return torch.stack(drawn, 1)
