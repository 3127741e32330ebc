"""Fitting an NHF to an unnormalised density: Hamiltonian variational inference.

A target known up to its normaliser, ``π̃(x) = Z π(x)``, is fitted by the reverse KL on the
extended space ``(x, p)`` (Salimans et al., 2015; Caterini et al., 2018). A draw is made as
for sampling, ``s₀ = (q₀, p₀) ~ π₀``, pushed through the Hamiltonian flows and frictions to
``(q_T, p_T)``, then ``x = b + L q_T``. Its density is exact,

    ln q(x, p_T) = ln π₀(s₀) − ln|det| (frictions' ``−Σc`` and the affine map's ``Σ ln L_ii``),

because every Hamiltonian flow preserves volume. The momentum is a latent variable with an
auxiliary ("reverse") density ``r(p_T | x)``: NHF's momentum encoder, or ``N(0, I)``. Then

    KL(q(x) ‖ π) ≤ E[ln q(x, p_T) − ln r(p_T | x) − ln π̃(x)] + ln Z,

and the expectation is :func:`reverse_kld`, the training loss. The log-weights
``ln w = ln π̃(x) + ln r(p_T | x) − ln q(x, p_T)`` are exact, so ``E[w] = Z``:
``logsumexp(ln w) − ln n`` estimates ``ln Z`` (unbiased in ``Z``), and the weights give the
effective sample size and self-normalised expectations (:func:`importance_sample`,
:func:`log_normalizer`, :func:`ess`).

By default every flow is followed by a :class:`PositionDamping`, ``p ← e^{−c(q)} ⊙ p`` with
the exact log-det ``−Σ c(q)``: a volume-preserving flow can narrow a coordinate only by widening
its momentum, and a target whose width changes across the space (Neal's funnel) needs more.

Options (docs/sampling.md says when to pick which):

- :func:`reverse_alpha_div` (``α = 2``, as in FAB, Midgley et al., 2023) covers mass instead of
  seeking a mode;
- ``beta < 1`` in :func:`reverse_kld` anneals: the tempered target, or (``path="geometric"``)
  the geometric mean of the target and the sampler's start;
- :func:`bootstrap_kld`: the forward bound on self-normalised importance resamples;
- :func:`use_target_kicks`: every kick adds ``β_k ∇ ln π̃`` to the learned force
  ``−∇V_k``; the added force depends on the position alone, so each step stays a shear and
  its log-det stays exactly zero;
- :func:`fit_sampler`: a training loop with a CPU-time budget for NHF and normflows models alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import normflows as nf
import torch
from torch import Tensor, nn

from .hamiltonians import SeparableHamiltonian, autograd_grad
from .momentum_flow import MomentumFlow
from .targets import CheckedTarget, NonFiniteTargetError, as_target

__all__ = [
    "attach_target",
    "configure",
    "use_target_kicks",
    "use_position_damping",
    "use_momentum_flow",
    "PositionDamping",
    "DampedFlow",
    "GuidedHamiltonian",
    "push_forward",
    "extended_sample",
    "reverse_kld",
    "reverse_alpha_div",
    "bootstrap_kld",
    "importance_sample",
    "log_normalizer",
    "ess",
    "ess_from_log_weights",
    "calibrate_momentum",
    "fit_sampler",
]

DEFAULT_KICKS = False
"""Whether ``NHF(dim, target=t)`` adds target-gradient kicks. They are an option: on the
16-mode grid they pull every draw into its nearest well early and cost modes
(``benchmarks/sampling.py``, docs/benchmarks/sampling.md)."""
DEFAULT_DAMPING = True
"""Whether ``NHF(dim, target=t)`` puts a :class:`PositionDamping` after every flow. On by
default: without it the sampler's funnel stays too narrow in its width coordinate and misses
``ln Z`` by about a nat (docs/benchmarks/sampling.md)."""
DEFAULT_LR = 3e-3
""":func:`fit_sampler`'s learning rate."""
DEFAULT_LR_END = 0.005
""":func:`fit_sampler`'s learning rate at the end of the budget, as a fraction of ``lr`` (a
cosine decay): the last steps refine the fit with little noise, which raises the ESS of a
one-mode target (docs/benchmarks/sampling.md)."""
DEFAULT_BATCH = 512
""":func:`fit_sampler`'s draws per step: fewer steps than with 256 in the same CPU time, each
with a less noisy gradient, which raises the ESS of one-mode targets
(docs/benchmarks/sampling.md)."""
MOMENTUM_SCALES = (1.1, 1.05, 1.0, 0.95, 0.9, 0.85, 0.8, 0.7)
"""The widths of ``r(p | x)``, relative to the encoder's, that :func:`calibrate_momentum`
tries."""
DEFAULT_ANNEAL = 0.35
""":func:`fit_sampler`'s annealing: the fraction of the budget over which ``β`` rises to 1.
Separated modes need the time at low ``β``; a one-mode target with a neck (Neal's funnel) does
better with less, and ``fit_sampler(anneal=...)`` sets it per fit."""
DEFAULT_KICK_BETA = 0.5
"""The initial ``β_k`` of every target-gradient kick."""
DEFAULT_MOMENTUM_LAYERS = 0
"""How many couplings :func:`configure` puts on the momentum density ``r(p | x)``
(:class:`~hamflow.momentum_flow.MomentumFlow`; 0: the encoder's Gaussian alone)."""
DEFAULT_MOMENTA = 16
"""How many momenta :func:`importance_sample` averages per draw (``n_momenta``): the draw's
own and ``n_momenta − 1`` fresh ones from ``r(p | x)``; its weights approach the marginal
``π̃(x) / q(x)`` as it grows and stay unbiased for ``Z`` at every value."""


