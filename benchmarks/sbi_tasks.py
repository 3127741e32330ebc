"""Neural posterior estimation on sbibm: conditional NHF against a conditional NSF.

For each task (two_moons, gaussian_linear, slcp, gaussian_mixture, bernoulli_glm) and each
simulation budget, ``n`` pairs ``(θ, x)`` are simulated from the task's prior and simulator,
both standardised with the training pairs' means and standard deviations, and each density
estimator of ``p(θ | x)`` is trained through the library's one loop (:func:`hamflow.fit`,
called by :func:`train`) for the same CPU time on one thread. Its posterior samples for the
task's first observations are then compared with sbibm's reference posterior samples by C2ST
(0.5: indistinguishable, 1.0: disjoint).

- ``nhf``: ``NHF(dim_θ, context_dim=dim_x)`` at the library's conditional defaults
  (:mod:`hamflow.conditional`: a last shift linear in the context, fitted by least squares,
  and potentials three times steeper at the start).
- ``nhf_embed`` (on request, ``--models nhf nhf_embed``): the option of a learned context
  embedding, an MLP ``[dim_x, 64, 64, 32]`` whose output is NHF's context (:class:`EmbeddedNHF`).
- ``nhf_affine`` (on request): ``NHF(..., context_affine=True)``, whose shift and scale
  between the flows and the data follow the context (:class:`hamflow.conditional.ContextAffine`).
- ``nsf``: normflows' ``ConditionalNormalizingFlow``: four autoregressive rational-quadratic
  spline layers with the context fed to every MADE (8 bins, 2 blocks) and LU permutations,
  sized to NHF's parameter count.

The loop is :func:`hamflow.fit` with the same settings for every model: Adam at ``SBIConfig.lr``
decayed along a cosine over the budget, 256 samples per step (NHF: 64 pairs, four momenta
each, as in the other benchmarks), gradients clipped at five times their running median, 10 %
of the pairs held out and scored every ``eval_every`` steps (NHF: its bound with four momenta),
early stopping after ``patience`` scores without progress and the best state kept. Posterior
samples outside the prior's support are rejected and redrawn for both models (what the sbi
package does by default).

Each (task, budget, model, seed) cell is cached under ``runs/sbi/``; a run fills the missing
cells and then writes the table. Several processes may fill the cache at once (``--sims
1000`` in one, ``--sims 10000`` in another) before a last one publishes.

    pip install pyro-ppl pandas future autograd && pip install --no-deps sbibm
    python benchmarks/sbi_tasks.py --quick                 # smoke run (~2 min), under runs/
    python benchmarks/sbi_tasks.py --publish               # table, JSON and figure into docs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import normflows as nf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_output_args,
    check_output_args,
    machine_info,
    match_params,
    num_params,
    points_per_step,
    publish,
    write_json,
)

from hamflow import NHF, fit  # noqa: E402
from hamflow.distributions import mlp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("two_moons", "gaussian_linear", "slcp", "gaussian_mixture", "bernoulli_glm")
MODELS = ("nhf", "nsf")
OPTIONS = ("nhf_embed", "nhf_affine")
CACHE = ROOT / "runs" / "sbi"


@dataclass(frozen=True)
class SBIConfig:
    """Settings of one benchmark run (saved in the results JSON)."""

    tasks: tuple[str, ...] = TASKS
    sims: tuple[int, ...] = (1000, 10_000)
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0,)
    budget_s: float = 45.0
    observations: int = 3
    posterior_samples: int = 1000
    batch: int = 256
    lr: float = 1e-3
    val_fraction: float = 0.1
    eval_every: int = 50
    patience: int | None = 40
    val_samples: int = 4
    """Momenta per pair in NHF's held-out score (the IWAE bound with the training ``K``)."""
    nsf_layers: int = 4
    max_steps: int | None = None
    """A cap on the steps besides ``budget_s`` (the tests use it: a count of steps does not
    depend on how busy the machine is)."""

    def cell_key(self) -> str:
        """What a cached cell depends on besides (task, sims, model, seed)."""
        keep = {
            k: v for k, v in asdict(self).items() if k not in ("tasks", "sims", "models", "seeds")
        }
        return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:10]


