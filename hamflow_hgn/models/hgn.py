"""The Hamiltonian Generative Network (paper Sec. 3.2, Eq. 4 and A.1).

``images (B, T+1, C, H, W)`` -> encoder -> ``z ~ q(z | x)`` -> f_psi -> ``s0 = (q0, p0)`` ->
core integrator with the learned separable ``H = K(p) + V(q)`` -> ``q_t`` -> decoder -> frames.

The rollout uses :func:`hamflow.integrators.rollout` (leapfrog, or Euler for the ``euler``
variant); ``hamflow_hgn`` has no integrator of its own. The integration always runs in float32
or float64 with autocast disabled, so bf16 AMP only touches the encoder and decoder convs.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from hamflow import GECO, SeparableHamiltonian
from hamflow.integrators import rollout as core_rollout

from ..config import ModelConfig
from ..samples import LatentGaussian
from .base import NoiseFn, ReduceFn, Rollout, standard_noise
from .networks import ConfinedEnergy, ConvEnergy, Decoder, Encoder, StateTransform
from .prior import StandardPrior, make_prior

__all__ = ["HGN"]


def _no_autocast(device_type: str):
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


class HGN(nn.Module):
    """Hamiltonian Generative Network with its GECO-weighted loss (paper Sec. 3.2, A.1).

    Calling the module (``forward``, alias :meth:`loss`) on a batch of sequences returns the
    loss of Eq. 4 and a dict of scalar metrics. The reconstruction term is a fixed-variance
    Gaussian, i.e. a scaled L2; GECO (:class:`hamflow.GECO`, a submodule so it checkpoints with
    the model) constrains the per-pixel MSE to a tolerance κ (:meth:`tolerance`: by default
    ``config.geco_tolerance`` times the batch's pixel variance) and so sets the weight
    ``1/lambda`` of the KL term: ``loss = KL + lambda * (MSE / κ - 1)``. With
    ``kl_balance="fixed"`` lambda stays at ``geco_lambda_init``; with ``"calibrated"`` it moves
    toward :meth:`calibrated_multiplier`, the weight of a decoder whose variance is the running
    MSE, so the loss is the ELBO's gradient once it gets there. The ``deterministic`` variant
    samples nothing and keeps lambda at ``geco_lambda_init``:
    ``loss = ½|μ|² + lambda * MSE / κ``, where ``½|μ|²`` is the KL of a posterior of unit
    variance. That term holds the latent's scale; the bare MSE let it grow to hundreds, the
    decoder saturated, and the variant learned the mean image (Table 1).

    **A hand-written training loop must call** ``model.after_step()`` **after every optimiser
    step**: it moves GECO's multiplier λ, and without it λ stays at ``geco_lambda_init`` and the
    KL weight never adapts. Pass the step number (1, 2, ...) as the second argument: the
    ``"matched"`` prior counts its warm-up with it. :func:`hamflow_hgn.train.train` does both.

    Args:
        config: the architecture, variant and protocol.

    Example:
        >>> cfg = ModelConfig.reduced(8, image_size=8, frames=4)
        >>> model = HGN(cfg)
        >>> images = torch.rand(2, 4, 3, 8, 8)
        >>> loss, metrics = model(images)
        >>> loss.shape, sorted(metrics)
        (torch.Size([]), ['kl', 'kl_weight', 'lambda', 'loss', 'mse'])
        >>> model.rollout(images, steps=6).frames.shape
        torch.Size([2, 7, 3, 8, 8])

        A hand-written loop (what :func:`hamflow_hgn.train.train` runs, less its guards):

        >>> optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        >>> for step in (1, 2):
        ...     loss, metrics = model(images, step)
        ...     optimizer.zero_grad()
        ...     loss.backward()
        ...     optimizer.step()
        ...     model.after_step()  # GECO's update of lambda
        >>> model.geco.multiplier != cfg.geco_lambda_init
        True

    References:
        Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Sec. 3.2, Eq. 4, A.1.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(
            len(c.input_frames) * c.channels,
            c.encoder_widths,
            c.z_channels,
            c.n_upsample,
            deterministic=not c.stochastic,
        )
        self.transform = (
            StateTransform(c.z_channels, c.transform_width, c.state_channels)
            if c.use_transform
            else None
        )
        energies = [
            ConvEnergy(c.state_channels, c.hamiltonian_width, c.hamiltonian_layers)
            for _ in ("kinetic", "potential")
        ]
        if c.confinement > 0:  # H + c/2 (|q|^2 + |p|^2): bounded level sets (ConfinedEnergy)
            energies = [ConfinedEnergy(e, c.confinement) for e in energies]
        self.hamiltonian = SeparableHamiltonian(*energies)
        self.decoder = Decoder(c.state_channels, c.decoder_width, c.channels, c.n_upsample)
        z_shape = (c.z_channels, c.latent_size, c.latent_size)
        # The deterministic variant samples nothing: it has no posteriors to match a prior to.
        self.prior = (
            make_prior(c.latent_prior, z_shape, c.prior_warmup_steps)
            if c.stochastic
            else StandardPrior(z_shape)
        )
        self.geco = GECO(
            1.0,
            alpha=c.geco_alpha,
            speed=c.geco_speed,
            lambda_init=c.geco_lambda_init,
            max_log_step=c.geco_max_log_step,
        )

    @torch.no_grad()
    def init_decoder_bias(self, images: Tensor) -> None:
        """Set the decoder's output bias to the logit of the mean colour of ``images``.

        ``images`` is ``(..., C, H, W)`` with values in [0, 1]; the mean is taken per channel,
        clamped to [1e-3, 1 - 1e-3]. An untrained decoder then draws that colour everywhere
        (the sigmoid of its bias) instead of mid-grey, so training starts from the background.

        Example:
            >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4))
            >>> model.init_decoder_bias(torch.full((2, 4, 3, 8, 8), 0.9))
            >>> [round(v, 4) for v in torch.sigmoid(model.decoder.out.bias).tolist()]
            [0.9, 0.9, 0.9]
        """
        if images.dim() < 3 or images.shape[-3] != self.config.channels:
            raise ValueError(
                f"images: expected shape (..., {self.config.channels}, H, W), "
                f"got {tuple(images.shape)}"
            )
        colour = images.detach().float().movedim(-3, 0).flatten(1).mean(1).clamp(1e-3, 1 - 1e-3)
        bias = self.decoder.out.bias
        bias.copy_(torch.logit(colour).to(bias))

    # -- stages ---------------------------------------------------------------------------

    def check_images(self, images: Tensor, name: str = "images") -> None:
        """Raise ``ValueError`` unless ``images`` is ``(B, T+1, C, H, W)`` for this config."""
        c = self.config
        expected = (c.frames, c.channels, c.image_size, c.image_size)
        if not isinstance(images, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 5 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{name}: expected shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(images.shape)}"
            )

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Posterior mean and log-variance of z from the protocol's input frames."""
        frames = images[:, list(self.config.input_frames)]
        return self.encoder(frames.flatten(1, 2))

    def initial_state(
        self, images: Tensor, *, sample: bool = True, noise: NoiseFn | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``(q0, p0, mean, logvar)``; z is sampled when ``sample`` and the variant allow it."""
        mean, logvar = self.encode(images)
        z = mean
        if sample and logvar is not None:
            eps = (noise or standard_noise)(tuple(mean.shape), mean.dtype, mean.device)
            z = mean + torch.exp(0.5 * logvar) * eps
        return (*self.state_from_z(z), mean, logvar)

    def state_from_z(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``s0 = f_psi(z)``, or z itself split in halves for the ``no_fpsi`` variant."""
        if self.transform is None:
            return z.chunk(2, dim=1)
        return self.transform(z)

    def integrate(
        self, q: Tensor, p: Tensor, steps: int, dt: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Every state of a ``steps``-step rollout, ``(steps+1, B, ...)`` each, by the core."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        with _no_autocast(q.device.type):
            return core_rollout(
                self.hamiltonian,
                q.to(dtype),
                p.to(dtype),
                self.config.dt if dt is None else dt,
                steps,
                method=self.config.integrator,
            )

    def decode(self, qs: Tensor) -> Tensor:
        """Decode states ``(S, B, ...)`` to frames ``(B, S, C, H, W)`` in one batched call."""
        s, b = qs.shape[:2]
        frames = self.decoder(qs.flatten(0, 1))
        return frames.unflatten(0, (s, b)).transpose(0, 1)

    def energy(self, qs: Tensor, ps: Tensor) -> Tensor:
        """The learned ``H`` along states ``(S, B, ...)``, as ``(B, S)``."""
        with _no_autocast(qs.device.type):
            e = self.hamiltonian.energy(qs.flatten(0, 1), ps.flatten(0, 1))
        return e.unflatten(0, qs.shape[:2]).transpose(0, 1)

    # -- loss -----------------------------------------------------------------------------

    def forward(
        self,
        images: Tensor,
        step: int = 0,
        *,
        noise: NoiseFn | None = None,
        reduce: ReduceFn | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of Eq. 4 on ``images (B, T+1, C, H, W)`` and detached scalar metrics.

        ``reduce`` averages the reconstruction constraint over processes before GECO sees it,
        so ``lambda`` is identical on every DDP rank (the gradient stays local).
        """
        self.check_images(images)
        c = self.config
        q0, p0, mean, logvar = self.initial_state(images, sample=True, noise=noise)
        qs, ps = self.integrate(q0, p0, c.frames - 1)
        first = c.target_frames[0]
        recon = self.decode(qs[first:].to(q0.dtype))
        target = images[:, first:]
        mse = (recon.float() - target.float()).square().mean()
        metrics: dict[str, Tensor] = {"mse": mse.detach()}
        warm = min(1.0, step / c.kl_warmup_steps) if c.kl_warmup_steps else 1.0  # KL annealing
        if logvar is None:
            # A point estimate: of the KL only the mean's term is left, the KL of a posterior
            # of unit variance. It holds the latent's scale; without it the state grew to
            # hundreds and the saturated decoder drew the mean image. Lambda stays at its start.
            kl = 0.5 * mean.float().square().flatten(1).sum(1).mean()
            weighted = self.geco.lagrange.to(mse.dtype) * mse / self.tolerance(target, reduce)
            loss = warm * kl + weighted
        else:
            mean, logvar = mean.float(), logvar.float()
            kl = self.prior.kl(mean, logvar).mean()
            if self.training:
                self.prior.observe(mean, logvar, reduce)
            constraint = mse / self.tolerance(target, reduce)
            if reduce is not None:
                detached = constraint.detach()
                constraint = constraint + (reduce(detached) - detached)
            if c.kl_balance == "fixed":
                loss = warm * kl + self.geco.lagrange.to(constraint.dtype) * (constraint - 1.0)
            else:
                loss = self.geco(objective=warm * kl, constraint=constraint)
        if c.latent_consistency > 0 and self.training:
            consistency = self._consistency(images, qs, ps)
            loss = loss + c.latent_consistency * self.geco.lagrange.detach() * consistency
            metrics["consistency"] = consistency.detach()
        metrics["kl"] = kl.detach()
        metrics["loss"] = loss.detach()
        metrics["lambda"] = self.geco.lagrange.detach().float()
        metrics["kl_weight"] = 1.0 / metrics["lambda"]
        return loss, metrics

    def _consistency(self, images: Tensor, qs: Tensor, ps: Tensor) -> Tensor:
        """Squared distance between the rollout's state at a random frame ``t >= 1`` and the
        state the encoder infers from the window starting there (a fixed target: no gradient
        flows into it), over the latter's variance (``ModelConfig.latent_consistency``)."""
        window = len(self.config.input_frames)
        t = int(torch.randint(1, self.config.frames - window + 1, ()))
        with torch.no_grad():  # a target: pulling the encoder toward the rollout collapses both
            mean, _ = self.encoder(images[:, t : t + window].flatten(1, 2))
            target = torch.cat([x.flatten(1) for x in self.state_from_z(mean)], 1).float()
        state = torch.cat([qs[t].flatten(1), ps[t].flatten(1)], 1).float()
        scale = target.detach().var(0).sum().clamp_min(1e-8)
        return (state - target).square().sum(1).mean() / scale

    def tolerance(self, target: Tensor, reduce: ReduceFn | None = None) -> Tensor | float:
        """GECO's target per-pixel MSE κ for a batch of target frames ``(B, S, C, H, W)``.

        ``geco_units="mse"``: ``geco_tolerance`` itself. ``"variance"``: ``geco_tolerance``
        times the batch's per-pixel variance about its mean frame (the error of drawing the
        batch's mean image), detached, so the target means the same on every system. Under DDP
        ``reduce`` makes it the variance of the global batch, identical on every rank.

        Example:
            >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4, geco_tolerance=0.5))
            >>> x = torch.zeros(2, 4, 3, 8, 8); x[0] = 1.0   # variance 0.25 about the mean 0.5
            >>> float(model.tolerance(x))
            0.125
        """
        c = self.config
        if c.geco_units == "mse":
            return c.geco_tolerance
        t = target.detach().float()
        moments = torch.stack([t.mean(dim=(0, 1)), t.square().mean(dim=(0, 1))])
        if reduce is not None:  # every rank holds the same number of sequences
            moments = reduce(moments)
        variance = (moments[1] - moments[0].square()).mean()
        return c.geco_tolerance * variance.clamp_min(1e-8)

    def loss(self, images: Tensor, step: int = 0, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        """Alias of calling the module (the trainer calls the module so DDP hooks run)."""
        return self(images, step, **kwargs)

    def calibrated_multiplier(self) -> float:
        """The λ of ``kl_balance="calibrated"``: that of a Gaussian decoder of variance ``m``.

        ``m`` is the moving average of the per-pixel MSE of the last call. A Gaussian decoder
        with that variance scores a sequence of ``N`` target values ``N·MSE / (2 m)`` nats plus
        a constant, which is ``λ · MSE / κ`` for ``λ = N κ / (2 m)``. Its variance is the one
        that maximises the ELBO (Rybkin et al. 2021, the calibrated decoder), so the KL is
        weighed as the ELBO weighs it. After a call to the module; GECO moves ``λ`` toward this
        value by at most ``geco_max_log_step`` per step.

        Example:
            >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4, kl_balance="calibrated"))
            >>> images = torch.rand(2, 4, 3, 8, 8)
            >>> _, metrics = model(images)
            >>> kappa = float(model.tolerance(images))
            >>> n = 4 * 3 * 8 * 8  # target values per sequence
            >>> abs(model.calibrated_multiplier() - n * kappa / (2 * float(metrics["mse"]))) < 1e-3
            True
        """
        pending = self.geco._pending
        if pending is None:
            raise RuntimeError("calibrated_multiplier() needs a call to the model first")
        c = self.config
        elements = len(c.target_frames) * c.channels * c.image_size**2  # per sequence
        ratio = float(pending) + self.geco.tolerance  # moving average of MSE / κ
        return elements / (2.0 * max(ratio, 1e-12))

    @torch.no_grad()
    def after_step(self) -> None:
        """Update GECO's multiplier; call once after every optimiser step."""
        if self.config.stochastic and self.geco._pending is not None:
            if self.config.kl_balance == "calibrated":
                self.geco.step(toward=self.calibrated_multiplier())
            else:
                self.geco.step()  # (never pending with kl_balance="fixed")

    # -- rollouts -------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(
        self,
        images: Tensor,
        steps: int | None = None,
        *,
        dt: float | None = None,
        sample: bool = False,
        noise: NoiseFn | None = None,
    ) -> Rollout:
        """Infer s0 from the protocol's input frames, roll out ``steps`` steps and decode.

        ``steps`` defaults to ``T``; ``dt`` defaults to the config's (negative: backwards in
        time; scaled: faster or slower dynamics, paper Fig. 7). The posterior mean is used
        unless ``sample``.
        """
        self.check_images(images)
        q0, p0, _, _ = self.initial_state(images, sample=sample, noise=noise)
        return self.rollout_from(q0, p0, self.config.frames - 1 if steps is None else steps, dt)

    @torch.no_grad()
    def rollout_from(self, q: Tensor, p: Tensor, steps: int, dt: float | None = None) -> Rollout:
        """Roll out and decode from a given latent state ``(q, p)``."""
        qs, ps = self.integrate(q, p, steps, dt)
        energy = self.energy(qs, ps)
        return Rollout(self.decode(qs.to(q.dtype)), qs.transpose(0, 1), ps.transpose(0, 1), energy)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int | None = None,
        *,
        dt: float | None = None,
        generator: torch.Generator | None = None,
        latent: LatentGaussian | None = None,
    ) -> Rollout:
        """Rollouts from fresh prior samples ``z ~ p(z)`` (paper Fig. 8: ``N(0, I)``; with
        ``latent_prior="matched"``, the Gaussian matched to the training posteriors).

        With ``latent`` (a fitted :class:`~hamflow_hgn.samples.LatentGaussian`), ``z`` is drawn
        from that Gaussian over the training posteriors instead of from the prior.

        Example:
            >>> model = HGN(ModelConfig.reduced(8, image_size=8, frames=4))
            >>> model.sample(3, steps=2).frames.shape
            torch.Size([3, 3, 3, 8, 8])
        """
        c = self.config
        param = next(self.parameters())
        shape = (n, c.z_channels, c.latent_size, c.latent_size)
        if latent is not None:
            if tuple(latent.shape) != shape[1:]:
                raise ValueError(
                    f"latent: expected a Gaussian over z of shape {shape[1:]}, got one over "
                    f"{tuple(latent.shape)}"
                )
            z = latent.sample(n, generator=generator).to(param.dtype)
        else:
            z = self.prior.sample(n, generator=generator, dtype=param.dtype, device=param.device)
        q, p = self.state_from_z(z.to(param.device))
        return self.rollout_from(q, p, c.frames - 1 if steps is None else steps, dt)
