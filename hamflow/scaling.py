"""Cheap exact-log-det scalings that NHF may put around its volume-preserving flows.

Hamiltonian flows preserve volume, so on their own they must carry the prior's scale to the
data's with shears alone, which is slow to learn when the data's scale differs from the prior's
(and hopeless per dimension in tens of dimensions). A diagonal affine map fixes the scale at a cost
of ``d`` multiplications, and its log-det is exact: ``Σ_i s_i``.

- :class:`DiagonalAffine`: ``y = b + exp(s) ⊙ x``, optionally initialised from data (the mean and
  standard deviation of a first batch, like Glow's ActNorm), so that the model starts from the
  data's diagonal Gaussian instead of from the standard normal.
- :class:`TriangularAffine`: ``y = b + L x`` with ``L`` lower triangular, initialised from the
  Cholesky factor of a first batch's covariance, so that the model starts from the data's
  full-covariance Gaussian. Its log-det is as exact and as cheap, ``Σ ln L_ii``.
- :class:`ConformalFriction`: ``p ← e^{−c} ⊙ p``, damping between Hamiltonian flows.

Both affine maps initialise for standard-normal inputs, or, given samples of what they will
receive (``initialize(x, base)``), for those: NHF passes what its untrained flows make of the
prior.

Neither affine map is a network: each is one linear change of the data's coordinates. It is the
position half of a linear canonical transformation ``(q, p) → (Lq, L^{−T} p)``, which is
symplectic; only ``q`` is mapped here, and the ``d`` log-det terms are counted instead.
"""

from __future__ import annotations

import math

import normflows as nf
import torch
from torch import Tensor, nn

__all__ = ["DiagonalAffine", "TriangularAffine", "ConformalFriction"]


class _DataAffine(nf.flows.Flow):
    """What both data-initialised affine maps share: ``b``, the once-only initialisation from a
    first batch, and the checks on their arguments. Subclasses add their scale parameters and
    implement :meth:`initialize`, ``forward`` and ``inverse``."""

    def __init__(self, dim: int, *, init_from_data: bool = True, min_std: float = 1e-3) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not (min_std > 0 and math.isfinite(min_std)):
            raise ValueError(f"min_std: expected a positive number, got {min_std!r}")
        self.dim = dim
        self.min_std = float(min_std)
        self.init_from_data = bool(init_from_data)
        self.shift = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(not init_from_data))

    def _check_batch(self, x: Tensor, name: str = "x") -> None:
        if x.dim() != 2 or x.shape[-1] != self.dim or x.shape[0] < 2:
            raise ValueError(
                f"{name}: expected shape (N >= 2, {self.dim}) to initialise from, "
                f"got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values to initialise from, got NaN or inf")

    def initialize(self, x: Tensor, base: Tensor | None = None) -> None:
        raise NotImplementedError

    def needs_initialization(self, x: Tensor) -> bool:
        """Whether :meth:`maybe_initialize` would initialise from ``x`` now."""
        return not bool(self.initialized) and x.shape[0] >= 2

    def maybe_initialize(self, x: Tensor, base: Tensor | None = None) -> None:
        """:meth:`initialize` from ``x`` (and ``base``) once, if this layer initialises from
        data."""
        if self.needs_initialization(x):
            self.initialize(x, base)

    def _check_base(self, base: Tensor | None) -> Tensor | None:
        if base is None:
            return None
        self._check_batch(base, "base")
        return base.detach().double()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, init_from_data={self.init_from_data}"


