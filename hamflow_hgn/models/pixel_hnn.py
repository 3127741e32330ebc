"""PixelHNN, the baseline of Table 1: an autoencoder with an HNN in its latent space (A.3).

A pair of consecutive frames ``X_t = (x_t, x_{t+1})`` is encoded to a flat latent
``z_t = (q_t, p_t)`` of the true phase-space size (2, 2, 8, 12); an
:class:`~hamflow_hgn.models.hnn.HNN` (two hidden layers of 200 tanh units) learns ``H(z)``.
The loss is Eq. 15::

    L = L_AE + L_CC + 0.1 L_HNN + 1e-5 L_WD

* ``L_AE = mean((X_t − X̂_t)²)`` over pixels and colour channels of the pair (Eq. 14);
* ``L_CC = mean((p_t − (q_{t+1} − q_t) / dt)²)`` (Eq. 13; ``dt = 1``, one frame, by default);
* ``L_HNN = mean((f_H(z_t) − (z_{t+1} − z_t) / dt)²)`` with ``f_H = (∂H/∂p, −∂H/∂q)`` (Eq. 12
  with the forward finite difference of the embedding, as in the original code);
* ``L_WD = ½ Σ θ²`` over every parameter, i.e. Adam's ``weight_decay=1e-5`` of the original.

Two variants: ``kind="mlp"`` (the original: encoder and decoder MLPs of 4 layers, 200 ReLU
units) and ``kind="conv"`` (HGN's convolutional encoder and decoder from
:mod:`hamflow_hgn.models.networks`, joined to the flat latent by one linear layer on each side).

Rollouts encode the first pair ``(x_0, x_1)``, integrate the latent with the core's RK4 and
decode the first frame of every decoded pair, so a rollout of ``T`` steps gives frames
``0..T`` just like :meth:`hamflow_hgn.models.hgn.HGN.rollout`, and is scored by the same code.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, A.3, Eq. 12–15.
    Greydanus, Dzamba and Yosinski, "Hamiltonian Neural Networks", NeurIPS 2019 (PixelHNN).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import PIXEL_HNN_KINDS, PixelHNNConfig
from .base import Rollout
from .hnn import HNN, hnn_loss
from .networks import Decoder, Encoder, mlp

__all__ = ["PIXEL_HNN_KINDS", "PixelHNNConfig", "PixelHNN", "pixel_hnn_losses"]


class _ConvEncoder(nn.Module):
    def __init__(self, c: PixelHNNConfig) -> None:
        super().__init__()
        self.net = Encoder(
            2 * c.channels, c.encoder_widths, c.latent_channels, c.n_upsample, deterministic=True
        )
        self.linear = nn.Linear(c.latent_channels * c.latent_size**2, c.latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.net(x)[0].flatten(1))


class _ConvDecoder(nn.Module):
    def __init__(self, c: PixelHNNConfig) -> None:
        super().__init__()
        self.shape = (c.state_channels, c.latent_size, c.latent_size)
        self.linear = nn.Linear(c.latent_dim, c.state_channels * c.latent_size**2)
        self.net = Decoder(c.state_channels, c.decoder_width, 2 * c.channels, c.n_upsample)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.linear(z).unflatten(1, self.shape))


def pixel_hnn_losses(
    x: Tensor, x_hat: Tensor, z: Tensor, z_next: Tensor, field: Tensor, dt: float = 1.0
) -> dict[str, Tensor]:
    """The data terms of Eq. 15 from their ingredients (no weights applied).

    Args:
        x, x_hat: the input pairs and their reconstructions, any matching shape ``(N, ...)``.
        z, z_next: latents of ``X_t`` and ``X_{t+1}``, ``(N, 2n)`` as ``cat(q, p)``.
        field: the HNN's symplectic gradient at ``z``, ``(N, 2n)``.
        dt: latent time between ``z`` and ``z_next``.

    Example:
        >>> z, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, 1.0]])
        >>> out = pixel_hnn_losses(torch.ones(1, 4), torch.zeros(1, 4), z, z1, torch.zeros(1, 2))
        >>> {k: v.item() for k, v in out.items()}
        {'ae': 1.0, 'cc': 1.0, 'hnn': 2.0}
    """
    half = z.shape[-1] // 2
    q, p, q_next = z[:, :half], z[:, half:], z_next[:, :half]
    return {
        "ae": ((x - x_hat) ** 2).mean(),
        "cc": ((p - (q_next - q) / dt) ** 2).mean(),
        "hnn": hnn_loss(field, (z_next - z) / dt),
    }


class PixelHNN(nn.Module):
    """PixelHNN on image sequences, with the same training and rollout interface as HGN.

    Calling the module on ``images (B, T+1, C, H, W)`` returns the Eq. 15 loss and detached
    metrics (``loss``, ``ae``, ``cc``, ``hnn``, ``wd`` and ``mse``, the per-pixel error of the
    pair reconstruction); :meth:`rollout` returns a :class:`hamflow_hgn.models.base.Rollout`.

    Example:
        >>> cfg = PixelHNNConfig(kind="mlp", latent_dim=2, frames=4, image_size=8, hidden=16,
        ...                      hnn_hidden=(16,), pairs_per_batch=0)
        >>> model = PixelHNN(cfg)
        >>> images = torch.rand(2, 4, 3, 8, 8)
        >>> loss, metrics = model(images)
        >>> sorted(metrics)
        ['ae', 'cc', 'hnn', 'loss', 'mse', 'wd']
        >>> out = model.rollout(images, steps=5)
        >>> out.frames.shape, out.q.shape, out.energy.shape
        (torch.Size([2, 6, 3, 8, 8]), torch.Size([2, 6, 1]), torch.Size([2, 6]))

    References:
        Toth et al., "Hamiltonian Generative Networks", ICLR 2020, A.3.
    """

    def __init__(self, config: PixelHNNConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.kind == "mlp":
            n_in = 2 * c.channels * c.image_size**2
            self.encoder = mlp([n_in] + [c.hidden] * (c.mlp_layers - 1) + [c.latent_dim])
            self.decoder = mlp([c.latent_dim] + [c.hidden] * (c.mlp_layers - 1) + [n_in])
        else:
            self.encoder = _ConvEncoder(c)
            self.decoder = _ConvDecoder(c)
        self.hnn = HNN(c.latent_dim, hidden=c.hnn_hidden)

    @property
    def pair_shape(self) -> tuple[int, int, int, int]:
        """Shape of one decoded frame pair, ``(2, C, H, W)``."""
        c = self.config
        return (2, c.channels, c.image_size, c.image_size)

    def check_images(self, images: Tensor, name: str = "images") -> None:
        """Raise unless ``images`` is ``(B, T+1 >= 2, C, H, W)`` with this config's frame size."""
        c = self.config
        if not isinstance(images, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
        if (
            images.dim() != 5
            or images.shape[1] < 2
            or tuple(images.shape[2:])
            != (
                c.channels,
                c.image_size,
                c.image_size,
            )
        ):
            raise ValueError(
                f"{name}: expected shape (B, T+1 >= 2, {c.channels}, {c.image_size}, "
                f"{c.image_size}), got {tuple(images.shape)}"
            )

    def encode(self, pairs: Tensor) -> Tensor:
        """``(N, 2, C, H, W)`` frame pairs to latents ``(N, latent_dim)``."""
        if self.config.kind == "mlp":
            return self.encoder(pairs.flatten(1))
        return self.encoder(pairs.flatten(1, 2))

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(N, latent_dim)`` to reconstructed pairs ``(N, 2, C, H, W)``."""
        return self.decoder(z).reshape(z.shape[0], *self.pair_shape)

    def weight_norm(self) -> Tensor:
        """``L_WD = ½ Σ θ²`` over every parameter."""
        return 0.5 * sum(p.square().sum() for p in self.parameters())

    def _pairs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Draw ``(X_t, X_{t+1})``: frames ``(t, t+1)`` and ``(t+1, t+2)`` of one sequence."""
        b, t1 = images.shape[:2]
        n_start = t1 - 2
        if self.config.pairs_per_batch:
            n = self.config.pairs_per_batch
            seq = torch.randint(b, (n,), device=images.device)
            t = torch.randint(n_start, (n,), device=images.device)
        else:
            seq = torch.arange(b, device=images.device).repeat_interleave(n_start)
            t = torch.arange(n_start, device=images.device).repeat(b)
        idx = t[:, None] + torch.arange(3, device=images.device)
        triples = images[seq[:, None], idx]  # (N, 3, C, H, W)
        return triples[:, :2], triples[:, 1:]

    def forward(self, images: Tensor, step: int = 0, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 15 on pairs drawn from ``images (B, T+1, C, H, W)``; ``kwargs`` are ignored."""
        self.check_images(images)
        if images.shape[1] < 3:
            raise ValueError(f"images: expected T+1 >= 3 frames, got {images.shape[1]}")
        c = self.config
        x, x_next = self._pairs(images)
        n = x.shape[0]
        z_both = self.encode(torch.cat([x, x_next]))
        z, z_next = z_both[:n], z_both[n:]
        x_hat = self.decode(z)
        terms = pixel_hnn_losses(x, x_hat, z, z_next, self.hnn.time_derivative(z), c.dt)
        wd = self.weight_norm()
        loss = terms["ae"] + terms["cc"] + c.lambda_hnn * terms["hnn"] + c.lambda_wd * wd
        metrics = {k: v.detach() for k, v in terms.items()}
        metrics.update(loss=loss.detach(), wd=wd.detach(), mse=terms["ae"].detach())
        return loss, metrics

    def loss(self, images: Tensor, step: int = 0, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        """Alias of calling the module."""
        return self(images, step, **kwargs)

    def after_step(self) -> None:
        """Nothing to update after an optimiser step (interface shared with HGN)."""

    @torch.no_grad()
    def rollout(
        self,
        images: Tensor,
        steps: int | None = None,
        *,
        dt: float | None = None,
        sample: bool = False,
        noise=None,
    ) -> Rollout:
        """Encode ``(x_0, x_1)``, integrate the latent with RK4 and decode frames ``0..steps``.

        ``steps`` defaults to ``T``; ``dt`` to the config's (negative: backwards; scaled:
        faster or slower). ``sample`` and ``noise`` are accepted for interface parity; the
        model is deterministic.
        """
        self.check_images(images)
        z0 = self.encode(images[:, :2])
        return self.rollout_from_latent(z0, images.shape[1] - 1 if steps is None else steps, dt)

    @torch.no_grad()
    def rollout_from(self, q: Tensor, p: Tensor, steps: int, dt: float | None = None) -> Rollout:
        """Roll out and decode from a latent state ``(q, p)``, each ``(B, latent_dim / 2)``."""
        return self.rollout_from_latent(torch.cat([q, p], dim=-1), steps, dt)

    @torch.no_grad()
    def rollout_from_latent(self, z0: Tensor, steps: int, dt: float | None = None) -> Rollout:
        """Roll out and decode from latents ``z0 (B, latent_dim)``."""
        zs = self.hnn.rollout(z0, self.config.dt if dt is None else dt, steps, method="rk4")
        s, b = zs.shape[:2]
        frames = self.decode(zs.flatten(0, 1))[:, 0].unflatten(0, (s, b)).transpose(0, 1)
        half = self.config.latent_dim // 2
        energy = self.hnn.energy(zs.flatten(0, 1)).unflatten(0, (s, b)).transpose(0, 1)
        zs = zs.transpose(0, 1)  # batch first, like the frames
        return Rollout(frames, zs[..., :half], zs[..., half:], energy)
