"""The run directory: its layout, the metrics log, and :func:`load_run`, the one way to read it.

A run directory written by ``python -m hamflow_hgn.train`` holds::

    config.json     the resolved TrainConfig (frames and image size taken from the data)
    metrics.csv     step, loss, mse, kl, kl_weight, lambda, seconds (training time so far)
    tensorboard/    the same scalars, when the ``tensorboard`` extra is installed
    checkpoint.pt   the last checkpoint (see :mod:`hamflow_hgn.checkpoint`)
    eval/           what ``python -m hamflow_hgn.evaluate`` writes

:func:`load_run` rebuilds any registered model from one, with its weights, for the evaluator,
the figures and the examples.
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from .checkpoint import load_checkpoint
from .config import TrainConfig, train_config_from_dict
from .distributed import resolve_device
from .models import build_model

__all__ = [
    "CONFIG",
    "METRICS",
    "CHECKPOINT",
    "EVAL",
    "CSV_FIELDS",
    "MetricsLogger",
    "LoadedRun",
    "check_data",
    "load_run",
    "read_config",
]

CONFIG = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
EVAL = "eval"
CSV_FIELDS = ("step", "loss", "mse", "kl", "kl_weight", "lambda", "seconds")


class MetricsLogger:
    """``metrics.csv`` (and TensorBoard events when installed) of a run, written on rank 0.

    On resume from step ``keep_until``, the rows after it (lost with the killed process) are
    dropped.
    """

    def __init__(self, run: Path, keep_until: int | None) -> None:
        self.path = Path(run) / METRICS
        rows: list[dict[str, str]] = []
        if keep_until is not None and self.path.exists():
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, CSV_FIELDS)
        self.tb = None
        with contextlib.suppress(Exception):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float], seconds: float) -> None:
        """Append one row; metrics a model does not report are written as nan."""
        row = {k: metrics.get(k, float("nan")) for k in CSV_FIELDS[1:-1]}
        self.writer.writerow(
            {"step": step, **{k: repr(v) for k, v in row.items()}, "seconds": seconds}
        )
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        """Close the CSV file and the TensorBoard writer."""
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of a run directory; ``ValueError`` if it is not one."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ValueError(f"run_dir: no {CONFIG} in {str(run_dir)!r}; is it a training run?")
    return train_config_from_dict(json.loads(path.read_text()))


class LoadedRun(NamedTuple):
    """A trained run, ready to evaluate: its config, its model (eval mode), its data."""

    config: TrainConfig
    model: nn.Module
    dataset: Any
    data_dir: Path


def check_data(config: TrainConfig, saved: dict[str, Any], dataset: Any, allow_other: bool) -> None:
    """Refuse data the run was not trained on (unless ``allow_other``) or cannot read at all.

    ``saved`` is the checkpoint's ``dataset`` record; a dataset of another frame count or image
    size is refused in one line even when ``allow_other``.
    """
    now = getattr(dataset, "content_hash", None)
    if now != saved.get("content_hash") and not allow_other:
        raise ValueError(
            f"data: the run was trained on {saved.get('system')} data (content hash "
            f"{str(saved.get('content_hash'))[:12]}, at {saved.get('path')}), not on "
            f"{dataset.config.system} data with hash {str(now)[:12]}; pass --allow-other-data "
            "to evaluate on it anyway"
        )
    m, d = config.model, dataset.config
    if (d.steps, d.size) != (m.frames, m.image_size):
        raise ValueError(
            f"data: the run's model takes {m.frames} frames of {m.image_size}x{m.image_size}; "
            f"the dataset at {getattr(dataset, 'path', '?')} has {d.steps} frames of "
            f"{d.size}x{d.size}"
        )


def load_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
    *,
    verify: bool = True,
    allow_other_data: bool = False,
) -> LoadedRun:
    """Rebuild a run's model with the weights of its last checkpoint, on ``device``.

    ``data_dir`` defaults to the dataset the run was trained on; another one is refused
    unless ``allow_other_data`` (see :func:`check_data`). ``verify=False`` skips hashing the
    state files (they are still checked for shape).
    """
    from .data import open_dataset

    run = Path(run_dir)
    config = read_config(run)
    data = Path(data_dir) if data_dir is not None else Path(config.data)
    if not (data / "metadata.json").is_file():
        raise ValueError(f"data_dir: no dataset at {str(data)!r}; pass --data DIR")
    dataset = open_dataset(data, "train", verify=verify)
    dev = resolve_device(device)
    state = load_checkpoint(run / CHECKPOINT, map_location=dev)
    check_data(config, state["dataset"], dataset, allow_other_data)
    _, model = build_model(config, dataset)
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    return LoadedRun(config, model, dataset, data)