class DiagonalAffine(_DataAffine):
    """Per-dimension affine ``y = b + exp(s) ⊙ x``, exact log-det ``Σ s`` (a normflows Flow).

    ``forward`` maps base → data and returns ``log |det ∂y/∂x| = Σ s`` per row; ``inverse`` maps
    data → base and returns ``−Σ s``. :meth:`initialize` sets ``b`` and ``s`` from a data batch so
    that the inverse standardises it; :meth:`maybe_initialize` does so once, the first time it sees
    data (the ``initialized`` buffer is saved with the model).

    Args:
        dim: number of features.
        init_from_data: whether :meth:`maybe_initialize` should set ``b, s`` from the first batch.
        min_std: floor on the standard deviation used by :meth:`initialize` (constant features).

    Example:
        >>> layer = DiagonalAffine(2)
        >>> x = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
        >>> layer.initialize(x)
        >>> z, log_det = layer.inverse(x)
        >>> [round(v, 4) for v in z.mean(0).tolist()], [round(v, 4) for v in z.std(0).tolist()]
        ([0.0, 0.0], [1.0, 1.0])
        >>> bool(torch.allclose(layer.forward(z)[0], x)), round(log_det[0].item(), 4)  # -ln(2·20)
        (True, -3.6889)
    """

    def __init__(self, dim: int, *, init_from_data: bool = True, min_std: float = 1e-3) -> None:
        super().__init__(dim, init_from_data=init_from_data, min_std=min_std)
        self.log_scale = nn.Parameter(torch.zeros(dim))

    @torch.no_grad()
    def initialize(self, x: Tensor, base: Tensor | None = None) -> None:
        """Set ``b`` and ``s`` so that ``forward`` maps ``base`` ``(N', dim)``, samples of what
        this layer will receive, to the mean and standard deviation of ``x`` ``(N, dim)``.

        Without ``base`` the inputs are taken as standard normal: ``b`` is the mean and
        ``exp(s)`` the standard deviation of ``x``.
        """
        self._check_batch(x)
        base = self._check_base(base)
        x64 = x.detach().double()
        std = x64.std(0).clamp_min(self.min_std)
        mean = x64.mean(0)
        if base is not None:
            std = std / base.std(0).clamp_min(self.min_std)
            mean = mean - std * base.mean(0)
        self.shift.copy_(mean)
        self.log_scale.copy_(std.log())
        self.initialized.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y = self.shift + torch.exp(self.log_scale) * z
        return y, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        z = (y - self.shift) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(y.shape[0])