def _require_target(model) -> CheckedTarget:
    target = getattr(model, "target", None)
    if target is None:
        raise ValueError(
            "target: this model has no target; build it as NHF(dim, target=log_prob) to fit a "
            "sampler (a density model fitted to data uses forward_kld)"
        )
    return target


# -- building a sampler -------------------------------------------------------------------------


def attach_target(model, target, **options) -> CheckedTarget:
    """Give an NHF a target: wrap it, set the affine map and the kicks (``NHF(target=...)``).

    There is no data to initialise the affine map from, so it is set so that the untrained
    model's samples have mean ``loc`` (default 0) and covariance ``scale² I`` (default 1), and
    marked initialised so that it stays as set. ``options`` go to :func:`configure`.
    """
    checked = as_target(target)
    if checked.dim is None:
        checked.dim = model.dim
    if checked.dim != model.dim:
        raise ValueError(
            f"target: expected a target over {model.dim} dimensions (the model's dim), got "
            f"{checked.name!r} over {checked.dim}"
        )
    object.__setattr__(model, "target", checked)
    configure(model, **options)
    return checked


def configure(
    model,
    *,
    scale: float = 1.0,
    loc: Tensor | float = 0.0,
    kicks: bool | None = None,
    kick_beta: float = DEFAULT_KICK_BETA,
    learn_beta: bool = True,
    damping: bool | None = None,
    damping_hidden: int = 32,
    momentum_layers: int | None = None,
    momentum_hidden: int = 32,
) -> None:
    """Set a sampler's start, kicks and dampings: the affine map (``scale``, ``loc``, also the
    start ``N(loc, scale² I)`` of the geometric annealing path), the target-gradient kicks
    (:func:`use_target_kicks`; ``kicks=None`` takes :data:`DEFAULT_KICKS`) and the position
    dampings (:func:`use_position_damping`, ``damping_hidden`` wide; ``damping=None`` takes
    :data:`DEFAULT_DAMPING`). Its random draws leave torch's global random state as it was.

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Funnel
    >>> model = NHF(2, target=Funnel(2), hidden=(16,), encoder_hidden=(16,))
    >>> configure(model, scale=3.0, kicks=False)
    >>> with torch.no_grad():
    ...     s = model.sample(4000).std(0)
    >>> bool(((s - 3).abs() < 0.3).all())
    True
    """
    _require_target(model)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
    use_target_kicks(model, DEFAULT_KICKS if kicks is None else kicks, kick_beta, learn_beta)
    use_position_damping(model, DEFAULT_DAMPING if damping is None else damping, damping_hidden)
    use_momentum_flow(
        model,
        DEFAULT_MOMENTUM_LAYERS if momentum_layers is None else momentum_layers,
        momentum_hidden,
    )
    if "momentum_scale" not in model._buffers:  # calibrate_momentum's width of r(p | x)
        model.register_buffer("momentum_scale", torch.tensor(1.0, dtype=torch.float64))
    model.momentum_scale.fill_(1.0)
    # the start of the annealing path (reverse_kld with beta < 1): N(loc, scale² I)
    object.__setattr__(model, "anneal_start", (torch.as_tensor(loc, dtype=torch.float64), scale))
    if model.affine is None:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = model._param_ref()
        n = max(4096, 64 * model.dim)
        z = torch.randn(n, model.dim, dtype=torch.float64)
        z = (z - z.mean(0)) @ torch.linalg.inv(
            torch.linalg.cholesky(torch.cov(z.T).reshape(model.dim, model.dim))
        ).T
        x = (torch.as_tensor(loc, dtype=torch.float64) + scale * z).to(ref)
        model.affine.initialized.fill_(False)
        model.initialize_affine(x)


class GuidedHamiltonian(SeparableHamiltonian):
    """``K(p) + V(q) − β ln π̃(x(q))``: a learned potential plus a multiple of the target's.

    ``x(q)`` is the model's affine map. A kick moves ``p`` by ``−dt (∇V − β ∇_q ln π̃)``: the
    force depends on ``q`` alone, so the step is a shear with log-det exactly zero for any
    ``β`` (the HVI/HVAE leapfrog with a learned correction, Salimans et al., 2015; Caterini
    et al., 2018). ``β`` is one learned (or fixed) scalar per flow. The kinetic and potential
    modules keep their names, so only ``beta`` is added to the parameters.
    """

    def __init__(self, base: SeparableHamiltonian, log_target: Callable, beta: float, learn: bool):
        super().__init__(base.kinetic, base.potential)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "log_target", log_target)
        value = torch.tensor(float(beta), dtype=next(base.parameters()).dtype)
        if learn:
            self.beta = nn.Parameter(value)
        else:
            self.register_buffer("beta", value)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return super().energy(q, p) - self.beta.to(q.dtype) * self.log_target(q)

    def dV_dq(self, q: Tensor) -> Tensor:
        grad_log = autograd_grad(self.log_target, q)
        return self.potential.grad(q) - self.beta.to(q.dtype) * grad_log


