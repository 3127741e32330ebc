"""Neural Hamiltonian Flow: a density model built from learned Hamiltonians (Sec. 3.3, A.2).

A sample is made by drawing a phase-space state ``s₀ = (q₀, p₀)`` from a prior ``π`` and moving it
through a stack of Hamiltonian flows; the data is the final position ``q_T``. The momentum is a
latent variable: a Gaussian encoder ``f_ψ(p_T | q_T)`` proposes it, and the model is trained on
the ELBO of paper Eq. 6,

    ELBO(q_T) = E_{f(p_T|q_T)} [ ln π(H₁^{-dt} ∘ … ∘ H_T^{-dt}(q_T, p_T)) − ln f(p_T | q_T) ],

which needs no log-det because every flow preserves volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import normflows as nf
import torch
from torch import Tensor, nn

from .distributions import GaussianMomentumEncoder, SoftUniform
from .flows import HamiltonianFlow
from .hamiltonians import Energy, MLPEnergy, QuadraticEnergy, SeparableHamiltonian
from .integrators import get_integrator

__all__ = ["NHF"]


class NHF(nn.Module):
    """Neural Hamiltonian Flow density model over ``dim``-dimensional data (paper Sec. 3.3, A.2).

    Defaults follow the paper: each flow has its own Hamiltonian ``K(p) + V(q)`` with softplus MLP
    energies ``[d, 128, 128, 1]``, integrated by leapfrog with ``steps_per_flow = 2``; the momentum
    encoder is a Gaussian with ReLU MLPs ``[d, 128, 128, d]``. The paper gives no step size; the
    default ``dt = 0.5``, learned per flow, is what won ``benchmarks/nhf_defaults.py`` on a density
    the toy benchmark never saw (docs/benchmarks.md).

    Args:
        dim: data dimension ``d`` (the phase space has ``2d``).
        num_flows: number of Hamiltonian flows in the stack.
        steps_per_flow: integrator steps per flow.
        dt: step size of every flow (its initial value when ``learn_dt``).
        hidden: hidden widths of the energy MLPs.
        encoder_hidden: hidden widths of the momentum encoder MLPs.
        prior: ``"normal"``, ``"soft_uniform"`` or any normflows ``BaseDistribution`` over
            ``2d`` dimensions.
        kinetic: ``"mlp"`` (learned ``K(p)``) or ``"quadratic"`` (``½ pᵀM⁻¹p``, learned mass).
        learn_dt: make each flow's ``dt`` trainable.
        share_hamiltonian: one Hamiltonian for all flows, as in HGN, instead of one per flow.
        integrator: a symplectic integrator name (``leapfrog``, ``yoshida4``,
            ``symplectic_euler``).

    Example:
        >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
        >>> x = torch.randn(8, 2)
        >>> loss = model.forward_kld(x)          # -mean ELBO
        >>> loss.backward()
        >>> model.log_prob(x, num_samples=4).shape, model.sample(3).shape
        (torch.Size([8]), torch.Size([3, 2]))
    """

    def __init__(
        self,
        dim: int,
        num_flows: int = 4,
        steps_per_flow: int = 2,
        dt: float = 0.5,
        hidden: Sequence[int] = (128, 128),
        encoder_hidden: Sequence[int] = (128, 128),
        prior: str | nf.distributions.BaseDistribution = "normal",
        kinetic: str = "mlp",
        learn_dt: bool = True,
        share_hamiltonian: bool = False,
        integrator: str = "leapfrog",
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not isinstance(num_flows, int) or num_flows < 1:
            raise ValueError(f"num_flows: expected an integer >= 1, got {num_flows!r}")
        if not isinstance(steps_per_flow, int) or steps_per_flow < 1:
            raise ValueError(f"steps_per_flow: expected an integer >= 1, got {steps_per_flow!r}")
        if not get_integrator(integrator).symplectic:
            raise ValueError(
                f"integrator: NHF needs a volume-preserving (symplectic) integrator, got "
                f"{integrator!r}; use 'leapfrog', 'yoshida4' or 'symplectic_euler'"
            )
        self.dim = dim
        self.prior = self._make_prior(prior, dim)
        self.encoder = GaussianMomentumEncoder(dim, encoder_hidden)

        def hamiltonian() -> SeparableHamiltonian:
            return SeparableHamiltonian(
                self._make_kinetic(kinetic, dim, hidden), MLPEnergy(dim, hidden)
            )

        shared = hamiltonian() if share_hamiltonian else None
        self.flows = nn.ModuleList(
            HamiltonianFlow(
                shared or hamiltonian(), dt, steps_per_flow, integrator, learn_dt=learn_dt, dim=dim
            )
            for _ in range(num_flows)
        )

    @staticmethod
    def _make_prior(prior, dim: int) -> nf.distributions.BaseDistribution:
        if isinstance(prior, nf.distributions.BaseDistribution):
            return prior
        if prior == "normal":
            return nf.distributions.DiagGaussian(2 * dim, trainable=False)
        if prior == "soft_uniform":
            return SoftUniform(2 * dim)
        raise ValueError(
            "prior: expected 'normal', 'soft_uniform' or a normflows BaseDistribution, "
            f"got {prior!r}"
        )

    @staticmethod
    def _make_kinetic(kinetic: str, dim: int, hidden: Sequence[int]) -> Energy:
        if kinetic == "mlp":
            return MLPEnergy(dim, hidden)
        if kinetic == "quadratic":
            return QuadraticEnergy(dim)
        raise ValueError(f"kinetic: expected 'mlp' or 'quadratic', got {kinetic!r}")

    # -- maps between the prior and the data -------------------------------------------------

    def transport(
        self, q: Tensor, p: Tensor, *, inverse: bool = False, return_all: bool = False
    ) -> tuple[Tensor, Tensor] | list[tuple[Tensor, Tensor]]:
        """Move ``(q, p)`` through all flows: prior → data, or data → prior with ``inverse``.

        With ``return_all`` the states after every flow are returned, the start included.
        """
        flows = reversed(self.flows) if inverse else self.flows
        states = [(q, p)]
        for flow in flows:
            q, p = flow.step(q, p, inverse=inverse)
            if return_all:
                states.append((q, p))
        return states if return_all else (q, p)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected shape (batch, {self.dim}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x: expected finite values, got NaN or inf")

    def _log_weights(self, x: Tensor, num_samples: int) -> Tensor:
        """``ln π(s₀) − ln f(p | x)`` for ``num_samples`` momenta per point: ``(K, B)``."""
        p, log_f = self.encoder.rsample(x, num_samples)
        q = x if num_samples == 1 else x.expand(num_samples, *x.shape)
        q0, p0 = self.transport(q.reshape(-1, self.dim), p.reshape(-1, self.dim), inverse=True)
        log_pi = self.prior.log_prob(torch.cat([q0, p0], dim=-1))
        return log_pi.reshape(log_f.shape) - log_f

    # -- the normflows-style API --------------------------------------------------------------

    def elbo(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """Single-sample (or ``num_samples``-averaged) ELBO of paper Eq. 6, shape ``(B,)``."""
        self._check_x(x)
        _check_num_samples(num_samples)
        log_w = self._log_weights(x, num_samples)
        return log_w if num_samples == 1 else log_w.mean(0)

    def forward_kld(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """``-mean ELBO``: the training loss, the same call as a normflows model."""
        return -self.elbo(x, num_samples).mean()

    @torch.no_grad()
    def log_prob(self, x: Tensor, num_samples: int = 64, chunk_size: int = 2**16) -> Tensor:
        """Importance-weighted (IWAE) estimate of ``ln p(x)`` with ``K = num_samples``, ``(B,)``.

        It is a lower bound in expectation that tightens as ``K`` grows. Points are processed in
        chunks of about ``chunk_size`` phase-space states.
        """
        self._check_x(x)
        _check_num_samples(num_samples)
        rows = max(1, chunk_size // num_samples)
        out = []
        for xb in x.split(rows):
            log_w = self._log_weights(xb, num_samples).reshape(num_samples, -1)
            out.append(torch.logsumexp(log_w, dim=0) - math.log(num_samples))
        return torch.cat(out)

    def sample(
        self, num_samples: int = 1, return_momentum: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw ``num_samples`` points ``q_T`` (and their momenta ``p_T`` on request)."""
        _check_num_samples(num_samples, "num_samples")
        s0, _ = self.prior(num_samples)
        q0, p0 = s0.to(self._param_ref()).chunk(2, dim=-1)
        q, p = self.transport(q0, p0)
        return (q, p) if return_momentum else q

    def phase_space_flow(self) -> nf.NormalizingFlow:
        """A ``normflows.NormalizingFlow`` over ``(q, p)`` that shares this model's parameters.

        Its ``log_prob`` is the exact joint density ``ln π(s₀)`` (the log-det is zero).
        """
        return nf.NormalizingFlow(q0=self.prior, flows=list(self.flows))

    def _param_ref(self) -> Tensor:
        return next(self.encoder.parameters())


def _check_num_samples(n: int, name: str = "num_samples") -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {n!r}")
