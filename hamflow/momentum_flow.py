"""A conditional coupling flow over the momentum: a richer auxiliary density ``r(p | x)``.

A sampler's weights live on the extended space ``(x, p)`` (:mod:`hamflow.sampling`), and its
training loss is the reverse KL of ``q(x, p)`` against ``π(x) r(p | x)``, so a Gaussian
``r`` makes the loss pull the sampler's own conditional ``q(p | x)`` towards a Gaussian as
well as ``q(x)`` towards the target. Hamiltonian variational inference (Salimans, Kingma &
Welling, 2015) learns this "reverse model" jointly with the sampler; here ``r`` is the momentum
encoder's Gaussian pushed through a few affine couplings on ``p`` whose scales and shifts depend
on the position: ``u = h(p; q)``, ``u ~ N(μ(q), σ(q)²)``, and

    ln r(p | q) = ln N(h(p; q); μ(q), σ(q)²) + ln|det ∂h/∂p|,

exact and normalised (each coupling is triangular in ``p`` with a closed-form inverse). It is
an auxiliary density, not a layer of the sampler: the flow that maps the prior to ``(x, p)``
stays Hamiltonian plus exact-log-det scalings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MomentumFlow"]


class _Coupling(nn.Module):
    """``p_b ← p_b e^{s} + t``, with ``(s, t)`` an MLP of ``(q, p_a)``; ``s`` bounded by
    ``bound · tanh``. The last layer starts at zero: the identity."""

    def __init__(self, dim: int, keep: list[int], move: list[int], hidden: int, bound: float):
        super().__init__()
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.register_buffer("move", torch.tensor(move, dtype=torch.long), persistent=False)
        self.bound = float(bound)
        self.net = nn.Sequential(
            nn.Linear(dim + len(keep), hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 2 * len(move)),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _shift_scale(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        dtype = self.net[0].weight.dtype
        h = self.net(torch.cat([q, p[:, self.keep]], -1).to(dtype)).to(p.dtype)
        s, t = h.chunk(2, -1)
        return self.bound * torch.tanh(s / self.bound), t

    def forward(self, p: Tensor, q: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
        s, t = self._shift_scale(p, q)
        out = p.clone()
        if inverse:
            out[:, self.move] = (p[:, self.move] - t) * torch.exp(-s)
            return out, -s.sum(-1)
        out[:, self.move] = p[:, self.move] * torch.exp(s) + t
        return out, s.sum(-1)


class MomentumFlow(nn.Module):
    """Affine couplings over the momentum ``p`` conditioned on the position ``q``: ``u = h(p; q)``.

    Layer ``i`` moves the coordinates ``j`` with ``(j + i)`` even, given ``q`` and the others
    (in one dimension, given ``q`` alone). Every coupling starts as the identity, so a sampler
    with it starts with the encoder's Gaussian ``r``. :func:`hamflow.sampling.configure`
    attaches one to a sampler (``momentum_layers``); the sampler's ``r(p | x)`` is then
    ``N(h(p; q); μ(q), σ(q)²) |det ∂h/∂p|``, trained with it by the reverse KL
    (Salimans et al., 2015, the reverse model of Hamiltonian variational inference).

    Parameters
    ----------
    dim
        the dimension of ``p`` and ``q``.
    layers
        the number of couplings (at least 1).
    hidden
        the width of each coupling's two hidden layers (``tanh``).
    bound
        the largest ``|s|`` of a coupling's log-scale (``bound · tanh(s / bound)``).

    Examples
    --------
    >>> flow = MomentumFlow(3, layers=2, hidden=8)
    >>> with torch.no_grad():
    ...     for w in flow.parameters():
    ...         _ = w.normal_(0, 0.3)
    >>> p, q = torch.randn(5, 3), torch.randn(5, 3)
    >>> u, log_det = flow(p, q)
    >>> p2, log_det_inv = flow.inverse(u, q)
    >>> bool(torch.allclose(p2, p, atol=1e-5)), bool(torch.allclose(log_det, -log_det_inv))
    (True, True)
    """

    def __init__(self, dim: int, layers: int = 4, hidden: int = 32, bound: float = 2.0) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers: expected an integer >= 1, got {layers!r}")
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"hidden: expected a positive integer, got {hidden!r}")
        if not (isinstance(bound, (int, float)) and 0 < bound < float("inf")):
            raise ValueError(f"bound: expected a positive finite number, got {bound!r}")
        self.dim = dim
        couplings = []
        for i in range(layers):
            move = [j for j in range(dim) if (j + i) % 2 == 0] if dim > 1 else [0]
            keep = [j for j in range(dim) if j not in move]
            couplings.append(_Coupling(dim, keep, move, hidden, bound))
        self.couplings = nn.ModuleList(couplings)

    def forward(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, ln|det ∂u/∂p|)`` ``(n, dim), (n,)``."""
        log_det = p.new_zeros(p.shape[0])
        for layer in self.couplings:
            p, step = layer(p, q)
            log_det = log_det + step
        return p, log_det

    def inverse(self, u: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """``(p, ln|det ∂p/∂u|)`` ``(n, dim), (n,)``: the exact inverse of :meth:`forward`."""
        log_det = u.new_zeros(u.shape[0])
        for layer in reversed(self.couplings):
            u, step = layer(u, q, inverse=True)
            log_det = log_det + step
        return u, log_det

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A sampler saved without this flow loads with it at the identity (its last layers zero).
        for name, value in self.state_dict().items():
            if name.endswith("net.4.weight") or name.endswith("net.4.bias"):
                state_dict.setdefault(prefix + name, torch.zeros_like(value))
            else:
                state_dict.setdefault(prefix + name, value.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
