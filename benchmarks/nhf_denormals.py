"""What flushing subnormal floats in the closed-form gradient kernel buys an NHF training step.

``NHF(2)`` at its defaults trains on each density with the flush on (the library's default).
After every ``--train-steps`` steps of training, ``--reps`` more steps are timed, alternating
step by step between the kernel with the flush (``hamflow._mlp_grad.FLUSH_DENORMALS = True``)
and without it, so that background load hits both alike; the mean CPU times
(``time.process_time``, one torch thread) are compared. The training itself, and so the
weights at which both are timed, are the same for both. The script also counts the share of
subnormal values among the outputs of every operation of a step's loss and backward, without
the flush, which is what makes the difference: where a softplus
unit saturates, ``σ(z)`` is tiny, and its products with other small factors fall below
float32's smallest normal number, which x86 cores handle slowly.

    python benchmarks/nhf_denormals.py --publish    # into its docs/benchmarks/ page
    python benchmarks/nhf_denormals.py --quick      # smoke run, under runs/
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_output_args,
    check_output_args,
    machine_info,
    publish,
    timed_step,
)

from hamflow import (
    NHF,  # noqa: E402
    _mlp_grad,  # noqa: E402
)
from hamflow.toy import get_density  # noqa: E402


@dataclass(frozen=True)
class DenormalConfig:
    densities: tuple[str, ...] = ("two_moons", "eight_gaussians", "checkerboard", "banana")
    phases: int = 3
    train_steps: int = 600
    reps: int = 200
    batch: int = 128
    lr: float = 1e-3
    seed: int = 0
    threads: int = 1


QUICK = dict(densities=("two_moons",), phases=1, train_steps=5, reps=4)


class _CountSubnormals(TorchDispatchMode):
    """Counts the float32 values every operation outputs, and how many of them are subnormal."""

    def __init__(self) -> None:
        super().__init__()
        self.subnormal = self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.numel():
                a = t.abs()
                self.subnormal += int(((a > 0) & (a < torch.finfo(torch.float32).tiny)).sum())
                self.total += t.numel()
        return out


def _subnormal_share(model: NHF, x: torch.Tensor) -> float:
    """Share of subnormal values among the outputs of every operation of a loss and its backward,
    without the flush (the parameters' gradients are left as they were)."""
    old = _mlp_grad.FLUSH_DENORMALS
    _mlp_grad.FLUSH_DENORMALS = False
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        with _CountSubnormals() as count:
            torch.autograd.grad(model.forward_kld(x), params)
    finally:
        _mlp_grad.FLUSH_DENORMALS = old
    return count.subnormal / max(count.total, 1)


def _measure_density(name: str, cfg: DenormalConfig, log) -> list[dict]:
    torch.manual_seed(cfg.seed)
    data = get_density(name).sample(100_000, seed=cfg.seed)
    model = NHF(2)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)

    def step(flush: bool) -> float:
        _mlp_grad.FLUSH_DENORMALS = flush
        idx = torch.randint(len(data), (cfg.batch,), generator=gen)
        return timed_step(model, opt, data[idx])[0]

    rows = []
    try:
        for phase in range(cfg.phases):
            for _ in range(cfg.train_steps):
                step(True)
            times = {True: 0.0, False: 0.0}
            for i in range(2 * cfg.reps):
                flush = i % 2 == 0
                times[flush] += step(flush)
            share = _subnormal_share(model, data[: cfg.batch])
            row = {
                "after_steps": (phase + 1) * cfg.train_steps + 2 * cfg.reps * phase,
                "ms_flushed": 1e3 * times[True] / cfg.reps,
                "ms_unflushed": 1e3 * times[False] / cfg.reps,
                "subnormal_share": share,
            }
            row["ratio_unflushed_over_flushed"] = row["ms_unflushed"] / row["ms_flushed"]
            rows.append(row)
            log(
                f"{name:16s} after {row['after_steps']:5d} steps: flushed "
                f"{row['ms_flushed']:.2f} ms, unflushed {row['ms_unflushed']:.2f} ms "
                f"({row['ratio_unflushed_over_flushed']:.2f}x), subnormal share {share:.2e}"
            )
    finally:
        _mlp_grad.FLUSH_DENORMALS = True
    return rows


def measure(cfg: DenormalConfig, log=print) -> dict:
    """Every density's rows: step times with and without the flush, after each stretch."""
    torch.set_num_threads(cfg.threads)
    return {name: _measure_density(name, cfg, log) for name in cfg.densities}


def markdown(out: dict) -> str:
    cfg, m = out["config"], out["machine"]
    lines = [
        "<!-- nhf_denormals:begin (generated by benchmarks/nhf_denormals.py; do not edit) -->",
        f"Command: `{out['command']}`; {m['date']}, {m['machine']}, {cfg['threads']} torch thread, "
        f"`NHF(2)` at its defaults, {cfg['batch']} points × 4 momenta per step, Adam lr "
        f"{cfg['lr']:g}. After each stretch of training, {cfg['reps']} steps with the kernel's "
        "flush and as many without, alternating step by step (mean CPU ms per step).",
        "",
        "| density | after steps | flushed (ms) | unflushed (ms) | unflushed / flushed | "
        "subnormal share of op outputs, unflushed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in out["results"].items():
        for r in rows:
            lines.append(
                f"| {name} | {r['after_steps']:,} | {r['ms_flushed']:.2f} | "
                f"{r['ms_unflushed']:.2f} | {r['ratio_unflushed_over_flushed']:.2f}× | "
                f"{r['subnormal_share']:.1e} |"
            )
    lines.append("<!-- nhf_denormals:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--densities", nargs="+", default=None)
    for name in ("phases", "train_steps", "reps", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny smoke-test run")
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    cfg = replace(DenormalConfig(), **QUICK) if args.quick else DenormalConfig()
    over = {
        k: v
        for k, v in vars(args).items()
        if k in ("phases", "train_steps", "reps", "seed") and v is not None
    }
    for k, v in over.items():
        if v < (0 if k == "seed" else 1):
            p.error(f"--{k.replace('_', '-')}: expected an integer >= 1, got {v}")
    if args.densities:
        for name in args.densities:
            try:
                get_density(name)
            except ValueError as err:
                p.error(f"--densities: {err}")
        over["densities"] = tuple(args.densities)
    cfg = replace(cfg, **over)
    info = machine_info()
    info["torch_threads"] = cfg.threads
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    out = {
        "config": asdict(cfg),
        "machine": info,
        "results": measure(cfg),
        "command": f"python benchmarks/nhf_denormals.py {argv_s}".strip(),
    }
    path, md = publish(
        "nhf_denormals",
        out,
        markdown(out),
        args.out_dir,
        args.quick,
        args.markdown,
        to_docs=args.publish,
    )
    print(f"wrote {path} and {md}")
    return out


if __name__ == "__main__":
    main()
