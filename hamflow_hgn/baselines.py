"""The baselines of Table 1, registered with the trainer (paper A.3).

Importing this module registers two models with :func:`hamflow_hgn.train.register_model`:

* ``pixel_hnn_mlp``: :class:`~hamflow_hgn.pixel_hnn.PixelHNN` with MLP encoder and decoder
  (4 layers of 200 ReLU units), the row "HNN" of Table 1;
* ``pixel_hnn_conv``: the same with HGN's convolutional encoder and decoder, "HNN (conv)".

so that ``python -m hamflow_hgn.train --model pixel_hnn_mlp ...`` and
``python -m hamflow_hgn.evaluate RUN`` treat them exactly like HGN. The latent size is the
dataset's true phase-space size (2, 2, 8, 12); frames, image size, protocol and (for the conv
variant) the network widths, including ``--width``, come from the run's
:class:`~hamflow_hgn.config.ModelConfig`. Pass ``--lr 1e-3`` for the paper's baseline learning
rate (A.3).

The phase-space HNN itself lives in :mod:`hamflow_hgn.hnn`.

Example:
    >>> from hamflow_hgn import baselines
    >>> from hamflow_hgn.train import MODELS
    >>> {"pixel_hnn_mlp", "pixel_hnn_conv"} <= set(MODELS)
    True
"""

from __future__ import annotations

from typing import Any

from .config import ModelConfig, TrainConfig
from .hnn import HNN, MLPVectorField, state_space_check
from .pixel_hnn import PixelHNN, PixelHNNConfig

__all__ = [
    "HNN",
    "MLPVectorField",
    "PixelHNN",
    "PixelHNNConfig",
    "pixel_hnn_config",
    "register",
    "state_space_check",
]


def pixel_hnn_config(kind: str, model: ModelConfig, state_dim: int) -> PixelHNNConfig:
    """The :class:`PixelHNNConfig` of a run's HGN :class:`ModelConfig` and the data's state size.

    Example:
        >>> cfg = pixel_hnn_config("conv", ModelConfig.reduced(8, image_size=16), 12)
        >>> cfg.latent_dim, cfg.encoder_widths[0], cfg.image_size
        (12, 8, 16)
    """
    return PixelHNNConfig(
        kind=kind,
        latent_dim=int(state_dim),
        frames=model.frames,
        image_size=model.image_size,
        channels=model.channels,
        protocol=model.protocol,
        predict_k=model.predict_k,
        encoder_widths=model.encoder_widths,
        latent_channels=model.latent_channels,
        decoder_width=model.decoder_width,
        state_channels=model.state_channels,
        latent_size=model.latent_size,
    )


def _state_dim(dataset: Any) -> int:
    system = getattr(dataset, "system", None)
    if system is None or not hasattr(system, "state_dim"):
        raise ValueError(
            "dataset: PixelHNN needs a dataset with .system.state_dim (the true phase-space "
            f"size), got {type(dataset).__name__}"
        )
    return int(system.state_dim)


def _factory(kind: str):
    def build(config: TrainConfig, dataset: Any) -> PixelHNN:
        return PixelHNN(pixel_hnn_config(kind, config.model, _state_dim(dataset)))

    build.__name__ = f"pixel_hnn_{kind}_factory"
    return build


def register() -> None:
    """Register ``pixel_hnn_mlp`` and ``pixel_hnn_conv`` with the trainer (idempotent)."""
    from .train import register_model

    register_model("pixel_hnn_mlp", _factory("mlp"))
    register_model("pixel_hnn_conv", _factory("conv"))


register()
