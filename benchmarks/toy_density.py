"""NHF against normflows RealNVP and Neural Spline Flow on the 2-D toy densities.

Rows: ``nhf`` is ``NHF(2)`` at its defaults, ``nhf_paper`` is ``NHF.paper(2)`` (paper A.2), and
the normflows baselines are sized to the default NHF's parameter count. For every density in
:data:`BENCHMARK_DENSITIES`, each model is trained once with the same samples per step and the
same optimiser and learning-rate schedule (Adam, cosine-decayed over the wall-clock budget), and
evaluated at two checkpoints of that one run:

- **equal steps**: after ``--steps`` optimiser steps;
- **equal wall-clock**: after ``--seconds`` of training time.

The baselines are sized to NHF's parameter count (within 10 %). Test NLL is IWAE with ``K =
--iwae-k`` for NHF (an upper bound on its true NLL, in expectation) and exact for the flows; the
true entropy of each density is the floor. Results go to JSON, a Markdown table in
``docs/benchmarks/toy.md`` (between markers, the rest of the file is kept) and a figure of the
learned densities.

    python benchmarks/toy_density.py                      # full table (~25 min on one core)
    python benchmarks/toy_density.py --quick             # smoke test (~1 min), under runs/
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BASELINES,
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
    timed_step,
)

from hamflow import NHF, GeneralizedNormal  # noqa: E402
from hamflow.toy import TOY_DENSITIES, get_density  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("nhf", "nhf_paper", "realnvp", "nsf")

HELD_OUT: tuple[str, ...] = ("grid_gaussians", "checkerboard", "banana")
"""Densities the main table never trains on (run them with `--name toy_density_heldout`)."""

BENCHMARK_DENSITIES: tuple[str, ...] = tuple(n for n in TOY_DENSITIES if n not in HELD_OUT)
"""The densities of this benchmark."""


@dataclass(frozen=True)
class BenchConfig:
    """Everything that determines a run; saved into the JSON next to the results."""

    densities: tuple[str, ...] = BENCHMARK_DENSITIES
    models: tuple[str, ...] = MODELS
    steps: int = 3000
    seconds: float = 60.0
    batch: int = 512
    lr: float = 1e-3
    n_train: int = 100_000
    n_test: int = 5000
    iwae_k: int = 256
    entropy_samples: int = 200_000
    seed: int = 0
    threads: int = 1
    # figure
    grid: int = 80


QUICK = dict(
    steps=30,
    seconds=1.0,
    n_train=2000,
    n_test=256,
    iwae_k=8,
    grid=16,
    entropy_samples=20_000,
    densities=("eight_gaussians", "two_moons"),
)

CALIBRATION_ROWS = 2000
"""Training rows on which NHF chooses its ``log_prob`` proposal width (``calibrate_proposal``)."""

OPTIONAL_MODELS = ("nhf_fixed_dt", *NHF_OPTIONS)
"""Rows on request only (``--models``), built by :data:`NHF_BUILDERS`."""

NHF_ROWS: dict[str, tuple[str, Callable[[], NHF]]] = {
    "nhf": ("`NHF(2)` at its defaults", lambda: NHF(2)),
    "nhf_paper": ("`NHF.paper(2)`", lambda: NHF.paper(2)),
    # on request: the candidate default the ablation pointed to
    "nhf_fixed_dt": ("`NHF(2, dt=0.25, learn_dt=False)`", lambda: NHF(2, dt=0.25, learn_dt=False)),
    # on request: steeper potentials at initialisation (docs/density/index.md)
    "nhf_steep": ("`NHF(2, potential_in_scale=3)`", lambda: NHF(2, **NHF_OPTIONS["nhf_steep"])),
    # on request: six narrower flows, at the default's parameter count
    "nhf_deep": (
        "`NHF(2, num_flows=6, hidden=(104, 104))` (the parameter count of `NHF(2)` within 0.1 %)",
        lambda: NHF(2, **NHF_OPTIONS["nhf_deep"]),
    ),
    # on request: the same with the steep start
    "nhf_deep_steep": (
        "`NHF(2, num_flows=6, hidden=(104, 104), potential_in_scale=3)` (the parameter count of "
        "`NHF(2)` within 0.1 %)",
        lambda: NHF(2, **NHF_OPTIONS["nhf_deep_steep"]),
    ),
    # on request: the steep start from a soft-uniform prior, for data of bounded support
    "nhf_bounded": (
        '`NHF(2, prior="soft_uniform", potential_in_scale=3)`',
        lambda: NHF(2, **NHF_OPTIONS["nhf_bounded"]),
    ),
    # on request: the prior with learned tails (hamflow.GeneralizedNormal)
    "nhf_learned_tails": (
        '`NHF(2, prior="generalized_normal")`',
        lambda: NHF(2, **NHF_OPTIONS["nhf_learned_tails"]),
    ),
}
"""Every NHF row: its description in the tables and its builder."""

NHF_BUILDERS: dict[str, Callable[[], NHF]] = {k: build for k, (_, build) in NHF_ROWS.items()}


def describe_rows(models: tuple[str, ...] | list[str]) -> str:
    """The settings sentence's clause naming each NHF row of a run.

    Example:
        >>> describe_rows(["nhf", "realnvp", "nhf_steep"])
        '`nhf` is `NHF(2)` at its defaults, `nhf_steep` is `NHF(2, potential_in_scale=3)`'
    """
    return ", ".join(f"`{m}` is {NHF_ROWS[m][0]}" for m in models if m in NHF_ROWS)


def build_models(cfg: BenchConfig) -> dict[str, tuple[torch.nn.Module, dict]]:
    """Every model of the run, seeded, with a description; baselines param-matched to NHF(2)."""
    torch.manual_seed(cfg.seed)
    target = num_params(NHF(2))
    out = {}
    for name in cfg.models:
        torch.manual_seed(cfg.seed)
        if name in NHF_BUILDERS:
            out[name] = (NHF_BUILDERS[name](), {})
        else:
            hidden, model = match_params(BASELINES[name], target)
            out[name] = (model, {"hidden": hidden})
    return out


def log_prob(name: str, model, x: torch.Tensor, k: int) -> torch.Tensor:
    with torch.no_grad():
        if name in NHF_BUILDERS:
            return model.log_prob(x, num_samples=k)
        return model.log_prob(x)


FIGURE_K = 64
"""Importance samples per grid point in the density figure (fewer than the test score's)."""


def figure_log_prob(name: str, model, x: torch.Tensor, k: int = FIGURE_K) -> torch.Tensor:
    """``ln p`` for the figure. NHF draws one set of momenta, the same for every grid point and
    every chunk of the grid (``sampler="common"``, seeded), so its image is smooth, not speckled."""
    if name not in NHF_BUILDERS:
        return log_prob(name, model, x, k)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model.log_prob(x, num_samples=k, sampler="common")


def sample(name: str, model, n: int) -> torch.Tensor:
    with torch.no_grad():
        return model.sample(n) if name in NHF_BUILDERS else model.sample(n)[0]


def train(name: str, model, data: torch.Tensor, cfg: BenchConfig) -> dict:
    """One run; snapshots at ``cfg.steps`` steps and at ``cfg.seconds`` of training time.

    The learning rate follows :func:`cosine_lr` over ``cfg.seconds`` (then stays at its floor,
    should the step snapshot come later); NHF gets :func:`points_per_step` points per step."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    points = points_per_step(model, cfg.batch)
    snaps: dict[str, dict] = {}
    step, elapsed, skipped = 0, 0.0, 0
    model.train()
    while "steps" not in snaps or "seconds" not in snaps:
        cosine_lr(opt, cfg.lr, elapsed / cfg.seconds)
        idx = torch.randint(len(data), (points,), generator=gen)
        seconds, taken = timed_step(model, opt, data[idx])
        elapsed += seconds
        skipped += not taken
        step += 1
        for key, hit in (("steps", step >= cfg.steps), ("seconds", elapsed >= cfg.seconds)):
            if hit and key not in snaps:
                snaps[key] = {
                    "state": copy.deepcopy(model.state_dict()),
                    "steps": step,
                    "train_seconds": elapsed,
                }
    return {"snapshots": snaps, "sec_per_step": elapsed / step, "skipped_steps": skipped}


def evaluate(name: str, model, test: torch.Tensor, train: torch.Tensor, cfg: BenchConfig) -> dict:
    """Test NLL and speeds; NHF first calibrates its ``log_prob`` proposal on training rows."""
    model.eval()
    extra = {}
    if name in NHF_BUILDERS:
        t0 = time.process_time()
        model.calibrate_proposal(train[:CALIBRATION_ROWS])
        extra = {
            "proposal_scale": float(model.proposal_scale),
            "calibration_s": time.process_time() - t0,
        }
        if isinstance(model.prior, GeneralizedNormal):  # the learned shapes of q and p
            extra["prior_beta_q_p"] = model.prior.beta()[[0, -1]].tolist()
    t0 = time.process_time()
    lp = log_prob(name, model, test, cfg.iwae_k)
    t_eval = time.process_time() - t0
    n_s = min(len(test), 5000)
    t0 = time.process_time()
    sample(name, model, n_s)
    t_samp = time.process_time() - t0
    finite = torch.isfinite(lp)
    nll = -lp[finite].double()
    return {
        "test_nll": nll.mean().item(),
        "test_nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
        "nonfinite_test_points": int((~finite).sum()),
        "density_eval_per_s": len(test) / t_eval,
        "sampling_per_s": n_s / t_samp,
        **extra,
    }


def density_figure(results: dict, models: dict, cfg: BenchConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hamflow.plotting import plot_log_density

    names = list(results)
    fig, axes = plt.subplots(
        len(names),
        1 + len(cfg.models),
        squeeze=False,
        figsize=(2.6 * (1 + len(cfg.models)), 2.6 * len(names)),
    )
    for row, dname in zip(axes, names):
        d = get_density(dname)
        plot_log_density(
            row[0],
            d.log_prob,
            d.bounds,
            f"{dname}\ntrue (H={results[dname]['true_entropy']:.2f})",
            cfg.grid,
        )
        for ax, mname in zip(row[1:], cfg.models):
            model = models[dname][mname]
            r = results[dname]["models"][mname]["seconds"]
            plot_log_density(
                ax,
                lambda x, m=model, n=mname: figure_log_prob(n, m, x, min(FIGURE_K, cfg.iwae_k)),
                d.bounds,
                f"{mname}: NLL {r['test_nll']:.2f}",
                cfg.grid,
            )
    fig.suptitle(f"learned densities at equal wall-clock ({cfg.seconds:g} s)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(cfg: BenchConfig, figure: Path | None = None, log=print) -> dict:
    torch.set_num_threads(cfg.threads)
    results: dict = {}
    trained: dict = {}
    for dname in cfg.densities:
        d = get_density(dname)
        ent = d.entropy(num_samples=cfg.entropy_samples)
        train_x = d.sample(cfg.n_train, seed=cfg.seed)
        test_x = d.sample(cfg.n_test, seed=cfg.seed + 10_000)
        res = {
            "true_entropy": ent.value,
            "entropy_stderr": ent.stderr,
            "entropy_method": ent.method,
            "models": {},
        }
        trained[dname] = {}
        for mname, (model, desc) in build_models(cfg).items():
            tr = train(mname, model, train_x, cfg)
            entry = {
                "params": num_params(model),
                **desc,
                "sec_per_step": tr["sec_per_step"],
                "skipped_steps": tr["skipped_steps"],
                "nll_kind": f"IWAE K={cfg.iwae_k}" if mname in NHF_BUILDERS else "exact",
            }
            for key, snap in tr["snapshots"].items():
                model.load_state_dict(snap["state"])
                ev = evaluate(mname, model, test_x, train_x, cfg)
                entry[key] = {"steps": snap["steps"], "train_seconds": snap["train_seconds"], **ev}
                log(
                    f"{dname:16s} {mname:8s} [{key:7s}] steps {snap['steps']:6d} "
                    f"t {snap['train_seconds']:6.1f}s  NLL {ev['test_nll']:.3f} "
                    f"(H {ent.value:.3f})"
                )
            res["models"][mname] = entry
            trained[dname][mname] = model  # left at the wall-clock snapshot
        results[dname] = res
    if figure is not None:
        density_figure(results, trained, cfg, figure)
    return results


def markdown(out: dict, command: str) -> str:
    cfg = out["config"]
    info = out["machine"]
    lines = [
        "<!-- toy_density:begin (generated by benchmarks/toy_density.py; do not edit) -->",
        f"Command: `{command}`  ",
        f"Machine: {info['machine']} ({info['torch_threads']} torch thread(s), load average "
        f"{info['load_avg_1m']:.1f} at the start); "
        f"date: {info['date']}; "
        f"torch {info['torch']}, normflows {info['normflows']}.  ",
        f"Settings: {cfg['batch']} samples per step (NHF: {cfg['batch']} phase-space states, "
        "its `train_samples` momenta for each of `batch / train_samples` points), Adam lr "
        f"{cfg['lr']} cosine-decayed to {LR_FLOOR:g}× over the wall-clock budget for every "
        f"model, equal steps = {cfg['steps']}, "
        f"equal wall-clock = {cfg['seconds']:g} s of training (CPU time); "
        f"{describe_rows(cfg['models'])}; the flows are matched to `NHF(2)`'s "
        f"parameter count. Test NLL on {cfg['n_test']} held-out samples (nats; ± standard "
        f"error): NHF is IWAE with K = {cfg['iwae_k']} after `calibrate_proposal` on "
        f"{CALIBRATION_ROWS} training rows, the flows are exact.",
        "",
        "| density | true entropy | model | params | NLL @ equal steps | NLL @ equal time "
        "(steps) | ms / step | density eval / s | samples / s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dname, res in out["results"].items():
        ent = f"{res['true_entropy']:.3f}" + (" (grid)" if res["entropy_method"] == "grid" else "")
        for mname, r in res["models"].items():
            s, t = r["steps"], r["seconds"]
            lines.append(
                f"| {dname} | {ent} | {mname} | {r['params']:,} | "
                f"{s['test_nll']:.3f} ± {s['test_nll_stderr']:.3f} | "
                f"{t['test_nll']:.3f} ± {t['test_nll_stderr']:.3f} ({t['steps']}) | "
                f"{1e3 * r['sec_per_step']:.1f} | {t['density_eval_per_s']:,.0f} | "
                f"{t['sampling_per_s']:,.0f} |"
            )
    lines.append("<!-- toy_density:end -->")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--densities", nargs="+", choices=sorted(TOY_DENSITIES), default=None)
    p.add_argument("--models", nargs="+", choices=(*MODELS, *OPTIONAL_MODELS), default=None)
    for name in ("steps", "batch", "n_train", "n_test", "iwae_k", "seed", "threads", "grid"):
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"default {getattr(defaults, name)}",
        )
    for name in ("seconds", "lr"):
        p.add_argument(
            f"--{name}", type=float, default=None, help=f"default {getattr(defaults, name)}"
        )
    p.add_argument("--quick", action="store_true", help="tiny smoke-test run (~30 s)")
    add_output_args(p)
    p.add_argument(
        "--name",
        default="toy_density",
        help="name of the JSON and of the docs block (default toy_density; e.g. "
        "toy_density_heldout for --densities grid_gaussians)",
    )
    p.add_argument("--figure", type=Path, default=None, help="figure path")
    args = p.parse_args(argv)
    check_output_args(p, args)
    for name in ("steps", "batch", "n_train", "n_test", "iwae_k", "threads", "grid"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')}: expected an integer >= 1, got {v}")
    for name in ("seconds", "lr"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            p.error(f"--{name}: expected a positive number, got {v}")
    return args


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    cfg = replace(BenchConfig(), **QUICK) if args.quick else BenchConfig()
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k in BenchConfig.__dataclass_fields__ and v is not None
    }
    for k in ("densities", "models"):
        if k in overrides:
            overrides[k] = tuple(overrides[k])
    return replace(cfg, **overrides)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = config_from_args(args)
    out_dir: Path = args.out_dir or ROOT / "runs" / "benchmarks"
    fig = args.figure or (
        ROOT / "docs" / "img" / f"{args.name}.png" if args.publish else out_dir / f"{args.name}.png"
    )
    info = machine_info()
    torch.set_num_threads(cfg.threads)
    info["torch_threads"] = cfg.threads
    results = run(cfg, fig)
    command = "python benchmarks/toy_density.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out = {
        "config": asdict(cfg),
        "machine": info,
        "command": command.strip(),
        "results": results,
        "figure": str(fig),
    }
    block = markdown(out, command.strip()).replace("toy_density:", f"{args.name}:")
    path, md = publish(
        args.name, out, block, args.out_dir, args.quick, args.markdown, to_docs=args.publish
    )
    print(f"wrote {path}, {md} and {fig}")
    return out


if __name__ == "__main__":
    main()