def use_target_kicks(
    model, on: bool = True, beta: float = DEFAULT_KICK_BETA, learn: bool = True
) -> None:
    """Add (``on``) or remove target-gradient kicks in every flow of an NHF with a target.

    Each flow's Hamiltonian becomes a :class:`GuidedHamiltonian` with its own ``β`` (one
    shared Hamiltonian stays shared). A kick then costs one gradient of the target, and
    training differentiates through it (a second derivative of ``ln π̃``).

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> use_target_kicks(model, True, beta=0.25)
    >>> [round(f.hamiltonian.beta.item(), 2) for f in model.flows]
    [0.25, 0.25, 0.25, 0.25]
    """
    target = _require_target(model)

    def log_target_q(q: Tensor) -> Tensor:
        return target(model.to_data(q))

    done: dict[int, SeparableHamiltonian] = {}
    for flow in model.flows:
        flow = flow.flow if isinstance(flow, DampedFlow) else flow
        h = flow.hamiltonian
        base = h.base if isinstance(h, GuidedHamiltonian) else h
        if id(base) not in done:
            done[id(base)] = GuidedHamiltonian(base, log_target_q, beta, learn) if on else base
            done[id(base)].to(next(base.parameters()).device)
        flow.hamiltonian = done[id(base)]


class PositionDamping(nn.Module):
    """A momentum damping that depends on the position: ``p ← e^{−c(q)} ⊙ p``.

    ``c`` is a small MLP over ``q`` (``dim → hidden → dim``) whose last layer starts at zero, so
    the layer starts as the identity. ``q`` is unchanged, so the Jacobian of ``(q, p) ↦ (q, p')``
    is block-triangular and its log-det is exactly ``−Σ_i c_i(q)`` (a conformal, dissipative
    step whose friction varies in space, as in Langevin-type samplers; the HVAE's tempering,
    Caterini et al., 2018, is the case of a constant ``c``). A Hamiltonian flow preserves
    volume, so on its own it can narrow one coordinate only by widening the momentum; this
    step lets the sampler narrow where the target narrows (the neck of Neal's funnel) and
    carry the change of volume in its log-det.

    Parameters
    ----------
    dim
        the dimension of ``q`` and ``p``.
    hidden
        the width of the MLP's one hidden layer (``tanh``).

    Examples
    --------
    >>> layer = PositionDamping(3)
    >>> q, p = torch.randn(4, 3), torch.randn(4, 3)
    >>> p2, log_det = layer(q, p)
    >>> bool(torch.equal(p2, p)), log_det.tolist()      # the identity at the start
    (True, [0.0, 0.0, 0.0, 0.0])
    """

    def __init__(self, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, q: Tensor, p: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
        """``(p', ln|det ∂p'/∂p|)``: ``p e^{−c(q)}``, ``−Σc`` (inverse: ``p e^{c(q)}``, ``+Σc``)."""
        c = self.net(q.to(self.net[0].weight.dtype)).to(p.dtype)
        if inverse:
            return p * torch.exp(c), c.sum(-1)
        return p * torch.exp(-c), -c.sum(-1)


class DampedFlow(nf.flows.Flow):
    """A Hamiltonian flow followed by a :class:`PositionDamping` (inverse: undamp, then flow back).

    It stands in for the flow in an NHF's ``flows`` and keeps its ``step`` signature, so
    ``transport`` and ``sample`` use it unchanged; :func:`push_forward` adds its log-det. The
    wrapped flow's ``hamiltonian`` can be read through it (set it on ``.flow``). As a normflows
    ``Flow`` on ``z = cat(q, p)``, ``forward`` and ``inverse`` return the damping's log-det, so
    ``NHF.phase_space_flow`` of a damped sampler is exact.

    Parameters
    ----------
    flow
        a :class:`~hamflow.HamiltonianFlow` (anything with ``step(q, p, inverse=, cache=)``).
    dim
        the dimension of ``q``.
    hidden
        the width of the damping's MLP.

    Examples
    --------
    >>> from hamflow import NHF
    >>> base = NHF(2, hidden=(8,), encoder_hidden=(8,)).flows[0]
    >>> flow = DampedFlow(base, 2)
    >>> q, p = torch.randn(3, 2), torch.randn(3, 2)
    >>> q1, p1, log_det = flow.step_log_det(q, p)
    >>> q0, p0, _ = flow.step_log_det(q1, p1, inverse=True)
    >>> bool(torch.allclose(q0, q, atol=1e-5) and torch.allclose(p0, p, atol=1e-5))
    True
    """

    def __init__(self, flow: nn.Module, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.flow = flow
        self.damping = PositionDamping(dim, hidden).to(next(flow.parameters()).dtype)

    @property
    def hamiltonian(self):
        return self.flow.hamiltonian

    def step_log_det(self, q: Tensor, p: Tensor, *, inverse: bool = False, cache=None):
        """``(q, p, ln|det|)`` of the map (of the inverse map with ``inverse``)."""
        if inverse:
            p, log_det = self.damping(q, p, inverse=True)
            q, p = self.flow.step(q, p, inverse=True, cache=cache)
            return q, p, log_det
        q, p = self.flow.step(q, p, cache=cache)
        p, log_det = self.damping(q, p)
        return q, p, log_det

    def step(self, q: Tensor, p: Tensor, *, inverse: bool = False, cache=None):
        return self.step_log_det(q, p, inverse=inverse, cache=cache)[:2]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        q, p = z.chunk(2, dim=-1)
        q, p, log_det = self.step_log_det(q, p)
        return torch.cat([q, p], dim=-1), log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        q, p = z.chunk(2, dim=-1)
        q, p, log_det = self.step_log_det(q, p, inverse=True)
        return torch.cat([q, p], dim=-1), log_det


def use_position_damping(model, on: bool = True, hidden: int = 32) -> None:
    """Put a :class:`PositionDamping` after (``on``) or take it from every flow of a sampler.

    Each flow of ``model.flows`` is wrapped in (or unwrapped from) a :class:`DampedFlow`, with a
    new damping that starts as the identity; :func:`configure` calls it (``damping=``).

    Parameters
    ----------
    model
        an NHF with a target.
    on
        add (``True``) or remove (``False``) the dampings.
    hidden
        the width of each damping's MLP.

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> use_position_damping(model, True)
    >>> type(model.flows[0]).__name__
    'DampedFlow'
    """
    _require_target(model)
    for i, flow in enumerate(model.flows):
        inner = flow.flow if isinstance(flow, DampedFlow) else flow
        model.flows[i] = DampedFlow(inner, model.dim, hidden) if on else inner


def use_momentum_flow(model, layers: int = 4, hidden: int = 32) -> None:
    """Give a sampler's momentum density ``r(p | x)`` ``layers`` couplings (0: remove them).

    ``r`` becomes the encoder's Gaussian pushed through a
    :class:`~hamflow.momentum_flow.MomentumFlow` (new, at the identity), trained with the
    sampler by the reverse KL; :func:`configure` calls it (``momentum_layers``). The weights
    stay exact and ``E[w] = Z``: ``r`` is any normalised density of ``p`` given ``x``.

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> use_momentum_flow(model, 2, hidden=8)
    >>> len(model.momentum_flow.couplings)
    2
    """
    _require_target(model)
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
        raise ValueError(f"layers: expected an integer >= 0, got {layers!r}")
    if "momentum_flow" in model._modules:
        del model._modules["momentum_flow"]
    if layers > 0:
        ref = model._param_ref()
        flow = MomentumFlow(model.dim, layers, hidden).to(device=ref.device, dtype=ref.dtype)
        model.add_module("momentum_flow", flow)


# -- the extended-space bound ------------------------------------------------------------------


def push_forward(model, s0: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Prior states ``s₀ = cat(q₀, p₀)`` ``(n, 2·dim)`` to ``x``, ``p_T``, ``q_T`` and
    ``ln|det ∂(x, p_T)/∂s₀|`` ``(n,)``: the frictions' ``−Σc`` plus the affine map's log-det
    (every Hamiltonian flow, target-gradient kicks included, contributes exactly zero).

    Examples
    --------
    >>> from hamflow import NHF
    >>> model = NHF(2, hidden=(8,), encoder_hidden=(8,))
    >>> x, p, q, log_det = push_forward(model, torch.randn(5, 4))
    >>> x.shape, log_det.shape
    (torch.Size([5, 2]), torch.Size([5]))
    """
    q, p = s0.chunk(2, dim=-1)
    (q, p), step_log_det = model._move(q, p)  # with the dampings' per-draw log-dets
    log_det = s0.new_zeros(s0.shape[0]) + model.flow_log_det() + step_log_det
    if model.affine is None:
        return q, p, q, log_det
    x, affine_log_det = model.affine(q)
    return x, p, q, log_det + affine_log_det


def extended_sample(model, num_samples: int, momentum: str = "encoder") -> dict[str, Tensor]:
    """Draw ``num_samples`` points of the model and every term of the extended-space bound.

    Returns a dict of ``(n,)`` tensors ``log_q`` (``ln q(x, p_T)``), ``log_r``
    (``ln r(p_T | x)``), ``log_target`` (``ln π̃(x)``) and ``log_w`` (their combination), and
    ``x``, ``p`` and ``q`` (``q_T``, before the affine map) ``(n, dim)``. ``momentum``:
    ``"encoder"`` (the model's encoder as ``r``) or ``"normal"`` (``N(0, I)``, as in the HVAE).

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> d = extended_sample(model, 8)
    >>> bool(torch.allclose(d["log_w"], d["log_target"] + d["log_r"] - d["log_q"]))
    True
    """
    target = _require_target(model)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples: expected an integer >= 1, got {num_samples!r}")
    if momentum not in ("encoder", "normal"):
        raise ValueError(f"momentum: expected 'encoder' or 'normal', got {momentum!r}")
    s0, log_pi = model.prior(num_samples)
    x, p, q, log_det = push_forward(model, s0.to(model._param_ref()))
    log_q = log_pi.to(x) - log_det
    if momentum == "encoder":
        log_r = _log_r(model, p, q)
    else:
        log_r = -0.5 * (p * p).sum(-1) - 0.5 * model.dim * math.log(2 * math.pi)
    log_target = target(x)
    log_w = log_target + log_r - log_q
    return {
        "x": x,
        "p": p,
        "q": q,
        "log_q": log_q,
        "log_r": log_r,
        "log_target": log_target,
        "log_w": log_w,
    }


def _log_joint(flow: nf.NormalizingFlow, q: Tensor, p: Tensor) -> Tensor:
    """``ln q(q_T, p)`` by the exact inverse of ``flow`` (``NHF.phase_space_flow``), as its
    ``log_prob`` computes it; a row whose inverse leaves the finite numbers gets NaN (the prior
    refuses such states) instead of an error for the whole batch."""
    z = torch.cat([q, p], dim=-1)
    log_q = z.new_zeros(len(z))
    for layer in reversed(flow.flows):
        z, log_det = layer.inverse(z)
        log_q = log_q + log_det
    ok = torch.isfinite(z).all(-1)
    if bool(ok.all()):
        return log_q + flow.q0.log_prob(z)
    out = torch.full_like(log_q, math.nan)
    if bool(ok.any()):
        out[ok] = log_q[ok] + flow.q0.log_prob(z[ok])
    return out


def _check_n_momenta(n_momenta) -> int:
    if n_momenta is None:
        return DEFAULT_MOMENTA
    if not isinstance(n_momenta, int) or isinstance(n_momenta, bool) or n_momenta < 1:
        raise ValueError(f"n_momenta: expected an integer >= 1, got {n_momenta!r}")
    return n_momenta


def _momenta_log_w(
    model,
    d: dict[str, Tensor],
    n_momenta: int,
    momentum: str = "encoder",
    scale: Tensor | float | None = None,
    eps: Tensor | None = None,
    flow: nf.NormalizingFlow | None = None,
) -> Tensor:
    """``ln π̃(x) − ln q̂_K(x)`` for the draws of :func:`extended_sample` ``d``, ``(n,)``.

    ``ln q̂_K(x) = logsumexp_k [ln q(x, p_k) − ln r(p_k | x)] − ln K`` over the draw's own
    momentum ``p_1`` (its ``ln q`` from the forward pass) and ``K − 1`` fresh ``p_k ~ r(· | x)``,
    whose ``ln q(x, p_k)`` comes from the model's exact inverse (:meth:`NHF.phase_space_flow`'s
    ``log_prob``, plus the affine map's log-det). ``scale`` is the width of ``r`` (default: the
    model's ``momentum_scale``); ``eps`` ``(K − 1, n, dim)``, standard-normal noise for the
    fresh momenta (default: fresh draws). A fresh momentum whose inverse leaves the finite
    numbers makes its row NaN, never a silent weight.
    """
    x, p1, q = d["x"], d["p"], d["q"]
    own = d["log_q"] - (d["log_r"] if scale is None else _log_r(model, p1, q, scale))
    if n_momenta == 1:
        return d["log_target"] - own
    if flow is None:
        flow = model.phase_space_flow()
    _, affine_log_det = model.from_data(x)
    if momentum == "encoder":
        mu, log_s = _r_params(model, q, scale)
    else:
        mu, log_s = torch.zeros_like(p1), torch.zeros_like(p1)
    r_flow = getattr(model, "momentum_flow", None) if momentum == "encoder" else None
    terms = [own]
    for k in range(n_momenta - 1):
        z = torch.randn_like(p1) if eps is None else eps[k].to(p1)
        p = mu + torch.exp(log_s) * z
        log_r = _normal_log_prob(z, log_s)
        if r_flow is not None:
            p, log_det = r_flow.inverse(p, q)
            log_r = log_r - log_det
        terms.append(_log_joint(flow, q, p) + affine_log_det - log_r)
    log_q_hat = torch.logsumexp(torch.stack(terms), 0) - math.log(n_momenta)
    return d["log_target"] - log_q_hat


def _log_r(model, p: Tensor, q: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """``ln r(p | x)``: the encoder's Gaussian with its width times ``scale`` (default: the
    model's calibrated ``momentum_scale``, 1 before :func:`calibrate_momentum`)."""
    if scale is None:
        scale = getattr(model, "momentum_scale", None)
    flow = getattr(model, "momentum_flow", None)
    if flow is None and (scale is None or float(scale) == 1.0):
        return model.encoder.log_prob(p, q)
    log_det = 0.0
    if flow is not None:
        p, log_det = flow(p, q)
    mu, log_s = _r_params(model, q, scale)
    return _normal_log_prob((p - mu) * torch.exp(-log_s), log_s) + log_det


def _r_params(model, q: Tensor, scale: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
    """Mean and log standard deviation of ``r(p | x)``: the encoder's, its width times
    ``scale`` (default: the model's ``momentum_scale``)."""
    mu, log_s = model.encoder.params(q)
    s = getattr(model, "momentum_scale", None) if scale is None else scale
    if s is not None and float(s) != 1.0:
        log_s = log_s + math.log(float(s))
    return mu, log_s


def _normal_log_prob(z: Tensor, log_s: Tensor) -> Tensor:
    """``ln N(mu + e^log_s z; mu, e^{2 log_s})`` summed over the last axis, from the
    standardised ``z``."""
    return (-0.5 * z * z - log_s - 0.5 * math.log(2 * math.pi)).sum(-1)


def calibrate_momentum(
    model,
    num_samples: int = 4096,
    scales: tuple[float, ...] = MOMENTUM_SCALES,
    n_momenta: int | None = None,
) -> float:
    """Set the width of the momentum density ``r(p | x)`` that gives the highest ESS.

    Any ``r`` keeps the weights exact and ``E[w] = Z``; training fits the encoder as the
    reverse KL asks, ``E_q[ln r]`` high, which makes ``r`` cover ``q(p | x)``. Where
    ``q(p | x)`` is not Gaussian (a curved target makes the momenta carry the bend), ``r``
    is then wider than ``q`` in places, and the rare draws there carry large weights. This
    draws ``num_samples`` fresh points once, scores the ESS of each width in ``scales`` (times
    the encoder's) on them, with the weights of :func:`importance_sample` at ``n_momenta``
    (default :data:`DEFAULT_MOMENTA`; the fresh momenta share their noise across widths),
    and keeps the best in the model's
    ``momentum_scale`` buffer, which :func:`importance_sample`, :func:`reverse_kld` and the
    other estimates then use. :func:`fit_sampler` calls it at the end (``calibrate=True``).
    The chosen width depends on these draws, not on those of a later estimate, so that
    estimate stays unbiased for ``Z``.

    Returns
    -------
    float
        the chosen width.

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> scale = calibrate_momentum(model, 512)
    >>> scale in MOMENTUM_SCALES, float(model.momentum_scale) == scale
    (True, True)
    """
    _require_target(model)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise ValueError(f"num_samples: expected an integer >= 2, got {num_samples!r}")
    if not scales or not all(
        isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in scales
    ):
        raise ValueError(f"scales: expected positive finite numbers, got {scales!r}")
    n_momenta = _check_n_momenta(n_momenta)
    with torch.no_grad():
        d = extended_sample(model, num_samples)
        flow = model.phase_space_flow() if n_momenta > 1 else None
        eps = torch.randn(n_momenta - 1, *d["p"].shape, dtype=d["p"].dtype, device=d["p"].device)
        best, best_ess = 1.0, -1.0
        for scale in scales:
            log_w = _momenta_log_w(model, d, n_momenta, scale=scale, eps=eps, flow=flow)
            finite = torch.isfinite(log_w)
            if not bool(finite.any()):
                continue
            value = float(ess_from_log_weights(log_w[finite])) * float(finite.double().mean())
            if value > best_ess:
                best, best_ess = float(scale), value
    model.momentum_scale.fill_(best)
    return best


def reverse_kld(
    model,
    num_samples: int = 256,
    beta: float = 1.0,
    momentum: str = "encoder",
    path: str = "tempered",
) -> Tensor:
    """The training loss: ``E[ln q(x, p_T) − ln r(p_T | x) − ln π̃_β(x)]`` over ``num_samples``
    reparametrised draws; ``π̃_1 = π̃``, and ``β < 1`` anneals.

    ``path`` says what ``β < 1`` fits: ``"tempered"`` (default, as normflows'
    ``reverse_kld(beta=...)``) the tempered target ``π̃^β``; ``"geometric"`` the geometric
    mean ``π̃_β = π̃^β π₀^{1−β}`` of the target and the sampler's start
    ``π₀ = N(loc, scale² I)`` (:func:`configure`), the path of annealed importance sampling
    (Neal, 2001). Tempering flattens a mixture's barriers
    but not every target: on Neal's funnel ``π̃^β`` puts the width ``v`` at
    ``≈ (1−β)(d−1)σ²/(2β)``, far outside the target, while the geometric path stays between
    the start and the target.

    It is ``KL(q(x, p) ‖ π(x) r(p | x)) − ln Z`` at ``β = 1``, an upper bound on
    ``KL(q(x) ‖ π) − ln Z``: minimising it fits the sampler and the momentum encoder together.
    Same convention as normflows' ``NormalizingFlow.reverse_kld``.

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> loss = model.reverse_kld(64)
    >>> loss.backward(); loss.shape
    torch.Size([])
    """
    if path not in ("geometric", "tempered"):
        raise ValueError(f"path: expected 'geometric' or 'tempered', got {path!r}")
    d = extended_sample(model, num_samples, momentum)
    log_target = d["log_target"]
    if beta != 1:
        log_target = beta * log_target
        if path == "geometric":
            log_target = log_target + (1 - beta) * _log_start(model, d["x"])
    return (d["log_q"] - d["log_r"] - log_target).mean()


def _log_start(model, x: Tensor) -> Tensor:
    """``ln N(x; loc, scale² I)`` of the sampler's start (:func:`configure`), ``(n,)``."""
    loc, scale = getattr(model, "anneal_start", (torch.zeros(()), 1.0))
    z = (x - loc.to(x)) / scale
    return -0.5 * (z * z).sum(-1) - x.shape[-1] * (math.log(scale) + 0.5 * math.log(2 * math.pi))


def reverse_alpha_div(
    model, num_samples: int = 256, alpha: float = 2.0, momentum: str = "encoder"
) -> Tensor:
    """``sign(α − 1) · (ln mean(w^α)) / α`` on the extended space: mass-covering for ``α > 1``.

    ``α = 2`` minimises the second moment of the importance weights (the χ² divergence, as in
    FAB, Midgley et al., 2023), which penalises a missed mode where the reverse KL does not.
    Its gradient is noisier than the reverse KL's; :func:`fit_sampler` can start from the KL
    (``warmup``). ``α = 1`` is refused (it is the KL: use :func:`reverse_kld`).

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> loss = model.reverse_alpha_div(64, alpha=2.0)
    >>> loss.backward(); loss.shape
    torch.Size([])
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha != 1):
        raise ValueError(f"alpha: expected a finite number other than 1, got {alpha!r}")
    log_w = extended_sample(model, num_samples, momentum)["log_w"]
    sign = 1.0 if alpha > 1 else -1.0
    return sign * (torch.logsumexp(alpha * log_w, 0) - math.log(num_samples)) / alpha


def bootstrap_kld(model, num_samples: int = 256, pool: int | None = None) -> Tensor:
    """The forward (data) bound on points resampled from the model by their importance weights.

    Draws ``pool`` (default ``4 · num_samples``) weighted points without a graph, resamples
    ``num_samples`` of them in proportion to ``w``, and returns ``model.forward_kld`` on those:
    where the sampler put too little mass, the weights are large and the resampled points pull
    mass back (a bootstrap, as in FAB's replay of importance-weighted samples).
    """
    n = int(pool or 4 * num_samples)
    x, log_w = importance_sample(model, n)
    idx = torch.multinomial(torch.softmax(log_w.double(), 0), num_samples, replacement=True)
    return model.forward_kld(x[idx].detach())


# -- importance sampling ------------------------------------------------------------------------


def importance_sample(
    model,
    num_samples: int = 4000,
    chunk_size: int = 4096,
    momentum: str = "encoder",
    n_momenta: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``num_samples`` draws ``x`` ``(n, dim)`` and their exact log-weights ``ln w`` ``(n,)``.

    Each draw ``(x, p₁) ~ q(x, p)`` gets ``K = n_momenta`` (default :data:`DEFAULT_MOMENTA`)
    momenta: its own ``p₁`` and ``K − 1`` fresh ``p_k ~ r(· | x)``, each scored by the flow's
    exact inverse, and ``w = π̃(x) / q̂_K(x)`` with
    ``q̂_K(x) = (1/K) Σ_k q(x, p_k) / r(p_k | x)``, an estimate of the marginal ``q(x)``.
    ``K = 1`` is the extended-space weight ``π̃(x) r(p₁ | x) / q(x, p₁)``; as ``K`` grows the
    weight approaches the marginal ``π̃(x) / q(x)``, without the variance that the mismatch of
    ``r(p | x)`` and ``q(p | x)`` adds. ``E[w] = Z`` at every ``K``: with
    ``a_k = q(x, p_k) / r(p_k | x)``, the draw ``(x, p₁, …, p_K)`` has the density
    ``a₁ Π_k r(p_k | x)``, so ``E[w] = ∫ π̃(x) Π_k r(p_k | x) · K a₁ / Σ_k a_k``, and the
    ``p_k`` are exchangeable under ``Π_k r``, so the mean of ``a₁ / Σ_k a_k`` over them is
    ``1 / K`` (the importance-weighted auxiliary-variable bound of Domke & Sheldon, 2018, and
    Sobolev & Vetrov, 2019). ``x`` weighted by ``w`` gives self-normalised expectations under
    ``π``. The cost is ``K − 1`` inverse passes per draw, ``chunk_size`` rows at a time. No
    autograd graph is kept (target-gradient kicks still take their gradients).

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> x, log_w = model.importance_sample(100)
    >>> x.shape, log_w.shape, log_w.requires_grad
    (torch.Size([100, 2]), torch.Size([100]), False)
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples: expected an integer >= 1, got {num_samples!r}")
    n_momenta = _check_n_momenta(n_momenta)
    xs, ws = [], []
    with torch.no_grad():
        flow = model.phase_space_flow() if n_momenta > 1 else None
        left = num_samples
        while left > 0:
            d = extended_sample(model, min(chunk_size, left), momentum)
            xs.append(d["x"])
            ws.append(
                d["log_w"]
                if n_momenta == 1
                else _momenta_log_w(model, d, n_momenta, momentum, flow=flow)
            )
            left -= len(d["x"])
    return torch.cat(xs), torch.cat(ws)


def ess_from_log_weights(log_w: Tensor) -> Tensor:
    """Effective sample size fraction ``(Σw)² / (n Σw²)`` in ``(0, 1]`` from log-weights.

    Examples
    --------
    >>> ess_from_log_weights(torch.zeros(10)).item()
    1.0
    """
    log_w = log_w.double()
    return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / len(log_w)


def log_normalizer(model, num_samples: int = 4000, **kwargs) -> Tensor:
    """``logsumexp(ln w) − ln n``: the importance-sampling estimate of ``ln Z`` (float64).

    ``kwargs`` go to :func:`importance_sample` (``n_momenta``, ``momentum``, ``chunk_size``).

    ``exp`` of it is unbiased for ``Z``; the log is consistent (biased low by about
    ``Var(w) / (2 n Z²)``).

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> log_z = log_normalizer(model, 500)
    >>> log_z.dtype, bool(torch.isfinite(log_z))
    (torch.float64, True)
    """
    _, log_w = importance_sample(model, num_samples, **kwargs)
    return torch.logsumexp(log_w.double(), 0) - math.log(num_samples)


def ess(model, num_samples: int = 4000, **kwargs) -> Tensor:
    """Effective sample size fraction of ``num_samples`` importance draws (1: exact sampler).

    ``kwargs`` go to :func:`importance_sample` (``n_momenta``, ``momentum``, ``chunk_size``).

    A high ESS only says the weights are even where the sampler puts mass; a sampler that
    misses a mode can have one near 1 (docs/sampling.md).

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> 0 < ess(model, 500).item() <= 1
    True
    """
    _, log_w = importance_sample(model, num_samples, **kwargs)
    return ess_from_log_weights(log_w)


# -- training -----------------------------------------------------------------------------------


def fit_sampler(
    model: nn.Module,
    *,
    max_time: float = 30.0,
    max_steps: int | None = None,
    batch: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    loss: str = "kl",
    alpha: float = 2.0,
    warmup: float = 0.25,
    anneal: float = DEFAULT_ANNEAL,
    beta0: float = 0.1,
    path: str = "tempered",
    seed: int | None = None,
    grad_clip: float = 100.0,
    max_failures: int = 20,
    lr_end: float | None = None,
    calibrate: bool = True,
) -> dict:
    """Train a sampler (an NHF with a target, or a normflows ``NormalizingFlow`` with ``p``).

    Steps until ``max_time`` seconds of CPU time (``time.process_time``) or ``max_steps``,
    with Adam. ``loss``: ``"kl"`` (:func:`reverse_kld`),
    ``"alpha"`` (:func:`reverse_alpha_div` after a reverse-KL ``warmup`` fraction of the
    budget) or ``"bootstrap"`` (reverse KL plus :func:`bootstrap_kld` after the warmup).
    ``anneal > 0`` (default :data:`DEFAULT_ANNEAL`, 0.35) tempers the target, ``β`` rising
    linearly from ``beta0`` to 1 over that fraction of the budget: the sampler first spreads
    over the flattened target, then sharpens, which keeps the modes a plain reverse KL drops
    (``anneal=0`` turns it off).
    The learning rate follows a cosine from ``lr`` down to ``lr_end · lr`` (default
    :data:`DEFAULT_LR_END`). With ``calibrate`` (default) the encoder trains at its own width
    and :func:`calibrate_momentum` then sets the width of ``r(p | x)``; ``calibrate=False``
    trains with the model's ``momentum_scale`` as it is and leaves it.
    A step whose loss or gradient is not finite, or whose draws the target refuses (NaN or
    inf), is skipped and counted; ``max_failures`` in a row raise the error. Returns a dict with
    ``steps``, ``skipped``, ``cpu_s``, the last ``loss`` and (with ``calibrate``) the chosen
    ``momentum_scale``.

    Examples
    --------
    >>> from hamflow import NHF
    >>> from hamflow.targets import Banana
    >>> model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,))
    >>> info = fit_sampler(model, max_steps=3, batch=32)
    >>> info["steps"], info["skipped"]
    (3, 0)
    """
    if loss not in ("kl", "alpha", "bootstrap"):
        raise ValueError(f"loss: expected 'kl', 'alpha' or 'bootstrap', got {loss!r}")
    if path not in ("geometric", "tempered"):
        raise ValueError(f"path: expected 'geometric' or 'tempered', got {path!r}")
    lr_end = DEFAULT_LR_END if lr_end is None else lr_end
    if not (isinstance(lr_end, (int, float)) and 0 < lr_end <= 1):
        raise ValueError(f"lr_end: expected a fraction in (0, 1], got {lr_end!r}")
    if seed is not None:
        torch.manual_seed(seed)
    if calibrate and getattr(model, "momentum_scale", None) is not None:
        model.momentum_scale.fill_(1.0)  # train the encoder at its own width, calibrate after
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    start = time.process_time()
    steps = skipped = failures = 0
    last = float("nan")
    while True:
        used = time.process_time() - start
        frac = used / max_time if max_steps is None else steps / max_steps
        if frac >= 1 or (max_steps is not None and steps >= max_steps) or used >= max_time:
            break
        for group in opt.param_groups:
            group["lr"] = lr * (lr_end + (1 - lr_end) * 0.5 * (1 + math.cos(math.pi * frac)))
        beta = 1.0 if anneal <= 0 or frac >= anneal else beta0 + (1 - beta0) * frac / anneal
        try:
            if loss == "alpha" and frac >= warmup:
                value = model.reverse_alpha_div(batch, alpha=alpha)
            else:
                if getattr(model, "target", None) is not None:
                    value = reverse_kld(model, batch, beta=beta, path=path)
                else:  # a normflows model: its own reverse_kld tempers
                    value = model.reverse_kld(batch, beta=beta)
                if loss == "bootstrap" and frac >= warmup:
                    value = value + bootstrap_kld(model, max(1, batch // 4))
        except NonFiniteTargetError:
            # a draw met NaN or inf (a diverged state or a broken target): skip the step,
            # and give up with the error after ``max_failures`` in a row (a target of the
            # wrong shape raises at once)
            failures += 1
            skipped += 1
            steps += 1
            if failures >= max_failures:
                raise
            continue
        opt.zero_grad(set_to_none=True)
        ok = bool(torch.isfinite(value))
        if ok:
            value.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
            ok = bool(torch.isfinite(norm))
        if ok:
            opt.step()
            last = float(value.detach())
            failures = 0
        else:
            skipped += 1
            failures += 1
            if failures >= max_failures:
                name = getattr(getattr(model, "target", None), "name", None) or getattr(
                    getattr(model, "p", None), "name", type(getattr(model, "p", None)).__name__
                )
                raise ValueError(
                    f"fit_sampler: {failures} steps in a row gave a non-finite loss or gradient "
                    f"(target {name!r}: check that its log_prob's gradient is finite where the "
                    "sampler draws)"
                )
        steps += 1
    info = {"steps": steps, "skipped": skipped, "cpu_s": time.process_time() - start, "loss": last}
    if calibrate and getattr(model, "target", None) is not None:
        info["momentum_scale"] = calibrate_momentum(model)
    return info
