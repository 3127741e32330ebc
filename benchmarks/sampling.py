"""Fitting samplers to unnormalised densities: NHF against normflows RealNVP and NSF, and HMC.

Every sampler is trained for the same CPU time (``time.process_time``, one thread) on the
reverse KL (or the alpha-2 divergence), then scored from 4,000 importance samples:
``|ln Ẑ − ln Z|``, the ESS fraction, the share of modes holding at least a quarter of their
fair share of the resampled draws, and the error of the posterior means (self-normalised)
against exact samples or a long HMC run. Plain HMC gets as many target gradients as NHF used in
training and sampling, for the means.

    python benchmarks/sampling.py --quick              # smoke run, writes under runs/
    python benchmarks/sampling.py --publish            # benchmarks/results/sampling.json + docs
    python benchmarks/sampling.py --methods nhf --keep-rows benchmarks/results/sampling.json \
        --publish                                      # rerun NHF, keep the other methods' rows

Results: docs/benchmarks/sampling.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import normflows as nf
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from hamflow import NHF, sampling  # noqa: E402
from hamflow.targets import (  # noqa: E402
    Banana,
    CorrelatedGaussian,
    Funnel,
    GridMixture,
    grid_log_z,
)

ROOT = Path(__file__).resolve().parents[1]
N_IS = 4000


# -- targets ---------------------------------------------------------------------------------


class NormflowsTarget(torch.nn.Module):
    """A normflows 2-D target with ``log_Z`` by quadrature and modes for coverage."""

    def __init__(self, target, name, modes, bound=6.0):
        super().__init__()
        self.target, self.name, self.dim = target, name, 2
        self.modes = torch.as_tensor(modes, dtype=torch.float64)
        self.log_Z = grid_log_z(target.log_prob, bound=bound, points=1201)

    def log_prob(self, x):
        return self.target.log_prob(x)

    def mode_counts(self, x):
        d2 = ((x[:, None, :].double() - self.modes) ** 2).sum(-1)
        return torch.bincount(d2.argmin(-1), minlength=len(self.modes))


class LogisticPosterior(torch.nn.Module):
    """Bayesian logistic regression on scikit-learn's breast_cancer (standardised, 30 weights,
    prior N(0, I)); ``log_Z`` unknown, reference moments from a long HMC run."""

    name = "logistic_breast_cancer"

    def __init__(self):
        super().__init__()
        from sklearn.datasets import load_breast_cancer

        X, y = load_breast_cancer(return_X_y=True)
        X = (X - X.mean(0)) / X.std(0)
        self.register_buffer("X", torch.tensor(X, dtype=torch.float32))
        self.register_buffer("s", torch.tensor(2 * y - 1, dtype=torch.float32))
        self.dim, self.log_Z = X.shape[1], None

    def log_prob(self, w):
        logits = (w @ self.X.to(w).T) * self.s.to(w)
        return torch.nn.functional.logsigmoid(logits).sum(-1) - 0.5 * (w * w).sum(-1)


def make_targets(names):
    circ = nf.distributions.CircularGaussianMixture(8)
    angles = 2 * np.pi / 8 * np.arange(8)
    table = {
        "funnel10": lambda: Funnel(10),
        "banana": lambda: Banana(),
        "grid16": lambda: GridMixture(),
        "gauss20": lambda: CorrelatedGaussian(20, condition=100.0),
        "two_moons": lambda: NormflowsTarget(
            nf.distributions.TwoMoons(), "two_moons", [[-2.0, 0.0], [2.0, 0.0]], bound=5.0
        ),
        "circular8": lambda: NormflowsTarget(
            circ, "circular8", np.stack([2 * np.sin(angles), 2 * np.cos(angles)], -1), 5.0
        ),
        "logistic": LogisticPosterior,
    }
    targets = {}
    for n in names:
        targets[n] = table[n]()
        targets[n].name = n  # rows and tables use the benchmark's short names
    return targets


# -- HMC -------------------------------------------------------------------------------------


def grad_log(target, x):
    x = x.detach().requires_grad_(True)
    lp = target.log_prob(x)
    (g,) = torch.autograd.grad(lp.sum(), x)
    return lp.detach(), g


def hmc(target, dim, chains, iters, leapfrog=10, step=0.1, warmup=0.3, seed=0):
    """Plain HMC with a global step size adapted to ~0.7 acceptance in warm-up.

    Returns the post-warm-up draws ``(n, dim)`` and the number of target gradients used."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(chains, dim, generator=gen)
    lp, g = grad_log(target, x)
    grads, out = chains, []
    n_warm = int(warmup * iters)
    for it in range(iters):
        p = torch.randn(chains, dim, generator=gen)
        h0 = -lp + 0.5 * (p * p).sum(-1)
        xn, pn, gn = x, p + 0.5 * step * g, g
        for k in range(leapfrog):
            xn = xn + step * pn
            lpn, gn = grad_log(target, xn)
            grads += chains
            pn = pn + (step if k < leapfrog - 1 else 0.5 * step) * gn
        h1 = -lpn + 0.5 * (pn * pn).sum(-1)
        acc_prob = torch.exp(torch.clamp(h0 - h1, max=0)).nan_to_num(0.0)
        accept = torch.rand(chains, generator=gen) < acc_prob
        x = torch.where(accept[:, None], xn, x)
        lp = torch.where(accept, lpn, lp)
        g = torch.where(accept[:, None], gn, g)
        if it < n_warm:
            step *= math.exp(0.1 * (acc_prob.mean().item() - 0.7))
        else:
            out.append(x.clone())
    return torch.cat(out), grads


