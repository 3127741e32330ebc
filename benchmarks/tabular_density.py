"""NHF on real tabular data that ships inside scikit-learn, against closed-form and flow baselines.

Issue goal: NHF at its defaults must beat a full-covariance Gaussian fitted in closed form and be
no worse than a parameter-matched normflows RealNVP, at equal CPU time, in tens of dimensions.

Data sets (no download: they ship with scikit-learn):

- ``digits`` (``load_digits``, 1797 × 64): pixel counts 0–16, **dequantised** with ``U[0, 1)``
  noise (fixed seed), so the density is continuous;
- ``breast_cancer`` (569 × 30): ``log1p`` of the features;
- ``iris`` (150 × 4): ``log`` of the features (the smoke run's set).

(Sets with an odd number of features are left out: normflows' RealNVP halves the features.)

Each is split once (fixed seed, 80 % train / 20 % test) and **standardised** with the training
rows' mean and standard deviation; every NLL is in nats per example in that standardised space.
A tenth of the training rows is held out for validation: every model keeps its best-scoring state
(early stopping), since a few hundred rows overfit within seconds.

Rows: ``prior`` (a standard normal: what an NHF that learns nothing scores), ``gaussian`` (full
covariance, fitted in closed form on the training rows), ``nhf`` (``NHF(dim)`` at its defaults),
``nhf_elbo`` (the same trained on the ELBO, ``train_samples=1``), ``nhf_diagonal`` (the same
with a diagonal affine map, the default before 2026-12-05),
``nhf_paper`` (``NHF.paper(dim)``) and ``realnvp`` (matched to NHF's parameter count). The trained
models get the same optimiser (Adam, ``--lr``, cosine-decayed), rows per step and CPU-time
budget; NHF's test NLL is IWAE.

    python benchmarks/tabular_density.py                      # digits (the issue's set)
    python benchmarks/tabular_density.py --dataset breast_cancer
    python benchmarks/tabular_density.py --quick             # smoke run, writes under runs/
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    LR_FLOOR,
    NHF_OPTIONS,
    add_output_args,
    check_output_args,
    cosine_lr,
    machine_info,
    match_params,
    num_params,
    points_per_step,
    publish,
    realnvp,
    timed_step,
)

from hamflow import NHF  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("digits", "breast_cancer", "iris")
MODELS = ("prior", "gaussian", "nhf", "nhf_elbo", "nhf_diagonal", "nhf_paper", "realnvp")
OPTIONAL_MODELS = ("nhf_unit_init", "nhf_quarter_rows", *NHF_OPTIONS)
"""Rows on request only (``--models``): ``nhf_unit_init`` is ``NHF(dim)`` with its affine map
fitted as if the untrained flows left the prior standard normal, the default until the evening
of 2026-12-05 (:class:`NHFUnitInit`); ``nhf_quarter_rows`` is ``NHF(dim)`` stepping on a quarter
of the rows (× its 4 momenta: as many states per step as a flow's), as the toy benchmarks give
it; the others are the toy benchmark's options, ``NHF(dim, **NHF_OPTIONS[row])``."""


class NHFUnitInit(NHF):
    """``NHF`` whose affine map is fitted to the data as if ``q_T`` were standard normal.

    The untrained flows leave ``q_T`` with about five times the prior's variance, so this model
    starts about five times wider than the data; ``NHF.initialize_affine`` corrects for it.
    """

    def initialize_affine(self, x: torch.Tensor, num_base: int | None = None) -> None:
        if self.affine is not None:
            self.affine.initialize(x)


@dataclass(frozen=True)
class TabularConfig:
    dataset: str = "digits"
    models: tuple[str, ...] = MODELS
    seconds: float = 60.0
    batch: int = 256
    lr: float = 1e-3
    iwae_k: int = 256
    seed: int = 0
    threads: int = 1
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    val_every: int = 100
    val_k: int = 16


QUICK = dict(seconds=2.0, iwae_k=8, dataset="iris", val_every=20)


def load(name: str, seed: int, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test rows of a bundled data set, transformed and standardised (float32)."""
    from sklearn import datasets

    rng = np.random.default_rng(seed)
    if name == "digits":
        x = datasets.load_digits().data.astype(np.float64)
        x = x + rng.random(x.shape)  # dequantise the 0-16 pixel counts
    elif name == "breast_cancer":
        x = np.log1p(datasets.load_breast_cancer().data.astype(np.float64))
    elif name == "iris":
        x = np.log(datasets.load_iris().data.astype(np.float64))
    else:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {name!r}")
    order = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = x[order[:n_test]], x[order[n_test:]]
    mean, std = train.mean(0), train.std(0)
    std[std < 1e-8] = 1.0
    return (
        torch.as_tensor((train - mean) / std, dtype=torch.float32),
        torch.as_tensor((test - mean) / std, dtype=torch.float32),
    )


def gaussian_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Test NLL of the maximum-likelihood full-covariance Gaussian of ``train`` (float64)."""
    tr, te = train.double(), test.double()
    mean = tr.mean(0)
    cov = torch.cov(tr.T, correction=0) + 1e-6 * torch.eye(tr.shape[1], dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return -dist.log_prob(te).mean().item()


def prior_nll(test: torch.Tensor) -> float:
    d = test.shape[1]
    return (0.5 * test.double().square().sum(1) + 0.5 * d * math.log(2 * math.pi)).mean().item()


def train(model, name: str, data: torch.Tensor, val: torch.Tensor, cfg: TabularConfig) -> dict:
    """Train for ``cfg.seconds`` of CPU time; keep the weights with the best validation NLL.

    A few hundred rows overfit within seconds, so, as a user would, every ``cfg.val_every``
    steps the model is scored on ``val`` (rows held out of the training set, never the test set)
    and the best state is restored at the end. Only the optimiser steps count against the budget.
    Every model gets the same learning-rate schedule (:func:`cosine_lr` over the budget) and
    ``cfg.batch`` rows per step; NHF draws its ``train_samples`` momenta for each row, so its
    step moves 4× the states. (The toy benchmarks give it a quarter of the points instead, so
    that steps move as many states; on a few hundred rows, where the best state comes within a
    few hundred steps, a quarter of the rows per step (the ``nhf_quarter_rows`` row) did much
    worse on ``breast_cancer``: docs/benchmarks/nhf-options.md.)
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, elapsed, skipped = 0, 0.0, 0
    # rows per step, the same for every model (NHF: x its train_samples), except the optional
    # row that steps on a quarter of them, as the toy benchmarks give NHF (points_per_step)
    points = points_per_step(model, cfg.batch) if name == "nhf_quarter_rows" else cfg.batch
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    model.train()
    while elapsed < cfg.seconds:
        cosine_lr(opt, cfg.lr, elapsed / cfg.seconds)
        idx = torch.randint(len(data), (points,), generator=gen)
        seconds, taken = timed_step(model, opt, data[idx])
        elapsed += seconds
        skipped += not taken
        step += 1
        if step % cfg.val_every == 0 or elapsed >= cfg.seconds:
            score = test_nll(name, model, val, cfg, k=cfg.val_k)
            model.train()
            if score < best[0]:
                best = (score, step, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    return {
        "steps": step,
        "train_seconds": elapsed,
        "skipped_steps": skipped,
        "best_step": best[1],
        "val_nll": best[0],
    }


def test_nll(name: str, model, test: torch.Tensor, cfg: TabularConfig, k: int | None = None):
    """Mean NLL of ``test`` (IWAE with ``k`` momenta for NHF, exact for the flows); ``inf`` if
    any point's is not finite."""
    model.eval()
    with torch.no_grad():
        torch.manual_seed(cfg.seed)
        if name.startswith("nhf"):
            lp = model.log_prob(test, num_samples=k or cfg.iwae_k)
        else:
            lp = model.log_prob(test)
    lp = lp.double()
    if not torch.isfinite(lp).all():
        return math.inf
    return -lp.mean().item()


def run(cfg: TabularConfig, log=print) -> dict:
    torch.set_num_threads(cfg.threads)
    tr, te = load(cfg.dataset, cfg.seed, cfg.test_fraction)
    n_val = max(2, int(round(cfg.val_fraction * len(tr))))
    tr, val = tr[n_val:], tr[:n_val]  # rows are already shuffled by load()
    dim = tr.shape[1]
    res: dict = {"dim": dim, "n_train": len(tr), "n_val": len(val), "n_test": len(te), "models": {}}
    torch.manual_seed(cfg.seed)
    target = num_params(NHF(dim))
    for name in cfg.models:
        torch.manual_seed(cfg.seed)
        if name == "prior":
            entry = {"test_nll": prior_nll(te), "params": 0}
        elif name == "gaussian":
            entry = {"test_nll": gaussian_nll(tr, te), "params": dim + dim * (dim + 1) // 2}
        else:
            if name == "nhf":
                model, extra = NHF(dim), {}
            elif name == "nhf_diagonal":  # the default before 2026-12-05
                model, extra = NHF(dim, affine="diagonal"), {}
            elif name == "nhf_unit_init":
                model, extra = NHFUnitInit(dim), {}
            elif name == "nhf_quarter_rows":
                model, extra = NHF(dim), {}
            elif name in NHF_OPTIONS:
                model, extra = NHF(dim, **NHF_OPTIONS[name]), {}
            elif name == "nhf_elbo":  # the default's loss before 2026-12-05 (night)
                model, extra = NHF(dim, train_samples=1), {}
            elif name == "nhf_paper":
                model, extra = NHF.paper(dim), {}
            else:
                hidden, model = match_params(lambda h: realnvp(h, dim=dim), target)
                extra = {"hidden": hidden}
            entry = {"params": num_params(model), **extra, **train(model, name, tr, val, cfg)}
            if name.startswith("nhf"):  # as a user would: the proposal width, on training rows
                model.eval()
                scores = model.calibrate_proposal(tr)
                entry["proposal_scale"] = float(model.proposal_scale)
                entry["calibration_mean_log_prob_by_scale"] = scores
            entry["test_nll"] = test_nll(name, model, te, cfg)
        res["models"][name] = entry
        log(f"{cfg.dataset:14s} {name:10s} test NLL {entry['test_nll']:9.3f}  {entry}")
    return res


def markdown(out: dict) -> str:
    cfg, info, r = out["config"], out["machine"], out["results"]
    tag = f"tabular_{cfg['dataset']}"
    lines = [
        f"<!-- {tag}:begin (generated by benchmarks/tabular_density.py; do not edit) -->",
        f"Command: `{out['command']}`  ",
        f"Machine: {info['machine']} ({info['torch_threads']} torch thread(s)); date: "
        f"{info['date']}; torch {info['torch']}, normflows {info['normflows']}.  ",
        f"Data: `{cfg['dataset']}` ({r['dim']}-d, {r['n_train']} train / {r['n_test']} test rows, "
        f"standardised on the training rows). Trained models: Adam lr {cfg['lr']} cosine-decayed "
        f"to {LR_FLOOR:g}× over the budget, {cfg['batch']} rows per step for every model (NHF "
        f"at its defaults draws 4 momenta per row; `nhf_elbo` is `NHF(dim, train_samples=1)`), "
        f"{cfg['seconds']:g} s of CPU time each, scored every "
        f"{cfg['val_every']} steps on {r['n_val']} validation rows held out of the training set, "
        f"the best state kept. NHF: IWAE K = {cfg['iwae_k']} on the test set, its proposal width "
        "calibrated on the training rows (`calibrate_proposal`). `inf`: some test "
        "point's log-density is not finite.",
        "",
        "| model | params | steps (best at) | test NLL (nats) |",
        "|---|---|---|---|",
    ]
    for name, e in r["models"].items():
        if "steps" in e:
            steps = f"{e['steps']} ({e['best_step']})"
        else:
            steps = "closed form" if name == "gaussian" else "-"
        lines.append(f"| {name} | {e['params']:,} | {steps} | {e['test_nll']:.2f} |")
    lines.append(f"<!-- {tag}:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = TabularConfig()
    p.add_argument("--dataset", choices=DATASETS, default=None, help=f"default {d.dataset}")
    p.add_argument("--models", nargs="+", choices=MODELS + OPTIONAL_MODELS, default=None)
    p.add_argument("--seconds", type=float, default=None, help=f"default {d.seconds}")
    p.add_argument("--lr", type=float, default=None, help=f"default {d.lr}")
    for name in ("batch", "iwae_k", "seed", "threads"):
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"default {getattr(d, name)}",
        )
    p.add_argument("--quick", action="store_true", help="smoke run on iris, 2 s per model")
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    cfg = replace(TabularConfig(), **QUICK) if args.quick else TabularConfig()
    over = {k: v for k, v in vars(args).items() if k in d.__dataclass_fields__ and v is not None}
    for k in ("seconds", "lr", "batch", "iwae_k", "threads"):
        if k in over and not over[k] > 0:
            p.error(f"--{k.replace('_', '-')}: expected a positive number, got {over[k]}")
    if "models" in over:
        over["models"] = tuple(over["models"])
    cfg = replace(cfg, **over)
    info = machine_info()
    info["torch_threads"] = cfg.threads
    results = run(cfg)
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    out = {
        "config": asdict(cfg),
        "machine": info,
        "command": f"python benchmarks/tabular_density.py {argv_s}".strip(),
        "results": results,
    }
    name = f"tabular_{cfg.dataset}"
    path, md = publish(
        name, out, markdown(out), args.out_dir, args.quick, args.markdown, to_docs=args.publish
    )
    print(f"wrote {path} and {md}")
    return out


if __name__ == "__main__":
    main()