# -- data -------------------------------------------------------------------------------------


def simulate(task, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` pairs ``(θ, x)`` from ``task``'s prior and simulator, float32, seeded."""
    torch.manual_seed(seed)
    theta = task.get_prior()(num_samples=n)
    x = task.get_simulator()(theta)
    ok = torch.isfinite(x).all(-1) & torch.isfinite(theta).all(-1)
    return theta[ok].float(), x[ok].float()


class Standardizer:
    """z-scores of ``θ`` and ``x`` from the training pairs (a standard step of NPE)."""

    def __init__(self, theta: torch.Tensor, x: torch.Tensor) -> None:
        self.t_mean, self.t_std = theta.mean(0), theta.std(0).clamp_min(1e-6)
        self.x_mean, self.x_std = x.mean(0), x.std(0).clamp_min(1e-6)

    def theta(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.t_mean) / self.t_std

    def theta_back(self, z: torch.Tensor) -> torch.Tensor:
        return self.t_mean + self.t_std * z

    def x(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_std


# -- models -----------------------------------------------------------------------------------


def conditional_nsf(hidden: int, dim: int, context_dim: int, layers: int = 4):
    """normflows' conditional NSF: autoregressive RQ splines that read the context, LU
    permutations."""
    flows: list[nf.flows.Flow] = []
    for _ in range(layers):
        flows += [
            nf.flows.AutoregressiveRationalQuadraticSpline(
                dim, 2, hidden, num_context_channels=context_dim, tail_bound=5.0
            ),
            nf.flows.LULinearPermute(dim),
        ]
    base = nf.distributions.DiagGaussian(dim, trainable=False)
    return nf.ConditionalNormalizingFlow(base, flows)


class EmbeddedNHF(torch.nn.Module):
    """NHF reading a learned embedding of the context instead of the context itself."""

    def __init__(self, dim: int, context_dim: int, width: int = 32) -> None:
        super().__init__()
        self.embed = mlp([context_dim, 64, 64, width])
        self.nhf = NHF(dim, context_dim=width)
        self.train_samples = self.nhf.train_samples

    def forward_kld(self, theta: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.nhf.forward_kld(theta, self.embed(context))

    def sample(self, n: int, context: torch.Tensor) -> torch.Tensor:
        return self.nhf.sample(n, self.embed(context))


def build(name: str, dim: int, context_dim: int, cfg: SBIConfig) -> torch.nn.Module:
    """The estimator ``name`` for ``p(θ | x)``; the NSF is sized to the NHF's parameter count."""
    nhf = NHF(dim, context_dim=context_dim)
    if name == "nhf":
        return nhf
    if name == "nhf_embed":
        return EmbeddedNHF(dim, context_dim)
    if name == "nhf_affine":
        return NHF(dim, context_dim=context_dim, context_affine=True)
    if name == "nsf":
        h, model = match_params(
            lambda h: conditional_nsf(h, dim, context_dim, cfg.nsf_layers), num_params(nhf)
        )
        return model
    raise ValueError(f"model: expected one of {MODELS + OPTIONS}, got {name!r}")


# -- training: the library's loop ------------------------------------------------------------


def train(
    model: torch.nn.Module,
    theta: torch.Tensor,
    x: torch.Tensor,
    cfg: SBIConfig,
    seed: int,
) -> dict:
    """Train ``model`` on ``p(θ | x)`` through :func:`hamflow.fit` for ``cfg.budget_s`` CPU
    seconds (and at most ``cfg.max_steps`` steps); the model ends in its best held-out state.

    Every model goes through the same call: ``fit`` needs only ``forward_kld(θ, x)`` and
    ``log_prob(θ, x)``, which ``NHF(dim, context_dim=c)`` and normflows'
    ``ConditionalNormalizingFlow`` both have. Each step moves ``cfg.batch`` samples through the
    layers (NHF: ``cfg.batch // train_samples`` pairs, each with its momenta).
    """
    result = fit(
        model,
        theta,
        context=x,
        max_time=cfg.budget_s,
        max_steps=cfg.max_steps,
        batch_size=points_per_step(model, cfg.batch),
        lr=cfg.lr,
        val_fraction=cfg.val_fraction,
        eval_every=cfg.eval_every,
        patience=cfg.patience,
        val_samples=cfg.val_samples,
        threads=1,
        seed=seed,
    )
    return {
        "steps": result.steps,
        "skipped": result.skipped_steps,
        "restores": result.restores,
        "stopped_early": result.stopped_early,
        "best_step": result.best_step,
        "train_cpu_s": result.seconds,
        "best_val_loss": result.best_val_nll,
    }


@torch.no_grad()
def posterior_samples(model, name: str, x_o: torch.Tensor, n: int, support) -> torch.Tensor:
    """``n`` samples of ``θ`` (standardised) given one standardised observation ``x_o``,
    ``(1, dim_x)``; ``support(θ_standardised)`` says which lie in the prior's support."""
    out, have = [], 0
    for _ in range(50):
        m = 2 * (n - have) + 16
        if name.startswith("nhf"):
            z = model.sample(m, x_o)
        else:
            z = model.sample(m, context=x_o.expand(m, -1))[0]
        z = z[torch.isfinite(z).all(-1) & support(z)]
        out.append(z)
        have += len(z)
        if have >= n:
            break
    z = torch.cat(out)[:n]
    if len(z) < n:
        raise RuntimeError(f"{name}: only {len(z)} of {n} posterior samples in the prior support")
    return z


def run_cell(task_name: str, sims: int, name: str, seed: int, cfg: SBIConfig) -> dict:
    """Simulate, train, sample and score one (task, budget, model, seed) cell."""
    import sbibm
    from sbibm.metrics import c2st

    task = sbibm.get_task(task_name)
    theta, x = simulate(task, sims, seed)
    std = Standardizer(theta, x)
    torch.manual_seed(seed)
    model = build(name, theta.shape[1], x.shape[1], cfg)
    info = train(model, std.theta(theta), std.x(x), cfg, seed)
    prior = task.get_prior_dist()

    def support(z: torch.Tensor) -> torch.Tensor:
        th = std.theta_back(z)
        ok = prior.support.check(th)
        return ok.all(-1) if ok.dim() > 1 else ok

    scores, t0 = [], time.process_time()
    samples_first = None
    for i in range(1, cfg.observations + 1):
        x_o = std.x(task.get_observation(num_observation=i).float())
        torch.manual_seed(seed * 1000 + i)
        z = posterior_samples(model, name, x_o, cfg.posterior_samples, support)
        th = std.theta_back(z)
        ref = task.get_reference_posterior_samples(num_observation=i)[: cfg.posterior_samples]
        scores.append(float(c2st(ref.float(), th.float())[0]))
        if i == 1:
            samples_first = th.tolist()
    return {
        "task": task_name,
        "sims": sims,
        "model": name,
        "seed": seed,
        "params": num_params(model),
        "c2st": scores,
        "c2st_mean": statistics.fmean(scores),
        "score_cpu_s": time.process_time() - t0,
        "posterior_obs1": samples_first,
        **info,
    }


def cell(task_name: str, sims: int, name: str, seed: int, cfg: SBIConfig, cache: Path) -> dict:
    """One cell, from ``cache`` if a run with the same settings already made it."""
    path = cache / cfg.cell_key() / f"{task_name}_{sims}_{name}_{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    res = run_cell(task_name, sims, name, seed, cfg)
    write_json(path, res)
    return res


# -- table and figure -------------------------------------------------------------------------


def summarise(cells: list[dict], cfg: SBIConfig) -> list[dict]:
    """One row per (task, sims): each model's mean C2ST over observations and seeds, its
    standard error over seeds (``None`` with one seed) and the NHF − NSF gap."""
    rows = []
    for task in cfg.tasks:
        for sims in cfg.sims:
            row: dict = {"task": task, "sims": sims}
            for name in cfg.models:
                means = [
                    c["c2st_mean"]
                    for c in cells
                    if (c["task"], c["sims"], c["model"]) == (task, sims, name)
                ]
                row[name] = statistics.fmean(means) if means else None
                row[f"{name}_seeds"] = len(means)
                row[f"{name}_se"] = (
                    statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else None
                )
            if row.get("nhf") is not None and row.get("nsf") is not None:
                row["gap"] = row["nhf"] - row["nsf"]
            rows.append(row)
    return rows


def markdown(
    rows: list[dict], cfg: SBIConfig, command: str, results: str, tag: str = "sbi_tasks"
) -> str:
    labels = {"nhf_embed": "NHF + embedding", "nhf_affine": "NHF + context affine"}
    names = [labels.get(m, m.upper()) for m in cfg.models]
    head = (
        "| task | simulations | "
        + " | ".join(f"{n} C2ST" for n in names)
        + " | NHF − NSF |\n|---|---:|"
        + "---:|" * (len(names) + 1)
        + "\n"
    )
    lines = []
    counts = sorted({r.get(f"{m}_seeds", 0) for r in rows for m in cfg.models} - {0})
    seeds = " or ".join(str(n) for n in counts) + (" seed" if counts == [1] else " seeds")
    for r in rows:

        def fmt(name: str, r: dict = r) -> str:
            v, se = r.get(name), r.get(f"{name}_se")
            if v is None:
                return "–"
            return f"{v:.3f}" + (f" ± {se:.3f}" if se is not None else "")

        gap = f"{r['gap']:+.3f}" if r.get("gap") is not None else "–"
        cols = " | ".join(fmt(m) for m in cfg.models)
        lines.append(f"| {r['task']} | {r['sims']:,} | {cols} | {gap} |")
    caption = (
        f"C2ST against sbibm's reference posterior (lower is better, 0.5 is perfect), mean over "
        f"observations 1–{cfg.observations} ({cfg.posterior_samples:,} samples each) and over "
        f"the seeds run ({seeds}; ± a standard error over seeds where there are two or more); "
        f"each model trained for {cfg.budget_s:g} s of CPU time on one thread. "
        f"Made by `{command}`; results in `{results}`."
    )
    return (
        f"<!-- {tag}:begin -->\n" + head + "\n".join(lines) + f"\n\n{caption}\n<!-- {tag}:end -->"
    )


def figure(cells: list[dict], sims: int, path: Path, caption: str) -> Path | None:
    """Posterior samples on two_moons (observation 1) against the reference, one panel a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import sbibm

    chosen = {
        c["model"]: c
        for c in cells
        if c["task"] == "two_moons" and c["sims"] == sims and c["seed"] == 0
    }
    if not chosen:
        return None
    ref = sbibm.get_task("two_moons").get_reference_posterior_samples(num_observation=1)[:1000]
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4), squeeze=False)
    for ax, (name, c) in zip(axes[0], sorted(chosen.items())):
        s = torch.tensor(c["posterior_obs1"])
        colour = "C0" if name == "nhf" else "C1"
        ax.scatter(s[:, 0], s[:, 1], s=6, alpha=0.35, color=colour, label=name.upper())
        ax.scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.5, color="k", label="reference")
        lo, hi = ref.min(0).values - 0.15, ref.max(0).values + 0.15
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_title(f"{name.upper()}, C2ST {c['c2st'][0]:.3f}")
        ax.set_xlabel("θ₁")
        ax.set_ylabel("θ₂")
        ax.legend(loc="center", markerscale=4, fontsize=8)
    fig.suptitle(caption, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--sims", nargs="+", type=int, default=[1000, 10_000])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS + OPTIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--budget", type=float, default=45.0, help="CPU seconds of training per model")
    p.add_argument("--observations", type=int, default=3)
    p.add_argument("--posterior-samples", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="two tasks, 500 sims, 5 s, under runs/")
    p.add_argument("--no-table", action="store_true", help="fill the cell cache only")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--name", default="sbi_tasks", help="results file and docs block name")
    p.add_argument("--no-figure", action="store_true")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="tabulate the cells already in the cache; the others show as –",
    )
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    if args.budget <= 0 or args.observations < 1 or args.posterior_samples < 10:
        p.error("--budget > 0, --observations >= 1 and --posterior-samples >= 10 are needed")
    if any(s < 100 for s in args.sims):
        p.error(f"--sims: expected at least 100 simulations, got {args.sims}")
    return args


def config_from_args(args: argparse.Namespace) -> SBIConfig:
    cfg = SBIConfig(
        tasks=tuple(args.tasks),
        sims=tuple(args.sims),
        models=tuple(args.models),
        seeds=tuple(args.seeds),
        budget_s=args.budget,
        observations=args.observations,
        posterior_samples=args.posterior_samples,
    )
    if args.quick:
        cfg = replace(
            cfg,
            tasks=("two_moons", "gaussian_linear"),
            sims=(500,),
            budget_s=min(cfg.budget_s, 5.0),
            observations=1,
            posterior_samples=200,
            eval_every=10,
        )
    return cfg


def main(argv: list[str] | None = None) -> dict:
    torch.set_num_threads(1)
    args = parse_args(argv)
    cfg = config_from_args(args)
    cells = []
    for task in cfg.tasks:
        for sims in cfg.sims:
            for seed in cfg.seeds:
                for name in cfg.models:
                    path = args.cache / cfg.cell_key() / f"{task}_{sims}_{name}_{seed}.json"
                    if args.cached_only and not path.exists():
                        print(f"{task:>16} {sims:>6} {name:>4} seed {seed}: not run", flush=True)
                        continue
                    c = cell(task, sims, name, seed, cfg, args.cache)
                    cells.append(c)
                    print(
                        f"{task:>16} {sims:>6} {name:>4} seed {seed}: C2ST {c['c2st_mean']:.3f} "
                        f"({c['steps']} steps, {c['params']} params)",
                        flush=True,
                    )
    out = {
        "benchmark": "sbi_tasks",
        "command": "python benchmarks/sbi_tasks.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": asdict(cfg),
        **machine_info(),
        "commit": _commit(),
        "rows": summarise(cells, cfg),
        "cells": [{k: v for k, v in c.items() if k != "posterior_obs1"} for c in cells],
    }
    if args.no_table:
        return out
    results = (
        f"benchmarks/results/{args.name}.json"
        if args.publish
        else f"runs/benchmarks/{args.name}{'_quick' if args.quick else ''}.json"
    )
    block = markdown(out["rows"], cfg, out["command"], results, tag=args.name)
    md = args.markdown or (ROOT / "docs" / "benchmarks" / "sbi.md" if args.publish else None)
    path, md = publish(args.name, out, block, args.out_dir, args.quick, md, to_docs=args.publish)
    img_dir = ROOT / "docs" / "img" if args.publish else path.parent
    fig_sims = (
        max(s for s in cfg.sims if s <= 10_000)
        if any(s <= 10_000 for s in cfg.sims)
        else max(cfg.sims)
    )
    fig = None
    if not args.no_figure:
        fig = figure(
            cells,
            fig_sims,
            img_dir / "sbi_two_moons.png",
            f"two_moons, observation 1, {fig_sims:,} simulations; made by `{out['command']}`",
        )
    print(block)
    print(f"wrote {path}, {md}" + (f", {fig}" if fig else ""))
    return out


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
