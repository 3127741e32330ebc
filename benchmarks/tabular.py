"""Density estimation on every continuous real table bundled with scikit-learn.

Rows, each fitted on the same training rows of the same split:

- ``nhf``: :class:`hamflow.NHFDensity` at its defaults (``max_time`` = the budget);
- ``nhf_learned_tails`` (optional): the same with ``prior="generalized_normal"``;
- ``nhf_standardize`` (optional): the same with ``marginals="standardize"``, the columns only
  standardised, not mapped to normals, and ``defensive="gaussian"``, the Gaussian guard only;
- ``realnvp``, ``nsf``: normflows RealNVP (masked affine couplings) and a neural spline flow,
  trained through the same loop (:func:`hamflow.fit`: validation split, early stopping, cosine
  schedule) for the same CPU budget on one thread;
- ``gmm_bic``: scikit-learn's ``GaussianMixture`` (full covariance), components 1-20 by BIC;
- ``kde_cv``: ``KernelDensity`` (Gaussian kernel), bandwidth by 5-fold cross-validation;
- ``gaussian``: the maximum-likelihood full-covariance Gaussian.

Data (no download): ``iris`` (150 x 4, log), ``wine`` (178 x 13, log), ``diabetes`` (442 x 9:
scikit-learn's scaled features without the two-valued ``sex`` column), ``breast_cancer``
(569 x 30, ``log1p``), ``digits`` (1797 x 64, pixel counts dequantised with ``U[0, 1)`` noise).
Columns recorded at a fixed resolution (most of the first four sets') are dequantised first:
uniform noise of one resolution step (:func:`dequantise`), the same in every split.
The ten tables of :mod:`_tables` (``--datasets auto boston ...``; they need
``pip install --no-deps ISLP plotnine``) run the same way; only ``nhf`` and the classical rows
run on them by default, and they get a table of their own.
Each split (seed ``s``) shuffles the rows, keeps 20 % for the test and standardises all with the
training rows' mean and standard deviation; NLLs are nats per row in that standardised space.

    python benchmarks/tabular.py --quick                    # smoke run, writes under runs/
    python benchmarks/tabular.py --datasets wine iris       # some sets, 3 splits, 60 s per model
    python benchmarks/tabular.py --publish                  # every set; results + docs table
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import normflows as nf
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_output_args, check_output_args, machine_info, write_json  # noqa: E402
from _tables import TABLES, load_table  # noqa: E402

from hamflow import NHFDensity, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("iris", "wine", "diabetes", "breast_cancer", "digits")
EXTERNAL = tuple(TABLES)
EXTERNAL_MODELS = ("nhf", "gmm_bic", "kde_cv", "gaussian")
MODELS = ("nhf", "realnvp", "nsf", "gmm_bic", "kde_cv", "gaussian")
OPTIONAL_MODELS = ("nhf_standardize", "nhf_learned_tails", "nhf_potential_gain_1")
"""Rows on request (``--models``): ``NHFDensity(model_options={"potential_gain": 1.0})``."""
TRANSFORMS = {
    "iris": "dequantised, log of the 4 measurements",
    "wine": "dequantised, log of the 13 measurements",
    "diabetes": "dequantised scaled features, the two-valued `sex` column dropped (9 columns)",
    "breast_cancer": "dequantised, log1p of the 30 features",
    "digits": "64 pixel counts (0-16) plus U[0, 1) noise (dequantised)",
    **{name: table[-1] + ", dequantised" for name, table in TABLES.items()},
}


@dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = DATASETS
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    seconds: float = 60.0
    test_fraction: float = 0.2
    threads: int = 1


QUICK = dict(datasets=("iris",), seeds=(0,), seconds=3.0, models=("nhf", "realnvp", "gaussian"))


def load(name: str, seed: int, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Standardised ``(train, test)`` rows of a bundled set, split by ``seed`` (float64)."""
    from sklearn import datasets

    noise = np.random.default_rng(1234)  # the same dequantisation in every split
    if name == "iris":
        x = np.log(dequantise(datasets.load_iris().data, noise))
    elif name == "wine":
        x = np.log(dequantise(datasets.load_wine().data, noise))
    elif name == "diabetes":
        x = dequantise(np.delete(datasets.load_diabetes().data, 1, axis=1), noise)
    elif name == "breast_cancer":
        x = np.log1p(dequantise(datasets.load_breast_cancer().data, noise))
    elif name == "digits":
        x = datasets.load_digits().data + noise.random((1797, 64))
    elif name in EXTERNAL:
        x = dequantise(load_table(name), noise)
    else:
        raise ValueError(f"dataset: expected one of {DATASETS + EXTERNAL}, got {name!r}")
    return split(x, seed, test_fraction)


