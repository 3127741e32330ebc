"""Train HGN (or a registered baseline) on one device, or on several through torchrun/DDP.

API: :func:`train` takes a :class:`~hamflow_hgn.config.TrainConfig` and returns the run
directory. CLI (a thin layer over it)::

    python -m hamflow_hgn.train --data DIR --out RUN [--variant leapfrog] [--protocol reconstruct]
        [--steps N] [--batch-size 16] [--device auto] [--amp bf16] [--compile] [--resume]
    torchrun --nproc-per-node 4 -m hamflow_hgn.train --data DIR --out RUN ...

**Models.** :data:`MODELS` maps a name to a factory ``(config, dataset) -> nn.Module``. The
module is called as ``module(images, step, noise=..., reduce=...) -> (loss, metrics)`` (its
``forward``, so DDP hooks run; HGN also names it ``loss``), may define ``after_step()`` (run after
each optimiser step) and ``rollout(images, steps, dt=...)`` for evaluation. Register a baseline
with :func:`register_model`; the loop does not change.

**Data.** Each step draws the *global* batch of ``batch_size * world_size`` indices from one
seeded generator (a fresh permutation per epoch, identical on every rank); rank ``r`` renders its
own slice on its device with ``SequenceDataset.render_batch``. The reparametrisation noise is
drawn the same way. So N ranks with batch B see exactly what one process with batch N*B sees.

**Files in the run directory.** ``config.json`` (resolved config), ``metrics.csv`` (and
TensorBoard events when ``tensorboard`` is installed), ``checkpoint.pt`` (every
``checkpoint_every`` steps and at the end; see :mod:`hamflow_hgn.checkpoint`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import (
    PROTOCOLS,
    VARIANTS,
    ModelConfig,
    TrainConfig,
    config_diff,
    config_to_dict,
)
from .model import HGN

__all__ = [
    "MODELS",
    "ModelFactory",
    "register_model",
    "IndexSampler",
    "SharedNoise",
    "NonFiniteLossError",
    "resolve_device",
    "build_model",
    "train",
    "main",
]

ModelFactory = Callable[[TrainConfig, Any], nn.Module]
KILL_ENV = "HAMFLOW_TEST_KILL_AT_STEP"
"""Test hook: when set, the process SIGKILLs itself right after finishing that step."""
CSV_FIELDS = ("step", "loss", "mse", "kl", "kl_weight", "lambda", "seconds")


def _hgn_factory(config: TrainConfig, dataset: Any) -> nn.Module:
    return HGN(config.model)


MODELS: dict[str, ModelFactory] = {"hgn": _hgn_factory}
"""Trainable models by name (``--model``)."""


def register_model(name: str, factory: ModelFactory) -> None:
    """Make ``factory`` trainable as ``--model name`` (see the module docstring)."""
    MODELS[name] = factory


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# -- data and noise shared across ranks ----------------------------------------------------


class IndexSampler:
    """Global batches of sequence indices from a seeded generator, epoch by epoch.

    Example:
        >>> s = IndexSampler(10, seed=0)
        >>> a = s.next(4); state = s.state_dict(); b = s.next(4)
        >>> s.load_state_dict(state); bool((s.next(4) == b).all()), len(set(a.tolist()))
        (True, 4)
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = int(n)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm = torch.randperm(self.n, generator=self.generator)
        self.pos = 0

    def next(self, count: int) -> Tensor:
        out = []
        while count > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = min(count, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            count -= take
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.perm = state["perm"].cpu().clone()
        self.pos = int(state["pos"])


class SharedNoise:
    """Standard-normal noise for the global batch from a generator shared by every rank.

    Called with this rank's shape ``(B, ...)``, it draws ``(world * B, ...)`` and returns rows
    ``rank * B : (rank + 1) * B``, so DDP reproduces a single-process run exactly.
    """

    def __init__(self, seed: int, device: torch.device, rank: int = 0, world: int = 1) -> None:
        self.generator = torch.Generator(device=device).manual_seed(int(seed) + 1)
        self.rank, self.world, self.device = rank, world, device

    def __call__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        b = shape[0]
        full = torch.randn(
            (b * self.world, *shape[1:]), generator=self.generator, device=self.device
        )
        return full[self.rank * b : (self.rank + 1) * b].to(device=device, dtype=dtype)


# -- devices and processes -----------------------------------------------------------------


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when present (``cuda:LOCAL_RANK`` under torchrun), else the CPU.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device: {name!r} requested but CUDA is not available; use 'cpu'")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device(name)


def _init_distributed(device_name: str) -> tuple[int, int, int]:
    """``(rank, world, local_rank)``; starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, local_rank


def _mean_over_ranks(world: int) -> Callable[[Tensor], Tensor]:
    def reduce(x: Tensor) -> Tensor:
        if world == 1:
            return x
        y = x.detach().clone()
        dist.all_reduce(y)
        return y / world

    return reduce


# -- run directory ------------------------------------------------------------------------


def _open_data(config: TrainConfig, split: str = "train"):
    from .data import open_dataset

    path = Path(config.data)
    if not (path / "metadata.json").is_file():
        raise ValueError(
            f"data: no dataset at {str(path)!r}; generate one first, e.g. "
            f"python -m hamflow_hgn.data --system pendulum --out {path}"
        )
    return open_dataset(path, split)


def build_model(config: TrainConfig, dataset: Any) -> tuple[TrainConfig, nn.Module]:
    """Resolve the model config against the data (frames, size) and build the model."""
    from . import baselines  # noqa: F401  (registers the PixelHNNs; imported late: it imports us)

    if config.model_name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {config.model_name!r}")
    data_cfg = dataset.config
    model_cfg = dataclasses.replace(config.model, frames=data_cfg.steps, image_size=data_cfg.size)
    config = dataclasses.replace(config, model=model_cfg)
    return config, MODELS[config.model_name](config, dataset)


class _Logger:
    """CSV (+ optional TensorBoard) metrics on rank 0."""

    def __init__(self, run: Path, keep_until: int | None) -> None:
        self.path = run / "metrics.csv"
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

            self.tb = SummaryWriter(str(run / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float], seconds: float) -> None:
        row = {k: metrics.get(k, float("nan")) for k in CSV_FIELDS[1:-1]}
        self.writer.writerow(
            {"step": step, **{k: repr(v) for k, v in row.items()}, "seconds": seconds}
        )
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _oom_types() -> tuple[type[BaseException], ...]:
    types = [torch.cuda.OutOfMemoryError]
    if hasattr(torch, "OutOfMemoryError"):
        types.append(torch.OutOfMemoryError)
    return tuple(types)


# -- the loop ------------------------------------------------------------------------------


def train(config: TrainConfig) -> Path:
    """Train ``config.model_name`` on ``config.data``; return the run directory.

    Runs single-process, or as one rank of a torchrun job (``WORLD_SIZE > 1``: DDP, backend
    nccl on CUDA and gloo on the CPU; rank 0 logs and checkpoints). With ``resume`` it continues
    from ``RUN/checkpoint.pt`` exactly (same next losses on the CPU) and refuses a different
    configuration, listing the differences. Raises :class:`NonFiniteLossError` on a NaN/inf loss
    (the last good checkpoint is kept) and a ``RuntimeError`` naming the setting to lower on
    GPU out-of-memory.
    """
    rank, world, local_rank = _init_distributed(config.device)
    try:
        return _train(config, rank, world, local_rank)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, rank: int, world: int, local_rank: int) -> Path:
    device = resolve_device(config.device, local_rank)
    dataset = _open_data(config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002 - seed the legacy global for any user code
    config, model = build_model(config, dataset)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    run = Path(config.out)
    ckpt_path = run / "checkpoint.pt"
    n_data = len(dataset)
    if config.max_train_sequences is not None:
        n_data = min(n_data, config.max_train_sequences)
    sampler = IndexSampler(n_data, config.seed)
    noise = SharedNoise(config.seed, device, rank, world)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generators = {"sampler": sampler.generator, "noise": noise.generator}
    start = 0
    cfg_dict = config_to_dict(config)
    if config.resume:
        state = load_checkpoint(ckpt_path, map_location=device)
        diffs = config_diff(state["config"], cfg_dict, TrainConfig.RESUMABLE)
        if diffs:
            raise CheckpointError(
                f"resume: {ckpt_path} was trained with a different configuration; "
                "differences (checkpoint -> now):\n  " + "\n  ".join(diffs)
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"], generators)
        sampler.load_state_dict(state["sampler"])
        start = int(state["step"])
    elif ckpt_path.exists():
        raise ValueError(
            f"out: {str(run)!r} already holds a checkpoint; pass resume=True (--resume) to "
            "continue it, or choose another --out"
        )
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        tmp = run / "config.json.tmp"
        tmp.write_text(json.dumps(cfg_dict, indent=2))
        os.replace(tmp, run / "config.json")

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    if config.compile:
        net = torch.compile(net)
    reduce = _mean_over_ranks(world)
    use_amp = config.amp == "bf16"
    after_step = getattr(model, "after_step", None)
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)

    def checkpoint(step: int) -> None:
        if rank == 0:
            save_checkpoint(
                ckpt_path,
                {
                    "step": step,
                    "config": cfg_dict,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": capture_rng(generators),
                    "sampler": sampler.state_dict(),
                },
            )
        if world > 1:
            dist.barrier()

    logger = _Logger(run, keep_until=start) if rank == 0 else None
    bar = None
    if rank == 0 and config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="train", dynamic_ncols=True)
        bar.write(
            f"effective batch {config.batch_size * world} = {config.batch_size} x {world} "
            f"process(es) on {device}"
        )
    model.train()
    t0 = time.perf_counter()
    try:
        for step in range(start + 1, config.steps + 1):
            idx = sampler.next(config.batch_size * world)
            idx = idx[rank * config.batch_size : (rank + 1) * config.batch_size]
            images = dataset.render_batch(idx, device)
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss, metrics = net(images, step, noise=noise, reduce=reduce)
                global_loss = reduce(loss.detach().float())
                if not bool(torch.isfinite(global_loss)):
                    raise NonFiniteLossError(
                        f"loss is {float(global_loss)} at step {step}; stopping. The last good "
                        f"checkpoint ({ckpt_path}) is kept. Lower --lr, or run without --amp."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            except _oom_types() as err:
                raise RuntimeError(
                    f"out of GPU memory at step {step} with --batch-size {config.batch_size} "
                    f"per device (amp={config.amp}): lower --batch-size, or use --amp bf16"
                ) from err
            if after_step is not None:
                after_step()
            if step % config.log_every == 0 or step == config.steps:
                names = sorted(metrics)
                values = reduce(torch.stack([metrics[k].float() for k in names]))
                logged = dict(zip(names, values.tolist()))
                if logger is not None:
                    logger.log(step, logged, time.perf_counter() - t0)
                if bar is not None:
                    shown = {"loss": "loss", "mse": "mse", "kl": "kl", "geco_lambda": "lambda"}
                    bar.set_postfix(  # only what the model reports (the baselines have no KL)
                        {k: f"{logged[m]:.4g}" for k, m in shown.items() if m in logged}
                    )
            if bar is not None:
                bar.update(1)
            if step % config.checkpoint_every == 0 or step == config.steps:
                checkpoint(step)
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    finally:
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    return run


# -- CLI -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hamflow_hgn.train", description="Train HGN (paper Sec. 3.2, A.1)."
    )
    p.add_argument("--data", required=True, help="dataset directory (python -m hamflow_hgn.data)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--model", default="hgn", help="registered model name (default: hgn)")
    p.add_argument("--variant", default="leapfrog", choices=sorted(VARIANTS))
    p.add_argument("--protocol", default="reconstruct", choices=sorted(PROTOCOLS))
    p.add_argument("--predict-k", type=int, default=5, help="input frames of 'predict'")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--width", type=int, default=None, help="reduced width of every layer")
    p.add_argument("--geco-tolerance", type=float, default=1e-3, help="target per-pixel MSE")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--max-train-sequences", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed CLI arguments."""
    model_kw = dict(
        variant=args.variant,
        protocol=args.protocol,
        predict_k=args.predict_k,
        geco_tolerance=args.geco_tolerance,
    )
    model = ModelConfig.reduced(args.width, **model_kw) if args.width else ModelConfig(**model_kw)
    return TrainConfig(
        data=args.data,
        out=args.out,
        model_name=args.model,
        model=model,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        compile=args.compile,
        channels_last=args.channels_last,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        max_train_sequences=args.max_train_sequences,
        progress=not args.no_progress,
        resume=args.resume,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        run = train(config_from_args(args))
    except (ValueError, NonFiniteLossError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run}")
    return 0


if __name__ == "__main__":
    # Run the canonical module, not this ``__main__`` copy: registrations (e.g. the baselines)
    # land in ``hamflow_hgn.train.MODELS``, which this copy's MODELS is not.
    from hamflow_hgn.train import main as _main

    sys.exit(_main())
