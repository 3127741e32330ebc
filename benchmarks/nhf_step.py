"""Time one NHF training step against a parameter-matched normflows RealNVP.

A step is ``forward_kld(x)``, ``backward()`` and ``Adam.step()`` on ``--batch`` samples: every
flow gets that many points, and NHF, whose default loss draws 4 momenta per point, a quarter as
many points (``points_per_step``), so that each step moves as many states. The models are
timed interleaved, repetition by repetition, so that background load hits them alike, and the
medians are compared. Times are the process's CPU time (``time.process_time``) with one torch
thread: on an idle core that equals wall-clock, and on a shared machine it does not count the
time other jobs hold the core.

- ``nhf``: ``NHF(2)`` at its defaults (closed-form softplus-MLP energy gradient);
- ``nhf_autograd``: the same NHF (same weights) with ``closed_form = False`` on every
  ``MLPEnergy``, i.e. autograd inside autograd (``create_graph=True``);
- ``nhf_full_batch``: the same NHF on ``--batch`` points (× 4 momenta: 4× the states);
- ``nhf_paper``: ``NHF.paper(2)`` (paper A.2, the ELBO: one momentum per point);
- ``realnvp``: normflows RealNVP (8 affine couplings), its width chosen to match ``NHF(2)``'s
  parameter count.

    python benchmarks/nhf_step.py --publish       # batch 512, into its docs/benchmarks/ page
    python benchmarks/nhf_step.py --quick         # smoke run, under runs/
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_output_args,
    check_output_args,
    machine_info,
    match_params,
    median,
    num_params,
    points_per_step,
    publish,
    realnvp,
)

from hamflow import NHF, MLPEnergy  # noqa: E402
from hamflow.toy import get_density  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StepConfig:
    batch: int = 512
    reps: int = 60
    warmup: int = 5
    threads: int = 1
    seed: int = 0


QUICK = dict(reps=3, warmup=1, batch=64)


def set_closed_form(model: torch.nn.Module, value: bool) -> int:
    """Set ``closed_form`` on every :class:`MLPEnergy` in ``model``; returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, MLPEnergy):
            m.closed_form = value
            n += 1
    return n


def make_models(cfg: StepConfig) -> dict[str, torch.nn.Module]:
    torch.manual_seed(cfg.seed)
    nhf = NHF(2)
    auto = copy.deepcopy(nhf)
    if set_closed_form(auto, False) == 0:
        raise RuntimeError("nhf_autograd: found no MLPEnergy to switch to the autograd path")
    set_closed_form(nhf, True)
    torch.manual_seed(cfg.seed)
    _, rnvp = match_params(realnvp, num_params(nhf))
    torch.manual_seed(cfg.seed)
    return {
        "nhf": nhf,
        "nhf_autograd": auto,
        "nhf_full_batch": copy.deepcopy(nhf),
        "nhf_paper": NHF.paper(2),
        "realnvp": rnvp,
    }


def time_steps(cfg: StepConfig, compile_nhf: bool = False) -> dict:
    """Median step times, interleaved; with ``compile_nhf`` also ``torch.compile(forward_kld)``
    of a copy of ``NHF(2)`` (its compile time is reported apart, not in the median)."""
    torch.set_num_threads(cfg.threads)
    models = make_models(cfg)
    x_all = get_density("eight_gaussians").sample(cfg.batch, seed=cfg.seed)
    xs = {k: x_all[: points_per_step(m, cfg.batch)] for k, m in models.items()}
    xs["nhf_full_batch"] = x_all
    x = xs["nhf"]

    # The two NHF paths compute the same loss from the same weights.
    torch.manual_seed(1)
    a = models["nhf"].forward_kld(x)
    torch.manual_seed(1)
    b = models["nhf_autograd"].forward_kld(x)
    max_loss_diff = (a - b).abs().item()

    losses = {k: m.forward_kld for k, m in models.items()}
    compile_s = compiled_loss_diff = None
    if compile_nhf:  # a copy made after the first batch set the affine map: the same model
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True  # eager's random numbers, so the losses compare
        models["nhf_compiled"] = copy.deepcopy(models["nhf"])
        xs["nhf_compiled"] = x
        losses["nhf_compiled"] = torch.compile(models["nhf_compiled"].forward_kld)
        torch.manual_seed(1)
        t0 = time.perf_counter()
        c = losses["nhf_compiled"](x)
        c.backward()
        compile_s = time.perf_counter() - t0
        compiled_loss_diff = (c - a).abs().item()  # same weights, same momenta as `a`
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}

    times: dict[str, list[float]] = {k: [] for k in models}
    for rep in range(cfg.warmup + cfg.reps):
        for name in models:
            t0 = time.process_time()
            loss = losses[name](xs[name])
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            dt = time.process_time() - t0
            if rep >= cfg.warmup:
                times[name].append(dt)
    med = {k: median(v) for k, v in times.items()}
    return {
        "params": {k: num_params(m) for k, m in models.items()},
        "points": {k: len(v) for k, v in xs.items()},
        "median_ms": {k: 1e3 * v for k, v in med.items()},
        "ratio_nhf_over_realnvp": med["nhf"] / med["realnvp"],
        "ratio_nhf_paper_over_realnvp": med["nhf_paper"] / med["realnvp"],
        "ratio_nhf_full_batch_over_realnvp": med["nhf_full_batch"] / med["realnvp"],
        "speedup_closed_form_over_autograd": med["nhf_autograd"] / med["nhf"],
        "loss_diff_closed_vs_autograd": max_loss_diff,
        "compile_seconds": compile_s,
        "loss_diff_compiled_vs_eager": compiled_loss_diff,
        "speedup_compiled_over_eager": med["nhf"] / med["nhf_compiled"] if compile_nhf else None,
        "all_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
    }


