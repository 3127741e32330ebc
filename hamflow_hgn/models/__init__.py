"""The trainable models, by name: one explicit registry, the model builder, Table 1's rows.

:data:`MODELS` maps a ``--model`` name to a factory ``(train_config, dataset) -> nn.Module``:

* ``hgn``: :class:`~hamflow_hgn.models.hgn.HGN` (its variant comes from ``config.model``);
* ``pixel_hnn_mlp``: :class:`~hamflow_hgn.models.pixel_hnn.PixelHNN` with MLP encoder and
  decoder (4 layers of 200 ReLU units), the row "HNN" of Table 1;
* ``pixel_hnn_conv``: the same with HGN's convolutional encoder and decoder, "HNN (conv)".

The PixelHNN latent size is the dataset's true phase-space size (2, 2, 8, 12); frames, image
size, protocol and (for the conv variant) the network widths, including ``--width``, come from
the run's :class:`~hamflow_hgn.config.ModelConfig`. Pass ``--lr 1e-3`` for the paper's
baseline learning rate (A.3). Every model follows :class:`~hamflow_hgn.models.base.TrainableModel`.

:data:`TABLE1_ROWS` names the six rows of Table 1 once (``hgn_leapfrog``, ``pixel_hnn_mlp``,
...); :func:`row_name` gives the row of a training config. The evaluator, the figures and the
reproduction script all use these names.

Example:
    >>> sorted(MODELS)
    ['hgn', 'pixel_hnn_conv', 'pixel_hnn_mlp']
    >>> from hamflow_hgn.config import TrainConfig, ModelConfig
    >>> row_name(TrainConfig("D", "R", model=ModelConfig(variant="euler")))
    'hgn_euler'
    >>> TABLE1_ROWS["hgn_euler"].train_args
    ('--model', 'hgn', '--variant', 'euler')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

from torch import nn

from ..config import PixelHNNConfig, TrainConfig
from .base import Rollout, TrainableModel
from .hgn import HGN
from .pixel_hnn import PixelHNN

__all__ = [
    "MODELS",
    "ModelFactory",
    "TABLE1_ROWS",
    "Table1Row",
    "Rollout",
    "TrainableModel",
    "build_model",
    "register_model",
    "resolve_config",
    "row_name",
]

ModelFactory = Callable[[TrainConfig, Any], nn.Module]
"""``factory(train_config, dataset) -> model``; ``dataset`` has ``.config`` and ``.system``."""


def _state_dim(dataset: Any) -> int:
    system = getattr(dataset, "system", None)
    if system is None or not hasattr(system, "state_dim"):
        raise ValueError(
            "dataset: PixelHNN needs a dataset with .system.state_dim (the true phase-space "
            f"size), got {type(dataset).__name__}"
        )
    return int(system.state_dim)


def _hgn(config: TrainConfig, dataset: Any) -> nn.Module:
    model = HGN(config.model)
    if config.model.decoder_bias == "data" and hasattr(dataset, "render_batch"):
        n = min(len(dataset), DECODER_BIAS_SEQUENCES)
        model.init_decoder_bias(dataset.render_batch(range(n)))
    return model


DECODER_BIAS_SEQUENCES = 256
"""Training sequences whose mean colour sets HGN's output bias (``decoder_bias="data"``)."""


def _pixel_hnn_mlp(config: TrainConfig, dataset: Any) -> nn.Module:
    return PixelHNN(PixelHNNConfig.from_model("mlp", config.model, _state_dim(dataset)))


def _pixel_hnn_conv(config: TrainConfig, dataset: Any) -> nn.Module:
    return PixelHNN(PixelHNNConfig.from_model("conv", config.model, _state_dim(dataset)))


MODELS: dict[str, ModelFactory] = {
    "hgn": _hgn,
    "pixel_hnn_mlp": _pixel_hnn_mlp,
    "pixel_hnn_conv": _pixel_hnn_conv,
}
"""Trainable models by ``--model`` name."""


def register_model(name: str, factory: ModelFactory) -> None:
    """Make ``factory`` trainable and evaluable as ``--model name`` (e.g. a new baseline)."""
    MODELS[name] = factory


class Table1Row(NamedTuple):
    """One row of Table 1: the paper's label and the ``train`` arguments that make it."""

    label: str
    train_args: tuple[str, ...]


TABLE1_ROWS: dict[str, Table1Row] = {
    "pixel_hnn_mlp": Table1Row("HNN", ("--model", "pixel_hnn_mlp")),
    "pixel_hnn_conv": Table1Row("HNN (conv)", ("--model", "pixel_hnn_conv")),
    "hgn_euler": Table1Row("HGN (Euler)", ("--model", "hgn", "--variant", "euler")),
    "hgn_deterministic": Table1Row(
        "HGN (determ)", ("--model", "hgn", "--variant", "deterministic")
    ),
    "hgn_no_fpsi": Table1Row("HGN (no f_psi)", ("--model", "hgn", "--variant", "no_fpsi")),
    "hgn_leapfrog": Table1Row("HGN (leapfrog)", ("--model", "hgn", "--variant", "leapfrog")),
}
"""Table 1's rows in the paper's order, by row name."""


def row_name(config: TrainConfig) -> str:
    """The Table-1 row name of a training config: ``hgn_<variant>``, else the model name."""
    if config.model_name == "hgn":
        return f"hgn_{config.model.variant}"
    return config.model_name


def resolve_config(config: TrainConfig, dataset: Any) -> TrainConfig:
    """``config`` with the model's frames and image size taken from the dataset."""
    data_cfg = dataset.config
    model_cfg = dataclasses.replace(config.model, frames=data_cfg.steps, image_size=data_cfg.size)
    return dataclasses.replace(config, model=model_cfg)


def build_model(config: TrainConfig, dataset: Any) -> tuple[TrainConfig, nn.Module]:
    """Resolve ``config`` against the data (frames, image size) and build its model."""
    if config.model_name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {config.model_name!r}")
    config = resolve_config(config, dataset)
    return config, MODELS[config.model_name](config, dataset)
