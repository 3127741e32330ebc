"""NHF against RealNVP over several seeds: the gap at equal CPU time, and how much it moves.

One run of ``toy_density.py`` trains each model once per density; with a CPU-time budget the step
count differs from run to run, and the same command has moved NHF's NLL by up to 0.09 nats. This
script runs ``toy_density.py --models nhf realnvp`` once per seed (the seed sets the training
data, the test data, the initialisation and the batches), ``--jobs`` seeds at a time, each in its
own single-threaded process, and tables the equal-time test NLLs side by side with the gap's mean
and standard deviation over seeds.

    python benchmarks/toy_density_seeds.py                        # seeds 0 1 2, ~20 min on 2 cores
    python benchmarks/toy_density_seeds.py --quick               # smoke run, under runs/

``--densities D ... --name N`` runs a subset as a table of its own (its JSON, its block in
docs/benchmarks/ and its per-seed files are named after ``N``), as the held-out table is.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_output_args, check_output_args, machine_info, publish  # noqa: E402
from toy_density import BENCHMARK_DENSITIES, HELD_OUT, NHF_ROWS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "toy_density_seeds"
MODELS = ("nhf", "realnvp")
"""The models of a seed's run; ``--nhf ROW`` (another NHF row of ``toy_density.py``, say
``nhf_steep``) replaces the first."""


def models(args: argparse.Namespace) -> list[str]:
    """``[NHF row, "realnvp"]`` for these arguments."""
    return [getattr(args, "nhf", "nhf"), "realnvp"]


def seed_name(name: str, seed: int) -> str:
    """The stem of one seed's files: ``toy_density_seed0`` for the main table, ``NAME_seed0``
    for a table run under another ``--name``."""
    return f"toy_density_seed{seed}" if name == NAME else f"{name}_seed{seed}"


def reusable(seed: int, args: argparse.Namespace, work: Path) -> dict | None:
    """The JSON of an earlier run of ``seed`` in ``work`` with the same settings, else ``None``.

    With ``--reuse`` a seed that finished before (say, before a crash, or alone while another
    seed was rerun because a job beside it had slowed it down) is read, not trained again. The
    settings are compared; the code is not, so reuse only runs of the same checkout.
    """
    stem = seed_name(getattr(args, "name", NAME), seed)
    path = work / f"{stem}{'_quick' if args.quick else ''}.json"
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
        cfg = old["config"]
        same = (
            list(cfg["densities"]) == list(args.densities)
            and list(cfg["models"]) == models(args)
            and cfg["seed"] == seed
            and (args.quick or (cfg["seconds"], cfg["steps"], cfg["n_test"]) == (
                args.seconds, args.steps, args.n_test))
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise RuntimeError(f"--reuse: {path} is not a toy_density.py result ({err})") from err
    return old if same else None


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict:
    """``toy_density.py`` for one seed, in a subprocess; its JSON (or, with ``--reuse``, that of
    an earlier run with the same settings)."""
    if args.reuse and (old := reusable(seed, args, work)) is not None:
        print(f"seed {seed}: reusing {old['machine']['date']}'s run from {work}")
        return {**old, "reused": True}
    name = seed_name(args.name, seed)
    argv = [
        sys.executable, str(ROOT / "benchmarks" / "toy_density.py"),
        "--densities", *args.densities, "--models", *models(args), "--seed", str(seed),
        "--threads", "1", "--name", name, "--out-dir", str(work),
        "--figure", str(work / f"{name}.png"),
    ]  # fmt: skip
    if args.quick:  # toy_density.py's own smoke settings
        argv.append("--quick")
    else:
        argv += ["--seconds", str(args.seconds), "--steps", str(args.steps)]
        argv += ["--n-test", str(args.n_test)]
    log = work / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed}: toy_density.py exited {proc.returncode}; see {log}")
    suffix = "_quick" if args.quick else ""
    return json.loads((work / f"{name}{suffix}.json").read_text())


def summarise(runs: dict[int, dict], nhf: str = "nhf") -> dict:
    """Per density: each seed's equal-time NLL per model, and the NHF − RealNVP gap's spread.

    ``nhf`` names the NHF row that ran (``nhf``, ``nhf_steep``, ...); it is reported as ``nhf``.
    """
    out: dict = {}
    first = next(iter(runs.values()))["results"]
    for dname in first:
        nll = {
            m: [runs[s]["results"][dname]["models"][name]["seconds"]["test_nll"] for s in runs]
            for m, name in (("nhf", nhf), ("realnvp", "realnvp"))
        }
        gaps = [a - b for a, b in zip(nll["nhf"], nll["realnvp"])]
        # A NaN NLL is a run that diverged: no test point got a finite density (toy_density.py
        # skips non-finite training steps and leaves non-finite test points out of the mean).
        # It is no gap to average; a model that still has a density is ahead of one without.
        finite = [g for g in gaps if math.isfinite(g)]
        out[dname] = {
            "true_entropy": first[dname]["true_entropy"],
            "held_out": dname in HELD_OUT,
            "nll": nll,
            "gap": gaps,
            "gap_seeds": len(finite),
            "gap_mean": statistics.fmean(finite) if finite else float("nan"),
            "gap_std": statistics.stdev(finite) if len(finite) > 1 else float("nan"),
            "nhf_ahead": sum(g < 0 for g in finite)
            + sum(math.isnan(r) and math.isfinite(a) for a, r in zip(nll["nhf"], nll["realnvp"])),
        }
    return out


def _nll_cell(value: float) -> str:
    return "diverged" if math.isnan(value) else f"{value:.3f}"


def markdown(out: dict, name: str = NAME) -> str:
    info, cfg = out["machine"], out["config"]
    seeds = cfg["seeds"]
    row = "NHF" if cfg.get("nhf", "nhf") == "nhf" else f"`{cfg['nhf']}`"
    lines = [
        f"<!-- {name}:begin (generated by benchmarks/toy_density_seeds.py; do not edit) -->",
        f"Command: `{out['command']}`  ",
        f"Machine: {info['machine']} (1 torch thread per run, {cfg['jobs']} "
        f"run{'s' if cfg['jobs'] != 1 else ''} at a time); "
        f"date: {info['date']}; torch {info['torch']}, normflows {info['normflows']}.  ",
        f"Each seed is one `toy_density.py --models {cfg.get('nhf', 'nhf')} realnvp --seconds "
        f"{cfg['seconds']:g} "
        f"--steps {cfg['steps']} --n-test {cfg['n_test']} --seed S` run (512 samples per step, "
        "NHF's as 128 points × 4 momenta; Adam 1e-3 cosine-decayed over the budget for both "
        "models); test NLL at equal CPU "
        f"time (nats; NHF: IWAE K = {cfg['iwae_k']} after `calibrate_proposal`), then the gap "
        "NHF − RealNVP "
        "(negative: NHF ahead)."
        + (
            f" Seeds {', '.join(map(str, cfg['reused_seeds']))} were read from an earlier run "
            "with the same settings (`--reuse`), the others trained in this one."
            if cfg.get("reused_seeds")
            else ""
        )
        + (
            " `diverged`: no test point got a finite density (RealNVP's training can reach "
            "states where every step's loss is infinite, which are skipped); the seed is left "
            "out of the gap's mean and counts as the other model ahead."
            if any(
                not math.isfinite(v)
                for r in out["summary"].values()
                for v in r["nll"]["nhf"] + r["nll"]["realnvp"]
            )
            else ""
        ),
        "",
        f"| density | true entropy | {row} by seed | RealNVP by seed | gap mean ± sd | "
        f"{row} ahead |",
        "|---|---|---|---|---|---|",
    ]
    for dname, r in out["summary"].items():
        label = f"{dname} (held out)" if r["held_out"] else dname
        nhf = " / ".join(_nll_cell(v) for v in r["nll"]["nhf"])
        rnvp = " / ".join(_nll_cell(v) for v in r["nll"]["realnvp"])
        over = r.get("gap_seeds", len(seeds))
        gap = f"{r['gap_mean']:+.3f} ± {r['gap_std']:.3f}"
        if over < len(seeds):
            gap += f" ({over} seeds)"
        lines.append(
            f"| {label} | {r['true_entropy']:.3f} | {nhf} | {rnvp} | "
            f"{gap} | {r['nhf_ahead']} of {len(seeds)} |"
        )
    lines.append(f"<!-- {name}:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--densities", nargs="+", default=None, help="default: all of them")
    p.add_argument("--name", default=NAME, help=f"the table's name (default {NAME})")
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=3000)
    p.add_argument("--jobs", type=int, default=2, help="seeds run at a time (one core each)")
    p.add_argument("--quick", action="store_true", help="smoke run (toy_density.py --quick)")
    p.add_argument(
        "--nhf", choices=sorted(NHF_ROWS), default="nhf",
        help="the NHF row (toy_density.py's): nhf, NHF(2), by default",
    )  # fmt: skip
    p.add_argument(
        "--reuse", action="store_true",
        help="read the seeds already run with these settings (runs/benchmarks/"
        "toy_density_seeds/) instead of training them again; delete a seed's JSON to rerun it",
    )  # fmt: skip
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    if len(set(args.seeds)) < 2:
        p.error("--seeds: expected at least two different seeds, to measure a spread")
    if args.densities is None:
        args.densities = ["eight_gaussians"] if args.quick else [*BENCHMARK_DENSITIES, *HELD_OUT]
    if args.jobs < 1:
        p.error(f"--jobs: expected an integer >= 1, got {args.jobs}")
    info = machine_info()
    work = ROOT / "runs" / "benchmarks" / "toy_density_seeds"
    work.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda s: run_seed(s, args, work), args.seeds))
    runs = dict(zip(args.seeds, results))
    command = "python benchmarks/toy_density_seeds.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    out = {
        "command": command,
        "machine": info,
        "config": {  # as the runs used them (--quick: toy_density.py's smoke settings)
            "seeds": args.seeds,
            "densities": args.densities,
            "jobs": args.jobs,
            "nhf": args.nhf,
            "reused_seeds": [s for s, r in runs.items() if r.get("reused")],
            **{k: results[0]["config"][k] for k in ("seconds", "steps", "n_test", "iwae_k")},
        },
        "summary": summarise(runs, args.nhf),
    }
    block = markdown(out, args.name)
    print(block)
    publish(
        args.name, out, block, args.out_dir, args.quick, args.markdown,
        to_docs=args.publish,
    )  # fmt: skip
    return out


if __name__ == "__main__":
    main()
