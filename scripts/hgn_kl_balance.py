"""Compare ways of balancing HGN's KL against its reconstruction on small pendulum runs.

Trains the pendulum example's model as it was on 2026-12-05 (16x16 frames, 16 per sequence,
every network 16 wide, batch 16, 512 training sequences; since 2026-12-06 the example's encoder
is 32 wide, it trains on 2048, and its z has 4 channels), the example's learning rates, their
decay over the last 30 % of the steps, and its decoder initialisation, with each KL-balancing
setting through the library's own trainer, one thread, and reports per setting:
lambda at step 10 and at the end, the share of logged steps with lambda at a clamp (1e-6 or
1e6), the KL per sequence (last and largest), and the test MSE
over the "always draw the mean training image" MSE. docs/hgn/ ("Balancing the KL") shows its
output.

    python scripts/hgn_kl_balance.py --steps 600 --seeds 1 --out runs/kl_balance
    python scripts/hgn_kl_balance.py --quick          # seconds: a smoke run

Runs that already finished under ``--out`` are read back, not retrained.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from hamflow_hgn.config import GECO_SETTINGS, ModelConfig, TrainConfig, config_to_dict
from hamflow_hgn.data import DataConfig, generate, open_dataset
from hamflow_hgn.runs import load_run
from hamflow_hgn.train import train

SETTINGS: dict[str, dict] = {
    "paper": GECO_SETTINGS["paper"],
    "paper, δ 0.02": {**GECO_SETTINGS["paper"], "geco_max_log_step": 0.02},
    "fast": GECO_SETTINGS["fast"],
    "fast, δ 0.02": {**GECO_SETTINGS["fast"], "geco_max_log_step": 0.02},
    "fixed 1e4": {**GECO_SETTINGS["fixed"], "geco_lambda_init": 1e4},
    "fixed 1e5": GECO_SETTINGS["fixed"],
    "default": GECO_SETTINGS["default"],
    "calibrated": GECO_SETTINGS["calibrated"],
}
"""The compared settings: name -> ModelConfig overrides."""

LR, HAMILTONIAN_LR, LR_DECAY = 1e-3, 3e-4, 0.3
"""The pendulum example's learning rates and their decay (examples/pendulum_hgn.py)."""


def _clamped(lam: float) -> bool:
    return lam >= 1e6 * (1 - 1e-6) or lam <= 1e-6 * (1 + 1e-6)


def run_one(name: str, seed: int, steps: int, out: Path, quick: bool) -> dict:
    """Train one setting on one seed (or read its finished run back) and score it."""
    size = dict(n_train=32, n_test=4, frames=6, width=8) if quick else {}
    n_train, n_test = size.get("n_train", 512), size.get("n_test", 32)
    data_cfg = DataConfig("pendulum", n_train, n_test, steps=size.get("frames", 16), size=16,
                          seed=seed)  # fmt: skip
    data_dir = out / f"data_seed{seed}"
    if not (data_dir / "metadata.json").exists():
        generate(data_cfg, data_dir, workers=1, progress=False)
    slug = name.replace(", ", "_").replace(" ", "_").replace("δ", "step")
    run_dir = out / f"{slug}_seed{seed}"
    model = ModelConfig.reduced(size.get("width", 16), **SETTINGS[name])
    config = TrainConfig(
        data=str(data_dir), out=str(run_dir), model=model, steps=steps, lr=LR,
        hamiltonian_lr=HAMILTONIAN_LR, lr_decay=LR_DECAY, seed=seed, device="cpu", threads=1,
        log_every=1, checkpoint_every=steps, progress=False,
    )  # fmt: skip
    cpu = 0.0
    if (run_dir / "config.json").exists():
        stored = json.loads((run_dir / "config.json").read_text())
        wanted = config_to_dict(config)
        keys = [*GECO_SETTINGS["default"], "hamiltonian_width", "decoder_bias"]
        if model.kl_balance == "fixed":  # λ does not move: GECO's update settings are unused
            keys = [k for k in keys if k not in ("geco_alpha", "geco_speed", "geco_max_log_step")]
        run_keys = ["lr", "hamiltonian_lr", "lr_decay", "seed"]
        if [stored["model"].get(k) for k in keys] + [stored.get(k) for k in run_keys] != [
            wanted["model"][k] for k in keys
        ] + [wanted[k] for k in run_keys]:
            raise ValueError(
                f"{run_dir} holds a run of another configuration; remove it or use another --out"
            )
    if not (run_dir / "metrics.csv").exists() or _last_step(run_dir) < steps:
        start = time.process_time()
        train(config)
        cpu = time.process_time() - start
    with open(run_dir / "metrics.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    lam = [r["lambda"] for r in rows]
    kl = [r["kl"] for r in rows]
    trained = load_run(run_dir, data_dir, device="cpu").model
    test = open_dataset(data_dir, "test").render_batch(range(n_test))
    mean_image = open_dataset(data_dir, "train").render_batch(range(n_train)).mean(0, keepdim=True)
    with torch.no_grad():
        mse = float((trained.rollout(test).frames - test).square().mean())
    return {
        "setting": name, "seed": seed, "steps": steps,
        "lambda_step10": lam[min(9, len(lam) - 1)], "lambda_end": lam[-1],
        "share_at_clamp": sum(map(_clamped, lam)) / len(lam),
        "kl_end": kl[-1], "kl_max": max(kl),
        "test_mse": mse, "mean_image_mse": float((mean_image - test).square().mean()),
        "ratio": mse / float((mean_image - test).square().mean()), "cpu_s": cpu,
    }  # fmt: skip


def _last_step(run_dir: Path) -> int:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return int(rows[-1]["step"]) if rows else 0


def markdown(results: list[dict]) -> str:
    """The comparison as a Markdown table, one row per setting and seed."""
    lines = [
        "| setting | seed | λ at step 10 | λ at the end | steps at a clamp | KL end (max) "
        "| test MSE / mean image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['lambda_step10']:.3g} | {r['lambda_end']:.3g} "
            f"| {100 * r['share_at_clamp']:.0f} % | {r['kl_end']:.3g} ({r['kl_max']:.3g}) "
            f"| {r['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    """CLI entry point; returns one result dict per setting and seed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--out", type=Path, default=Path("runs/kl_balance"))
    p.add_argument("--quick", action="store_true", help="tiny data and model, for smoke tests")
    args = p.parse_args(argv)
    if args.steps < 10:
        p.error(f"--steps: expected an integer >= 10 (lambda is read at step 10), got {args.steps}")
    results = [
        run_one(name, seed, args.steps, args.out, args.quick)
        for seed in args.seeds
        for name in args.settings
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(results, indent=2))
    print(markdown(results), end="")
    return results


if __name__ == "__main__":
    main()
