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
import dataclasses
import math
import os
import sys
import textwrap
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
    AMP_MODES,
    GECO_SETTINGS,
    LATENT_PRIORS,
    PROTOCOLS,
    TRAIN_PRESETS,
    VARIANTS,
    ModelConfig,
    TrainConfig,
    config_diff,
    config_to_dict,
    train_config_from_dict,
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
from .kl_watch import LambdaCapWatch
from .models import build_model
from .runs import CHECKPOINT, CONFIG, MetricsLogger
from .schedule import lr_factor

__all__ = [
    "MAX_PARAMETER",
    "DivergenceError",
    "NonFiniteLossError",
    "StepCallback",
    "dataset_identity",
    "train",
    "config_from_args",
    "main",
]

StepCallback = Callable[[int], None]
"""``on_step(step)``: called after each finished step (its checkpoint, if any, written)."""


MAX_PARAMETER = 1e4
"""Largest weight magnitude accepted after an update; beyond it the run has diverged."""


class DivergenceError(FloatingPointError):
    """The loss or a gradient became non-finite, or a weight ran away; no checkpoint is written."""


NonFiniteLossError = DivergenceError
"""The former name of :class:`DivergenceError`."""


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


def dataset_identity(dataset: Any) -> dict[str, Any]:
    """What a checkpoint records of its training data: content hash, system, location."""
    return {
        "content_hash": getattr(dataset, "content_hash", None),
        "system": dataset.config.system,
        "path": str(getattr(dataset, "path", "")),
    }


# -- the guard -----------------------------------------------------------------------------


def _diverged(step: int, what: str, config: TrainConfig, ckpt_path: Path) -> DivergenceError:
    amp = " or run without --amp" if config.amp != "none" else ""
    return DivergenceError(
        f"training diverged at step {step}: {what}. Stopped before any checkpoint holds it; "
        f"the last good one ({ckpt_path}) is kept. Lower --lr (now {config.lr:g}, e.g. "
        f"{config.lr / 10:g}){amp}, then start again or --resume."
    )


