"""Where NHF's importance weights lose their evenness: the momentum density or the sampler.

A sampler's weights live on the extended space ``(x, p)``; with ``K`` momenta per draw
(``importance_sample(n_momenta=K)``) they approach the marginal weights ``π̃(x) / q(x)`` as ``K``
grows. If the ESS keeps rising with ``K``, the momentum density ``r(p | x)`` is what makes the
weights uneven; if it levels off below a normflows RealNVP's, the sampler's own marginal
``q(x)`` is. This fits NHF (``fit_sampler``'s defaults), NHF with a coupling ``r(p | x)``
(``nhf_rflow``: ``configure(momentum_layers=4)``) and RealNVP (reverse KL) for the same CPU
time, as ``benchmarks/sampling.py`` does, and scores each fit's ESS fraction from 4,000
importance samples at several ``K``, over several independent importance-sampling draws (the
spread of the ESS of one fitted sampler from one 4,000-draw estimate to the next).

    python benchmarks/sampling_momenta.py --quick       # smoke run, writes under runs/
    python benchmarks/sampling_momenta.py --publish     # benchmarks/results/sampling_momenta.json

Results: docs/benchmarks/sampling.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import sampling as bench  # noqa: E402  (benchmarks/sampling.py)

from hamflow import sampling  # noqa: E402

METHODS = ("nhf", "nhf_rflow", "realnvp_kl")


def ess_draws(model, method: str, momenta: list[int], is_seeds: int) -> dict[str, list[float]]:
    """``{K: [ESS of each importance-sampling draw]}`` (``"-"`` for a normflows model)."""
    out: dict[str, list[float]] = {}
    for s in range(is_seeds):
        for k in momenta if method in bench.NHF_VARIANTS else [None]:
            torch.manual_seed(20_000 + s)  # the same x draws at every K
            if k is None:
                _, log_w = bench.draw_weighted(model, method, bench.N_IS)
            else:
                _, log_w = model.importance_sample(bench.N_IS, n_momenta=k)
            log_w = torch.nan_to_num(log_w.double(), nan=-torch.inf)
            out.setdefault("-" if k is None else str(k), []).append(
                float(sampling.ess_from_log_weights(log_w))
            )
    return out


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return mean, se


def markdown(out: dict, name: str = "sampling_momenta") -> str:
    s = out["settings"]
    momenta = s["momenta"]
    caption = (
        f"<!-- {name}:begin -->\nMade by `{out['command']}`; results file "
        f"`benchmarks/results/{name}.json` ({s['budget_s']} s of CPU time per sampler on one "
        f"thread, {len(s['seeds'])} seeds; each cell is the mean ± standard error over seeds of "
        f"a fit's mean ESS fraction over {s['is_seeds']} independent sets of "
        f"{s['importance_samples']} importance samples; the last column is the range of the "
        "single sets' ESS at the largest K).\n\n"
    )
    head = caption + "| target | method | " + " | ".join(f"ESS, K = {k}" for k in momenta)
    head += " | spread over draws |\n|---|---|" + "---|" * (len(momenta) + 1) + "\n"
    lines = []
    for target in out["settings"]["targets"]:
        for method in out["settings"]["methods"]:
            rows = [r for r in out["rows"] if r["target"] == target and r["method"] == method]
            if not rows:
                continue
            cells, spread = [], []
            for k in momenta if method in bench.NHF_VARIANTS else ["-"] * len(momenta):
                key = str(k)
                if method not in bench.NHF_VARIANTS and cells:
                    cells.append("—")
                    continue
                per_fit = [statistics.fmean(r["ess"][key]) for r in rows]
                mean, se = _mean_se(per_fit)
                cells.append(f"{mean:.3f} ± {se:.3f}")
            last = str(momenta[-1]) if method in bench.NHF_VARIANTS else "-"
            spread = [min(r["ess"][last]) for r in rows] + [max(r["ess"][last]) for r in rows]
            lines.append(
                f"| {target} | {method} | "
                + " | ".join(cells)
                + f" | {min(spread):.3f} to {max(spread):.3f} |"
            )
    return head + "\n".join(lines) + f"\n<!-- {name}:end -->"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 s per sampler, 1 seed")
    p.add_argument("--budget", type=float, default=60.0, help="CPU seconds per sampler")
    p.add_argument("--seeds", type=int, default=2, help="training seeds")
    p.add_argument("--is-seeds", type=int, default=5, help="importance-sampling draws per fit")
    p.add_argument("--momenta", default="1,16,128", help="K values, comma-separated")
    p.add_argument("--targets", default="banana,funnel10", help="comma-separated")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    p.add_argument("--name", default="sampling_momenta", help="results name")
    _common.add_output_args(p)
    args = p.parse_args(argv)
    _common.check_output_args(p, args)
    torch.set_num_threads(1)
    if args.quick:
        args.budget, args.seeds, args.is_seeds, args.targets = 2.0, 1, 2, "banana"
    momenta = [int(k) for k in args.momenta.split(",")]
    names, methods = args.targets.split(","), args.methods.split(",")
    targets = bench.make_targets(names)
    rows = []
    for target in targets.values():
        ref = bench.reference_moments(target, args.quick)
        for seed in range(args.seeds):
            for method in methods:
                row, model = bench.run_one(target, method, seed, args.budget, ref)
                if model is not None:
                    row["ess"] = ess_draws(model, method, momenta, args.is_seeds)
                rows.append(row)
                print({k: row.get(k) for k in ("target", "method", "seed", "ess")}, flush=True)
    out = {
        "command": " ".join(
            ["python benchmarks/sampling_momenta.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        **_common.machine_info(),
        "commit": bench._git_commit(),
        "settings": {
            "budget_s": args.budget,
            "seeds": list(range(args.seeds)),
            "is_seeds": args.is_seeds,
            "importance_samples": bench.N_IS,
            "momenta": momenta,
            "targets": names,
            "methods": methods,
        },
        "rows": rows,
    }
    block = markdown(out, args.name)
    path, md_path = _common.publish(
        args.name, out, block, args.out_dir, args.quick, args.markdown, to_docs=args.publish
    )
    print(block)
    print(f"wrote {path} and {md_path}")


if __name__ == "__main__":
    main()