def split(x: np.ndarray, seed: int, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the rows with ``seed``, keep ``test_fraction`` of them for the test and
    standardise both parts with the training rows' mean and standard deviation.

    Example:
        >>> train, test = split(np.arange(20.0).reshape(10, 2), seed=0)
        >>> train.shape, test.shape, bool(np.allclose(train.mean(0), 0))
        ((8, 2), (2, 2), True)
    """
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = x[order[:n_test]], x[order[n_test:]]
    mean, std = train.mean(0), train.std(0)
    return (train - mean) / std, (test - mean) / std


def dequantise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spread each column recorded at a fixed resolution (values repeat: fewer distinct values
    than 90 % of the rows) uniformly over one resolution step, the smallest gap between its
    distinct values, so that no model can score the lattice's spikes. Values stay positive.

    Example:
        >>> x = np.array([[1.0], [1.1], [1.1], [1.2]])
        >>> y = dequantise(x, np.random.default_rng(0))
        >>> bool((np.abs(y - x) <= 0.05 + 1e-12).all()), len(np.unique(y))
        (True, 4)
    """
    x = x.astype(np.float64).copy()
    for j in range(x.shape[1]):
        values = np.unique(x[:, j])
        if len(values) >= 0.9 * len(x) or len(values) < 2:
            continue
        step = np.diff(values).min()
        width = min(step, 2 * values.min()) if values.min() > 0 else step
        x[:, j] += (rng.random(len(x)) - 0.5) * width
    return x


def realnvp(dim: int, hidden: int = 64, layers: int = 8) -> nf.NormalizingFlow:
    """RealNVP with alternating binary masks (any ``dim >= 2``)."""
    flows = []
    mask = torch.tensor([i % 2 for i in range(dim)], dtype=torch.float32)
    for i in range(layers):
        s = nf.nets.MLP([dim, hidden, hidden, dim], init_zeros=True)
        t = nf.nets.MLP([dim, hidden, hidden, dim], init_zeros=True)
        flows.append(nf.flows.MaskedAffineFlow(mask if i % 2 == 0 else 1 - mask, t, s))
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def nsf(dim: int, hidden: int = 64, layers: int = 4) -> nf.NormalizingFlow:
    """Autoregressive rational-quadratic spline flow with LU permutations."""
    flows = []
    for _ in range(layers):
        flows.append(nf.flows.AutoregressiveRationalQuadraticSpline(dim, 2, hidden, tail_bound=5))
        flows.append(nf.flows.LULinearPermute(dim))
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def score_model(name: str, train: np.ndarray, test: np.ndarray, cfg: Config, seed: int) -> dict:
    """Fit one row's model on ``train``; its test NLL and what the fit did."""
    t0 = time.process_time()
    if name.startswith("nhf"):
        prior = "generalized_normal" if name == "nhf_learned_tails" else "normal"
        options = {"potential_gain": 1.0} if name == "nhf_potential_gain_1" else None
        marginals = "standardize" if name == "nhf_standardize" else "gaussianize"
        defensive = "gaussian" if name == "nhf_standardize" else "mixture"
        est = NHFDensity(
            prior=prior,
            model_options=options,
            marginals=marginals,
            defensive=defensive,
            max_time=cfg.seconds,
            random_state=seed,
        ).fit(train)
        fit_seconds = round(time.process_time() - t0, 2)  # cpu_seconds adds the test scores
        rs = est.fit_results_
        entry = {"test_nll": -est.score(test), "members": est.n_members_, "steps": est.n_iter_}
        entry["fit_seconds"] = fit_seconds
        entry["best_step"] = [r.best_step for r in rs] if len(rs) > 1 else rs[0].best_step
        entry["stopped_early"] = all(r.stopped_early for r in rs)
        entry["restores"] = sum(r.restores for r in rs)
        entry["proposal_scale"] = float(est.model_.proposal_scale)
        # how far the default K is from an estimate with four times the momenta (test rows)
        k_ref = NHFDensity(**{**est.get_params(), "n_score_samples": 4 * est.n_score_samples})
        k_ref.__dict__.update({k: v for k, v in est.__dict__.items() if k.endswith("_")})
        entry["score_samples_k"] = est.n_score_samples
        entry["gap_to_4k"] = float(np.mean(k_ref.score_samples(test) - est.score_samples(test)))
        entry["defensive_weight"] = est.defensive_weight_
        entry["defensive_components"] = est.defensive_.components
    elif name in ("realnvp", "nsf"):
        torch.manual_seed(seed)
        model = (realnvp if name == "realnvp" else nsf)(train.shape[1])
        xt = torch.as_tensor(train, dtype=torch.float32)
        r = fit(model, xt, max_time=cfg.seconds, seed=seed)
        with torch.no_grad():
            lp = model.log_prob(torch.as_tensor(test, dtype=torch.float32)).double()
        nll = -lp.mean().item() if torch.isfinite(lp).all() else math.inf
        entry = {"test_nll": nll, "steps": r.steps, "best_step": r.best_step}
        entry |= {"stopped_early": r.stopped_early, "restores": r.restores}
    elif name == "gmm_bic":
        from sklearn.mixture import GaussianMixture

        fits = [
            GaussianMixture(k, random_state=seed, reg_covar=1e-6).fit(train) for k in range(1, 21)
        ]
        fits = [g for g in fits if g.n_components * train.shape[1] < len(train)] or fits[:1]
        best = min(fits, key=lambda g: g.bic(train))
        entry = {"test_nll": -best.score(test), "components": best.n_components}
    elif name == "kde_cv":
        from sklearn.model_selection import GridSearchCV
        from sklearn.neighbors import KernelDensity

        grid = {"bandwidth": np.logspace(-1.5, 0.5, 21)}
        search = GridSearchCV(KernelDensity(), grid, cv=5).fit(train)
        entry = {"test_nll": -search.best_estimator_.score(test) / len(test)}
        entry["bandwidth"] = float(search.best_params_["bandwidth"])
    elif name == "gaussian":
        mean = train.mean(0)
        cov = np.cov(train.T, bias=True) + 1e-6 * np.eye(train.shape[1])
        from scipy.stats import multivariate_normal

        entry = {"test_nll": -multivariate_normal(mean, cov).logpdf(test).mean()}
    else:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    entry["cpu_seconds"] = round(time.process_time() - t0, 2)
    return entry


def summarise(runs: list[dict]) -> dict:
    """Mean, standard error and values of the test NLL over splits."""
    vals = [r["test_nll"] for r in runs]
    if not all(math.isfinite(v) for v in vals):  # a diverged run: no spread to speak of
        return {"mean": math.inf, "se": math.nan, "values": vals}
    se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
    return {"mean": statistics.fmean(vals), "se": se, "values": vals}


def run(cfg: Config, log=print) -> dict:
    torch.set_num_threads(cfg.threads)
    out: dict = {}
    for ds in cfg.datasets:
        out[ds] = {"transform": TRANSFORMS[ds], "splits": {}, "summary": {}}
        for seed in cfg.seeds:
            train, test = load(ds, seed, cfg.test_fraction)
            split = {"n_train": len(train), "n_test": len(test), "dim": train.shape[1]}
            for name in cfg.models:
                split[name] = score_model(name, train, test, cfg, seed)
                log(f"{ds:14s} split {seed} {name:18s} test NLL {split[name]['test_nll']:9.3f}")
            out[ds]["splits"][str(seed)] = split
        for name in cfg.models:
            runs = [out[ds]["splits"][str(s)][name] for s in cfg.seeds]
            out[ds]["summary"][name] = summarise(runs)
    return out


BASELINES = ("gmm_bic", "kde_cv", "gaussian")


def verdict(gaps: list[float]) -> tuple[float, float, str]:
    """Mean and standard error of NHF's NLL minus a rival's over splits, and the word for it:
    ``ahead``/``behind`` only when the mean gap exceeds two standard errors, else ``level``."""
    mean = statistics.fmean(gaps)
    se = statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else math.inf
    word = "ahead" if mean < -2 * se else "behind" if mean > 2 * se else "level"
    return mean, se, word


def collect(folder: Path) -> dict[str, dict]:
    """Merge the per-split results files in ``folder`` into one entry per set: its splits, their
    summary, the commands that made them and the budgets they ran with."""
    merged: dict[str, dict] = {}
    for f in sorted(folder.glob("*_split*.json")):
        part = json.loads(f.read_text())
        ((ds, res),) = part["results"].items()
        entry = merged.setdefault(
            ds, {"results": {ds: {"splits": {}}}, "commands": [], "seconds": set(), "seeds": []}
        )
        entry["results"][ds]["splits"].update(res["splits"])
        entry["commands"].append(part["command"])
        for sp in res["splits"].values():
            entry["commands"] += [
                r["made_by"]["command"]
                for r in sp.values()
                if isinstance(r, dict) and "made_by" in r
            ]
        entry["seconds"].add(part["config"]["seconds"])
        entry["seeds"] += part["config"]["seeds"]
    for ds, entry in merged.items():
        splits = entry["results"][ds]["splits"]
        models = [m for m in MODELS + OPTIONAL_MODELS if all(m in sp for sp in splits.values())]
        entry["results"][ds]["summary"] = {
            m: summarise([sp[m] for sp in splits.values()]) for m in models
        }
    return merged


def base_commands(commands) -> list[str]:
    """The distinct commands, as Markdown, without the ``--datasets``/``--seeds`` choices that
    only say which process ran which set and split.

    Example:
        >>> base_commands(["python b.py --publish --datasets iris --seeds 0",
        ...                "python b.py --publish --datasets wine --seeds 1"])
        ['`python b.py --publish`, one process per set and split (`--datasets SET --seeds SEED`)']
    """
    out: dict[str, bool] = {}
    for c in commands:
        base = re.sub(r" --(datasets|seeds)(?: [^-\s]\S*)+", "", c)
        out[base] = out.get(base, False) or base != c
    note = ", one process per set and split (`--datasets SET --seeds SEED`)"
    return [f"`{b}`" + (note if split else "") for b, split in out.items()]


def markdown(files: dict[str, dict]) -> str:
    """The tables from one results file per set: mean test NLL ± standard error over splits
    (best in bold), and NHF's gap to the best of the classical estimators, split by split."""
    sets = [d for d in DATASETS if d in files]
    if not sets:
        external = {d: files[d] for d in EXTERNAL if d in files}
        return "\n".join(
            [
                "<!-- tabular:begin (generated by benchmarks/tabular.py; do not edit) -->",
                *external_markdown(external),
                "<!-- tabular:end -->",
            ]
        )
    first = {d: next(iter(files[d]["results"][d]["splits"].values())) for d in sets}
    models = [
        m
        for m in MODELS + OPTIONAL_MODELS
        if all(m in files[d]["results"][d]["summary"] for d in sets)
    ]
    lines = [
        "<!-- tabular:begin (generated by benchmarks/tabular.py; do not edit) -->",
        "| model | "
        + " | ".join(f"{d} ({first[d]['dim']}-d, {first[d]['n_train']} rows)" for d in sets)
        + " |",
        "|---|" + "---|" * len(sets),
    ]
    for name in models:
        cells = []
        for d in sets:
            summary = files[d]["results"][d]["summary"]
            s, best = summary[name], min(v["mean"] for v in summary.values())
            cell = (
                f"{s['mean']:.2f} ± {s['se']:.2f}" if math.isfinite(s["se"]) else f"{s['mean']:.2f}"
            )
            cells.append(f"**{cell}**" if s["mean"] == best else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seconds = sorted(set().union(*(files[d]["seconds"] for d in sets)))
    n_splits = sorted({len(files[d]["seeds"]) for d in sets})
    lines += [
        "",
        f"*Test NLL, nats per row in the standardised space (lower is better), mean ± standard "
        f"error over {'/'.join(map(str, n_splits))} splits; trained models "
        f"{'/'.join(f'{x:g}' for x in seconds)} s of CPU each on one thread. Command: "
        + "; ".join(base_commands(c for d in sets for c in files[d]["commands"]))
        + " · results: `benchmarks/results/tabular/<set>_split<seed>.json`.*",
        "",
    ]
    if all(nhf_gaps(files[d]["results"][d]["splits"]) for d in sets):
        lines += [
            "| set | best classical estimator, per split | NHF minus it, per split "
            "| mean ± s.e. | NHF is |",
            "|---|---|---|---|---|",
        ]
        for d in sets:
            g = nhf_gaps(files[d]["results"][d]["splits"])
            lines.append(
                f"| {d} | {', '.join(g['rivals'])} | {', '.join(f'{x:+.2f}' for x in g['gaps'])} "
                f"| {g['mean']:+.2f} ± {g['se']:.2f} | {g['verdict']} |"
            )
        lines += [
            "",
            "*NHF is `ahead` or `behind` only where the mean gap exceeds two standard errors.*",
        ]
    external = [d for d in EXTERNAL if d in files]
    if external:
        lines += ["", *external_markdown({d: files[d] for d in external})]
    lines.append("<!-- tabular:end -->")
    return "\n".join(lines)


def external_markdown(files: dict[str, dict]) -> list[str]:
    """One row per table of :mod:`_tables`: each model's mean test NLL ± standard error, and
    NHF's gap to the best classical estimator with its verdict."""
    models = [
        m for m in EXTERNAL_MODELS if all(m in f["results"][d]["summary"] for d, f in files.items())
    ]
    lines = [
        "| table | " + " | ".join(models) + " | NHF minus the best classical, per split "
        "| mean ± s.e. | NHF is |",
        "|---|" + "---|" * (len(models) + 3),
    ]
    for d, f in files.items():
        summary, splits = f["results"][d]["summary"], f["results"][d]["splits"]
        first = next(iter(splits.values()))
        best = min(summary[m]["mean"] for m in models)
        cells = []
        for m in models:
            cell = f"{summary[m]['mean']:.2f} ± {summary[m]['se']:.2f}"
            cells.append(f"**{cell}**" if summary[m]["mean"] == best else cell)
        g = nhf_gaps(splits)
        lines.append(
            f"| {d} ({first['dim']}-d, {first['n_train']} rows) | "
            + " | ".join(cells)
            + f" | {', '.join(f'{x:+.2f}' for x in g['gaps'])} | {g['mean']:+.2f} ± {g['se']:.2f} "
            f"| {g['verdict']} |"
        )
    seconds = sorted(set().union(*(f["seconds"] for f in files.values())))
    n_splits = sorted({len(f["seeds"]) for f in files.values()})
    lines += [
        "",
        f"*Test NLL, nats per row in the standardised space, mean ± standard error over "
        f"{'/'.join(map(str, n_splits))} splits; NHF {'/'.join(f'{x:g}' for x in seconds)} s "
        "of CPU on one thread. Command: "
        + "; ".join(base_commands(c for f in files.values() for c in f["commands"]))
        + " · results: `benchmarks/results/tabular/<table>_split<seed>.json`.*",
    ]
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", choices=DATASETS + EXTERNAL, default=None)
    p.add_argument("--models", nargs="+", choices=MODELS + OPTIONAL_MODELS, default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="CPU budget per trained model")
    p.add_argument("--quick", action="store_true", help="smoke run: iris, one split, 3 s")
    p.add_argument(
        "--tabulate", action="store_true", help="train nothing: rebuild the table from the files"
    )
    add_output_args(p)
    args = p.parse_args(argv)
    check_output_args(p, args)
    if args.tabulate:
        folder = ROOT / "benchmarks" / "results" if args.publish else args.out_dir
        folder = Path(folder or ROOT / "runs" / "benchmarks") / "tabular"
        if not list(folder.glob("*_split*.json")):
            p.error(f"--tabulate: no results files in {folder}")
        tabulate(folder, args.publish)
        return {}
    cfg = replace(Config(), **QUICK) if args.quick else Config()
    over = {
        k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__ and v is not None
    }
    if "seconds" in over and not over["seconds"] > 0:
        p.error(f"--seconds: expected a positive number, got {over['seconds']}")
    if "models" not in over and set(over.get("datasets", (DATASETS[0],))) <= set(EXTERNAL):
        over["models"] = EXTERNAL_MODELS
    cfg = replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})
    info = machine_info()
    info["torch_threads"] = cfg.threads
    out = {
        "command": " ".join(
            ["python benchmarks/tabular.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": info,
        "commit": info["commit"],
        "config": asdict(cfg),
        "results": run(cfg),
    }
    results_dir = Path(
        ROOT / "benchmarks" / "results"
        if args.publish
        else (args.out_dir or ROOT / "runs" / "benchmarks")
    ) / ("tabular_quick" if args.quick else "tabular")
    for ds in cfg.datasets:  # one file per set and split: they can run in parallel processes
        for seed in cfg.seeds:
            one = {
                **out,
                "config": {**out["config"], "datasets": [ds], "seeds": [seed]},
                "results": {
                    ds: {
                        **out["results"][ds],
                        "splits": {str(seed): out["results"][ds]["splits"][str(seed)]},
                    }
                },
            }
            one["results"][ds].pop("summary", None)
            path = results_dir / f"{ds}_split{seed}.json"
            keep_other_rows(path, one, ds, seed)
            print(f"wrote {write_json(path, one)}")
    tabulate(results_dir, args.publish)
    return out


def keep_other_rows(path: Path, new: dict, ds: str, seed: int) -> None:
    """A run of some rows (``--models``) updates those rows of an existing split file and keeps
    the others, each row with the command and commit that made it."""
    split = new["results"][ds]["splits"][str(seed)]
    for name in new["config"]["models"]:
        split[name]["made_by"] = {"command": new["command"], "commit": new["commit"]}
    if not path.exists():
        return
    previous = json.loads(path.read_text())
    made_by = {"command": previous["command"], "commit": previous.get("commit", "unknown")}
    for name, entry in previous["results"][ds]["splits"][str(seed)].items():
        if isinstance(entry, dict) and name not in new["config"]["models"]:
            entry.setdefault("made_by", made_by)
            split[name] = entry


def tabulate(results_dir: Path, publish: bool) -> str:
    """Merge the per-split files into ``summary.json`` (means, standard errors, NHF's verdicts)
    and the Markdown table (into the docs page when publishing); return the table."""
    merged = collect(results_dir)
    summary = {
        ds: {
            "summary": entry["results"][ds]["summary"],
            "nhf_vs_best_classical": nhf_gaps(entry["results"][ds]["splits"]),
            "commands": sorted(set(entry["commands"])),
        }
        for ds, entry in merged.items()
    }
    write_json(results_dir / "summary.json", {"machine": machine_info(), "sets": summary})
    md = markdown(merged)
    if publish:
        from _common import update_markdown

        update_markdown(ROOT / "docs" / "benchmarks" / "tabular.md", md, tag="tabular")
    else:
        (results_dir / "tabular.md").write_text(md + "\n")
    print(md)
    return md


def nhf_gaps(splits: dict) -> dict | None:
    """Per split, the best classical estimator and NHF's NLL minus its; their verdict."""
    if not all("nhf" in sp and any(b in sp for b in BASELINES) for sp in splits.values()):
        return None  # a run of some rows only: nothing to compare yet
    best, gaps = [], []
    for sp in splits.values():
        rival = min((b for b in BASELINES if b in sp), key=lambda b: sp[b]["test_nll"])
        best.append(rival)
        gaps.append(sp["nhf"]["test_nll"] - sp[rival]["test_nll"])
    mean, se, word = verdict(gaps)
    return {"rivals": best, "gaps": gaps, "mean": mean, "se": se, "verdict": word}


if __name__ == "__main__":
    main()
