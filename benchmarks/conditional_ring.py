"""Conditional NHF against a closed-form ``p(x | c)``: the ring whose radius is the context.

``NHF(2, context_dim=1)`` is trained on draws of
:class:`hamflow.conditional_toy.RingGivenRadius` for ``--seconds`` of CPU time on one thread by
the library's loop :func:`hamflow.fit` (``train`` of ``examples/conditional.py``: its ``Config``
holds the settings), per seed. Its held-out NLL (IWAE, ``K = 64``, after
:meth:`~hamflow.NHF.calibrate_proposal`) is compared with the true density's on the same pairs;
the goal is a gap under 0.05 nats after 60 s.

    python benchmarks/conditional_ring.py --quick        # smoke run, under runs/
    python benchmarks/conditional_ring.py --publish      # docs/conditional.md block + JSON
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

from _common import add_output_args, check_output_args, machine_info, publish  # noqa: E402
from conditional import Config, evaluate, train  # noqa: E402  (examples/conditional.py)
from sbi_tasks import _commit  # noqa: E402

ROOT = HERE.parent
CHECK_K = 1024
"""A second, tighter IWAE estimate per seed: how much of the gap is the K = 64 estimate's."""


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="3 s, one seed")
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    torch.set_num_threads(1)
    seconds, seeds = (3.0, [0]) if args.quick else (args.seconds, args.seeds)
    runs = []
    for seed in seeds:
        cfg = Config(seconds=seconds, seed=seed)
        model, fitted = train(cfg)
        tight = evaluate(model, cfg, num_samples=CHECK_K)  # how much of the gap is the estimate's
        res = evaluate(model, cfg)  # the score: K = 64
        runs.append(
            {"seed": seed, **res, f"gap_k{CHECK_K}": tight["gap"], "steps": fitted.steps,
             "best_step": fitted.best_step}
        )  # fmt: skip
        print(
            f"seed {seed}: NLL {res['nll']:.4f}, truth {res['true_nll']:.4f}, gap {res['gap']:+.4f}"
            f" (K = {CHECK_K}: {tight['gap']:+.4f}; {fitted.steps} steps)"
        )
    gaps = [r["gap"] for r in runs]
    se = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else None
    command = "python benchmarks/conditional_ring.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out = {
        "benchmark": "conditional_ring",
        "command": command,
        "settings": {
            **{k: v for k, v in asdict(Config()).items() if k != "seed"},
            "seconds": seconds,
            "seeds": seeds,
            "training": "hamflow.fit",
            "eval_num_samples": 64,
            "check_num_samples": CHECK_K,
        },
        **machine_info(),
        "commit": _commit(),
        "runs": runs,
        "gap_mean": statistics.fmean(gaps),
        "gap_se": se,
        f"gap_k{CHECK_K}_mean": statistics.fmean(r[f"gap_k{CHECK_K}"] for r in runs),
    }
    results = (
        "benchmarks/results/conditional_ring.json"
        if args.publish
        else "runs/benchmarks/conditional_ring.json"
    )
    rows = "\n".join(
        f"| {r['seed']} | {r['nll']:.3f} | {r['true_nll']:.3f} | {r['gap']:+.3f} "
        f"| {r[f'gap_k{CHECK_K}']:+.3f} |"
        for r in runs
    )
    mean = f"{out['gap_mean']:+.3f}" + (f" ± {se:.3f}" if se is not None else "")
    block = (
        "<!-- conditional_ring:begin -->\n"
        f"| seed | NHF test NLL | true NLL | gap | gap, K = {CHECK_K} |\n"
        "|---:|---:|---:|---:|---:|\n"
        f"{rows}\n| mean | | | {mean} | {out[f'gap_k{CHECK_K}_mean']:+.3f} |\n\n"
        f"Ring whose radius is the context, {seconds:g} s of CPU training on one thread per seed "
        "(`hamflow.fit`); NLL by IWAE with K = 64 momenta; "
        f"made by `{command}`; results in `{results}`.\n"
        "<!-- conditional_ring:end -->"
    )
    md = args.markdown or (ROOT / "docs" / "conditional.md" if args.publish else None)
    path, md = publish(
        "conditional_ring", out, block, args.out_dir, args.quick, md, to_docs=args.publish
    )
    print(block)
    print(f"wrote {path}, {md}")
    return out


if __name__ == "__main__":
    main()
