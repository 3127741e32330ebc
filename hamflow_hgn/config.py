"""Frozen configurations of the HGN model and of a training run (paper A.1).

Every artefact (checkpoint, run directory, benchmark result) stores the configuration that made
it as JSON, so it can be reproduced from its own folder. :func:`config_to_dict` and
:func:`train_config_from_dict` do the round trip; :func:`config_diff` lists what differs between
two of them (used to refuse a resume with another configuration).

Example:
    >>> cfg = ModelConfig(variant="euler", protocol="predict", predict_k=5)
    >>> cfg.integrator, cfg.input_frames, cfg.target_frames[:3]
    ('euler', (0, 1, 2, 3, 4), (5, 6, 7))
    >>> ModelConfig(variant="rk5")
    Traceback (most recent call last):
    ...
    ValueError: variant: expected one of [...], got 'rk5'
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .schedule import check_decay

__all__ = [
    "VARIANTS",
    "PROTOCOLS",
    "AMP_MODES",
    "PIXEL_HNN_KINDS",
    "KL_BALANCES",
    "GECO_UNITS",
    "GECO_SETTINGS",
    "DECODER_BIASES",
    "DT",
    "ModelConfig",
    "PixelHNNConfig",
    "TrainConfig",
    "TrainPreset",
    "TRAIN_PRESETS",
    "config_to_dict",
    "model_config_from_dict",
    "train_config_from_dict",
    "config_diff",
]

VARIANTS: dict[str, str] = {
    "leapfrog": "full HGN: sampled z, f_psi, leapfrog integrator",
    "euler": "HGN Euler: as leapfrog, but rolled out with the explicit Euler integrator",
    "deterministic": "HGN determ: z is the posterior mean, no sampling and no KL term",
    "no_fpsi": "HGN no f_psi: the sampled z is the initial state s0 itself",
}
"""The four HGN variants of Table 1, by name."""

PROTOCOLS: dict[str, str] = {
    "reconstruct": "the encoder sees all T+1 frames; the loss is on all of them (Eq. 4)",
    "predict": "the encoder sees the first k frames; the loss is on frames k..T",
}
"""Input/target protocols, by name."""

AMP_MODES: tuple[str, ...] = ("none", "bf16")

PIXEL_HNN_KINDS: dict[str, str] = {
    "mlp": "PixelHNN as in Greydanus et al.: MLP encoder and decoder (HNN in Table 1)",
    "conv": "PixelHNN with HGN's conv encoder and decoder (HNN (conv) in Table 1)",
}
"""The two PixelHNN baselines of Table 1, by ``kind``."""

KL_BALANCES: tuple[str, ...] = ("geco", "fixed", "calibrated")
"""How the KL is weighted against the reconstruction (:attr:`ModelConfig.kl_balance`)."""

LATENT_PRIORS: dict[str, str] = {
    "standard": "N(0, I), as in the paper",
    "matched": "a full-covariance Gaussian matched to the training posteriors' running moments",
}
"""The priors over HGN's ``z``, by name (:attr:`ModelConfig.latent_prior`)."""

GECO_UNITS: dict[str, str] = {
    "variance": "a fraction of the batch's per-pixel variance about its mean frame",
    "mse": "a per-pixel MSE",
}
"""The units :attr:`ModelConfig.geco_tolerance` can be stated in."""

