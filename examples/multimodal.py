"""Multimodal density learning with a Neural Hamiltonian Flow: the paper's Figure 9.

Trains an NHF (paper Sec. 3.3, A.2) on a 2-D toy density from :mod:`hamflow.toy`, prints the test
NLL (IWAE) and saves one PNG with the six panels of Fig. 9: KDEs of the target and of the learned
samples (1000 samples, bandwidth 0.3), the learned kinetic energy K(p), the learned potential
V(q) with its attractors, a single leapfrog step and the integrated flow.

    python examples/multimodal.py                                  # ~3 min on 2 CPU cores
    python examples/multimodal.py --out docs/img/multimodal.png    # the figure in the docs
    python examples/multimodal.py --density two_moons --steps 5000
    python examples/multimodal.py --quick                          # < 1 min smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from hamflow import NHF, SoftUniform
from hamflow.toy import TOY_DENSITIES, get_density

DEFAULT_DENSITY = "gaussian_mixture"


@dataclass(frozen=True)
class MultimodalConfig:
    """Settings of one run; saved as JSON next to the figure."""

    density: str = DEFAULT_DENSITY
    steps: int = 4000
    seed: int = 0
    prior: str = "normal"
    prior_width: float = 1.0
    hidden: int = 128  # NHF's default widths
    encoder_hidden: int = 128
    share_hamiltonian: bool = False
    batch: int = 128  # points per step; NHF's loss draws 4 momenta for each: 512 states
    lr: float = 1e-3
    n_test: int = 2000
    iwae_k: int = 256
    device: str = "cpu"
    figure_resolution: int = 120


QUICK = dict(steps=150, hidden=32, encoder_hidden=32, n_test=500, iwae_k=16, figure_resolution=40)


def build_model(cfg: MultimodalConfig) -> NHF:
    """The NHF of a run: ``NHF(2)``'s defaults; the soft-uniform prior is the paper's (Sec. 4)."""
    prior = SoftUniform(4, width=cfg.prior_width) if cfg.prior == "soft_uniform" else cfg.prior
    return NHF(
        dim=2,
        hidden=(cfg.hidden, cfg.hidden),
        encoder_hidden=(cfg.encoder_hidden,) * 2,
        prior=prior,
        share_hamiltonian=cfg.share_hamiltonian,
    )


def train(cfg: MultimodalConfig, progress: bool = True) -> tuple[NHF, dict]:
    """Train an NHF on ``cfg.density``; returns the model and a summary with the test NLL."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    density = get_density(cfg.density)
    train_x = density.sample(100_000, seed=cfg.seed).to(device)
    test_x = density.sample(cfg.n_test, seed=cfg.seed + 10_000).to(device)
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr / 20)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"NHF on {cfg.density}", disable=not progress)
    for step in bar:
        idx = torch.randint(len(train_x), (cfg.batch,), generator=gen).to(device)
        loss = model.forward_kld(train_x[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss: non-finite value {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.calibrate_proposal(train_x[:2000])  # log_prob's proposal width, on training rows
    nll = -model.log_prob(test_x, num_samples=cfg.iwae_k)
    summary = {
        "test_nll_iwae": nll.mean().item(),
        "test_nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
        "iwae_k": cfg.iwae_k,
        "proposal_scale": float(model.proposal_scale),
        "true_entropy": density.entropy().value,
        "train_seconds": time.perf_counter() - start,
    }
    return model, summary


def save_figure(model: NHF, cfg: MultimodalConfig, summary: dict, out: Path) -> Path:
    """Render the six Fig. 9 panels to ``out`` (written to a temporary name, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hamflow.plotting import plot_nhf_panels

    density = get_density(cfg.density)
    target = density.sample(1000, seed=cfg.seed + 20_000)
    title = (
        f"NHF on {cfg.density}: test NLL {summary['test_nll_iwae']:.3f} nats "
        f"(IWAE K={cfg.iwae_k}; true entropy {summary['true_entropy']:.3f}), "
        f"{cfg.steps} steps, {cfg.prior} prior"
    )
    fig = plot_nhf_panels(
        model, target, density.bounds, resolution=cfg.figure_resolution, suptitle=title
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="NHF on a 2-D toy density: paper Fig. 9.")
    p.add_argument(
        "--density",
        choices=sorted(TOY_DENSITIES),
        default=DEFAULT_DENSITY,
        help=f"target density (default {DEFAULT_DENSITY})",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"training steps (default {MultimodalConfig.steps}; --quick: {QUICK['steps']})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--prior",
        choices=["normal", "generalized_normal", "soft_uniform"],
        default="normal",
        help="prior over (q, p): a standard normal (NHF's default), a unit-variance prior "
        "with learned tails, or the paper's soft-uniform",
    )
    p.add_argument(
        "--share-hamiltonian",
        action="store_true",
        help="one Hamiltonian for every flow (as in HGN) instead of one per flow",
    )
    p.add_argument("--quick", action="store_true", help="a small run (< 1 min), for smoke tests")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default 1: these 2-D models are too small to gain "
        "from more, and extra threads stall when other jobs share the cores)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/multimodal.png"),
        help="figure path (default out/multimodal.png); a .json summary goes beside",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def _machine() -> dict:
    """The machine, date, commit and versions (``benchmarks/_common.machine_info``)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _common import machine_info

    return machine_info()


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    root = Path(__file__).resolve().parents[1]
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _command(argv: list[str] | None, out: Path) -> str:
    """The command line that made the figure at ``out``."""
    import shlex
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" not in argv:
        argv += ["--out", _shown(out)]
    return shlex.join(["python", "examples/multimodal.py", *argv])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = replace(MultimodalConfig(), **QUICK) if args.quick else MultimodalConfig()
    cfg = replace(
        cfg,
        density=args.density,
        seed=args.seed,
        prior=args.prior,
        device=args.device,
        share_hamiltonian=args.share_hamiltonian,
        steps=args.steps or cfg.steps,
    )
    model, summary = train(cfg, progress=not args.no_progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"config": asdict(cfg), "state_dict": model.state_dict()}, args.out.with_suffix(".pt")
    )
    out = save_figure(model, cfg, summary, args.out)
    record = {"command": _command(argv, args.out), **_machine(), "config": asdict(cfg), **summary}
    record["figure"] = _shown(out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(
        f"test NLL (IWAE, K={cfg.iwae_k}): {summary['test_nll_iwae']:.3f} ± "
        f"{summary['test_nll_stderr']:.3f} nats (true entropy {summary['true_entropy']:.3f})"
    )
    print(f"figure: {out}")
    return record


if __name__ == "__main__":
    main()
