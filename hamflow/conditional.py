"""Conditional NHF: the pieces that let ``NHF(dim, context_dim=c)`` model ``p(x | context)``.

The model is the Neural Hamiltonian Flow of paper Sec. 3.3 with every learned potential made a
function of the context, as conditional normalising flows do (e.g. Winkler et al., 2019;
Papamakarios & Murray, 2016 for neural posterior estimation).

A context ``c`` (for simulation-based inference: the observation ``x`` of a posterior
``p(θ | x)``) enters the model in three places, and only there:

- every potential is ``V_k(q; c)``, a softplus MLP on ``cat(q, c)``
  (:class:`ConditionalMLPEnergy`). Its kick uses ``∂V_k/∂q`` alone: the context is held fixed
  along a trajectory, so each flow is still a symplectic, volume-preserving map of ``(q, p)``
  for every ``c``, with log-det zero, and its inverse is exact;
- the momentum encoder is ``f(p | q, c)`` (:class:`~hamflow.GaussianMomentumEncoder` with
  ``context_dim=c``);
- a shift linear in the context, ``x = … + W c`` (:class:`ContextShift`, log-det zero),
  fitted by least squares with the affine map, so that training starts from the
  linear-Gaussian fit of ``p(x | c)`` rather than from the marginal of ``x``
  (``context_shift=False`` leaves it out).

The kinetic energy, the frictions, the prior and the data-initialised affine map stay
unconditional, so every log-det is what it is for ``NHF(dim)``. The context is concatenated as
it comes, without an embedding network: ``benchmarks/sbi_tasks.py`` measures that choice
(docs/conditional.md).

:func:`check_context` validates and broadcasts a context; :func:`context_step` runs one flow
with its potential bound to a context (:class:`BoundHamiltonian`), for ``NHF.transport``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .distributions import mlp
from .flows import HamiltonianFlow
from .hamiltonians import Energy, MLPEnergy
from .integrators import KickCache

__all__ = [
    "ConditionalMLPEnergy",
    "ContextAffine",
    "ContextShift",
    "BoundHamiltonian",
    "check_context",
    "context_step",
]


class ConditionalMLPEnergy(MLPEnergy):
    """A potential ``V(q; c)``: a softplus :class:`~hamflow.MLPEnergy` on ``cat(q, c)``.

    :meth:`grad` returns ``∂V/∂q`` only, ``(B, dim)``: it runs the closed-form input gradient
    of the MLP on the concatenated input and keeps the ``q`` columns, so the context never gets
    a kick. With ``context = c`` held fixed this is an ordinary potential of ``q``, and a
    Hamiltonian flow built on it keeps its exact inverse and unit Jacobian (paper Sec. 3.3)
    for every context.

    Parameters
    ----------
    dim : int
        Width of ``q``.
    context_dim : int
        Width of the context.
    hidden : sequence of int
        Hidden widths of the MLP.
    **kwargs
        Passed to :class:`~hamflow.MLPEnergy` (``gain``, ``in_scale``, ``closed_form``,
        ``out_scale``).

    Examples
    --------
        >>> V = ConditionalMLPEnergy(2, 3, hidden=(16,)).double()
        >>> q, c = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
        >>> V(q, c).shape, V.grad(q, c).shape
        (torch.Size([5]), torch.Size([5, 2]))
        >>> auto = torch.func.grad(lambda a: V(a, c).sum())(q)   # autograd, q only
        >>> bool(torch.allclose(V.grad(q, c), auto))
        True
    """

    def __init__(self, dim: int, context_dim: int, hidden: Sequence[int] = (128, 128), **kwargs):
        if not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 1:
            raise ValueError(f"context_dim: expected a positive integer, got {context_dim!r}")
        super().__init__(int(dim) + context_dim, hidden, **kwargs)
        self.q_dim = int(dim)
        self.context_dim = context_dim

    def forward(self, q: Tensor, context: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(self._cat(q, context))

    def grad(self, q: Tensor, context: Tensor) -> Tensor:  # type: ignore[override]
        """``∂V/∂q`` at ``(q, context)``, shaped like ``q``."""
        return super().grad(self._cat(q, context))[:, : self.q_dim]

    def _cat(self, q: Tensor, context: Tensor) -> Tensor:
        if context is None or context.shape != (q.shape[0], self.context_dim):
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"context: expected shape ({q.shape[0]}, {self.context_dim}) beside q, got {got}"
            )
        return torch.cat([q, context], dim=-1)


class ContextAffine(nn.Module):
    """A per-dimension affine map whose shift and scale depend on the context only:
    ``y = μ(c) + exp(s(c)) ⊙ q``, exact log-det ``Σ s(c)`` (``NHF(..., context_affine=True)``).

    ``μ`` and ``s`` come from one MLP of the context whose last layer starts at zero, so the
    map starts as the identity. It never reads ``q``, so it is not a coupling layer: for a
    fixed context it is one diagonal affine map, inverted exactly. In NHF it sits between the
    flows' ``q_T`` and the data-initialised affine map, where it can move and narrow the
    density per context (a posterior's location and width, in SBI). ``s`` is held inside
    ``(−bound, bound)`` by ``bound · tanh(· / bound)``.

    Parameters
    ----------
    dim : int
        Width of ``q``.
    context_dim : int
        Width of the context.
    hidden : sequence of int
        Hidden widths of the MLP.
    bound : float
        The largest ``|s|``.

    Examples
    --------
    >>> layer = ContextAffine(2, 1, hidden=(8,))
    >>> q, c = torch.randn(4, 2), torch.randn(4, 1)
    >>> y, log_det = layer(q, c)
    >>> bool(torch.equal(y, q)), log_det.shape           # the identity at initialisation
    (True, torch.Size([4]))
    >>> _ = torch.nn.init.normal_(layer.net[-1].weight)
    >>> back, inv_log_det = layer.inverse(*layer(q, c)[:1], c)
    >>> bool(torch.allclose(back, q, atol=1e-5))
    True
    """

    def __init__(
        self, dim: int, context_dim: int, hidden: Sequence[int] = (64, 64), bound: float = 5.0
    ) -> None:
        super().__init__()
        self.dim, self.context_dim, self.bound = int(dim), int(context_dim), float(bound)
        self.net = mlp([self.context_dim, *[int(h) for h in hidden], 2 * self.dim])
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def params(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Shift ``μ(c)`` and log-scale ``s(c)``, ``(B, dim)`` each."""
        shift, raw = self.net(context).chunk(2, dim=-1)
        return shift, self.bound * torch.tanh(raw / self.bound)

    def forward(self, q: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.params(context)
        return shift + torch.exp(log_scale) * q, log_scale.sum(-1)

    def inverse(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.params(context)
        return (y - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class ContextShift(nn.Module):
    """A shift of the data that is linear in the context, ``x = y + W c`` (log-det zero): the
    last map of ``NHF(dim, context_dim=c)`` (``context_shift=True``, the default).

    :meth:`initialize` sets ``W`` by least squares of the data on the context, so that the
    maps before it (the data-initialised affine map and the flows) start on the residuals
    ``x − W c``: a conditional density whose location moves with the context, as a posterior's
    does in simulation-based inference, then starts as the linear-Gaussian fit of ``p(x | c)``
    instead of the marginal of ``x``, which can be many times wider than any one conditional.
    ``W`` is trained with the rest.

    Parameters
    ----------
    dim : int
        Width of ``x``.
    context_dim : int
        Width of the context.

    Examples
    --------
    >>> shift = ContextShift(2, 1)
    >>> c = torch.linspace(-1, 1, 50).unsqueeze(-1)
    >>> x = torch.cat([3 * c, -c], dim=-1) + 0.01 * torch.randn(50, 2)
    >>> residual = shift.initialize(x, c)
    >>> [round(v, 1) for v in shift.weight.flatten().tolist()]
    [3.0, -1.0]
    >>> bool(residual.std(0).max() < 0.05), shift(c).shape
    (True, torch.Size([50, 2]))
    """

    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(int(dim), int(context_dim)))

    def forward(self, context: Tensor) -> Tensor:
        """``W c``, ``(B, dim)``."""
        return context @ self.weight.T

    @torch.no_grad()
    def initialize(self, x: Tensor, context: Tensor) -> Tensor:
        """Set ``W`` to the least-squares slope of ``x`` on ``context`` (both centred) and return
        the residuals ``x − W c``. With no more rows than ``context_dim + 1`` the slope cannot
        be estimated; ``W`` is left as it is."""
        if len(x) > context.shape[-1] + 1:
            c64, x64 = context.double(), x.double()
            slope = torch.linalg.lstsq(c64 - c64.mean(0), x64 - x64.mean(0)).solution
            if torch.isfinite(slope).all():
                self.weight.copy_(slope.T.to(self.weight))
        return x - self(context)


class BoundHamiltonian:
    """A separable Hamiltonian ``K(p) + V(q; c)`` with its context ``c`` fixed, for one pass.

    It has what the symplectic integrators use (``separable``, ``potential``, ``dV_dq``,
    ``dK_dp``); ``potential`` is the unbound module, so a :class:`~hamflow.integrators.KickCache`
    shared by flows with one Hamiltonian still reuses a gradient where they meet (the context
    is the same for the whole pass).

    Parameters
    ----------
    hamiltonian : SeparableHamiltonian
        A Hamiltonian whose potential is a :class:`ConditionalMLPEnergy`.
    context : Tensor
        ``(B, context_dim)``, one row per state.

    Examples
    --------
        >>> from hamflow import QuadraticEnergy, SeparableHamiltonian
        >>> H = SeparableHamiltonian(QuadraticEnergy(2, learnable=False),
        ...                          ConditionalMLPEnergy(2, 1, hidden=(8,)))
        >>> bound = BoundHamiltonian(H, torch.ones(4, 1))
        >>> bound.dV_dq(torch.zeros(4, 2)).shape
        torch.Size([4, 2])
    """

    separable = True

    def __init__(self, hamiltonian, context: Tensor) -> None:
        self.kinetic: Energy = hamiltonian.kinetic
        self.potential: ConditionalMLPEnergy = hamiltonian.potential
        self.context = context

    def dV_dq(self, q: Tensor) -> Tensor:
        return self.potential.grad(q, self.context)

    def dK_dp(self, p: Tensor) -> Tensor:
        return self.kinetic.grad(p)


def context_step(
    flow: HamiltonianFlow,
    q: Tensor,
    p: Tensor,
    context: Tensor,
    *,
    inverse: bool = False,
    cache: KickCache | None = None,
) -> tuple[Tensor, Tensor]:
    """:meth:`HamiltonianFlow.step <hamflow.HamiltonianFlow.step>` with the flow's potential
    bound to ``context`` (one row per row of ``q``).

    Parameters
    ----------
    flow : HamiltonianFlow
        A flow whose potential is a :class:`ConditionalMLPEnergy`.
    q, p : Tensor
        The state, ``(B, dim)`` each.
    context : Tensor
        ``(B, context_dim)``.
    inverse : bool
        Run the exact inverse map.
    cache : KickCache, optional
        Shared by consecutive flows (see :class:`~hamflow.integrators.KickCache`).

    Returns
    -------
    tuple of Tensor
        The moved ``(q, p)``.

    Examples
    --------
    >>> from hamflow import NHF
    >>> model = NHF(2, context_dim=1, num_flows=1, hidden=(8,), encoder_hidden=(8,))
    >>> q, p, c = torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 1)
    >>> q1, p1 = context_step(model.flows[0], q, p, c)
    >>> q0, p0 = context_step(model.flows[0], q1, p1, c, inverse=True)
    >>> bool(torch.allclose(q0, q, atol=1e-5))
    True
    """
    bound = BoundHamiltonian(flow.hamiltonian, context)
    return flow.info.step(bound, q, p, flow._dt(q), flow.steps, inverse, cache)


def check_context(
    context: Tensor | None,
    context_dim: int | None,
    rows: int,
    ref: Tensor,
    *,
    what: str = "x",
) -> Tensor | None:
    """Validate ``context`` for a model with ``context_dim`` and broadcast it to ``rows`` rows.

    ``context`` is ``(rows, context_dim)`` (one row per row of ``x`` or per sample), or one
    context for all: ``(context_dim,)`` or ``(1, context_dim)``. An unconditional model
    (``context_dim=None``) takes ``None`` only. It must be finite and have the model's dtype
    (``ref``'s); it is moved to ``ref``'s device.

    Parameters
    ----------
    context : Tensor or None
        The context given by the caller.
    context_dim : int or None
        The model's context width (``None``: unconditional).
    rows : int
        Rows of ``x``, or the number of samples.
    ref : Tensor
        A tensor with the model's dtype and device.
    what : str
        What the rows are, for error messages.

    Returns
    -------
    Tensor or None
        ``(rows, context_dim)`` (a broadcast view for one context), or ``None``.

    Raises
    ------
    ValueError
        A context for an unconditional model, a missing one for a conditional model, a wrong
        width, a row count that is neither 1 nor ``rows``, or a non-finite value.
    TypeError
        Not a tensor (e.g. ``num_samples`` passed where the context goes), or the wrong dtype.

    Examples
    --------
        >>> ref = torch.zeros(1)
        >>> check_context(torch.ones(3), 3, rows=4, ref=ref).shape     # one context for all
        torch.Size([4, 3])
        >>> check_context(None, None, rows=4, ref=ref) is None
        True
    """
    if context is not None and not isinstance(context, Tensor):
        raise TypeError(
            f"context: expected a torch.Tensor or None, got {type(context).__name__} "
            f"{context!r}; pass num_samples and the other options by keyword (context comes "
            "second, as in normflows' ConditionalNormalizingFlow)"
        )
    if context_dim is None:
        if context is not None:
            raise ValueError(
                "context: this model is unconditional (context_dim=None) and takes no context, "
                f"got a tensor of shape {tuple(context.shape)}; build NHF(dim, context_dim=c) "
                "for p(x | context)"
            )
        return None
    if context is None:
        raise ValueError(
            f"context: this model is conditional (context_dim={context_dim}) and needs a "
            f"context of shape ({rows}, {context_dim}) or ({context_dim},), got None"
        )
    if context.dim() == 1:
        context = context.unsqueeze(0)
    if context.dim() != 2 or context.shape[-1] != context_dim:
        raise ValueError(
            f"context: expected shape ({rows}, {context_dim}) or ({context_dim},), "
            f"got {tuple(context.shape)}"
        )
    if context.shape[0] not in (1, rows):
        raise ValueError(
            f"context: expected one row, or one row per row of {what} ({rows}), got "
            f"{context.shape[0]} rows"
        )
    if context.dtype != ref.dtype:
        raise TypeError(
            f"context: expected dtype {ref.dtype} (the model's), got {context.dtype}; convert "
            f"it with context.to({ref.dtype})"
        )
    if not torch.isfinite(context).all():
        raise ValueError("context: expected finite values, got NaN or inf")
    return context.to(ref.device).expand(rows, context_dim)