def _gradient_problem(model: nn.Module) -> str | None:
    """``None`` if every gradient is finite, else what is wrong (checked before the update)."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return None if bool(torch.isfinite(norm)) else f"the gradient norm is {float(norm)}"


def _parameter_problem(model: nn.Module) -> str | None:
    """``None`` if every weight is finite and below :data:`MAX_PARAMETER`, else what is wrong."""
    largest = torch.stack([p.detach().abs().max() for p in model.parameters()]).max()
    value = float(largest)
    if math.isfinite(value) and value <= MAX_PARAMETER:
        return None
    return f"a weight reached {value:.3g} (the guard stops beyond {MAX_PARAMETER:g})"


# -- the loop ------------------------------------------------------------------------------


def train(config: TrainConfig, *, on_step: StepCallback | None = None) -> Path:
    """Train ``config.model_name`` on ``config.data``; return the run directory.

    Runs single-process, or as one rank of a torchrun job (``WORLD_SIZE > 1``: DDP, backend
    nccl on CUDA and gloo on the CPU; rank 0 logs and checkpoints). With ``resume`` it continues
    from ``RUN/checkpoint.pt`` exactly (same next losses on the CPU) and refuses a different
    configuration, listing the differences, or another dataset unless ``allow_other_data``.
    Raises :class:`DivergenceError` when the loss or a gradient is non-finite (checked before
    the update) or a weight is non-finite or above :data:`MAX_PARAMETER` (after it); the last
    good checkpoint is kept. On GPU out-of-memory it raises a ``RuntimeError`` naming the
    setting to lower. ``on_step(step)`` is called after every step (tests use it to kill a run).
    Each step calls the model's ``after_step()`` after the optimiser's step (HGN updates GECO's
    multiplier there); a hand-written loop must do the same
    (:class:`~hamflow_hgn.models.hgn.HGN`).
    """
    rank, world, local_rank = init_distributed(config.device)
    try:
        return _train(config, rank, world, local_rank, on_step)
    finally:
        shutdown_distributed(world)


def _resume(state: dict[str, Any], config: TrainConfig, cfg_dict: dict, dataset, path: Path):
    """Refuse a checkpoint of another configuration, dataset, or beyond ``config.steps``."""
    saved_cfg = state["config"]
    try:  # fields added since the checkpoint was saved take their defaults, the old behaviour
        saved_cfg = config_to_dict(train_config_from_dict(saved_cfg))
    except (TypeError, ValueError):
        pass  # an unknown or invalid field: the diff below names it
    diffs = config_diff(saved_cfg, cfg_dict, TrainConfig.RESUMABLE)
    if diffs:
        raise CheckpointError(
            f"resume: {path} was trained with a different configuration; "
            "differences (checkpoint -> now):\n  " + "\n  ".join(diffs)
        )
    saved, now = state["dataset"], dataset_identity(dataset)
    if saved["content_hash"] != now["content_hash"] and not config.allow_other_data:
        raise CheckpointError(
            f"resume: {path} was trained on another dataset ({saved['system']}, content hash "
            f"{str(saved['content_hash'])[:12]}, at {saved['path']}); --data is {now['system']} "
            f"with hash {str(now['content_hash'])[:12]}. Pass --allow-other-data if this is meant"
        )
    if int(state["step"]) > config.steps:
        raise ValueError(
            f"steps: {path} is already at step {state['step']}, beyond --steps {config.steps}; "
            f"pass --steps above {state['step']} to train on"
        )


def _train(
    config: TrainConfig, rank: int, world: int, local_rank: int, on_step: StepCallback | None
) -> Path:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
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
    optimizer = torch.optim.Adam(param_groups(model, config), lr=config.lr)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # before a resume's decayed ones
    generators = {"sampler": sampler.generator, "noise": noise.generator}
    start, seconds_before = 0, 0.0
    cfg_dict = config_to_dict(config)
    if config.resume:
        state = load_checkpoint(ckpt_path, map_location=device)
        _resume(state, config, cfg_dict, dataset, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"], generators)
        sampler.load_state_dict(state["sampler"])
        start, seconds_before = int(state["step"]), float(state["seconds"])
    elif ckpt_path.exists():
        raise ValueError(
            f"out: {str(run)!r} already holds a checkpoint; pass resume=True (--resume) to "
            "continue it, or choose another --out"
        )
    if rank == 0:
        write_json(run / CONFIG, cfg_dict, sort_keys=False)
        print(
            f"effective batch {config.batch_size * world} = {config.batch_size} x {world} "
            f"process(es) on {device}",
            flush=True,
        )
        if start == config.steps:
            print(f"nothing to train: {ckpt_path} is already at step {start} = --steps")

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, **_no_buffer_sync()
        )
    if config.compile:
        net = torch.compile(net)
    reduce = mean_over_ranks(world)
    use_amp = config.amp == "bf16"
    after_step = getattr(model, "after_step", None)  # optional for plug-in models
    t0 = time.perf_counter()

    def checkpoint(step: int) -> None:
        if rank == 0:
            save_checkpoint(
                ckpt_path,
                {
                    "step": step,
                    "config": cfg_dict,
                    "dataset": dataset_identity(dataset),
                    "seconds": seconds_before + time.perf_counter() - t0,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": capture_rng(generators),
                    "sampler": sampler.state_dict(),
                },
            )
        if world > 1:
            dist.barrier()

    def update(step: int, images: Tensor) -> dict[str, Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, metrics = net(images, step, noise=noise, reduce=reduce)
        global_loss = reduce(loss.detach().float())
        if not bool(torch.isfinite(global_loss)):
            raise _diverged(step, f"the loss is {float(global_loss)}", config, ckpt_path)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        problem = _gradient_problem(model)
        if problem is not None:
            raise _diverged(step, problem, config, ckpt_path)
        factor = lr_factor(step, config.steps, config.lr_decay)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        optimizer.step()
        problem = _parameter_problem(model)
        if problem is not None:
            raise _diverged(step, problem, config, ckpt_path)
        if after_step is not None:
            after_step()
        return metrics

    logger = MetricsLogger(run, keep_until=start) if rank == 0 else None
    watch = LambdaCapWatch(model) if rank == 0 else None
    bar = None
    if rank == 0 and config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="train", dynamic_ncols=True)
    model.train()
    try:
        for step in range(start + 1, config.steps + 1):
            idx = sampler.next(config.batch_size * world)
            idx = idx[rank * config.batch_size : (rank + 1) * config.batch_size]
            images = dataset.render_batch(idx, device)
            try:
                metrics = update(step, images)
            except _oom_types() as err:
                raise RuntimeError(
                    f"out of GPU memory at step {step} with --batch-size {config.batch_size} "
                    f"per device (amp={config.amp}): lower --batch-size, or use --amp bf16"
                ) from err
            if step % config.log_every == 0 or step == config.steps:
                names = sorted(metrics)
                values = reduce(torch.stack([metrics[k].float() for k in names]))
                logged = dict(zip(names, values.tolist()))
                if logger is not None:
                    logger.log(step, logged, seconds_before + time.perf_counter() - t0)
                # λ is read at log steps only: reading a device tensor every step would make
                # the host wait for the device each time
                message = watch.check(step) if watch is not None else None
                if message is not None:
                    (bar.write if bar is not None else print)(message, file=sys.stderr)
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


def _no_buffer_sync() -> dict[str, bool]:
    """DDP's keyword for "do not sync buffers in forward" (GECO's are rank-identical already)."""
    import inspect

    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    if "forward_sync_buffers" in params:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


# -- CLI -----------------------------------------------------------------------------------


EXAMPLES = """\
  python -m hamflow_hgn.train --data data/pendulum --out runs/pendulum
  hamflow-train --data data/mine --out runs/mine --preset small --threads 1   # CPU, own frames
  hamflow-train --data data/mine --out runs/mine2 --preset small --steps 6000 --lr 5e-4
  python -m hamflow_hgn.train --data data/pendulum --out runs/euler --variant euler --steps 15000
  python -m hamflow_hgn.train --data data/pendulum --out runs/hnn --model pixel_hnn_mlp --lr 1e-3
  python -m hamflow_hgn.train --data data/pendulum --out runs/pendulum --resume --steps 20000
  python -m hamflow_hgn.train --data data/tiny --out runs/tiny --width 16 --threads 1 --device cpu
  torchrun --nproc-per-node 4 -m hamflow_hgn.train --data data/pendulum --out runs/p4