GECO_SETTINGS: dict[str, dict[str, Any]] = {
    "default": dict(
        kl_balance="geco", geco_units="variance", geco_tolerance=0.3, geco_alpha=0.9,
        geco_speed=1e-2, geco_lambda_init=1e5, geco_max_log_step=1e-3,
    ),
    "fast": dict(
        kl_balance="geco", geco_units="variance", geco_tolerance=0.3, geco_alpha=0.9,
        geco_speed=1e-2, geco_lambda_init=1e3, geco_max_log_step=1e-2,
    ),
    "fixed": dict(
        kl_balance="fixed", geco_units="variance", geco_tolerance=0.3, geco_alpha=0.9,
        geco_speed=1e-2, geco_lambda_init=1e5, geco_max_log_step=1e-3,
    ),
    "calibrated": dict(
        kl_balance="calibrated", geco_units="variance", geco_tolerance=0.3, geco_alpha=0.9,
        geco_speed=1e-2, geco_lambda_init=1e5, geco_max_log_step=1e-3,
    ),
    "paper": dict(
        kl_balance="geco", geco_units="mse", geco_tolerance=1e-3, geco_alpha=0.99,
        geco_speed=1e-2, geco_lambda_init=1.0, geco_max_log_step=None,
    ),
}  # fmt: skip
"""Named KL-balancing settings of :class:`ModelConfig` (``--geco-setting`` on the CLI).

``default``: GECO with λ starting at 1e5 and moving by at most 1e-3 in log space per step;
``fast``: the previous default (λ from 1e3, steps of 1e-2), which reaches the cap of 1e6
after 690 steps while the tolerance is not met; ``fixed``: λ = 1e5 throughout;
``calibrated``: λ from 1e5 toward the calibrated decoder's weight, the ELBO's own balance
(the pendulum example's setting since 2026-12-06); ``paper``: GECO
as the paper configures it. docs/hgn.md ("Balancing the KL") compares them.
"""

DECODER_BIASES: dict[str, str] = {
    "data": "the decoder's output bias starts at the logit of the training data's mean colour",
    "zero": "PyTorch's default initialisation of the decoder's last convolution",
}
"""How :attr:`ModelConfig.decoder_bias` initialises the decoder's output bias."""

DT: float = 0.125
"""Time between frames of the paper's data, and HGN's integrator step (A.1, A.4)."""