class TriangularAffine(_DataAffine):
    """Lower-triangular affine ``y = b + L x``, exact log-det ``Σ s`` (a normflows Flow).

    ``L`` has the diagonal ``exp(s)`` and a free strictly lower part, so it is always invertible
    and ``ln |det L| = Σ s``. ``forward`` maps base → data; ``inverse`` maps data → base by one
    triangular solve (``O(d²)`` per row) and returns ``−Σ s``. :meth:`initialize` sets ``b`` to a
    batch's mean and ``L`` to the Cholesky factor of its covariance (plus ``min_std²`` on the
    diagonal), so that the inverse whitens the batch and a model on top starts from the data's
    full-covariance Gaussian (given ``base``, it maps ``base``'s moments to the batch's). A
    batch of no more rows than ``dim`` cannot estimate a covariance; then only the diagonal is
    set, as :class:`DiagonalAffine` would.

    Args:
        dim: number of features.
        init_from_data: whether :meth:`maybe_initialize` should set ``b, L`` from the first batch.
        min_std: added to the diagonal of the covariance, squared (constant features).

    Example:
        >>> layer = TriangularAffine(2)
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0], [3.0, 5.0]])
        >>> layer.initialize(x)
        >>> z, log_det = layer.inverse(x)
        >>> cov = torch.cov(z.T)                    # whitened: identity covariance
        >>> bool(torch.allclose(cov, torch.eye(2), atol=1e-5))
        True
        >>> bool(torch.allclose(layer.forward(z)[0], x, atol=1e-6))
        True
    """

    def __init__(self, dim: int, *, init_from_data: bool = True, min_std: float = 1e-3) -> None:
        super().__init__(dim, init_from_data=init_from_data, min_std=min_std)
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.lower = nn.Parameter(torch.zeros(dim * (dim - 1) // 2))
        self.register_buffer("rows_cols", torch.tril_indices(dim, dim, -1), persistent=False)

    def matrix(self) -> Tensor:
        """``L``, ``(dim, dim)``: ``exp(s)`` on the diagonal, the free entries below it."""
        m = torch.diag_embed(torch.exp(self.log_diag))
        return m.index_put((self.rows_cols[0], self.rows_cols[1]), self.lower)

    @torch.no_grad()
    def initialize(self, x: Tensor, base: Tensor | None = None) -> None:
        """Set ``b`` and ``L`` so that ``forward`` maps ``base`` ``(N', dim)``, samples of what
        this layer will receive, to the mean and covariance of ``x`` ``(N, dim)``.

        Without ``base`` the inputs are taken as standard normal: ``b`` is the mean of ``x`` and
        ``L`` its covariance's Cholesky factor (its standard deviations alone when
        ``N <= dim``). With it, ``L = A B⁻¹`` and ``b = mean(x) − L mean(base)``, where ``A``
        and ``B`` are the Cholesky factors of the two covariances: a product of lower-triangular
        factors, so ``L`` stays lower triangular, and ``L cov(base) Lᵀ = cov(x)``.
        """
        self._check_batch(x)
        base = self._check_base(base)
        x64 = x.detach().double()
        factor = self._cholesky(x64)
        shift = x64.mean(0)
        if base is not None:
            base = base.to(x64.device)
            # L = A B⁻¹, i.e. the solution of L B = A (B lower triangular, from the right)
            factor = torch.linalg.solve_triangular(
                self._cholesky(base), factor, upper=False, left=False
            )
            shift = shift - factor @ base.mean(0)
        self.shift.copy_(shift)
        self.log_diag.copy_(factor.diagonal().log())
        self.lower.copy_(factor[self.rows_cols[0], self.rows_cols[1]])
        self.initialized.fill_(True)

    def _cholesky(self, x64: Tensor) -> Tensor:
        """The Cholesky factor of the covariance of ``x64`` plus ``min_std²`` on the diagonal
        (the variances alone when there are no more rows than ``dim``)."""
        eye = torch.eye(self.dim, dtype=torch.float64, device=x64.device)
        cov = torch.cov(x64.T).reshape(self.dim, self.dim)
        if x64.shape[0] <= self.dim:
            cov = torch.diag_embed(cov.diagonal())
        return torch.linalg.cholesky(cov + self.min_std**2 * eye)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y = self.shift + z @ self.matrix().T
        return y, self.log_diag.sum().expand(z.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # z Lᵀ = y − b: a solve against the upper-triangular Lᵀ from the right
        z = torch.linalg.solve_triangular(self.matrix().T, y - self.shift, upper=True, left=False)
        return z, (-self.log_diag.sum()).expand(y.shape[0])


class ConformalFriction(nf.flows.Flow):
    """Friction on the momentum, ``p ← e^{−c} ⊙ p``, a conformal-symplectic step (a normflows Flow).

    Damped Hamiltonian dynamics ``ṗ = −∂V/∂q − γ p`` contract phase-space volume at the constant
    rate ``γ·d``: with the potential learned, states settle into its wells, so a stack of damped
    flows can concentrate mass where volume-preserving shears alone cannot. Split off from the
    leapfrog step, the friction is the exact map ``p ← e^{−γ·dt} p`` with ``c = γ·dt`` learned per
    dimension, and its log-det is exactly ``−Σ c`` whatever the state. ``c < 0`` (anti-friction)
    is allowed too.

    The layer acts on ``z = cat(q, p)`` of width ``2·dim`` and leaves ``q`` alone; ``forward``
    returns ``−Σ c`` per row and ``inverse`` ``+Σ c``.

    Example:
        >>> layer = ConformalFriction(2)
        >>> _ = layer.rate.data.fill_(0.5)
        >>> z = torch.ones(1, 4)
        >>> y, log_det = layer(z)
        >>> [round(v, 4) for v in y[0].tolist()], round(log_det.item(), 4)
        ([1.0, 1.0, 0.6065, 0.6065], -1.0)
        >>> bool(torch.allclose(layer.inverse(y)[0], z))
        True
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        self.dim = dim
        self.rate = nn.Parameter(torch.zeros(dim))

    def damp(self, p: Tensor, *, inverse: bool = False) -> Tensor:
        """``e^{−c} ⊙ p`` (or ``e^{c} ⊙ p`` with ``inverse``) on the momentum alone."""
        return p * torch.exp(self.rate if inverse else -self.rate)

    def log_det(self) -> Tensor:
        """``ln |det|`` of the forward map, ``−Σ c``: the same for every state."""
        return -self.rate.sum()

    def _map(self, z: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if z.dim() != 2 or z.shape[-1] != 2 * self.dim:
            raise ValueError(f"z: expected shape (batch, {2 * self.dim}), got {tuple(z.shape)}")
        q, p = z.chunk(2, dim=-1)
        log_det = self.log_det()
        out = torch.cat([q, self.damp(p, inverse=inverse)], dim=-1)
        return out, (-log_det if inverse else log_det).expand(z.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(z, inverse=False)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(z, inverse=True)
