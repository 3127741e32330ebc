"""NHF as the density estimator of the ``sbi`` package's neural posterior estimation (NPE).

Neural posterior estimation (Papamakarios & Murray, 2016; Greenberg et al., 2019) fits a
conditional density ``q(θ | x)`` to simulated pairs ``(θ, x)`` by maximum likelihood; the
``sbi`` package (Tejero-Cantero et al., 2020) runs the simulations, the training loop, the
prior-support rejection and the posterior object around it. :func:`nhf_posterior_nn` gives
sbi's ``NPE`` an :class:`~hamflow.NHF` over ``θ`` with the observation ``x`` as its context
(``NHF(dim_θ, context_dim=dim_x)``, paper Sec. 3.3 with context-dependent potentials,
:mod:`hamflow.conditional`):

    from sbi.inference import NPE
    npe = NPE(prior, density_estimator=nhf_posterior_nn(num_flows=4))
    estimator = npe.append_simulations(theta, x).train()
    samples = npe.build_posterior().sample((1000,), x=x_o)

The builder is called by sbi with the training simulations. It z-scores ``θ`` and ``x`` per
dimension with their means and standard deviations (as sbi's own flows do by default), and
fits NHF's data-initialised affine map to the standardised ``θ``. :class:`NHFPosteriorEstimator`
is sbi's ``ConditionalDensityEstimator``: ``loss`` is the negative importance-weighted bound
NHF trains on, ``log_prob`` its IWAE estimate, ``sample`` its draws, each mapped back through
the standardisation (log-densities gain ``−Σ ln σ_θ``).

``sbi`` is an optional extra (``pip install -e ".[sbi]"``). Without it this module still
imports and the estimator works on its own (shapes as sbi's); only ``NPE`` needs the package.
sbi writes TensorBoard logs under ``./sbi-logs`` unless its trainer is given a ``tracker``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .nhf import NHF

try:  # the optional extra; the estimator must be sbi's class for NPE to accept it
    from sbi.neural_nets.estimators.base import ConditionalDensityEstimator as _Base

    HAS_SBI = True
except ImportError:  # pragma: no cover - depends on the environment
    from torch.nn import Module as _Base

    HAS_SBI = False

__all__ = ["NHFPosteriorEstimator", "nhf_posterior_nn", "HAS_SBI"]


class NHFPosteriorEstimator(_Base):
    """An :class:`~hamflow.NHF` ``q(θ | x)`` in standardised coordinates, with sbi's
    ``ConditionalDensityEstimator`` interface (``loss``, ``log_prob``, ``sample``).

    ``net`` models ``θ_z = (θ − μ_θ) / σ_θ`` given ``x_z = (x − μ_x) / σ_x``; every method takes
    and returns the original coordinates. Build it with :meth:`from_batches` or, for sbi,
    :func:`nhf_posterior_nn`.

    Parameters
    ----------
    net : NHF
        A conditional NHF, ``NHF(dim_θ, context_dim=dim_x)``.
    theta_shift, theta_scale : Tensor
        ``μ_θ`` and ``σ_θ``, ``(dim_θ,)``; ``σ_θ > 0``.
    x_shift, x_scale : Tensor
        ``μ_x`` and ``σ_x``, ``(dim_x,)``; ``σ_x > 0``.
    num_samples : int
        Momenta per row in :meth:`log_prob` (its IWAE ``K``).

    Examples
    --------
    >>> theta = torch.randn(500, 2) * 3.0 + 1.0
    >>> x = theta + 0.5 * torch.randn(500, 2)
    >>> est = NHFPosteriorEstimator.from_batches(theta, x, num_flows=2, hidden=(16,),
    ...                                          encoder_hidden=(16,))
    >>> est.loss(theta[:8], x[:8]).shape                   # one loss per pair
    torch.Size([8])
    >>> est.log_prob(theta[:8].expand(3, 8, 2), x[:8]).shape   # (sample_dim, batch_dim)
    torch.Size([3, 8])
    >>> est.sample((100,), x[:4]).shape                    # (*sample_shape, batch_dim, dim_θ)
    torch.Size([100, 4, 2])
    """

    def __init__(
        self,
        net: NHF,
        theta_shift: Tensor,
        theta_scale: Tensor,
        x_shift: Tensor,
        x_scale: Tensor,
        num_samples: int = 64,
    ) -> None:
        if not isinstance(net, NHF) or net.context_dim is None:
            raise TypeError(
                f"net: expected a conditional NHF (NHF(dim, context_dim=c)), got "
                f"{type(net).__name__}" + ("" if not isinstance(net, NHF) else " without context")
            )
        dim_theta, dim_x = net.dim, net.context_dim
        for name, v, d in (
            ("theta_shift", theta_shift, dim_theta),
            ("theta_scale", theta_scale, dim_theta),
            ("x_shift", x_shift, dim_x),
            ("x_scale", x_scale, dim_x),
        ):
            if not isinstance(v, Tensor) or v.shape != (d,) or not torch.isfinite(v).all():
                got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise ValueError(f"{name}: expected a finite tensor of shape ({d},), got {got}")
        if not ((theta_scale > 0).all() and (x_scale > 0).all()):
            raise ValueError("theta_scale, x_scale: expected positive standard deviations")
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples: expected an integer >= 1, got {num_samples!r}")
        if HAS_SBI:
            super().__init__(net, torch.Size([dim_theta]), torch.Size([dim_x]))
        else:  # pragma: no cover - depends on the environment
            super().__init__()
            self.net = net
            self._input_shape, self._condition_shape = torch.Size([dim_theta]), torch.Size([dim_x])
        self.num_samples = num_samples
        ref = net._param_ref()
        self.register_buffer("theta_shift", theta_shift.detach().to(ref))
        self.register_buffer("theta_scale", theta_scale.detach().to(ref))
        self.register_buffer("x_shift", x_shift.detach().to(ref))
        self.register_buffer("x_scale", x_scale.detach().to(ref))

    @property
    def input_shape(self) -> torch.Size:
        """``(dim_θ,)``, the event shape of ``θ``."""
        return self._input_shape

    @property
    def condition_shape(self) -> torch.Size:
        """``(dim_x,)``, the event shape of ``x``."""
        return self._condition_shape

    @classmethod
    def from_batches(
        cls,
        theta: Tensor,
        x: Tensor,
        *,
        z_score_theta: bool = True,
        z_score_x: bool = True,
        num_samples: int = 64,
        **nhf_options,
    ) -> NHFPosteriorEstimator:
        """Build an estimator for pairs like ``(theta, x)``: their widths, their per-dimension
        means and standard deviations (a constant column keeps ``σ = 1``), and NHF's affine map
        fitted to the standardised ``theta`` (:meth:`NHF.initialize_affine
        <hamflow.NHF.initialize_affine>`, which leaves the global random state as it was).

        Parameters
        ----------
        theta : Tensor
            Parameters, ``(N >= 2, dim_θ)``, finite.
        x : Tensor
            Their simulations, ``(N, dim_x)``, finite.
        z_score_theta, z_score_x : bool
            Standardise ``θ`` / ``x`` (``False``: shift 0, scale 1).
        num_samples : int
            :meth:`log_prob`'s IWAE ``K``.
        **nhf_options
            Passed to :class:`~hamflow.NHF` (``num_flows``, ``hidden``, ...), not ``dim`` or
            ``context_dim``.

        Returns
        -------
        NHFPosteriorEstimator
            An untrained estimator.
        """
        for bad in ("dim", "context_dim"):
            if bad in nhf_options:
                raise TypeError(f"{bad}: set from the batches' widths, do not pass it")
        theta = _check_batch(theta, "theta")
        x = _check_batch(x, "x")
        if len(theta) != len(x):
            raise ValueError(
                f"theta, x: expected one simulation per parameter row, got {len(theta)} rows of "
                f"theta and {len(x)} of x"
            )
        theta_shift, theta_scale = _moments(theta, z_score_theta)
        x_shift, x_scale = _moments(x, z_score_x)
        net = NHF(theta.shape[1], context_dim=x.shape[1], **nhf_options).to(theta.dtype)
        est = cls(net, theta_shift, theta_scale, x_shift, x_scale, num_samples=num_samples)
        est.net.initialize_affine(est._theta_z(theta), context=est._x_z(x))
        return est

    # -- coordinates -------------------------------------------------------------------------

    def _theta_z(self, theta: Tensor) -> Tensor:
        return (theta - self.theta_shift) / self.theta_scale

    def _x_z(self, x: Tensor) -> Tensor:
        return (x - self.x_shift) / self.x_scale

    def _log_scale(self) -> Tensor:
        """``Σ ln σ_θ``: what standardising ``θ`` adds to its log-density."""
        return self.theta_scale.log().sum()

    def _check_last(self, t: Tensor, name: str, shape: torch.Size) -> None:
        if not isinstance(t, Tensor) or t.dim() < 1 or t.shape[-1:] != shape:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected a tensor ending in {tuple(shape)}, got {got}")

    # -- sbi's ConditionalDensityEstimator interface ------------------------------------------

    def loss(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """The training loss per pair, ``(B,)``: minus NHF's importance-weighted bound on
        ``ln q(θ | x)`` (:meth:`NHF.iwae <hamflow.NHF.iwae>`, the model's ``train_samples``
        momenta), in the original coordinates.

        Parameters
        ----------
        input : Tensor
            ``θ``, ``(B, dim_θ)``.
        condition : Tensor
            ``x``, ``(B, dim_x)``.
        """
        self._check_last(input, "input", self.input_shape)
        self._check_last(condition, "condition", self.condition_shape)
        if input.dim() != 2 or condition.shape != (len(input), *self.condition_shape):
            raise ValueError(
                f"input, condition: expected (B, {self.input_shape[0]}) and "
                f"(B, {self.condition_shape[0]}), got {tuple(input.shape)} and "
                f"{tuple(condition.shape)}"
            )
        bound = self.net.iwae(self._theta_z(input), self._x_z(condition))
        return -(bound - self._log_scale())

    def log_prob(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """``ln q(θ | x)``, ``(sample_dim, batch_dim)``: NHF's IWAE estimate with
        ``num_samples`` momenta (quasi-random, no graph), or, when gradients are on (sbi's
        multi-round loss), the differentiable bound with the model's ``train_samples``.

        Parameters
        ----------
        input : Tensor
            ``θ``, ``(sample_dim, batch_dim, dim_θ)`` or ``(batch_dim, dim_θ)``.
        condition : Tensor
            ``x``, ``(batch_dim, dim_x)`` or ``(sample_dim, batch_dim, dim_x)``; batch
            dimensions of 1 broadcast.
        """
        self._check_last(input, "input", self.input_shape)
        self._check_last(condition, "condition", self.condition_shape)
        if input.dim() == 2:
            input = input.unsqueeze(0)
        if input.dim() != 3 or condition.dim() not in (2, 3):
            raise ValueError(
                f"input, condition: expected (sample_dim, batch_dim, {self.input_shape[0]}) and "
                f"(batch_dim, {self.condition_shape[0]}), got {tuple(input.shape)} and "
                f"{tuple(condition.shape)}"
            )
        cond_batch = condition.shape[-2]
        try:
            batch = torch.broadcast_shapes((input.shape[1],), (cond_batch,))[0]
        except RuntimeError as err:
            raise ValueError(
                f"input, condition: batch sizes {input.shape[1]} and {cond_batch} do not "
                "broadcast (equal, or one of them 1)"
            ) from err
        samples = input.shape[0]
        if condition.dim() == 2:
            condition = condition.unsqueeze(0)
        theta = input.expand(samples, batch, -1).reshape(samples * batch, -1)
        x = condition.expand(samples, batch, -1).reshape(samples * batch, -1)
        theta_z, x_z = self._theta_z(theta), self._x_z(x)
        if torch.is_grad_enabled():
            lp = self.net.iwae(theta_z, x_z)
        else:
            lp = self.net.log_prob(theta_z, x_z, num_samples=self.num_samples)
        return (lp - self._log_scale()).reshape(samples, batch)

    def sample(self, sample_shape, condition: Tensor, **kwargs) -> Tensor:
        """Draws of ``θ | x``, ``(*sample_shape, batch_dim, dim_θ)``.

        Parameters
        ----------
        sample_shape : torch.Size or tuple of int
            Draws per condition.
        condition : Tensor
            ``x``, ``(batch_dim, dim_x)``.
        """
        self._check_last(condition, "condition", self.condition_shape)
        if condition.dim() != 2:
            raise ValueError(
                f"condition: expected (batch_dim, {self.condition_shape[0]}), got "
                f"{tuple(condition.shape)}"
            )
        shape = torch.Size(sample_shape)
        n, batch = shape.numel(), condition.shape[0]
        x_z = self._x_z(condition).unsqueeze(0).expand(n, batch, -1).reshape(n * batch, -1)
        theta_z = self.net.sample(n * batch, x_z)
        theta = theta_z * self.theta_scale + self.theta_shift
        return theta.reshape(*shape, batch, *self.input_shape)

    def calibrate_proposal(self, theta: Tensor, x: Tensor, **kwargs) -> dict[float, float]:
        """Choose :meth:`log_prob`'s proposal width on held-out pairs
        (:meth:`NHF.calibrate_proposal <hamflow.NHF.calibrate_proposal>` with this estimator's
        ``num_samples``, on the standardised pairs); returns each width's mean ``ln q``
        in the standardised coordinates."""
        theta, x = _check_batch(theta, "theta"), _check_batch(x, "x")
        kwargs.setdefault("num_samples", self.num_samples)
        return self.net.calibrate_proposal(self._theta_z(theta), self._x_z(x), **kwargs)


def nhf_posterior_nn(
    *,
    z_score_theta: bool = True,
    z_score_x: bool = True,
    num_samples: int = 64,
    **nhf_options,
) -> Callable[[Tensor, Tensor], NHFPosteriorEstimator]:
    """A builder that ``sbi``'s ``NPE`` takes as its ``density_estimator``: called with the
    training simulations ``(batch_theta, batch_x)``, it returns an untrained
    :class:`NHFPosteriorEstimator` (:meth:`~NHFPosteriorEstimator.from_batches`).

    Parameters
    ----------
    z_score_theta, z_score_x : bool
        Standardise ``θ`` / ``x`` per dimension with the batches' moments.
    num_samples : int
        IWAE ``K`` of the estimator's ``log_prob``.
    **nhf_options
        Passed to :class:`~hamflow.NHF` (``num_flows``, ``hidden``, ``train_samples``, ...).

    Returns
    -------
    callable
        ``build(batch_theta, batch_x) -> NHFPosteriorEstimator``.

    Examples
    --------
    ``NPE(prior, density_estimator=build)`` calls ``build`` with its training simulations;
    called directly, it gives the untrained estimator sbi would train:

    >>> build = nhf_posterior_nn(num_flows=2, hidden=(16,), encoder_hidden=(16,))
    >>> theta = torch.rand(300, 2) * 4 - 2
    >>> estimator = build(theta, theta + 0.1 * torch.randn_like(theta))
    >>> estimator.sample((50,), torch.zeros(1, 2)).shape      # (*sample_shape, batch, dim_θ)
    torch.Size([50, 1, 2])
    """

    def build(batch_theta: Tensor, batch_x: Tensor) -> NHFPosteriorEstimator:
        return NHFPosteriorEstimator.from_batches(
            batch_theta,
            batch_x,
            z_score_theta=z_score_theta,
            z_score_x=z_score_x,
            num_samples=num_samples,
            **nhf_options,
        )

    return build


def _check_batch(t: Tensor, name: str) -> Tensor:
    """A finite ``(N >= 2, d)`` float tensor (sbi passes ``(N, d)`` simulations)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2 or t.shape[0] < 2 or t.shape[1] < 1:
        raise ValueError(
            f"{name}: expected shape (N >= 2, dim), got {tuple(t.shape)}; flatten structured "
            "simulations (or use an embedding) first"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return t


def _moments(t: Tensor, z_score: bool) -> tuple[Tensor, Tensor]:
    """Per-column mean and standard deviation (1 where a column is constant)."""
    if not z_score:
        return torch.zeros_like(t[0]), torch.ones_like(t[0])
    std = t.std(0)
    tiny = std <= 1e-12 * t.abs().amax(0).clamp_min(1.0)
    return t.mean(0), torch.where(tiny, torch.ones_like(std), std)