def reference_moments(target, quick, seed=0):
    """Exact-sample moments where a sampler exists, else those of a long HMC run."""
    gen_seed = torch.random.initial_seed()
    torch.manual_seed(1000 + seed)
    if hasattr(target, "sample") and not isinstance(target, NormflowsTarget):
        x = target.sample(20000 if quick else 200000).double()
        torch.manual_seed(gen_seed)
        return x.mean(0), x.std(0), {"kind": "exact samples", "n": len(x)}
    if isinstance(target, NormflowsTarget):  # quadrature on the grid
        g = torch.linspace(-6, 6, 601, dtype=torch.float64)
        gx, gy = torch.meshgrid(g, g, indexing="ij")
        xy = torch.stack([gx.flatten(), gy.flatten()], -1)
        w = torch.softmax(target.log_prob(xy).double(), 0)[:, None]
        mean = (w * xy).sum(0)
        std = ((w * (xy - mean) ** 2).sum(0)).sqrt()
        return mean, std, {"kind": "quadrature"}
    chains, iters = (16, 300) if quick else (32, 2000)
    x, grads = hmc(target, target.dim, chains, iters, step=0.05, seed=seed)
    x = x.double()
    torch.manual_seed(gen_seed)
    return x.mean(0), x.std(0), {"kind": "HMC", "chains": chains, "iters": iters, "grads": grads}


# -- samplers --------------------------------------------------------------------------------

NHF_VARIANTS = {  # NHF(dim, target=t); "nhf" with fit_sampler's defaults
    "nhf": dict(kicks=False, loss="kl", anneal=sampling.DEFAULT_ANNEAL),
    "nhf_kick": dict(kicks=True, loss="kl", anneal=0.5),
    "nhf_kick_noanneal": dict(kicks=True, loss="kl", anneal=0.0),
    "nhf_noanneal": dict(kicks=False, loss="kl", anneal=0.0),
    "nhf_alpha": dict(kicks=False, loss="alpha", anneal=0.0),
    "nhf_bootstrap": dict(kicks=False, loss="bootstrap", anneal=0.5),
    "nhf_nodamp": dict(kicks=False, loss="kl", anneal=0.5, damping=False),
    "nhf_nodamp_lr1e-3": dict(kicks=False, loss="kl", anneal=0.5, damping=False, lr=1e-3),
    # r(p | x) with four conditional couplings on p (hamflow.momentum_flow), trained jointly
    "nhf_rflow": dict(kicks=False, loss="kl", anneal=sampling.DEFAULT_ANNEAL, momentum_layers=4),
}
BASELINE_LR = 1e-3  # normflows models: the learning rate they are usually trained with
BASELINE_BATCH = 256  # normflows models: draws per reverse-KL step
BASELINE_LR_END = 0.05  # normflows models: the cosine decay's floor, a fraction of the lr
BASELINE_VARIANTS = {  # normflows models as users train them: plain reverse KL or alpha = 2
    "realnvp_kl": ("realnvp", "kl", 0.0),
    "nsf_kl": ("nsf", "kl", 0.0),
    "nsf_coupling_kl": ("nsf_coupling", "kl", 0.0),
    "realnvp_alpha": ("realnvp", "alpha", 0.0),
    "realnvp_anneal": ("realnvp", "kl", 0.5),
}