"""


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Adam's parameter groups: the learned Hamiltonian at ``hamiltonian_lr``, the rest at ``lr``.

    One group when ``config.hamiltonian_lr`` is None or the model has no ``hamiltonian``.

    Example:
        >>> from hamflow_hgn.models.hgn import HGN
        >>> cfg = TrainConfig(data="D", out="R", model=ModelConfig.reduced(8), hamiltonian_lr=1e-4)
        >>> [(len(g["params"]), g.get("lr")) for g in param_groups(HGN(cfg.model), cfg)]
        [(40, None), (26, 0.0001)]
    """
    energy = getattr(model, "hamiltonian", None)
    if config.hamiltonian_lr is None or not isinstance(energy, nn.Module):
        return [{"params": list(model.parameters())}]
    own = {id(p) for p in energy.parameters()}
    rest = [p for p in model.parameters() if id(p) not in own]
    return [{"params": rest}, {"params": list(energy.parameters()), "lr": config.hamiltonian_lr}]


def _parser() -> argparse.ArgumentParser:
    from .cli import default_of, make_parser, non_negative_int, positive_int
    from .models import MODELS

    t, m = TrainConfig, ModelConfig
    presets = "\n".join(
        textwrap.fill(f"{name}: {q.summary}", 88, initial_indent="  ", subsequent_indent="    ")
        for name, q in TRAIN_PRESETS.items()
    )
    p = make_parser(
        "python -m hamflow_hgn.train",
        "Train HGN (paper Sec. 3.2, A.1) or a Table-1 baseline on a generated or imported\n"
        "dataset, on one device or on several through torchrun. Writes config.json,\n"
        "metrics.csv and checkpoint.pt into the run directory.\n\n"
        "Presets (--preset; a flag given explicitly overrides the preset's value):\n" + presets,
        EXAMPLES,
    )

    def by_preset(name: str, none: str = "None") -> str:
        """``(default: X); --preset small: Y``: a preset-controlled flag's defaults."""
        shown = {n: getattr(q, name) for n, q in TRAIN_PRESETS.items()}
        shown = {n: none if v is None else v for n, v in shown.items()}
        others = [f"--preset {n}: {v}" for n, v in shown.items() if n != "default"]
        return f"(default: {shown['default']}); " + "; ".join(others)

    p.add_argument(
        "--preset", default="default", choices=sorted(TRAIN_PRESETS),
        help="settings to start from (see above); explicit flags override them",
    )  # fmt: skip

    p.add_argument(
        "--data", required=True,
        help="dataset directory (hamflow-data; hamflow-data import for your own frames)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--model", default=default_of(t, "model_name"), choices=sorted(MODELS),
        help="registered model (hamflow_hgn.models.MODELS)",
    )  # fmt: skip
    p.add_argument(
        "--variant", default=default_of(m, "variant"), choices=sorted(VARIANTS),
        help="HGN variant (Table 1)",
    )  # fmt: skip
    p.add_argument(
        "--protocol", default=default_of(m, "protocol"), choices=sorted(PROTOCOLS),
        help="which frames the encoder sees and the loss covers",
    )  # fmt: skip
    p.add_argument(
        "--predict-k", type=positive_int, default=default_of(m, "predict_k"),
        help="input frames of the 'predict' protocol",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=positive_int, default=None, help="last step " + by_preset("steps")
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=default_of(t, "batch_size"),
        help="sequences per step and process",
    )  # fmt: skip
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate " + by_preset("lr"))
    p.add_argument(
        "--hamiltonian-lr", type=float, default=None,
        help="Adam learning rate of the learned Hamiltonian " + by_preset("hamiltonian_lr", "--lr"),
    )  # fmt: skip
    p.add_argument(
        "--lr-decay", type=float, default=None,
        help="fraction of the steps, at the end, over which every learning rate decays "
        "linearly toward 0 (0: constant) " + by_preset("lr_decay"),
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=default_of(t, "seed"), help="seed of everything")
    p.add_argument("--device", default=default_of(t, "device"), help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default=default_of(t, "amp"), choices=AMP_MODES, help="autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument(
        "--width", type=positive_int, default=None,
        help="one width for every layer (ModelConfig.reduced), replacing the preset's widths "
        "and z's channels " + by_preset("width", "A.1's"),
    )  # fmt: skip
    p.add_argument(
        "--encoder-width", type=positive_int, default=None,
        help="one width for the encoder's seven conv layers, over --width "
        + by_preset("encoder_width", "--width or A.1's"),
    )  # fmt: skip
    p.add_argument(
        "--latent-channels", type=positive_int, default=None,
        help="channels of z (latent_channels x 4 x 4), over --width "
        + by_preset("latent_channels", "--width or A.1's 48"),
    )  # fmt: skip
    p.add_argument(
        "--latent-prior", default=None, choices=sorted(LATENT_PRIORS),
        help="the prior over z: 'standard' (N(0, I), the paper's) or 'matched' (a "
        "full-covariance Gaussian matched to the running moments of the training posteriors) "
        + by_preset("latent_prior"),
    )  # fmt: skip
    p.add_argument(
        "--prior-warmup-steps", type=non_negative_int, default=default_of(m, "prior_warmup_steps"),
        help="steps during which the matched prior stays N(0, I); default: %(default)s",
    )  # fmt: skip
    p.add_argument(
        "--geco-setting", default=None, choices=sorted(GECO_SETTINGS),
        help="KL balancing: 'default' (tolerance 0.3 of the pixel variance, lambda from 1e5 in "
        "log steps of at most 1e-3), 'fast' (lambda from 1e3, steps of 1e-2), 'fixed' (lambda "
        "1e5), 'calibrated' (lambda from 1e5 toward the ELBO's weight for a decoder whose variance "
        "is the running MSE) or 'paper' (per-pixel MSE 1e-3, Rezende & Viola's unbounded "
        "update) " + by_preset("geco_setting"),
    )  # fmt: skip
    p.add_argument(
        "--geco-tolerance", type=float, default=None,
        help="GECO's target reconstruction error, in the setting's units (default: the "
        f"setting's; {default_of(m, 'geco_tolerance')} of the pixel variance by default)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=default_of(t, "checkpoint_every"),
        help="steps between checkpoints",
    )  # fmt: skip
    p.add_argument(
        "--log-every", type=positive_int, default=default_of(t, "log_every"),
        help="steps between metrics.csv rows",
    )  # fmt: skip
    p.add_argument(
        "--max-train-sequences", type=positive_int, default=None,
        help="train on the first N sequences only; default: all",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=positive_int, default=None,
        help="torch intra-op threads; 1 is fastest for small CPU jobs on shared cores; "
        "default: torch's choice",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue RUN/checkpoint.pt")
    p.add_argument(
        "--allow-other-data", action="store_true",
        help="resume on a dataset other than the checkpoint's",
    )  # fmt: skip
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed CLI arguments: ``--preset``'s, then explicit flags.

    ``--width`` replaces the preset's widths and z's channels (all ``--width``); then
    ``--encoder-width`` and ``--latent-channels`` apply over it.
    """
    preset = TRAIN_PRESETS[getattr(args, "preset", "default")]

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return getattr(preset, name) if value is None else value

    if args.width is not None:
        widths = dict(width=args.width, encoder_width=None, latent_channels=None)
    else:
        widths = dict(width=preset.width, encoder_width=preset.encoder_width)
        widths["latent_channels"] = preset.latent_channels
    for name in ("encoder_width", "latent_channels"):
        if getattr(args, name) is not None:
            widths[name] = getattr(args, name)
    chosen = dataclasses.replace(
        preset, **widths, geco_setting=pick("geco_setting"), latent_prior=pick("latent_prior")
    )
    model_kw: dict[str, Any] = dict(
        variant=args.variant,
        protocol=args.protocol,
        predict_k=args.predict_k,
        prior_warmup_steps=args.prior_warmup_steps,
    )
    if args.geco_tolerance is not None:
        model_kw["geco_tolerance"] = args.geco_tolerance
    model = chosen.model_config(**model_kw)
    return TrainConfig(
        data=args.data,
        out=args.out,
        model_name=args.model,
        model=model,
        steps=pick("steps"),
        batch_size=args.batch_size,
        lr=pick("lr"),
        hamiltonian_lr=pick("hamiltonian_lr"),
        lr_decay=pick("lr_decay"),
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
        allow_other_data=args.allow_other_data,
        threads=args.threads,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        run = train(config_from_args(args))
    except (ValueError, DivergenceError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
