"""A conditional density with NHF: a ring whose radius is the context.

``NHF(2, context_dim=1)`` learns ``p(x | c)`` from pairs ``(x, c)``, where ``x`` lies on a ring
of radius ``c`` (:class:`hamflow.conditional_toy.RingGivenRadius`, whose density is known),
trained by the library's loop :func:`hamflow.fit` with the context beside each row; then it
draws samples for three radii and scores held-out pairs against the true density.

    python examples/conditional.py                 # ~20 s of training, figure under runs/
    python examples/conditional.py --publish       # the figure into docs/img/
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hamflow import NHF, FitResult, fit
from hamflow.conditional_toy import RingGivenRadius
from hamflow_hgn.io import write_json

ROOT = Path(__file__).resolve().parents[1]
CONTEXTS = (1.0, 1.75, 2.5)


@dataclass(frozen=True)
class Config:
    seconds: float = 20.0  # CPU seconds of training (hamflow.fit's max_time)
    batch: int = 128  # points per step (four momenta each)
    lr: float = 3e-3  # start of fit's cosine schedule
    average: float | None = None  # fit's moving average of the weights (off)
    n_train: int = 400_000  # pairs drawn once; 60 s of training visits about as many
    n_val: int = 1000  # held-out pairs fit scores every `eval_every` steps (best state kept)
    eval_every: int = 100
    n_test: int = 2000
    seed: int = 0


def train(cfg: Config) -> tuple[NHF, FitResult]:
    """Fit ``p(x | c)`` with the library's loop, :func:`hamflow.fit`, for ``cfg.seconds`` of CPU
    time on one thread: ``cfg.n_train`` ring pairs, a cosine schedule from ``cfg.lr``, a moving
    average of the weights, the best validation state kept."""
    ring = RingGivenRadius()
    x, c = ring.sample(cfg.n_train, seed=cfg.seed * 10**6)
    x_val, c_val = ring.sample(cfg.n_val, seed=cfg.seed * 10**6 + 1)
    torch.manual_seed(cfg.seed)
    model = NHF(2, context_dim=1)
    result = fit(
        model, x, x_val, context=c, context_val=c_val,  # the context goes beside its rows
        max_time=cfg.seconds, batch_size=cfg.batch, lr=cfg.lr, average=cfg.average,
        eval_every=cfg.eval_every, patience=None, seed=cfg.seed,
    )  # fmt: skip
    return model, result


def evaluate(model: NHF, cfg: Config, num_samples: int = 64) -> dict:
    """Held-out NLL of the model (IWAE with ``K = num_samples``, the proposal calibrated for that
    ``K`` on other pairs) and of the true density, on the same pairs."""
    ring = RingGivenRadius()
    x, c = ring.sample(cfg.n_test, seed=cfg.seed + 10**9)
    calib = ring.sample(1000, seed=cfg.seed + 2 * 10**9)
    model.calibrate_proposal(*calib, num_samples=num_samples)
    nll = -model.log_prob(x, c, num_samples=num_samples).double().mean().item()
    truth = -ring.log_prob(x.double(), c.double()).mean().item()
    return {"nll": nll, "true_nll": truth, "gap": nll - truth}


def draw(model: NHF, path: Path, n: int = 1500) -> Path:
    """Samples for three radii beside the true rings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ring = RingGivenRadius()
    fig, axes = plt.subplots(1, len(CONTEXTS), figsize=(3.2 * len(CONTEXTS), 3.3))
    for ax, r in zip(axes, CONTEXTS):
        c = torch.tensor([r])
        true, _ = ring.sample(n, c, seed=1)
        xs = model.sample(n, c)  # one context for all n samples
        ax.scatter(true[:, 0], true[:, 1], s=1, color="0.6", alpha=0.5, label="truth")
        ax.scatter(xs[:, 0], xs[:, 1], s=1, color="C0", alpha=0.5, label="NHF")
        ax.set_title(f"context c = {r}")
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
    axes[0].legend(loc="lower left", markerscale=6, fontsize=7)
    fig.suptitle("p(x | c): a ring of radius c; `python examples/conditional.py`", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def _machine() -> dict:
    """The machine, date, commit and versions (``benchmarks/_common.machine_info``)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine_info

    return machine_info()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=Config.seconds)
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "examples" / "conditional.png")
    p.add_argument("--publish", action="store_true", help="write docs/img/conditional_ring.png")
    args = p.parse_args(argv)
    if args.seconds <= 0:
        p.error(f"--seconds: expected a positive number, got {args.seconds}")
    torch.set_num_threads(1)
    cfg = Config(seconds=args.seconds, seed=args.seed)
    model, result = train(cfg)
    scores = evaluate(model, cfg)
    out = ROOT / "docs" / "img" / "conditional_ring.png" if args.publish else args.out
    draw(model, out)
    record = {
        "command": shlex.join(["python", "examples/conditional.py", *(argv or sys.argv[1:])]),
        **_machine(),
        "settings": asdict(cfg),
        "scores": {k: float(v) for k, v in scores.items()},
        "steps": result.steps,
        "figure": out.name,
    }
    write_json(out.with_suffix(".json"), record, sort_keys=False)
    print(
        f"test NLL {scores['nll']:.3f} (truth {scores['true_nll']:.3f}, gap "
        f"{scores['gap']:+.3f}); figure {out}"
    )
    return {**scores, "figure": str(out), "model": model}


if __name__ == "__main__":
    main()