def realnvp(hidden, num_layers=8, dim=2):
    """``_common.realnvp`` for any ``dim``: each coupling reads the first ``⌈dim/2⌉`` coordinates
    (normflows' split) and moves the other ``⌊dim/2⌋``, and the swaps rotate which ones. For an
    even ``dim`` it builds the same model, from the same random draws."""
    flows = []
    for _ in range(num_layers):
        net = nf.nets.MLP([(dim + 1) // 2, hidden, hidden, 2 * (dim // 2)], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(dim, mode="swap")]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def nsf_coupling(hidden, num_layers=4, dim=2, tail_bound=10.0):
    """Neural Spline Flow with coupling layers (RQ splines, 8 bins, 2 blocks, alternating
    halves) and LU permutations. Its sampling direction costs one pass per layer; the
    autoregressive NSF (``nsf_kl``) inverts its splines one dimension at a time, about six
    times slower per reverse-KL step on the 10-d funnel."""
    flows = []
    for i in range(num_layers):
        flows += [
            nf.flows.CoupledRationalQuadraticSpline(
                dim, 2, hidden, tail_bound=tail_bound, reverse_mask=bool(i % 2)
            ),
            nf.flows.LULinearPermute(dim),
        ]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def build(method, target, seed):
    torch.manual_seed(seed)
    dim = target.dim
    if method in NHF_VARIANTS:
        model = NHF(dim, target=target)
        variant = NHF_VARIANTS[method]
        sampling.configure(
            model,
            kicks=variant["kicks"],
            damping=variant.get("damping"),
            momentum_layers=variant.get("momentum_layers"),
        )
        return model
    kind = BASELINE_VARIANTS[method][0]
    ref = _common.num_params(NHF(dim))
    layers = 8 if kind == "realnvp" else 4
    tail = 10.0

    def make(h):
        if kind == "realnvp":
            return realnvp(h, num_layers=layers, dim=dim)
        if kind == "nsf_coupling":
            return nsf_coupling(h, num_layers=layers, dim=dim, tail_bound=tail)
        return _common.nsf(h, num_layers=layers, dim=dim, tail_bound=tail)

    hidden, _ = _common.match_params(make, ref)
    torch.manual_seed(seed)
    model = make(hidden)
    model.p = target
    return model


def draw_weighted(model, method, n):
    if method in NHF_VARIANTS:
        return model.importance_sample(n)
    with torch.no_grad():
        x, log_q = model.sample(n)
        return x, model.p.log_prob(x) - log_q


def run_one(target, method, seed, budget, ref, batch=None):
    model = build(method, target, seed)
    if batch is None:
        batch = sampling.DEFAULT_BATCH if method in NHF_VARIANTS else BASELINE_BATCH
    if method in NHF_VARIANTS:
        loss, anneal = NHF_VARIANTS[method]["loss"], NHF_VARIANTS[method]["anneal"]
        lr = NHF_VARIANTS[method].get("lr", sampling.DEFAULT_LR)
        lr_end = sampling.DEFAULT_LR_END
    else:
        _, loss, anneal = BASELINE_VARIANTS[method]
        lr, lr_end = BASELINE_LR, BASELINE_LR_END
    t0 = time.process_time()
    try:
        info = sampling.fit_sampler(
            model,
            max_time=budget,
            batch=batch,
            lr=lr,
            lr_end=lr_end,
            loss=loss,
            anneal=anneal,
            seed=seed,
        )
    except ValueError as err:  # diverged: recorded as a failure, scored as missing
        return {"target": target.name, "method": method, "seed": seed, "failed": str(err)}, None
    train_s = time.process_time() - t0
    t1 = time.process_time()
    torch.manual_seed(10_000 + seed)
    x, log_w = draw_weighted(model, method, N_IS)
    sample_s = time.process_time() - t1
    log_w = log_w.double()
    finite = torch.isfinite(log_w)
    row = {
        "target": target.name,
        "method": method,
        "seed": seed,
        "steps": info["steps"],
        "skipped": info["skipped"],
        "train_cpu_s": round(train_s, 2),
        "sample_cpu_s": round(sample_s, 2),
        "params": _common.num_params(model),
    }
    if "momentum_scale" in info:
        row["momentum_scale"] = info["momentum_scale"]
    log_w = torch.where(finite, log_w, torch.full_like(log_w, -math.inf))
    log_z = float(torch.logsumexp(log_w, 0) - math.log(N_IS))
    row["log_Z_hat"] = log_z
    row["ess"] = float(sampling.ess_from_log_weights(log_w)) if math.isfinite(log_z) else 0.0
    if target.log_Z is not None:
        row["log_Z_err"] = abs(log_z - target.log_Z) if math.isfinite(log_z) else float("inf")
    w = torch.softmax(log_w, 0)
    if hasattr(target, "mode_counts"):
        idx = torch.multinomial(w, N_IS, replacement=True) if math.isfinite(log_z) else None
        counts = target.mode_counts(x[idx]) if idx is not None else torch.zeros(1)
        fair = N_IS / len(target.modes)
        row["modes_covered"] = float((counts >= fair / 4).double().mean())
    mean, std, _ = ref
    if math.isfinite(log_z):
        est = (w[:, None] * x.double()).sum(0)
        row["mean_err"] = float((((est - mean) / std) ** 2).mean().sqrt())
    # target gradients NHF used: one per flow per sample (kicks) and one per sample (the loss)
    if method in NHF_VARIANTS and NHF_VARIANTS[method]["kicks"]:
        per = len(model.flows) + 1
        row["target_grads"] = info["steps"] * batch * per + N_IS * len(model.flows)
    else:
        row["target_grads"] = info["steps"] * batch
    return row, model


def run_hmc(target, seed, grads, ref):
    chains = 64
    iters = max(20, grads // (chains * 10))
    t0 = time.process_time()
    x, used = hmc(target, target.dim, chains, iters, seed=seed)
    mean, std, _ = ref
    est = x.double().mean(0)
    return {
        "target": target.name,
        "method": "hmc",
        "seed": seed,
        "target_grads": used,
        "cpu_s": round(time.process_time() - t0, 2),
        "mean_err": float((((est - mean) / std) ** 2).mean().sqrt()),
    }


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def keep_rows(out: dict, old: dict, path: Path) -> None:
    """Add to ``out`` the rows of ``old`` whose method ``out`` did not run (in place).

    HMC's rows depend on NHF's number of target gradients, so they are kept only where NHF
    was not rerun. A kept row must have been measured at the same budget; the kept methods,
    the other file's command and commit go to ``settings.kept_rows``.
    """
    s, o = out["settings"], old["settings"]
    if o["budget_s"] != s["budget_s"]:
        raise ValueError(
            f"--keep-rows: expected a results file at the same budget ({s['budget_s']} s), "
            f"got {path} at {o['budget_s']} s"
        )
    reran_nhf = "nhf" in s["methods"]
    ran = set(s["methods"]) | ({"hmc"} if reran_nhf else set())
    kept = [r for r in old["rows"] if r["method"] not in ran and r["target"] in s["targets"]]
    methods = [m for m in o["methods"] if m not in ran and any(r["method"] == m for r in kept)]
    out["rows"] = out["rows"] + kept
    # the table's order: NHF first, then the kept methods as they were, then the new ones
    first = [m for m in s["methods"] if m == "nhf"]
    s["methods"] = first + methods + [m for m in s["methods"] if m != "nhf"]
    s["kept_rows"] = {
        "from": str(path),
        "methods": methods + ([] if reran_nhf else ["hmc"]),
        "command": old["command"],
        "commit": old.get("commit", "unknown"),
        "settings": o,
    }


# -- report ----------------------------------------------------------------------------------

COLUMNS = [
    ("log_Z_err", "abs(ln Ẑ − ln Z)"),
    ("ess", "ESS fraction"),
    ("modes_covered", "modes covered"),
    ("mean_err", "mean error (σ)"),
    ("train_cpu_s", "train CPU s"),
]


def summarise(rows):
    out = {}
    for r in rows:
        out.setdefault((r["target"], r["method"]), []).append(r)
    table = {}
    for (t, m), rs in out.items():
        cell = {}
        for key, _ in COLUMNS:
            vals = [r[key] for r in rs if key in r and r[key] is not None]
            if vals:
                mu = statistics.fmean(vals)
                se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
                cell[key] = (mu, se, len(vals))
        cell["failed"] = sum("failed" in r for r in rs)
        cell["runs"] = len(rs)
        table[(t, m)] = cell
    return table


def _kept_note(settings):
    kept = settings.get("kept_rows")
    if not kept:
        return ""
    return (
        f"; the rows of {', '.join(kept['methods'])} are those of `{kept['command']}` at "
        f"commit {kept['commit']}, kept in the results file"
    )


def fmt(cell, key):
    if key not in cell:
        return "–"
    mu, se, _ = cell[key]
    if not math.isfinite(mu):
        return "inf"
    digits = 1 if key == "train_cpu_s" else 3
    return f"{mu:.{digits}f} ± {se:.{digits}f}" if se else f"{mu:.{digits}f}"


def markdown(out, table, name="sampling"):
    s = out["settings"]
    lines = [
        f"<!-- {name}:begin -->",
        f"Made by `{out['command']}`; results file `benchmarks/results/{name}.json` "
        f"({s['budget_s']} s of CPU time per sampler on one thread, {len(s['seeds'])} seeds, "
        f"mean ± standard error over seeds; scores from {N_IS} importance samples"
        + _kept_note(s)
        + ").",
        "",
        "| target | method | " + " | ".join(h for _, h in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for t in s["targets"]:
        for m in s["methods"] + ["hmc"]:
            if (t, m) in table:
                cells = " | ".join(fmt(table[(t, m)], k) for k, _ in COLUMNS)
                c = table[(t, m)]
                label = m + (f" ({c['failed']} of {c['runs']} diverged)" if c["failed"] else "")
                lines.append(f"| {t} | {label} | {cells} |")
    lines.append(f"<!-- {name}:end -->")
    return "\n".join(lines)


def figure(path, target, models):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.linspace(-8, 8, 200)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    xy = torch.stack([gx.flatten(), gy.flatten()], -1)
    fig, axes = plt.subplots(1, 2 + len(models), figsize=(3.2 * (2 + len(models)), 3.2))
    with torch.no_grad():
        axes[0].contourf(gx, gy, -target.log_prob(xy).reshape(200, 200).clamp(max=40), 30)
    axes[0].set_title("−ln π̃ (target)")
    nhf = models["nhf"]
    with torch.no_grad():
        q = nhf.affine.inverse(xy)[0]
        v = nhf.flows[-1].hamiltonian.potential(q).reshape(200, 200)
    axes[1].contourf(gx, gy, v, 30)
    axes[1].set_title("NHF: learned V of the last flow")
    for ax, (name, model) in zip(axes[2:], models.items()):
        x, log_w = draw_weighted(model, name, 2000)
        x = x.detach()
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        ax.set_xlim(-8, 8)
        ax.set_ylim(-8, 8)
        ax.set_title(f"{name}: samples")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 s per sampler, 2 targets")
    p.add_argument("--budget", type=float, default=10.0, help="CPU seconds per sampler")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument(
        "--targets",
        default="funnel10,banana,grid16,gauss20,two_moons,circular8,logistic",
        help="comma-separated",
    )
    p.add_argument("--methods", default="nhf,realnvp_kl,nsf_kl", help="on every target")
    p.add_argument(
        "--ablation",
        default="nhf_kick,nhf_noanneal,nhf_alpha,realnvp_alpha,realnvp_anneal",
        help="methods run only on --ablation-targets",
    )
    p.add_argument("--ablation-targets", default="grid16,funnel10")
    p.add_argument(
        "--from-partial",
        type=Path,
        default=None,
        help="summarise (and publish) the rows of an interrupted run's partial JSON",
    )
    p.add_argument(
        "--keep-rows",
        type=Path,
        default=None,
        help="a results JSON whose rows of methods not run here are kept in this file and table "
        "(with its command and commit under settings.kept_rows); its hmc rows are kept only if "
        "nhf is not rerun",
    )
    p.add_argument(
        "--name",
        default="sampling",
        help="results name: benchmarks/results/NAME.json and the NAME block of the page",
    )
    _common.add_output_args(p)
    args = p.parse_args(argv)
    _common.check_output_args(p, args)
    torch.set_num_threads(1)
    if args.quick:
        args.budget, args.seeds, args.targets = 2.0, 1, "banana,grid16"
        args.ablation_targets = "grid16"
    names = args.targets.split(",")
    targets = make_targets(names)
    methods = args.methods.split(",")
    ablation = [m for m in args.ablation.split(",") if m]
    ab_targets = set(args.ablation_targets.split(","))
    seeds = list(range(args.seeds))
    rows, refs, fig_models = [], {}, {}
    partial = (
        ROOT
        / "runs"
        / "benchmarks"
        / (f"{args.name}_partial_quick.json" if args.quick else f"{args.name}_partial.json")
    )
    if args.from_partial is not None:
        saved = json.loads(args.from_partial.read_text())
        rows, refs_info = saved["rows"], saved["reference"]
        targets = {}  # the figure needs trained models: not redrawn from a partial run
    for name, target in targets.items():
        refs[name] = reference_moments(target, args.quick)
        for seed in seeds:
            nhf_grads = None
            for method in methods + (ablation if name in ab_targets else []):
                row, model = run_one(target, method, seed, args.budget, refs[name])
                rows.append(row)
                if method == "nhf" and "failed" not in row:
                    nhf_grads = row["target_grads"]
                if name == "grid16" and seed == 0 and method in ("nhf", "realnvp_kl") and model:
                    fig_models[method] = model
                print(
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
                    flush=True,
                )
            if nhf_grads:
                row = run_hmc(target, seed, nhf_grads, refs[name])
                rows.append(row)
                print(row, flush=True)
            _common.write_json(
                partial, {"rows": rows, "reference": {n: r[2] for n, r in refs.items()}}
            )
    if args.from_partial is None:
        refs_info = {n: r[2] for n, r in refs.items()}
    out = {
        "command": " ".join(
            ["python benchmarks/sampling.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        **_common.machine_info(),
        "commit": _git_commit(),
        "settings": {
            "budget_s": args.budget,
            "seeds": seeds,
            "targets": names,
            "methods": methods + ablation,
            "ablation_targets": sorted(ab_targets),
            "importance_samples": N_IS,
            "momenta_per_sample": {"nhf": sampling.DEFAULT_MOMENTA},
            "batch": {"nhf": sampling.DEFAULT_BATCH, "normflows": BASELINE_BATCH},
            "lr": {"nhf": sampling.DEFAULT_LR, "normflows": BASELINE_LR},
            "lr_end": {"nhf": sampling.DEFAULT_LR_END, "normflows": BASELINE_LR_END},
            "anneal": {m: v["anneal"] for m, v in NHF_VARIANTS.items() if m in methods + ablation},
        },
        "log_Z": {n: t.log_Z for n, t in make_targets(names).items()},
        "reference": refs_info,
        "rows": rows,
    }
    if args.keep_rows is not None:
        keep_rows(out, json.loads(args.keep_rows.read_text()), args.keep_rows)
    table = summarise(out["rows"])
    block = markdown(out, table, args.name)
    md = args.markdown or (ROOT / "docs" / "benchmarks" / "sampling.md" if args.publish else None)
    path, md_path = _common.publish(
        args.name, out, block, args.out_dir, args.quick, md, to_docs=args.publish
    )
    if args.name == "sampling" and fig_models and "nhf" in fig_models:
        img = ROOT / "docs" / "img" / "sampling_grid16.png"
        if not args.publish:
            img = path.parent / "sampling_grid16.png"
        figure(img, targets["grid16"], fig_models)
    print(block)
    print(f"wrote {path} and {md_path}")


if __name__ == "__main__":
    main()