def _power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The HGN architecture and loss; defaults are those of paper A.1.

    Attributes:
        variant: one of :data:`VARIANTS`.
        protocol: one of :data:`PROTOCOLS`.
        predict_k: frames the encoder sees under the ``"predict"`` protocol.
        frames: frames per sequence, ``T + 1`` (set from the data by training).
        image_size: image height and width, a power of two times ``latent_size``.
        channels: image channels.
        dt: integrator time step (A.1: 0.125).
        state_channels: channels of q and of p each (A.1: 16, so s0 is 4x4x(2x16)).
        latent_size: spatial size of the latent state (A.1: 4).
        encoder_widths: filters of the first seven encoder layers (A.1: 32, then 64).
        latent_channels: filters of the eighth encoder layer (A.1: 48); the eighth layer is a
            pair of parallel 3x3 convolutions producing the mean and log-variance of z, each with
            this many channels, so z is ``latent_channels x 4 x 4``. Ignored by ``no_fpsi``,
            where z is s0 and has ``2 * state_channels`` channels.
        transform_width: filters of the hidden layers of f_psi (A.1: 3 layers of 64).
        hamiltonian_width: filters of each of the 6 conv layers of K and of V.
        hamiltonian_layers: conv layers of K and of V (A.1: 6).
        decoder_width: filters of the decoder's residual blocks (A.1: 64).
        kl_balance: ``"geco"`` (the multiplier λ in front of the reconstruction constraint
            adapts, :class:`hamflow.GECO`), ``"fixed"`` (λ stays at ``geco_lambda_init``) or
            ``"calibrated"`` (λ moves, by at most ``geco_max_log_step`` per step, toward the
            weight of a Gaussian decoder whose variance is the running MSE:
            :meth:`HGN.calibrated_multiplier`; the tolerance then only sets λ's units).
        geco_units: what ``geco_tolerance`` is measured in: ``"variance"`` (default), a
            fraction of the batch's per-pixel variance about its mean frame, i.e. of the
            "always draw the mean image" error, so one number fits every system and image size;
            ``"mse"``, an absolute per-pixel MSE (the paper's setting, κ = 1e-3).
        geco_tolerance: GECO's target reconstruction error, in ``geco_units``.
        geco_alpha, geco_speed, geco_lambda_init: GECO's moving average, step size and
            initial multiplier (see :class:`hamflow.GECO`).
        geco_max_log_step: bound on the change of ``log λ`` per step; ``None`` for Rezende &
            Viola's unbounded update (the paper's setting, which pins λ at its cap of 1e6
            within ten steps when the tolerance is 1e-3 in MSE; docs/hgn.md).
        latent_prior: the prior over z: ``"standard"``, the paper's ``N(0, I)``, or
            ``"matched"``, a full-covariance Gaussian that follows the running mean and
            covariance of the training posteriors
            (:class:`~hamflow_hgn.models.prior.MatchedGaussianPrior`), so that prior samples
            land where the training posteriors are. Ignored by the ``deterministic`` variant,
            which samples nothing.
        prior_warmup_steps: training steps during which the ``"matched"`` prior stays
            ``N(0, I)`` (it follows the posteriors from the next step on), so that the encoder
            learns to use ``z`` first (:class:`~hamflow_hgn.models.prior.MatchedGaussianPrior`).
        encoder_frames: with the ``"reconstruct"`` protocol, the encoder sees only the first
            ``encoder_frames`` frames while the loss covers every frame, so that training on
            sequences longer than the encoder's window teaches the rollout past it
            (docs/hgn/rollouts.md); ``None`` (default, the paper's): every frame.
        latent_consistency: weight of a term (0, the default and the paper's: none) that asks
            the rollout's state ``t`` frames in to be the state the encoder infers from the
            window of frames starting at ``t`` (one random ``t`` per batch; a fixed target,
            without gradient), i.e. that the
            learned dynamics follow the encoder's own orbit; needs ``encoder_frames`` below
            ``frames``. The squared distance, over the encoder states' variance, is weighed by
            GECO's λ times this weight (:meth:`HGN.forward`; docs/hgn/rollouts.md).
        confinement: ``c >= 0``; above 0 the learned Hamiltonian gets a fixed quadratic
            well, ``H = K(p) + V(q) + c/2 (|q|^2 + |p|^2)``
            (:class:`~hamflow_hgn.models.networks.ConfinedEnergy`), so that its level sets are
            bounded and a rollout, which conserves ``H``, cannot run away past the trained
            span; alone, the well turns each ``(q_i, p_i)`` at the angular frequency ``c``
            (docs/hgn/rollouts.md). 0, the default and the paper's: none.
        kl_warmup_steps: training steps over which the KL's weight in the loss rises
            linearly from 0 to its full value (KL annealing, Bowman et al. 2016), so that
            the encoder is not pulled to the prior before the decoder reads the state; 0, the
            default and the paper's: the full weight from the first step
            (docs/hgn/rollouts.md).
        decoder_bias: ``"data"`` (default) starts the decoder's output bias at the logit of
            the training data's mean colour, so an untrained HGN draws the background instead
            of grey (its MSE starts near the mean image's, not 30x above it); ``"zero"``
            keeps PyTorch's initialisation (A.1 does not say). HGN only: the PixelHNN
            baselines ignore it.

    The GECO defaults are this project's (measured in docs/hgn.md, "Balancing the KL");
    :meth:`paper` gives the paper's reading of A.1 as a named setting (:data:`GECO_SETTINGS`).
    """

    variant: str = "leapfrog"
    protocol: str = "reconstruct"
    predict_k: int = 5
    frames: int = 31
    image_size: int = 32
    channels: int = 3
    dt: float = DT
    state_channels: int = 16
    latent_size: int = 4
    encoder_widths: tuple[int, ...] = (32, 64, 64, 64, 64, 64, 64)
    latent_channels: int = 48
    transform_width: int = 64
    hamiltonian_width: int = 64
    hamiltonian_layers: int = 6
    decoder_width: int = 64
    kl_balance: str = "geco"
    geco_units: str = "variance"
    geco_tolerance: float = 0.3
    geco_alpha: float = 0.9
    geco_speed: float = 1e-2
    geco_lambda_init: float = 1e5
    geco_max_log_step: float | None = 1e-3
    latent_prior: str = "standard"
    prior_warmup_steps: int = 1500
    decoder_bias: str = "data"
    encoder_frames: int | None = None
    latent_consistency: float = 0.0
    confinement: float = 0.0
    kl_warmup_steps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_widths", tuple(int(w) for w in self.encoder_widths))
        _check_choice("variant", self.variant, VARIANTS)
        _check_choice("protocol", self.protocol, PROTOCOLS)
        _check_positive_int("frames", self.frames, 2)
        _check_positive_int("predict_k", self.predict_k)
        if self.protocol == "predict" and self.predict_k >= self.frames:
            raise ValueError(
                f"predict_k: the 'predict' protocol needs k < T+1 = {self.frames} frames so that "
                f"some frames are left as targets, got k={self.predict_k}"
            )
        for name in ("channels", "state_channels", "latent_size", "latent_channels"):
            _check_positive_int(name, getattr(self, name))
        for name in ("transform_width", "hamiltonian_width", "decoder_width"):
            _check_positive_int(name, getattr(self, name))
        _check_positive_int("hamiltonian_layers", self.hamiltonian_layers)
        ratio = self.image_size // self.latent_size if isinstance(self.image_size, int) else 0
        if (
            not isinstance(self.image_size, int)
            or self.image_size < 8
            or ratio * self.latent_size != self.image_size
            or not _power_of_two(ratio)
            or ratio < 2
        ):
            raise ValueError(
                f"image_size: expected an int >= 8 equal to latent_size={self.latent_size} times "
                f"a power of two >= 2, got {self.image_size!r}"
            )
        if len(self.encoder_widths) != 7 or any(w < 1 for w in self.encoder_widths):
            raise ValueError(
                "encoder_widths: expected 7 positive widths (the eighth layer has "
                f"latent_channels filters), got {self.encoder_widths!r}"
            )
        if self.n_upsample > 6:
            raise ValueError(
                f"image_size: at most 2**6 times latent_size, got {self.image_size} "
                f"with latent_size {self.latent_size}"
            )
        if not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt: expected a positive finite number, got {self.dt!r}")
        _check_choice("kl_balance", self.kl_balance, KL_BALANCES)
        _check_choice("geco_units", self.geco_units, GECO_UNITS)
        _check_choice("decoder_bias", self.decoder_bias, DECODER_BIASES)
        _check_choice("latent_prior", self.latent_prior, LATENT_PRIORS)
        _check_positive_int("prior_warmup_steps", self.prior_warmup_steps, 0)
        _check_positive_int("kl_warmup_steps", self.kl_warmup_steps, 0)
        if self.encoder_frames is not None:
            _check_positive_int("encoder_frames", self.encoder_frames)
            if self.protocol != "reconstruct" or self.encoder_frames > self.frames:
                raise ValueError(
                    f"encoder_frames: expected None or at most frames={self.frames} with the "
                    f"'reconstruct' protocol, got {self.encoder_frames} with {self.protocol!r}"
                )
        weight = self.latent_consistency
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"latent_consistency: expected a finite weight >= 0, got {weight!r}")
        if weight > 0 and (self.encoder_frames is None or self.encoder_frames >= self.frames):
            raise ValueError(
                f"latent_consistency: a weight > 0 needs encoder_frames below frames={self.frames} "
                f"(windows to encode past the first), got encoder_frames={self.encoder_frames}"
            )
        c = self.confinement
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
            raise ValueError(f"confinement: expected a finite number >= 0, got {c!r}")
        if not (
            isinstance(self.geco_tolerance, (int, float))
            and math.isfinite(self.geco_tolerance)
            and self.geco_tolerance > 0
        ):
            raise ValueError(
                f"geco_tolerance: expected a positive number ({GECO_UNITS[self.geco_units]}), "
                f"got {self.geco_tolerance!r}"
            )
        for name in ("geco_speed", "geco_lambda_init"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
        if not (isinstance(self.geco_alpha, (int, float)) and 0 <= self.geco_alpha < 1):
            raise ValueError(f"geco_alpha: expected a value in [0, 1), got {self.geco_alpha!r}")
        step = self.geco_max_log_step
        if step is not None and not (
            isinstance(step, (int, float)) and math.isfinite(step) and step > 0
        ):
            raise ValueError(f"geco_max_log_step: expected a positive number or None, got {step!r}")

    @property
    def integrator(self) -> str:
        """Name of the core integrator the variant rolls out with."""
        return "euler" if self.variant == "euler" else "leapfrog"

    @property
    def stochastic(self) -> bool:
        """Whether z is sampled (and the KL term used)."""
        return self.variant != "deterministic"

    @property
    def use_transform(self) -> bool:
        """Whether the state transform f_psi sits between z and s0."""
        return self.variant != "no_fpsi"

    @property
    def z_channels(self) -> int:
        """Channels of z: ``latent_channels``, or ``2 * state_channels`` without f_psi."""
        return self.latent_channels if self.use_transform else 2 * self.state_channels

    @property
    def n_upsample(self) -> int:
        """Stride-2 encoder layers, and residual upsampling blocks of the decoder."""
        return int(round(math.log2(self.image_size // self.latent_size)))

    @property
    def input_frames(self) -> tuple[int, ...]:
        """Indices of the frames the encoder sees."""
        if self.protocol == "predict":
            return tuple(range(self.predict_k))
        return tuple(range(self.encoder_frames or self.frames))

    @property
    def target_frames(self) -> tuple[int, ...]:
        """Indices of the frames the loss (and Table-1 MSE) is computed on."""
        if self.protocol == "predict":
            return tuple(range(self.predict_k, self.frames))
        return tuple(range(self.frames))

    @classmethod
    def paper(cls, **overrides: Any) -> ModelConfig:
        """The paper's configuration: A.1's widths and its GECO as Rezende & Viola write it.

        GECO constrains the per-pixel MSE to κ = 1e-3 with the unbounded multiplicative update
        (``GECO_SETTINGS["paper"]``). At the small scale this pins λ at its cap within ten
        steps (docs/hgn.md); it is kept so that the paper's runs can be repeated as written.

        Example:
            >>> cfg = ModelConfig.paper()
            >>> cfg.geco_units, cfg.geco_tolerance, cfg.geco_max_log_step, cfg.latent_channels
            ('mse', 0.001, None, 48)
        """
        return cls(**{**GECO_SETTINGS["paper"], **overrides})

    @classmethod
    def reduced(cls, width: int = 16, **overrides: Any) -> ModelConfig:
        """A narrow model (every width ``width``) for tests and quick experiments.

        Example:
            >>> ModelConfig.reduced(8, image_size=16).hamiltonian_width
            8
        """
        widths = dict(
            encoder_widths=(width,) * 7,
            latent_channels=width,
            transform_width=width,
            hamiltonian_width=width,
            decoder_width=width,
        )
        widths.update(overrides)
        return cls(**widths)


@dataclass(frozen=True)
class PixelHNNConfig(ModelConfig):
    """The PixelHNN baseline (paper A.3): HGN's :class:`ModelConfig` plus the PixelHNN fields.

    Frames, image size, protocol, target frames and the conv variant's network widths are the
    inherited HGN fields (and checked the same way); ``variant`` and the HGN-only fields are
    ignored. Build one from a run's HGN config with :meth:`from_model`.

    Attributes:
        kind: ``"mlp"`` or ``"conv"`` (see :data:`PIXEL_HNN_KINDS`).
        latent_dim: size of ``z = (q, p)``: the true phase-space size (2, 2, 8, 12).
        dt: latent time per frame, used by the finite differences and by rollouts (the
            original code uses one frame = one time unit, so 1.0 here, not HGN's 0.125).
        hidden: width of the MLP encoder/decoder hidden layers (200).
        mlp_layers: linear layers of the MLP encoder and of the decoder (4).
        hnn_hidden: hidden widths of the HNN (two layers of 200 tanh units).
        lambda_hnn, lambda_wd: the weights of Eq. 15 (0.1 and 1e-5).
        pairs_per_batch: ``(X_t, X_{t+1})`` pairs drawn from each batch of sequences
            (64, the paper's minibatch); ``0`` uses every pair.

    Example:
        >>> cfg = PixelHNNConfig.from_model("conv", ModelConfig.reduced(8, image_size=16), 12)
        >>> cfg.latent_dim, cfg.encoder_widths[0], cfg.image_size, cfg.dt, cfg.integrator
        (12, 8, 16, 1.0, 'rk4')
    """

    kind: str = "mlp"
    latent_dim: int = 2
    dt: float = 1.0
    hidden: int = 200
    mlp_layers: int = 4
    hnn_hidden: tuple[int, ...] = (200, 200)
    lambda_hnn: float = 0.1
    lambda_wd: float = 1e-5
    pairs_per_batch: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hnn_hidden", tuple(int(w) for w in self.hnn_hidden))
        _check_choice("kind", self.kind, PIXEL_HNN_KINDS)
        if not isinstance(self.latent_dim, int) or self.latent_dim < 2 or self.latent_dim % 2:
            raise ValueError(f"latent_dim: expected an even integer >= 2, got {self.latent_dim!r}")
        if self.frames < 3:
            raise ValueError(
                f"frames: expected an integer >= 3 (two consecutive pairs), got {self.frames!r}"
            )
        if self.protocol == "predict" and self.predict_k < 2:
            raise ValueError(
                f"predict_k: expected 2 <= k < frames={self.frames}, got {self.predict_k!r}"
            )
        _check_positive_int("mlp_layers", self.mlp_layers, 2)
        _check_positive_int("hidden", self.hidden)
        _check_positive_int("pairs_per_batch", self.pairs_per_batch, 0)

    @classmethod
    def from_model(cls, kind: str, model: ModelConfig, state_dim: int) -> PixelHNNConfig:
        """The PixelHNN of a run's HGN config (frames, size, protocol, widths) and state size."""
        shared = {f.name: getattr(model, f.name) for f in dataclasses.fields(ModelConfig)}
        shared.pop("dt")  # HGN's integrator step is not PixelHNN's time per frame
        return cls(**shared, kind=kind, latent_dim=int(state_dim))

    @property
    def integrator(self) -> str:
        """Latent rollouts use RK4, as the original PixelHNN (A.3)."""
        return "rk4"

    @property
    def input_frames(self) -> tuple[int, ...]:
        """The frames a rollout is inferred from: the first pair."""
        return (0, 1)


@dataclass(frozen=True)
class TrainConfig:
    """A training run: data, output, model, optimisation and logging.

    ``batch_size`` is per process; under DDP the effective batch is
    ``batch_size * world_size``. The fields in :attr:`RESUMABLE` may differ on ``--resume``.
    ``allow_other_data`` lets a resume continue on a dataset other than the checkpoint's;
    ``threads`` sets torch's intra-op threads (``None``: torch's default).
    ``hamiltonian_lr`` is Adam's learning rate for the learned Hamiltonian's parameters
    (``None``: ``lr``); the pendulum example uses 3e-4 against ``lr`` 1e-3, which keeps the
    latent rollout from running away (docs/hgn.md). ``lr_decay`` is the fraction of the
    ``steps`` over which every learning rate decays linearly toward zero at the end of the run
    (0: constant; :func:`hamflow_hgn.schedule.lr_factor`). It depends on ``steps``, so
    resuming with a larger ``--steps`` moves the decay to the new end.

    Example:
        >>> cfg = TrainConfig(data="DATA", out="RUN", steps=10)
        >>> cfg.model.variant, cfg.lr, cfg.batch_size
        ('leapfrog', 0.00015, 16)
    """

    data: str
    out: str
    model_name: str = "hgn"
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 10000
    batch_size: int = 16
    lr: float = 1.5e-4
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    compile: bool = False
    channels_last: bool = False
    checkpoint_every: int = 500
    log_every: int = 10
    max_train_sequences: int | None = None
    progress: bool = True
    resume: bool = False
    allow_other_data: bool = False
    threads: int | None = None
    hamiltonian_lr: float | None = None
    lr_decay: float = 0.0

    RESUMABLE = frozenset(
        {
            "steps",
            "device",
            "checkpoint_every",
            "log_every",
            "progress",
            "resume",
            "out",
            "data",
            "allow_other_data",
            "threads",
        }
    )

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", model_config_from_dict(self.model))
        _check_positive_int("steps", self.steps)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("checkpoint_every", self.checkpoint_every)
        _check_positive_int("log_every", self.log_every)
        _check_choice("amp", self.amp, AMP_MODES)
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ValueError(
                f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if self.max_train_sequences is not None:
            _check_positive_int("max_train_sequences", self.max_train_sequences)
        if self.threads is not None:
            _check_positive_int("threads", self.threads)
        check_decay(self.lr_decay)
        h = self.hamiltonian_lr
        if h is not None and not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
            raise ValueError(
                f"hamiltonian_lr: expected a positive finite number or None, got {h!r}"
            )


def _field_default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@dataclass(frozen=True)
class TrainPreset:
    """A named starting point for a training run (``--preset`` of ``hamflow-train``).

    The fields are the command line's settings (``--width``, ``--lr``, ...); an explicit flag
    overrides its field. :meth:`model_config` and :meth:`train_config` build the configs.
    The ``"default"`` preset is the dataclasses' defaults, the paper's settings (A.1: its
    widths, Adam at 1.5e-4); ``"small"`` is what learns on a CPU in minutes
    (:data:`TRAIN_PRESETS`).

    Parameters
    ----------
    summary : str
        What the preset is for, shown by ``--help``.
    width : int or None
        One width for every network (:meth:`ModelConfig.reduced`); ``None``: A.1's.
    encoder_width : int or None
        The encoder's seven conv layers' width, over ``width``.
    latent_channels : int or None
        Channels of z, over ``width``.
    geco_setting : str
        The KL balance, a key of :data:`GECO_SETTINGS`.
    latent_prior : str
        The prior over z, a key of :data:`LATENT_PRIORS`.
    lr, hamiltonian_lr, lr_decay, steps
        As in :class:`TrainConfig`.

    Examples
    --------
    >>> small = TRAIN_PRESETS["small"]
    >>> cfg = small.train_config("DATA", "RUN", lr=2e-3)  # a keyword overrides the preset
    >>> cfg.lr, cfg.hamiltonian_lr, cfg.model.latent_prior, cfg.model.kl_balance
    (0.002, 0.0003, 'matched', 'calibrated')
    >>> TRAIN_PRESETS["default"].train_config("DATA", "RUN") == TrainConfig("DATA", "RUN")
    True

    References
    ----------
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, A.1 (the default preset).
    """

    summary: str
    width: int | None = None
    encoder_width: int | None = None
    latent_channels: int | None = None
    geco_setting: str = "default"
    latent_prior: str = _field_default(ModelConfig, "latent_prior")
    lr: float = _field_default(TrainConfig, "lr")
    hamiltonian_lr: float | None = _field_default(TrainConfig, "hamiltonian_lr")
    lr_decay: float = _field_default(TrainConfig, "lr_decay")
    steps: int = _field_default(TrainConfig, "steps")

    def __post_init__(self) -> None:
        _check_choice("geco_setting", self.geco_setting, GECO_SETTINGS)
        _check_choice("latent_prior", self.latent_prior, LATENT_PRIORS)
        for name in ("width", "encoder_width", "latent_channels"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))

    def model_config(self, **overrides: Any) -> ModelConfig:
        """The preset's :class:`ModelConfig`; ``overrides`` are ModelConfig fields."""
        kw: dict[str, Any] = dict(GECO_SETTINGS[self.geco_setting], latent_prior=self.latent_prior)
        if self.encoder_width is not None:
            kw["encoder_widths"] = (self.encoder_width,) * len(ModelConfig().encoder_widths)
        if self.latent_channels is not None:
            kw["latent_channels"] = self.latent_channels
        kw.update(overrides)
        if self.width is not None:
            return ModelConfig.reduced(self.width, **kw)
        return ModelConfig(**kw)

    def train_config(
        self, data: str, out: str, *, model: ModelConfig | None = None, **overrides: Any
    ) -> TrainConfig:
        """The preset's :class:`TrainConfig`; ``overrides`` are TrainConfig fields."""
        kw: dict[str, Any] = dict(
            steps=self.steps, lr=self.lr, hamiltonian_lr=self.hamiltonian_lr,
            lr_decay=self.lr_decay,
        )  # fmt: skip
        kw.update(overrides)
        return TrainConfig(data, out, model=self.model_config() if model is None else model, **kw)


TRAIN_PRESETS: dict[str, TrainPreset] = {
    "default": TrainPreset(
        "the paper's scale (A.1's widths, Adam 1.5e-4, the N(0, I) prior, 10000 steps; the KL "
        "balanced by GECO at 0.3 of the pixel variance): for 32x32 data like the paper's, on a "
        "GPU"
    ),
    "small": TrainPreset(
        "what learns on a CPU in minutes (every network 16 wide but the encoder, 32; z of "
        "4x4x4; the KL balanced as the ELBO balances it; a prior matched to the posteriors; "
        "Adam 1e-3, the Hamiltonian 3e-4, both decaying over the last 30 %; 3000 steps): for "
        "16x16 frames and a few thousand sequences, and for your own data first",
        width=16,
        encoder_width=32,
        latent_channels=4,
        geco_setting="calibrated",
        latent_prior="matched",
        lr=1e-3,
        hamiltonian_lr=3e-4,
        lr_decay=0.3,
        steps=3000,
    ),
}
"""Named training presets (``hamflow-train --preset NAME``); ``"default"`` is the paper's.

``"small"`` holds the settings ``examples/pendulum_hgn.py`` trains with (its docstring gives
the runs measured with them on the pendulum at 16x16)."""


def config_to_dict(config: ModelConfig | TrainConfig) -> dict[str, Any]:
    """A JSON-ready dict of a config (nested configs included, tuples as lists)."""
    out = dataclasses.asdict(config)

    def listify(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: listify(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return [listify(x) for x in v]
        return v

    return listify(out)


def _known(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"config: unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return dict(data)


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Inverse of :func:`config_to_dict` for a :class:`ModelConfig`."""
    return ModelConfig(**_known(ModelConfig, data))


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` for a :class:`TrainConfig`.

    Example:
        >>> cfg = TrainConfig(data="D", out="R", model=ModelConfig(variant="euler"))
        >>> train_config_from_dict(config_to_dict(cfg)) == cfg
        True
    """
    data = _known(TrainConfig, data)
    data["model"] = model_config_from_dict(data.get("model", {}))
    return TrainConfig(**data)


def config_diff(
    old: dict[str, Any], new: dict[str, Any], ignore: frozenset[str] = frozenset(), prefix: str = ""
) -> list[str]:
    """Lines ``"name: old -> new"`` for every differing (nested) field not in ``ignore``.

    Example:
        >>> config_diff({"a": 1, "m": {"b": 2}}, {"a": 1, "m": {"b": 3}})
        ['m.b: 2 -> 3']
    """
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_diff(a, b, frozenset(), f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines
