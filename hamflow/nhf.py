"""Neural Hamiltonian Flow: a density model built from learned Hamiltonians (Sec. 3.3, A.2).

A sample is made by drawing a phase-space state ``s₀ = (q₀, p₀)`` from a prior ``π`` and moving it
through a stack of Hamiltonian flows; the data is the final position ``q_T``. The momentum is a
latent variable: a Gaussian encoder ``f_ψ(p_T | q_T)`` proposes it, and the model is trained on
the ELBO of paper Eq. 6,

    ELBO(q_T) = E_{f(p_T|q_T)} [ ln π(H₁^{-dt} ∘ … ∘ H_T^{-dt}(q_T, p_T)) − ln f(p_T | q_T) ],

which needs no log-det because every flow preserves volume. By default training maximises the
importance-weighted form of that bound (Burda et al., 2016) with four momenta per point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import normflows as nf
import torch
from torch import Tensor, nn

from . import sampling as _sampling
from .conditional import (
    ConditionalMLPEnergy,
    ContextAffine,
    ContextShift,
    check_context,
    context_step,
)
from .distributions import GaussianMomentumEncoder, GeneralizedNormal, SoftUniform, sobol_normal
from .flows import HamiltonianFlow
from .hamiltonians import Energy, MLPEnergy, QuadraticEnergy, SeparableHamiltonian
from .integrators import KickCache, get_integrator
from .scaling import ConformalFriction, DiagonalAffine, TriangularAffine

__all__ = ["NHF"]

CONDITIONAL_IN_SCALE = 3.0
"""The potentials' ``in_scale`` of a conditional NHF (``potential_in_scale=None`` with a
``context_dim``); ``benchmarks/sbi_tasks.py`` measures it (docs/benchmarks/sbi.md)."""
PROPOSAL_SCALES = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0)
"""The widths :meth:`NHF.calibrate_proposal` chooses among by default."""


class NHF(nn.Module):
    """Neural Hamiltonian Flow density model over ``dim``-dimensional data (paper Sec. 3.3, A.2).

    A prior state ``s₀ = (q₀, p₀)`` is moved by ``num_flows`` learned Hamiltonian flows, each
    ``steps_per_flow`` symplectic steps of its own ``H_i = K(p) + V_i(q)``; the data is the final
    position (through a data-initialised affine map, below). The momentum is a latent variable
    with a Gaussian encoder ``f(p | q)``, and training maximises the ELBO of Eq. 6 or (the
    default) its importance-weighted form, a tighter bound on ``ln p``.

    The defaults are **not** the paper's. They all stay in the Hamiltonian family, and
    ``benchmarks/nhf_ablation.py`` measures each (docs/benchmarks/; in its latest run the fixed
    kinetic energy, the 4-momenta loss and the potential gain carry most of the gain on 2-D
    toys, and the affine map matters in tens of dimensions):

    - ``kinetic="fixed"``: ``K = ½|p|²`` (Souveton et al., 2023), so only ``V`` is learned and a
      drift costs no network evaluation;
    - ``integrator="symplectic_euler"``, one step per flow: a kick by ``∇V_i`` then a drift, so
      each potential is evaluated once per pass (leapfrog needs two where flows meet);
    - ``friction=True``: a learned :class:`~hamflow.scaling.ConformalFriction` ``p ← e^{−c} p``
      after each flow, exact log-det ``−Σ c``; damped dynamics settle into the wells of ``V``;
    - ``affine="triangular"``: a :class:`~hamflow.scaling.TriangularAffine` map ``x = b + L q_T``
      (``L`` lower triangular, exact log-det ``Σ ln L_ii``), fitted on the first training batch
      so that the untrained model's samples have that batch's mean and covariance
      (:meth:`initialize_affine`; ``"diagonal"``: :class:`~hamflow.scaling.DiagonalAffine`, its
      means and variances only);
    - ``potential_gain=5``: the potentials learn five times faster than the encoder;
    - ``encoder_trunk="shared"``: one encoder MLP outputs the momentum's mean and scale;
    - ``dt=0.5``, learned per flow;
    - ``train_samples=4``: the training loss (:meth:`forward_kld`) is the importance-weighted
      bound with four momenta per point (Burda et al., 2016), not the single-sample ELBO. The
      encoder's Gaussian is far from the momentum's true posterior, and the ELBO makes the
      flows pay for that gap; the bound with ``K`` samples charges them less (the ablation in
      docs/benchmarks/ measures what the ELBO costs). A
      step then moves ``4B`` phase-space states for a batch of ``B`` points: on a large data
      set, give NHF a quarter of the batch a flow would get (docs/density/index.md; on a few hundred
      rows keep the rows per step).

    :meth:`paper` builds the configuration of paper A.2 exactly (learned MLP ``K`` and ``V``, two
    leapfrog steps per flow, two encoder MLPs, no friction and no affine map).

    Args:
        dim: data dimension ``d`` (the phase space has ``2d``).
        num_flows: number of Hamiltonian flows in the stack.
        steps_per_flow: integrator steps per flow.
        dt: step size of every flow (its initial value when ``learn_dt``).
        hidden: hidden widths of the energy MLPs.
        encoder_hidden: hidden widths of the momentum encoder MLPs.
        prior: ``"normal"`` (standard normal), ``"generalized_normal"``
            (:class:`~hamflow.GeneralizedNormal`: unit variance, one learned shape for ``q`` and
            one for ``p``, from Laplace through normal to nearly uniform; better on the tabular
            sets, worse on the rings, docs/density/index.md), ``"soft_uniform"`` or any normflows
            ``BaseDistribution`` over ``2d`` dimensions.
        kinetic: ``"fixed"`` (``½|p|²``), ``"quadratic"`` (``½ pᵀM⁻¹p``, learned diagonal mass)
            or ``"mlp"`` (a learned softplus MLP, as in the paper).
        learn_dt: make each flow's ``dt`` trainable.
        share_hamiltonian: one Hamiltonian for all flows, as in HGN, instead of one per flow
            (the half-kicks where two flows meet then share one gradient evaluation).
        integrator: a symplectic integrator name (``leapfrog``, ``yoshida4``,
            ``symplectic_euler``).
        affine: the data-initialised affine map between ``q_T`` and the data:
            ``"triangular"`` (full covariance), ``"diagonal"`` (per-dimension scale) or
            ``"none"``; ``True`` and ``False`` mean ``"diagonal"`` and ``"none"``.
        encoder_trunk: ``"shared"`` (one MLP outputs mean and log-scale) or ``"separate"`` (two
            MLPs, as in the paper).
        friction: a learned :class:`~hamflow.scaling.ConformalFriction` ``p ← e^{−c} p`` after
            every flow (exact log-det ``−Σ c``), so that states can settle into the wells of ``V``.
        potential_gain: the potentials' :class:`~hamflow.hamiltonians.MLPEnergy` ``gain``: an
            optimiser step moves ``V`` this many times further than the rest of the model.
        potential_in_scale: the potentials' :class:`~hamflow.hamiltonians.MLPEnergy`
            ``in_scale``: their first layers start this many times steeper than PyTorch's
            default initialisation. ``3`` learns 2-D densities with edges, rings or many modes
            sooner, and overfits a few hundred rows of tabular data sooner. ``None`` (default):
            1 for an unconditional model (docs/benchmarks/, "Steep potentials") and
            :data:`CONDITIONAL_IN_SCALE` (3) with a ``context_dim``, where thousands of
            simulated pairs make overfitting less of a risk than sharp, curved posteriors
            (docs/benchmarks/sbi.md).
        train_samples: momenta per point in the training loss :meth:`forward_kld` (``1``: the
            ELBO of Eq. 6; ``K > 1``: the importance-weighted bound, tighter as ``K`` grows).
        context_dim: the width ``c`` of a context, for a conditional density ``p(x | context)``
            (:mod:`hamflow.conditional`, docs/conditional.md): every potential becomes
            ``V_k(q; context)`` and the encoder ``f(p | q, context)``; the methods then take a
            ``context`` as their second argument, shaped as in normflows'
            ``ConditionalNormalizingFlow``. ``None`` (default): an unconditional model.
        context_affine: with a context, put a :class:`~hamflow.conditional.ContextAffine` map
            ``μ(c) + exp(s(c)) ⊙ q_T`` (exact log-det ``Σ s(c)``) before the affine map, so
            that the location and width of ``p(x | c)`` can follow the context directly.
        context_shift: with a context, end with a shift linear in the context,
            ``x = … + W c`` (:class:`~hamflow.conditional.ContextShift`, log-det zero), with
            ``W`` fitted by least squares when the affine map is initialised: the untrained
            model is then the linear-Gaussian fit of ``p(x | c)``, not the marginal of ``x``
            (docs/conditional.md). Ignored without a context (an unconditional model is
            unchanged).
        target: an unnormalised density to fit a sampler to, instead of data (a normflows
            ``Target`` or a differentiable callable ``(N, dim) -> (N,)``; :mod:`hamflow.sampling`,
            docs/sampling.md): train on :meth:`reverse_kld`, then :meth:`importance_sample`,
            :meth:`log_normalizer` and :meth:`ess`. The affine map then starts at the identity
            (no data to fit it to) and every flow is followed by a position-dependent momentum
            damping with an exact log-det (:class:`hamflow.sampling.PositionDamping`); the
            target-gradient kicks are an option (:func:`hamflow.sampling.configure`). ``None``:
            a density model, unchanged.

    Example:
        >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
        >>> x = torch.randn(8, 2)
        >>> loss = model.forward_kld(x)          # -mean bound; the first batch sets the affine map
        >>> loss.backward()
        >>> model.log_prob(x, num_samples=4).shape, model.sample(3).shape
        (torch.Size([8]), torch.Size([3, 2]))
        >>> model(x).shape                       # calling the model is log_prob
        torch.Size([8])
    """

    def __init__(
        self,
        dim: int,
        num_flows: int = 4,
        steps_per_flow: int = 1,
        dt: float = 0.5,
        hidden: Sequence[int] = (128, 128),
        encoder_hidden: Sequence[int] = (128, 128),
        prior: str | nf.distributions.BaseDistribution = "normal",
        kinetic: str = "fixed",
        learn_dt: bool = True,
        share_hamiltonian: bool = False,
        integrator: str = "symplectic_euler",
        affine: str | bool = "triangular",
        encoder_trunk: str = "shared",
        friction: bool = True,
        potential_gain: float = 5.0,
        potential_in_scale: float | None = None,
        train_samples: int = 4,
        context_dim: int | None = None,
        target=None,
        context_affine: bool = False,
        context_shift: bool = True,
    ) -> None:
        # The constructor's arguments, as given: save() records them so load() rebuilds the model.
        options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        self.options = options
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not isinstance(num_flows, int) or num_flows < 1:
            raise ValueError(f"num_flows: expected an integer >= 1, got {num_flows!r}")
        if not isinstance(steps_per_flow, int) or steps_per_flow < 1:
            raise ValueError(f"steps_per_flow: expected an integer >= 1, got {steps_per_flow!r}")
        _check_num_samples(train_samples, "train_samples")
        if context_dim is not None and (
            not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 1
        ):
            raise ValueError(
                f"context_dim: expected a positive integer or None, got {context_dim!r}"
            )
        if not get_integrator(integrator).symplectic:
            raise ValueError(
                f"integrator: NHF needs a volume-preserving (symplectic) integrator, got "
                f"{integrator!r}; use 'leapfrog', 'yoshida4' or 'symplectic_euler'"
            )
        if potential_in_scale is None:
            potential_in_scale = 1.0 if context_dim is None else CONDITIONAL_IN_SCALE
        self.dim = dim
        self.train_samples = train_samples
        self.prior = self._make_prior(prior, dim)
        self.context_dim = context_dim
        self.encoder = GaussianMomentumEncoder(
            dim, encoder_hidden, trunk=encoder_trunk, context_dim=context_dim or 0
        )
        self.affine = _make_affine(affine, dim)
        if context_affine and context_dim is None:
            raise ValueError("context_affine: needs a context_dim, got context_dim=None")
        if context_affine:
            self.context_affine = ContextAffine(dim, context_dim)
        if context_dim is not None and context_shift:
            self.context_shift = ContextShift(dim, context_dim)
        # A fixed kinetic energy has no parameters: one module serves every flow.
        fixed = QuadraticEnergy(dim, learnable=False) if kinetic == "fixed" else None

        def hamiltonian() -> SeparableHamiltonian:
            k = fixed if fixed is not None else self._make_kinetic(kinetic, dim, hidden)
            scales = dict(gain=potential_gain, in_scale=potential_in_scale)
            if context_dim is None:
                potential = MLPEnergy(dim, hidden, **scales)
            else:
                potential = ConditionalMLPEnergy(dim, context_dim, hidden, **scales)
            return SeparableHamiltonian(k, potential)

        shared = hamiltonian() if share_hamiltonian else None
        self.flows = nn.ModuleList(
            HamiltonianFlow(
                shared or hamiltonian(), dt, steps_per_flow, integrator, learn_dt=learn_dt, dim=dim
            )
            for _ in range(num_flows)
        )
        self.frictions = (
            nn.ModuleList(ConformalFriction(dim) for _ in range(num_flows)) if friction else None
        )
        # The width of log_prob's importance proposal relative to the encoder's (calibrate_proposal)
        self.register_buffer("proposal_scale", torch.tensor(1.0, dtype=torch.float64))
        # A sampler's target (hamflow.sampling): a plain attribute, not a submodule.
        self.target = None if target is None else _sampling.attach_target(self, target)

    @classmethod
    def paper(cls, dim: int, **overrides) -> NHF:
        """The NHF of paper A.2: learned MLP ``K`` and ``V`` ``[d, 128, 128, 1]``, two leapfrog
        steps per flow, two encoder MLPs ``[d, 128, 128, d]``, a standard normal prior, no affine
        map, a fixed ``dt``.

        The paper gives no step size; ``dt = 0.25`` is this project's choice for it. Any argument
        of :class:`NHF` can be overridden.

        Example:
            >>> NHF.paper(2).flows[0].hamiltonian.kinetic.__class__.__name__
            'MLPEnergy'
        """
        config = dict(
            num_flows=4,
            steps_per_flow=2,
            dt=0.25,
            hidden=(128, 128),
            encoder_hidden=(128, 128),
            integrator="leapfrog",
            kinetic="mlp",
            learn_dt=False,
            affine=False,
            prior="normal",
            encoder_trunk="separate",
            friction=False,
            potential_gain=1.0,
            potential_in_scale=1.0,
            train_samples=1,
        )
        config.update(overrides)
        return cls(dim, **config)

    @staticmethod
    def _make_prior(prior, dim: int) -> nf.distributions.BaseDistribution:
        if isinstance(prior, nf.distributions.BaseDistribution):
            return prior
        if prior == "normal":
            return nf.distributions.DiagGaussian(2 * dim, trainable=False)
        if prior == "soft_uniform":
            return SoftUniform(2 * dim)
        if prior == "generalized_normal":
            return GeneralizedNormal(2 * dim, blocks=2)
        raise ValueError(
            "prior: expected 'normal', 'generalized_normal', 'soft_uniform' or a normflows "
            f"BaseDistribution, got {prior!r}"
        )

    @staticmethod
    def _make_kinetic(kinetic: str, dim: int, hidden: Sequence[int]) -> Energy:
        if kinetic == "mlp":
            return MLPEnergy(dim, hidden)
        if kinetic == "quadratic":
            return QuadraticEnergy(dim)
        raise ValueError(f"kinetic: expected 'fixed', 'quadratic' or 'mlp', got {kinetic!r}")

    # -- maps between the prior and the data -------------------------------------------------

    def transport(
        self,
        q: Tensor,
        p: Tensor,
        *,
        inverse: bool = False,
        return_all: bool = False,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor] | list[tuple[Tensor, Tensor]]:
        """Move ``(q, p)`` through all flows: prior → data, or data → prior with ``inverse``.

        ``q`` here is the flows' position ``q_T``, before the affine map (see :meth:`to_data`).
        With ``return_all`` the states after every flow are returned, the start included.
        A conditional model needs ``context``, one checked row per row of ``q``.
        """
        return self._move(q, p, inverse=inverse, return_all=return_all, context=context)[0]

    def _move(self, q, p, *, inverse=False, return_all=False, context=None):
        """:meth:`transport`'s states, and the per-row ``ln |det|`` of the steps whose Jacobian
        depends on the state: a sampler's :class:`~hamflow.sampling.DampedFlow`, whose
        ``step_log_det`` gives it (the Hamiltonian steps add nothing; the frictions' constant
        is :meth:`flow_log_det`)."""
        frictions = self.frictions or [None] * len(self.flows)
        layers = list(zip(self.flows, frictions))
        states, total = [(q, p)], 0.0
        cache = KickCache()  # flows sharing one Hamiltonian share the gradient where they meet
        for flow, friction in reversed(layers) if inverse else layers:
            if inverse and friction is not None:
                p = friction.damp(p, inverse=True)
            if context is not None:
                q, p = context_step(flow, q, p, context, inverse=inverse, cache=cache)
            elif hasattr(flow, "step_log_det"):
                q, p, log_det = flow.step_log_det(q, p, inverse=inverse, cache=cache)
                total = total + log_det
            else:
                q, p = flow.step(q, p, inverse=inverse, cache=cache)
            if not inverse and friction is not None:
                p = friction.damp(p)
            if return_all:
                states.append((q, p))
        return (states if return_all else (q, p)), total

    def flow_log_det(self) -> Tensor | float:
        """``ln |det|`` of the prior → ``(q_T, p_T)`` map: the frictions' ``−Σ c`` (else 0)."""
        if self.frictions is None:
            return 0.0
        return sum(f.log_det() for f in self.frictions)

    def to_data(self, q: Tensor, context: Tensor | None = None) -> Tensor:
        """The affine map from the flows' ``q_T`` to data space (the identity without one)."""
        if getattr(self, "context_affine", None) is not None:
            q = self.context_affine(q, context)[0]
        x = q if self.affine is None else self.affine(q)[0]
        if getattr(self, "context_shift", None) is not None:
            x = x + self.context_shift(context)
        return x

    def from_data(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor | float]:
        """``q_T`` for data ``x`` and ``ln |det ∂q_T/∂x|`` (``0.0`` without an affine map)."""
        if getattr(self, "context_shift", None) is not None:
            x = x - self.context_shift(context)
        q, log_det = x, 0.0
        if self.affine is not None:
            q, log_det = self.affine.inverse(x)
        if getattr(self, "context_affine", None) is not None:
            q, ctx_log_det = self.context_affine.inverse(q, context)
            log_det = log_det + ctx_log_det
        return q, log_det

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected shape (batch, {self.dim}), got {tuple(x.shape)}")
        ref = self._param_ref()
        if x.dtype != ref.dtype:
            raise TypeError(
                f"x: expected dtype {ref.dtype} (the model's), got {x.dtype}; convert the data "
                f"with x.to({ref.dtype}) or the model with model.to({x.dtype})"
            )
        if not torch.isfinite(x).all():
            raise ValueError("x: expected finite values, got NaN or inf")

    def _log_weights(
        self,
        x: Tensor,
        num_samples: int,
        eps: Tensor | None = None,
        scale: float = 1.0,
        context: Tensor | None = None,
    ) -> Tensor:
        """``ln π(s₀) + ln|det| − ln f(p | q_T)`` for ``num_samples`` momenta per point, ``(K, B)``.

        ``ln|det|`` is that of the data → prior map: the affine map's, the frictions' and a
        sampler's position dampings'.
        """
        q, log_det = self.from_data(x, context)
        p, log_f = self.encoder.rsample(q, num_samples, eps, scale, context=context)
        if num_samples > 1:
            q = q.expand(num_samples, *q.shape)
            if context is not None:
                context = context.expand(num_samples, *context.shape)
        if context is not None:
            context = context.reshape(-1, context.shape[-1])
        (q0, p0), step_log_det = self._move(
            q.reshape(-1, self.dim), p.reshape(-1, self.dim), inverse=True, context=context
        )
        log_pi = self.prior.log_prob(torch.cat([q0, p0], dim=-1)) + step_log_det
        return log_pi.reshape(log_f.shape) - log_f + log_det - self.flow_log_det()

    @torch.no_grad()
    def initialize_affine(
        self, x: Tensor, num_base: int | None = None, *, context: Tensor | None = None
    ) -> None:
        """Set the affine map so that the model's samples have the mean and covariance of ``x``.

        The map's input is ``q_T``, the prior pushed through the Hamiltonian flows. Those move
        it away from the prior before training, by ``dt · p`` per drift and a kick per potential
        (with the defaults ``q_T`` has about five times the prior's variance), so the map is
        fitted to ``num_base`` samples of ``q_T`` (default ``max(4096, 64 · dim)``), not to a
        standard normal. Its random draws leave the global random state as it was. Called by
        the first training-mode :meth:`elbo`; call it yourself to initialise from more data.
        A model without an affine map (``affine="none"``) has nothing to set. (Paper A.2 has no
        affine map; this is the initialisation of this library's default, docs/density/index.md.)
        A conditional model transports the base draws under contexts drawn from ``context``'s
        rows (one per row of ``x``), and first fits its context shift (``context_shift``) by
        least squares of ``x`` on ``context``; the affine map is then fitted to the residuals.

        Example:
            >>> model = NHF(2)
            >>> x = torch.randn(2048, 2) * torch.tensor([3.0, 0.5]) + 1.0
            >>> model.initialize_affine(x)
            >>> with torch.no_grad():
            ...     ratio = model.sample(8000).var(0) / x.var(0)
            >>> bool(((ratio - 1).abs() < 0.2).all())   # the untrained model has x's variances
            True
        """
        if self.affine is None:
            return
        self._check_x(x)
        context = check_context(context, self.context_dim, len(x), self._param_ref())
        n = max(4096, 64 * self.dim) if num_base is None else int(num_base)
        _check_num_samples(n, "num_base")
        if context is not None and getattr(self, "context_shift", None) is not None:
            x = self.context_shift.initialize(x, context)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            s0, _ = self.prior(n)
            q0, p0 = s0.to(self._param_ref()).chunk(2, dim=-1)
            if context is not None:
                context = context[torch.randint(len(context), (n,), device=context.device)]
            q_T, _ = self.transport(q0, p0, context=context)
        if getattr(self, "context_affine", None) is not None:
            q_T = self.context_affine(q_T, context)[0]
        self.affine.initialize(x, q_T)

    # -- the normflows-style API --------------------------------------------------------------

    def elbo(self, x: Tensor, context: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """Single-sample (or ``num_samples``-averaged) ELBO of paper Eq. 6, shape ``(B,)``.

        In training mode, the first call initialises the affine map from ``x`` so that the
        untrained model's samples have the mean and covariance of ``x`` (see
        :meth:`initialize_affine`).
        """
        log_w = self._training_log_weights(x, num_samples, context)
        return log_w if num_samples == 1 or log_w.numel() == 0 else log_w.mean(0)

    def iwae(
        self, x: Tensor, context: Tensor | None = None, num_samples: int | None = None
    ) -> Tensor:
        """The importance-weighted bound ``ln (1/K) Σ_k w_k``, ``(B,)``; ``K = num_samples``, by
        default the model's ``train_samples``.

        ``w_k = π(s₀(x, p_k)) |det| / f(p_k | x)`` for ``K`` reparametrised momenta
        ``p_k ~ f(· | x)`` (Burda et al., 2016). It is differentiable, so it can be trained on;
        ``K = 1`` is the ELBO of Eq. 6 draw for draw, and the bound tightens towards ``ln p(x)``
        as ``K`` grows. :meth:`log_prob` is the same estimate for evaluation (no graph, chunked,
        quasi-random momenta); this is the one to differentiate.

        Example:
            >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
            >>> x = torch.randn(5, 2)
            >>> bound = model.iwae(x, num_samples=8)
            >>> bound.shape, bound.requires_grad
            (torch.Size([5]), True)
        """
        k = self.train_samples if num_samples is None else num_samples
        log_w = self._training_log_weights(x, k, context)
        if k == 1 or log_w.numel() == 0:
            return log_w
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    def _training_log_weights(
        self, x: Tensor, num_samples: int, context: Tensor | None = None
    ) -> Tensor:
        """Checked :meth:`_log_weights` with a graph; in training mode it may set the affine map."""
        self._check_x(x)
        _check_num_samples(num_samples)
        context = check_context(context, self.context_dim, len(x), self._param_ref())
        if x.shape[0] == 0:
            return x.new_zeros(0)
        if self.affine is not None and self.training and self.affine.needs_initialization(x):
            self.initialize_affine(x, context=context)
        return self._log_weights(x, num_samples, context=context)

    def forward_kld(
        self, x: Tensor, context: Tensor | None = None, num_samples: int | None = None
    ) -> Tensor:
        """The training loss, the same call as a normflows model: ``−mean`` of :meth:`iwae`.

        ``num_samples`` momenta per point, by default the model's ``train_samples`` (4; 1 for
        :meth:`paper`, whose loss is the ELBO of Eq. 6). The bound with ``K > 1`` is what the
        default trains on because, at the same cost in phase-space states per step (a batch of
        ``B / K`` points), it trains better than the ELBO on ``B`` points: docs/density/index.md.

        Example:
            >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
            >>> x = torch.randn(8, 2)
            >>> _ = torch.manual_seed(0); a = model.forward_kld(x, num_samples=1)
            >>> _ = torch.manual_seed(0); b = -model.elbo(x).mean()
            >>> bool(torch.equal(a, b))                    # K = 1 is the ELBO
            True
        """
        bound = self.iwae(x, context, num_samples)
        if bound.numel() == 0:
            raise ValueError("x: expected at least one data point for a training loss, got 0")
        return -bound.mean()

    @torch.inference_mode()
    def log_prob(
        self,
        x: Tensor,
        context: Tensor | None = None,
        num_samples: int = 16,
        chunk_size: int = 2**14,
        sampler: str = "sobol",
        proposal_scale: float | None = None,
    ) -> Tensor:
        """Importance-weighted (IWAE) estimate of ``ln p(x)`` with ``K = num_samples``, ``(B,)``.

        It is a lower bound in expectation that tightens as ``K`` grows
        (docs/benchmarks/nhf-speed.md measures how close the default is to ``K = 2048``). With
        ``sampler="sobol"`` (default) the ``K``
        momenta are randomised quasi-Monte Carlo draws (:func:`~hamflow.distributions.
        sobol_normal`): each is exactly distributed as the proposal says, so the estimate is
        still a lower bound in expectation, and a tighter one than ``sampler="random"`` gives
        for the same ``K``. ``sampler="common"`` uses one such set, with one shift, for every
        point: each point's estimate is distributed as before, but the errors of nearby points
        are alike, so an image of the density over a grid is smooth rather than speckled (what
        the figures use); a mean over many points then no longer averages the randomness out,
        so score test sets with the default. Points are processed in chunks of about
        ``chunk_size`` phase-space states, without an autograd graph.

        The proposal is the encoder ``f(p | x)`` with its standard deviation multiplied by
        ``proposal_scale`` (default: the model's ``proposal_scale`` buffer, 1 until
        :meth:`calibrate_proposal` sets it). Any scale gives a valid bound; a proposal wider
        than the ELBO-trained encoder, which is narrower than the true posterior, gives a
        tighter one.
        """
        self._check_x(x)
        _check_num_samples(num_samples)
        context = check_context(context, self.context_dim, len(x), self._param_ref())
        if sampler not in ("sobol", "common", "random"):
            raise ValueError(f"sampler: expected 'sobol', 'common' or 'random', got {sampler!r}")
        if proposal_scale is None:
            proposal_scale = float(self.proposal_scale)
        _check_scale(proposal_scale)
        rows = max(1, chunk_size // num_samples)
        out = [x.new_zeros(0)]
        common = None
        if sampler == "common":  # one set of momenta, shape (K, 1, d), broadcast over the points
            common = sobol_normal(num_samples, self.dim, 1, dtype=x.dtype, device=x.device)
        contexts = [None] * len(x.split(rows)) if context is None else context.split(rows)
        for xb, cb in zip(x.split(rows), contexts):
            eps = common
            if sampler == "sobol":
                eps = sobol_normal(num_samples, self.dim, len(xb), dtype=xb.dtype, device=xb.device)
            if eps is not None and num_samples == 1:
                eps = eps[0]
            log_w = self._log_weights(xb, num_samples, eps, proposal_scale, context=cb)
            log_w = log_w.reshape(num_samples, -1)
            out.append(torch.logsumexp(log_w, dim=0) - math.log(num_samples))
        return torch.cat(out)

    @torch.inference_mode()
    def calibrate_proposal(
        self,
        x: Tensor,
        context: Tensor | None = None,
        num_samples: int = 16,
        scales: Sequence[float] = PROPOSAL_SCALES,
        seed: int = 0,
    ) -> dict[float, float]:
        """Set the width of :meth:`log_prob`'s proposal to the one of ``scales`` that gives the
        highest mean estimate on ``x``, and return every scale's mean ``ln p``.

        Trained on a variational bound, whose gap (for the ELBO ``KL(f ‖ posterior)``) is
        mode-seeking, the encoder ``f(p | q)`` is narrower than the true posterior of the
        momentum (less so with the default ``train_samples=4``). Few importance samples from a
        proposal narrower than its target miss the target's tails: the weights are heavy-tailed,
        and the IWAE estimate sits well below ``ln p(x)``. Widening the proposal by a factor
        ``τ`` trades that for a small loss where ``f`` was right, and every ``τ`` gives a lower
        bound in expectation, so the highest of them is the tightest. How much wider pays
        depends on the model and on the dimension: docs/density/index.md measures ``τ ≈ 2`` on 2-D
        toys and ``τ = 1.1`` on 64-D digits, where ``τ = 2`` costs 41 nats. Call it once after
        training, on training or validation rows (choosing on the test rows would bias the test
        score up); every scale is scored with the same random draws.

        Args:
            x: rows to calibrate on, ``(N, dim)``; a few thousand are plenty.
            context: their contexts, for a conditional model (as in :meth:`log_prob`).
            num_samples: the ``K`` to calibrate for (that of the later :meth:`log_prob` calls).
            scales: the candidate factors on the encoder's standard deviation.
            seed: seeds the draws shared by every scale; torch's global RNG is left as it was.

        Example:
            >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
            >>> scores = model.calibrate_proposal(torch.randn(64, 2), scales=(1.0, 2.0))
            >>> sorted(scores) == [1.0, 2.0], float(model.proposal_scale) in scores
            (True, True)
        """
        self._check_x(x)
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one data point to calibrate on, got 0")
        scales = [float(s) for s in scales]
        if not scales:
            raise ValueError("scales: expected at least one scale, got none")
        for s in scales:
            _check_scale(s, "scales")
        scores = {}
        for s in scales:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                lp = self.log_prob(x, context, num_samples=num_samples, proposal_scale=s)
                scores[s] = lp.double().mean().item()
        finite = {s: v for s, v in scores.items() if math.isfinite(v)}
        if not finite:
            raise ValueError(f"calibrate_proposal: no scale gave a finite mean estimate: {scores}")
        self.proposal_scale.fill_(max(finite, key=finite.get))
        return scores

    def forward(self, x: Tensor, context: Tensor | None = None, num_samples: int = 16) -> Tensor:
        """Calling the model is :meth:`log_prob` (no gradient); train on :meth:`forward_kld`."""
        return self.log_prob(x, context, num_samples=num_samples)

    def sample(
        self,
        num_samples: int = 1,
        context: Tensor | None = None,
        return_momentum: bool = False,
        *,
        grad: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw ``num_samples`` points (and their momenta ``p_T`` on request).

        The result is a plain tensor, detached from the model, unless ``grad=True`` asks for
        samples that carry the graph back to the parameters (reparametrised, for a loss on the
        samples). ``num_samples = 0`` returns empty tensors. A conditional model takes one
        ``context`` for all samples, ``(context_dim,)`` or ``(1, context_dim)``, or one per
        sample, ``(num_samples, context_dim)``.

        Example:
            >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
            >>> model.sample(3).requires_grad, model.sample(3, grad=True).requires_grad
            (False, True)
        """
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 0:
            raise ValueError(f"num_samples: expected an integer >= 0, got {num_samples!r}")
        ref = self._param_ref()
        context = check_context(context, self.context_dim, num_samples, ref, what="the samples")
        if num_samples == 0:
            empty = ref.new_zeros(0, self.dim)
            return (empty, empty.clone()) if return_momentum else empty
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            s0, _ = self.prior(num_samples)
            q0, p0 = s0.to(ref).chunk(2, dim=-1)
            q, p = self.transport(q0, p0, context=context)
            x = self.to_data(q, context)
        return (x, p) if return_momentum else x

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path``: its constructor options and weights, atomically.

        :meth:`load` rebuilds it from that file alone. Options that are objects rather than
        plain values (a normflows prior, a target callable) cannot be recorded: pass them to
        :meth:`load` again.

        Example:
            >>> import tempfile, pathlib
            >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
            >>> path = model.save(pathlib.Path(tempfile.mkdtemp()) / "nhf.pt")
            >>> again = NHF.load(path)
            >>> again.options == model.options
            True
            >>> x = torch.randn(4, 2)
            >>> _ = torch.manual_seed(1); a = again.log_prob(x)
            >>> _ = torch.manual_seed(1); b = model.log_prob(x)
            >>> bool(torch.equal(a, b))
            True
        """
        from ._serialize import save_module

        return save_module(self, path, kind="NHF", options=self.options)

    @classmethod
    def load(cls, path: str | Path, map_location=None, **overrides) -> NHF:
        """Rebuild a model written by :meth:`save`; ``overrides`` supply options it could not
        record (a prior object, a target) and must match the saved weights.

        A file that is not such a model, is truncated, or comes from a newer format is refused
        with a ``ValueError`` that says which.
        """
        from ._serialize import load_module

        return load_module(cls, path, kind="NHF", map_location=map_location, overrides=overrides)

    def phase_space_flow(self) -> nf.NormalizingFlow:
        """A ``normflows.NormalizingFlow`` over ``(q, p)`` that shares this model's parameters.

        Its ``log_prob`` is the exact joint density of ``(q_T, p_T)``, before the affine map on
        ``q``: ``ln π(s₀)`` (the Hamiltonian flows' log-det is zero) plus the log-dets of the
        frictions and of a sampler's position dampings.
        """
        layers: list[nf.flows.Flow] = []
        for i, flow in enumerate(self.flows):
            layers.append(flow)
            if self.frictions is not None:
                layers.append(self.frictions[i])
        return nf.NormalizingFlow(q0=self.prior, flows=layers)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Models saved before calibrate_proposal existed load with the encoder's own width.
        state_dict.setdefault(prefix + "proposal_scale", torch.tensor(1.0, dtype=torch.float64))
        # Samplers saved before calibrate_momentum existed: r(p | x) at the encoder's own width.
        if "momentum_scale" in self._buffers:
            state_dict.setdefault(prefix + "momentum_scale", torch.ones((), dtype=torch.float64))
        # Conditional models saved before the context shift existed: a zero shift is what they had.
        if getattr(self, "context_shift", None) is not None:
            state_dict.setdefault(
                prefix + "context_shift.weight", torch.zeros_like(self.context_shift.weight)
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- sampling from an unnormalised target (hamflow.sampling, docs/sampling.md) -----------

    def reverse_kld(
        self,
        num_samples: int = 256,
        beta: float = 1.0,
        momentum: str = "encoder",
        path: str = "tempered",
    ) -> Tensor:
        """Reverse KL on the extended space ``(x, p)``, the loss of a sampler built with
        ``target`` (``beta < 1``: a point on the annealing ``path``):
        :func:`hamflow.sampling.reverse_kld`."""
        return _sampling.reverse_kld(self, num_samples, beta, momentum, path)

    def reverse_alpha_div(
        self, num_samples: int = 256, alpha: float = 2.0, momentum: str = "encoder"
    ) -> Tensor:
        """Mass-covering alpha-divergence loss of a sampler:
        :func:`hamflow.sampling.reverse_alpha_div`."""
        return _sampling.reverse_alpha_div(self, num_samples, alpha, momentum)

    def importance_sample(
        self,
        num_samples: int = 4000,
        chunk_size: int = 4096,
        momentum: str = "encoder",
        n_momenta: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Samples ``x`` and their exact log importance weights ``ln w`` (``E[w] = Z``), with
        ``n_momenta`` momenta per draw: :func:`hamflow.sampling.importance_sample`."""
        return _sampling.importance_sample(self, num_samples, chunk_size, momentum, n_momenta)

    def log_normalizer(self, num_samples: int = 4000, **kwargs) -> Tensor:
        """Estimate of ``ln Z``, ``logsumexp(ln w) − ln n``:
        :func:`hamflow.sampling.log_normalizer`."""
        return _sampling.log_normalizer(self, num_samples, **kwargs)

    def ess(self, num_samples: int = 4000, **kwargs) -> Tensor:
        """Effective sample size fraction of importance draws: :func:`hamflow.sampling.ess`."""
        return _sampling.ess(self, num_samples, **kwargs)

    def _param_ref(self) -> Tensor:
        return next(self.encoder.parameters())


def _make_affine(affine: str | bool, dim: int) -> DiagonalAffine | TriangularAffine | None:
    if isinstance(affine, bool):
        kind = "diagonal" if affine else "none"
    else:
        kind = affine
    if kind == "triangular":
        return TriangularAffine(dim)
    if kind == "diagonal":
        return DiagonalAffine(dim)
    if kind == "none":
        return None
    raise ValueError(f"affine: expected 'triangular', 'diagonal', 'none' or a bool, got {affine!r}")


def _check_scale(scale: float, name: str = "proposal_scale") -> None:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {scale!r}")


def _check_num_samples(n: int, name: str = "num_samples") -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {n!r}")
