"""Diagnose HGN training: reconstruction MSE and latent-state size, step by step.

Trains one HGN variant on a generated data set with plain Adam (no checkpoints, one thread) and
prints, every ``--every`` steps, the batch MSE and the mean ``|q0|``, ``|p0|`` of the posterior
mean state. It explained the ``deterministic`` row of the small-scale Table 1 (docs/hgn/): with
no KL term to hold it, the latent state grew to hundreds at lr 1e-3 and training stalled; that
variant's loss now keeps ``½|μ|²``, the KL of a unit-variance posterior, and the state stays near 1.

    python scripts/hgn_latent_scale.py --data runs/table1_small/data/mass_spring \\
        --variant deterministic --lr 1e-3
"""

from __future__ import annotations

import argparse

import torch

from hamflow_hgn.config import VARIANTS, ModelConfig
from hamflow_hgn.data import open_dataset
from hamflow_hgn.models.hgn import HGN


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset directory (python -m hamflow_hgn.data)")
    p.add_argument("--variant", default="deterministic", choices=sorted(VARIANTS))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1 or args.every < 1 or args.lr <= 0:
        p.error("--steps and --every must be >= 1 and --lr > 0")
    torch.set_num_threads(1)
    ds = open_dataset(args.data, "train")
    cfg = ModelConfig.reduced(
        args.width, frames=ds.config.steps, image_size=ds.config.size, variant=args.variant
    )
    torch.manual_seed(args.seed)
    model = HGN(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for step in range(1, args.steps + 1):
        images = ds.render_batch(torch.randint(len(ds), (args.batch_size,), generator=gen))
        loss, metrics = model(images)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step()
        if step == 1 or step % args.every == 0:
            with torch.no_grad():
                q0, p0, _, _ = model.initial_state(images, sample=False)
            row = {"step": step, "mse": float(metrics["mse"]), "q0": float(q0.abs().mean()),
                   "p0": float(p0.abs().mean())}  # fmt: skip
            rows.append(row)
            sizes = f"mean |q0| {row['q0']:9.3f}  mean |p0| {row['p0']:9.3f}"
            print(f"{args.variant} lr {args.lr:g} step {step:>5}: MSE {row['mse']:.5f}  {sizes}")
    return rows


if __name__ == "__main__":
    main()