def markdown(out: dict) -> str:
    r, cfg, info = out["results"], out["config"], out["machine"]
    ms, p, pts = r["median_ms"], r["params"], r["points"]
    return "\n".join(
        [
            "<!-- nhf_step:begin (generated by benchmarks/nhf_step.py; do not edit) -->",
            f"Command: `{out['command']}`  ",
            f"Machine: {info['machine']} ({info['torch_threads']} torch thread(s), load average "
            f"{info['load_avg_1m']:.1f} at the start); date: {info['date']}; "
            f"torch {info['torch']}.  ",
            f"One step = forward_kld + backward + Adam step on {cfg['batch']} samples (the flows: "
            f"{cfg['batch']} points; `NHF(2)`, whose loss draws 4 momenta per point: "
            f"{pts['nhf']} points), median of "
            f"{cfg['reps']} interleaved repetitions after {cfg['warmup']} warm-up.",
            "",
            "| model | params | points | median ms / step |",
            "|---|---|---|---|",
            f"| `NHF(2)` (defaults, closed-form energy gradient) | {p['nhf']:,} | {pts['nhf']} | "
            f"{ms['nhf']:.2f} |",
            f"| `NHF(2)`, autograd inside autograd | {p['nhf_autograd']:,} | "
            f"{pts['nhf_autograd']} | {ms['nhf_autograd']:.2f} |",
            f"| `NHF(2)` on {cfg['batch']} points (× 4 momenta) | {p['nhf_full_batch']:,} | "
            f"{pts['nhf_full_batch']} | {ms['nhf_full_batch']:.2f} |",
            f"| `NHF.paper(2)` (paper A.2) | {p['nhf_paper']:,} | {pts['nhf_paper']} | "
            f"{ms['nhf_paper']:.2f} |",
            f"| normflows RealNVP | {p['realnvp']:,} | {pts['realnvp']} | {ms['realnvp']:.2f} |",
            "",
            f"- `NHF(2)` step / RealNVP step, same samples per step: "
            f"**{r['ratio_nhf_over_realnvp']:.2f}×** (goal ≤ 1.5×); on {cfg['batch']} points "
            f"(4× the states): {r['ratio_nhf_full_batch_over_realnvp']:.2f}×; `NHF.paper(2)`: "
            f"{r['ratio_nhf_paper_over_realnvp']:.2f}×",
            f"- closed form vs autograd: {r['speedup_closed_form_over_autograd']:.2f}× faster "
            f"(the two losses agree to {r['loss_diff_closed_vs_autograd']:.1e})",
            *(
                [
                    f"- `torch.compile(model.forward_kld)` (inductor, CPU): "
                    f"{ms['nhf_compiled']:.2f} ms, **{r['speedup_compiled_over_eager']:.2f}×** "
                    f"the eager step's speed, after {r['compile_seconds']:.0f} s of compiling"
                ]
                if r.get("speedup_compiled_over_eager")
                else []
            ),
            "<!-- nhf_step:end -->",
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = StepConfig()
    for name in StepConfig.__dataclass_fields__:
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"default {getattr(defaults, name)}",
        )
    p.add_argument("--quick", action="store_true", help="tiny smoke-test run")
    p.add_argument(
        "--compile", action="store_true", help="also time torch.compile(NHF.forward_kld)"
    )
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    cfg = replace(StepConfig(), **QUICK) if args.quick else StepConfig()
    over = {
        k: v
        for k, v in vars(args).items()
        if k in StepConfig.__dataclass_fields__ and v is not None
    }
    for k, v in over.items():
        if v < (0 if k in ("warmup", "seed") else 1):
            p.error(f"--{k.replace('_', '-')}: expected an integer >= 1, got {v}")
    cfg = replace(cfg, **over)
    info = machine_info()
    info["torch_threads"] = cfg.threads
    res = time_steps(cfg, compile_nhf=args.compile)
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    out = {
        "config": asdict(cfg),
        "machine": info,
        "results": res,
        "command": f"python benchmarks/nhf_step.py {argv_s}".strip(),
    }
    ms = res["median_ms"]
    print(f"params: {res['params']}")
    print(
        f"median ms/step: NHF {ms['nhf']:.2f} | NHF autograd {ms['nhf_autograd']:.2f} | "
        f"NHF.paper {ms['nhf_paper']:.2f} | "
        f"RealNVP {ms['realnvp']:.2f}"
    )
    print(f"NHF / RealNVP = {res['ratio_nhf_over_realnvp']:.2f}x (goal <= 1.5x)")
    print(
        f"closed form speed-up over autograd = {res['speedup_closed_form_over_autograd']:.2f}x "
        "(the fixed kinetic energy leaves one MLP gradient per flow)"
    )
    path, md = publish(
        "nhf_step",
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
