"""Train HGN (or a registered baseline) on one device, or on several through torchrun/DDP.

API: :func:`train` takes a :class:`~hamflow_hgn.config.TrainConfig` and returns the run
directory. CLI (a thin layer over it)::

    python -m hamflow_hgn.train --data DIR --out RUN [--variant leapfrog] [--protocol reconstruct]
        [--steps N] [--batch-size 16] [--device auto] [--amp bf16] [--compile] [--resume]
    torchrun --nproc-per-node 4 -m hamflow_hgn.train --data DIR --out RUN ...

The models come from :data:`hamflow_hgn.models.MODELS`; the shared batches and noise that make
N ranks equal one process from :mod:`hamflow_hgn.distributed`; the files of the run directory
are described in :mod:`hamflow_hgn.runs`. Nothing else in the package imports this module.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

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
from .distributed import (
    IndexSampler,
    SharedNoise,
    init_distributed,
    mean_over_ranks,
    resolve_device,
    shutdown_distributed,
)
from .io import write_json
from .models import build_model
from .runs import CHECKPOINT, CONFIG, MetricsLogger

__all__ = ["NonFiniteLossError", "StepCallback", "train", "config_from_args", "main"]

StepCallback = Callable[[int], None]
"""``on_step(step)``: called after each finished step (its checkpoint, if any, written)."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# -- data ----------------------------------------------------------------------------------


def _open_data(config: TrainConfig, split: str = "train"):
    from .data import open_dataset

    path = Path(config.data)
    if not (path / "metadata.json").is_file():
        raise ValueError(
            f"data: no dataset at {str(path)!r}; generate one first, e.g. "
            f"python -m hamflow_hgn.data --system pendulum --out {path}"
        )
    return open_dataset(path, split)


def _oom_types() -> tuple[type[BaseException], ...]:
    types = [torch.cuda.OutOfMemoryError]
    if hasattr(torch, "OutOfMemoryError"):
        types.append(torch.OutOfMemoryError)
    return tuple(types)


# -- the loop ------------------------------------------------------------------------------


def train(config: TrainConfig, *, on_step: StepCallback | None = None) -> Path:
    """Train ``config.model_name`` on ``config.data``; return the run directory.

    Runs single-process, or as one rank of a torchrun job (``WORLD_SIZE > 1``: DDP, backend
    nccl on CUDA and gloo on the CPU; rank 0 logs and checkpoints). With ``resume`` it continues
    from ``RUN/checkpoint.pt`` exactly (same next losses on the CPU) and refuses a different
    configuration, listing the differences. Raises :class:`NonFiniteLossError` on a NaN/inf loss
    (the last good checkpoint is kept) and a ``RuntimeError`` naming the setting to lower on
    GPU out-of-memory. ``on_step`` is called after every step (tests use it to kill a run).
    """
    rank, world, local_rank = init_distributed(config.device)
    try:
        return _train(config, rank, world, local_rank, on_step)
    finally:
        shutdown_distributed(world)


def _train(
    config: TrainConfig, rank: int, world: int, local_rank: int, on_step: StepCallback | None
) -> Path:
    device = resolve_device(config.device, local_rank)
    dataset = _open_data(config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002 - seed the legacy global for any user code
    config, model = build_model(config, dataset)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    run = Path(config.out)
    ckpt_path = run / CHECKPOINT
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
        write_json(run / CONFIG, cfg_dict, sort_keys=False)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    if config.compile:
        net = torch.compile(net)
    reduce = mean_over_ranks(world)
    use_amp = config.amp == "bf16"
    after_step = getattr(model, "after_step", None)

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

    logger = MetricsLogger(run, keep_until=start) if rank == 0 else None
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
            if on_step is not None:
                on_step(step)
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
    sys.exit(main())
