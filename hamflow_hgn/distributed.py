"""Data-parallel plumbing: the shared batch sampler and noise, devices, the process group.

Each step draws the *global* batch of ``batch_size * world_size`` indices from one seeded
generator (a fresh permutation per epoch, identical on every rank); rank ``r`` renders its own
slice on its device. The reparametrisation noise is drawn the same way. So N ranks with batch B
see exactly what one process with batch N*B sees. Under torchrun (``WORLD_SIZE > 1``)
:func:`init_distributed` starts the process group: nccl on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "IndexSampler",
    "SharedNoise",
    "resolve_device",
    "init_distributed",
    "shutdown_distributed",
    "mean_over_ranks",
]


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
        """The next ``count`` indices, starting a fresh permutation at each epoch's end."""
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
        """Generator state, permutation and position (for checkpoints)."""
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
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


def init_distributed(device_name: str) -> tuple[int, int, int]:
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


def mean_over_ranks(world: int) -> Callable[[Tensor], Tensor]:
    """``reduce(x)``: the mean of a detached tensor over ``world`` ranks (identity for one)."""

    def reduce(x: Tensor) -> Tensor:
        if world == 1:
            return x
        y = x.detach().clone()
        dist.all_reduce(y)
        return y / world

    return reduce


def shutdown_distributed(world: int) -> None:
    """Destroy the process group started by :func:`init_distributed`, if any."""
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
