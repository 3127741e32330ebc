"""Reproduce Table 1 and Fig. 6–8 of the HGN paper: generate, train, evaluate, assemble.

Every run goes through the public CLIs, so the numbers are comparable line by line::

    python -m hamflow_hgn.data      --system S ... --out ROOT/data/S
    python -m hamflow_hgn.train     --data ROOT/data/S --out ROOT/runs/S/MODEL --model ...
    python -m hamflow_hgn.evaluate  ROOT/runs/S/MODEL --data ROOT/data/S --split {train,test}

then ``docs/results.md`` (Table 1, ours next to the paper's) and ``docs/img/results_*.png``
(Fig. 6, 7, 8) are written from the trained runs. Work whose output exists is skipped, so an
interrupted reproduction resumes where it stopped.

Examples::

    python scripts/reproduce_table1.py --scale small                  # 2-CPU dev machine
    python scripts/reproduce_table1.py --scale paper --root /data/hgn  # one GPU, days
    python scripts/reproduce_table1.py --scale small --systems mass_spring \\
        --models hgn_leapfrog pixel_hnn_mlp --dry-run                  # print the commands

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Table 1, Fig. 6–8, A.3.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEMS: tuple[str, ...] = ("mass_spring", "pendulum", "two_body", "three_body")
SYSTEM_TITLES = {
    "mass_spring": "Mass-spring",
    "pendulum": "Pendulum",
    "two_body": "Two-body",
    "three_body": "Three-body",
}

# Table 1 rows, in the paper's order: (key, paper label, train CLI arguments).
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pixel_hnn_mlp": ("HNN", ("--model", "pixel_hnn_mlp")),
    "pixel_hnn_conv": ("HNN (conv)", ("--model", "pixel_hnn_conv")),
    "hgn_euler": ("HGN (Euler)", ("--model", "hgn", "--variant", "euler")),
    "hgn_deterministic": ("HGN (determ)", ("--model", "hgn", "--variant", "deterministic")),
    "hgn_no_fpsi": ("HGN (no f_psi)", ("--model", "hgn", "--variant", "no_fpsi")),
    "hgn_leapfrog": ("HGN (leapfrog)", ("--model", "hgn", "--variant", "leapfrog")),
}
BASELINES = ("pixel_hnn_mlp", "pixel_hnn_conv")

# Toth et al. 2019, Table 1: average pixel MSE over a 30-step unroll, x 1e+4, mean ± std,
# per model, system and split ("HNN" is PixelHNN with MLPs, "HNN (conv)" with HGN's networks).
PAPER_TABLE1: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "pixel_hnn_mlp": {
        "mass_spring": {"train": (50.38, 1.75), "test": (104.37, 52.51)},
        "pendulum": {"train": (69.39, 0.89), "test": (64.62, 0.87)},
        "two_body": {"train": (80.52, 1.79), "test": (78.9, 1.93)},
        "three_body": {"train": (61.63, 3.31), "test": (57.54, 2.39)},
    },
    "pixel_hnn_conv": {
        "mass_spring": {"train": (18.97, 0.77), "test": (119.09, 69.17)},
        "pendulum": {"train": (13.14, 0.66), "test": (106.07, 41.94)},
        "two_body": {"train": (7.3, 0.38), "test": (120.71, 44.48)},
        "three_body": {"train": (15.22, 1.99), "test": (62.77, 37.57)},
    },
    "hgn_euler": {
        "mass_spring": {"train": (3.67, 1.09), "test": (6.2, 2.69)},
        "pendulum": {"train": (5.43, 2.53), "test": (10.93, 4.32)},
        "two_body": {"train": (6.62, 3.93), "test": (15.06, 7.01)},
        "three_body": {"train": (7.51, 3.49), "test": (9.4, 3.92)},
    },
    "hgn_deterministic": {
        "mass_spring": {"train": (0.23, 0.23), "test": (3.07, 1.06)},
        "pendulum": {"train": (0.79, 1.24), "test": (10.68, 3.19)},
        "two_body": {"train": (2.34, 2.3), "test": (14.47, 5.24)},
        "three_body": {"train": (4.1, 2.05), "test": (5.17, 1.96)},
    },
    "hgn_no_fpsi": {
        "mass_spring": {"train": (4.95, 1.71), "test": (7.04, 2.55)},
        "pendulum": {"train": (6.83, 3.29), "test": (13.98, 4.94)},
        "two_body": {"train": (6.35, 3.86), "test": (16.49, 6.6)},
        "three_body": {"train": (8.37, 3.13), "test": (10.41, 3.72)},
    },
    "hgn_leapfrog": {
        "mass_spring": {"train": (3.84, 1.07), "test": (6.23, 2.03)},
        "pendulum": {"train": (4.9, 1.86), "test": (11.72, 4.14)},
        "two_body": {"train": (6.36, 3.29), "test": (16.47, 7.15)},
        "three_body": {"train": (7.88, 3.55), "test": (9.8, 3.72)},
    },
}


@dataclass(frozen=True)
class Scale:
    """How big a reproduction is: data sizes, frames, training steps and extra CLI flags."""

    name: str
    n_train: int
    n_test: int
    frames: int  # T + 1
    size: int
    hgn_steps: int
    baseline_steps: int
    batch_size: int
    eval_sequences: int | None  # None: the whole split
    hgn_args: tuple[str, ...] = ()
    baseline_args: tuple[str, ...] = ()
    device_args: tuple[str, ...] = ()
    note: str = ""
    env: dict = field(default_factory=dict)  # environment of every command


SCALES: dict[str, Scale] = {
    # A smoke test of the whole pipeline (seconds; the numbers mean nothing).
    "tiny": Scale(
        name="tiny",
        n_train=16,
        n_test=8,
        frames=6,
        size=16,
        hgn_steps=3,
        baseline_steps=3,
        batch_size=4,
        eval_sequences=8,
        hgn_args=("--width", "8", "--lr", "1e-3", "--no-progress"),
        baseline_args=("--width", "8", "--lr", "1e-3", "--no-progress"),
        device_args=("--device", "cpu"),
        note="pipeline smoke test only",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    ),
    # 2 CPU cores with --jobs 2: all four systems and six models in about an hour (measured
    # 2026-11-24 with other jobs sharing the cores); 16x16 frames, a 15-step unroll, narrow
    # networks (width 16), 1200 HGN steps.
    "small": Scale(
        name="small",
        n_train=512,
        n_test=64,
        frames=16,
        size=16,
        hgn_steps=1200,
        baseline_steps=2000,
        batch_size=16,
        eval_sequences=64,
        hgn_args=("--width", "16", "--lr", "1e-3"),
        baseline_args=("--width", "16", "--lr", "1e-3"),
        device_args=("--device", "cpu"),
        note="16x16 frames, 15-step unroll, width-16 networks, lr 1e-3, HGN 1200 steps, "
        "PixelHNN 2000 steps (a tenth of HGN's cost per step, so it gets more)",
        # One thread per process: on shared, oversubscribed cores torch's default thread pool
        # made a training step 100x slower; --jobs 2 then uses both cores.
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    ),
    # The paper: 50 000 / 10 000 sequences of 31 frames at 32x32 (Sec. 4, A.1), HGN at
    # lr 1.5e-4 with batch 16, PixelHNN at lr 1e-3 with 64 pairs per step, ~15 000 steps (A.3).
    "paper": Scale(
        name="paper",
        n_train=50_000,
        n_test=10_000,
        frames=31,
        size=32,
        hgn_steps=15_000,
        baseline_steps=15_000,
        batch_size=16,
        eval_sequences=None,
        hgn_args=("--lr", "1.5e-4"),
        baseline_args=("--lr", "1e-3"),
        device_args=("--device", "cuda"),
        note="the paper's data sizes and step counts (one GPU)",
    ),
}


@dataclass
class Plan:
    """The commands of one reproduction, with the paths they produce."""

    scale: Scale
    root: Path
    systems: tuple[str, ...]
    models: tuple[str, ...]
    protocol: str = "reconstruct"
    steps: list[tuple[str, list[str], Path]] = field(default_factory=list)

    def data_dir(self, system: str) -> Path:
        return self.root / "data" / system

    def run_dir(self, system: str, model: str) -> Path:
        return self.root / "runs" / system / model

    def eval_path(self, system: str, model: str) -> Path:
        """What ``python -m hamflow_hgn.evaluate RUN`` writes (both splits)."""
        return self.run_dir(system, model) / "eval" / "metrics.json"

    def metrics_path(self, system: str, model: str, split: str) -> Path:
        """The built-in evaluator's file for one split (see ``--evaluator builtin``)."""
        return self.run_dir(system, model) / f"metrics_{split}.json"

    def result(self, system: str, model: str, split: str) -> dict:
        """``{"mse": (mean, std), "energy_mean", "energy_var"}`` (raw MSE), or ``{}``."""
        cli = self.eval_path(system, model)
        if cli.exists():
            m = json.loads(cli.read_text()).get("splits", {}).get(split)
            if m is None:
                return {}
            out = {"mse": (m["mse_x1e4"]["mean"] / 1e4, m["mse_x1e4"]["std"] / 1e4)}
            if "energy" in m:
                out["energy_mean"] = m["energy"]["mean"]["mean"]
                out["energy_var"] = m["energy"]["variance"]["mean"]
            return out
        path = self.metrics_path(system, model, split)
        mse = read_mse(path)
        if mse is None:
            return {}
        m = read_metrics(path)
        out = {"mse": mse}
        for key in ("energy_mean", "energy_var"):
            if key in m:
                out[key] = m[key]
        return out


def python() -> str:
    return (
        sys.executable
        if os.environ.get("REPRODUCE_PYTHON") is None
        else os.environ["REPRODUCE_PYTHON"]
    )


def build_plan(
    scale: Scale,
    root: Path,
    systems: tuple[str, ...],
    models: tuple[str, ...],
    protocol: str = "reconstruct",
) -> Plan:
    """Every command, in order: data per system, then per model train and evaluate (both splits).

    Each step is ``(kind, argv, done_marker)``; a step whose marker exists is skipped.
    """
    plan = Plan(scale, root, systems, models, protocol)
    py = "python"
    for system in systems:
        data = plan.data_dir(system)
        plan.steps.append(
            (
                "data",
                [py, "-m", "hamflow_hgn.data", "--system", system]
                + ["--n-train", str(scale.n_train), "--n-test", str(scale.n_test)]
                + ["--steps", str(scale.frames), "--size", str(scale.size), "--seed", "0"]
                + ["--out", str(data), "--no-progress"],
                data / "metadata.json",
            )
        )
        for model in models:
            run = plan.run_dir(system, model)
            is_baseline = model in BASELINES
            steps = scale.baseline_steps if is_baseline else scale.hgn_steps
            extra = scale.baseline_args if is_baseline else scale.hgn_args
            plan.steps.append(
                (
                    "train",
                    [py, "-m", "hamflow_hgn.train", "--data", str(data), "--out", str(run)]
                    + list(MODELS[model][1])
                    + ["--protocol", protocol, "--steps", str(steps)]
                    + ["--batch-size", str(scale.batch_size), "--seed", "0"]
                    + list(extra)
                    + list(scale.device_args),
                    run / "metrics.csv",
                )
            )
            argv = [py, "-m", "hamflow_hgn.evaluate", str(run), "--data", str(data)]
            if scale.eval_sequences is not None:
                argv += ["--max-sequences", str(scale.eval_sequences)]
            argv += ["--rollouts", "0", *scale.device_args]
            plan.steps.append(("evaluate", argv, plan.eval_path(system, model)))
    return plan


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


EVALUATOR = "auto"  # "auto": the evaluate CLI when importable; "builtin": always the fallback


def _launch(kind: str, argv: list[str]) -> list[str]:
    """The process to start for a planned command.

    ``python -m hamflow_hgn.train`` / ``evaluate`` run through this script's ``--exec-module``
    so that :mod:`hamflow_hgn.baselines` is imported (registering the PixelHNNs) even where
    the trainer does not import it itself. Without ``hamflow_hgn.evaluate`` the evaluation
    falls back to :func:`hamflow_hgn.figures.evaluate_split` (same rollouts, same MSE).
    """
    if kind == "data":
        return [python(), *argv[1:]]
    return [python(), __file__, "--exec-module", argv[2], *argv[3:]]


def _fallback_argv(argv: list[str], split: str) -> list[str]:
    """The built-in evaluator for one split of a planned ``hamflow_hgn.evaluate`` command."""
    run = Path(argv[3])
    out = [python(), __file__, "--fallback-evaluate", str(run), "--split", split]
    out += ["--out", str(run / f"metrics_{split}.json")]
    if "--max-sequences" in argv:
        out += ["--max-sequences", argv[argv.index("--max-sequences") + 1]]
    return out


def _trained_steps(metrics_csv: Path) -> int:
    """The last step logged by the trainer (0 when nothing was)."""
    if not metrics_csv.exists():
        return 0
    lines = metrics_csv.read_text().strip().splitlines()
    try:
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except ValueError:
        return 0


def is_done(kind: str, argv: list[str], marker: Path) -> bool:
    """Whether a step's output exists: a train step is done when its last logged step is
    ``--steps``; data and evaluation when their output file exists."""
    if kind == "train":
        return _trained_steps(marker) >= int(argv[argv.index("--steps") + 1])
    if kind == "evaluate" and EVALUATOR == "builtin":
        run = Path(argv[3])
        return all((run / f"metrics_{s}.json").exists() for s in ("train", "test"))
    return marker.exists()


def _run_one(kind: str, argv: list[str], marker: Path, env: dict, log) -> dict:
    rec = {"kind": kind, "command": shlex.join(argv), "marker": str(marker)}
    if kind == "train" and not is_done(kind, argv, marker):
        if (marker.parent / "checkpoint.pt").exists():
            argv = [*argv, "--resume"]  # an interrupted run continues where it stopped
            rec["command"] = shlex.join(argv)
    if is_done(kind, argv, marker):
        rec["status"] = "skipped (exists)"
        log(f"[skip] {rec['command']}")
        return rec
    log(f"[run ] {rec['command']}")
    start = time.time()
    if kind == "evaluate" and (EVALUATOR == "builtin" or not _has_module(argv[2])):
        procs = [
            subprocess.run(_fallback_argv(argv, split), cwd=REPO, env=env)
            for split in ("test", "train")
        ]
        proc = max(procs, key=lambda p: p.returncode)
    else:
        proc = subprocess.run(_launch(kind, argv), cwd=REPO, env=env)
    rec["seconds"] = round(time.time() - start, 1)
    if proc.returncode != 0:
        rec["status"] = f"failed (exit {proc.returncode})"
        log(f"[FAIL] exit {proc.returncode} after {rec['seconds']} s: {rec['command']}")
        return rec
    rec["status"] = "ok"
    log(f"[done] {rec['seconds']} s: {rec['command']}")
    return rec


def run_plan(plan: Plan, jobs: int = 1, log=print) -> list[dict]:
    """Run the steps whose outputs are missing; return a record per step (skipped or run).

    Data generation runs first; then each (system, model) chain (train, evaluate test, evaluate
    train) runs in order, ``jobs`` chains at a time. A failed train skips its evaluations.
    """
    from concurrent.futures import ThreadPoolExecutor

    env = dict(os.environ, PYTHONUNBUFFERED="1", **plan.scale.env)
    records = [_run_one(k, a, m, env, log) for k, a, m in plan.steps if k == "data"]
    chains: list[list[tuple[str, list[str], Path]]] = []
    for step in plan.steps:
        if step[0] == "train":
            chains.append([step])
        elif step[0] == "evaluate":
            chains[-1].append(step)

    def run_chain(chain) -> list[dict]:
        out = []
        for kind, argv, marker in chain:
            if out and out[-1]["status"].startswith("failed"):
                out.append({"kind": kind, "command": shlex.join(argv), "status": "not run"})
                continue
            out.append(_run_one(kind, argv, marker, env, log))
        return out

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for chain_records in pool.map(run_chain, chains):
            records += chain_records
    return records


def _exec_module(module: str, args: list[str]) -> int:
    """``python -m module args`` with the baselines registered in the module's own registry."""
    import importlib

    import hamflow_hgn.baselines  # noqa: F401  (registers pixel_hnn_mlp / pixel_hnn_conv)

    sys.argv = [module, *args]
    status = importlib.import_module(module).main(args)
    return int(status or 0)


def _fallback_evaluate(args: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--data")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-sequences", type=int, default=None)
    a, _ = p.parse_known_args(args)
    from hamflow_hgn.figures import evaluate_split

    metrics = evaluate_split(a.run, a.split, a.max_sequences)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(metrics, indent=1))
    tmp.replace(a.out)
    print(f"wrote {a.out}: mse {metrics['mse_mean']:.3e}")
    return 0


# -- assembling docs/results.md ---------------------------------------------------------------


def read_mse(path: Path) -> tuple[float, float] | None:
    """``(mean, std)`` of the per-sequence pixel MSE from an evaluation metrics file, or None.

    Accepts the evaluate CLI's keys (``mse_mean``/``mse_std``, or ``mse`` as a number or as a
    ``{"mean", "std"}`` dict), so fake files in tests and real ones read the same way.
    """
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data = data.get("metrics", data)
    if "mse_mean" in data:
        return float(data["mse_mean"]), float(data.get("mse_std", float("nan")))
    mse = data.get("mse")
    if isinstance(mse, dict):
        return float(mse["mean"]), float(mse.get("std", float("nan")))
    if isinstance(mse, (int, float)):
        return float(mse), float(data.get("mse_std", float("nan")))
    return None


def read_metrics(path: Path) -> dict:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data.get("metrics", data)


def _cell(ours: tuple[float, float] | None, paper: tuple[float, float]) -> str:
    p = f"{paper[0]:g} ± {paper[1]:g}"
    if ours is None:
        return f"— ({p})"
    mean, std = ours[0] * 1e4, ours[1] * 1e4
    o = f"{mean:.2f}" if std != std else f"{mean:.2f} ± {std:.2f}"
    return f"**{o}** ({p})"


def table1_markdown(plan: Plan) -> str:
    """Table 1 in the paper's layout: ours in bold, the paper's in brackets, both x 1e4."""
    head = "| Model | " + " | ".join(
        f"{SYSTEM_TITLES[s]} train | {SYSTEM_TITLES[s]} test" for s in SYSTEMS
    )
    lines = [head + " |", "|---" * (1 + 2 * len(SYSTEMS)) + "|"]
    for model, (label, _) in MODELS.items():
        cells = [label]
        for system in SYSTEMS:
            for split in ("train", "test"):
                ours = None
                if system in plan.systems and model in plan.models:
                    ours = plan.result(system, model, split).get("mse")
                cells.append(_cell(ours, PAPER_TABLE1[model][system][split]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_lines(plan: Plan) -> list[str]:
    """Where we differ from the paper: ours / paper for each HGN test number we have, and the
    ordering check (best HGN vs best PixelHNN) per system."""
    out = []
    for system in plan.systems:
        for model in plan.models:
            ours = plan.result(system, model, "test").get("mse")
            if ours is None:
                continue
            paper = PAPER_TABLE1[model][system]["test"][0]
            ratio = ours[0] * 1e4 / paper
            out.append(
                f"- {SYSTEM_TITLES[system]}, {MODELS[model][0]}: test {ours[0] * 1e4:.2f} vs the "
                f"paper's {paper:g} (×{ratio:.2f})."
            )
        hgn = [(plan.result(system, m, "test").get("mse"), m) for m in plan.models]
        base = [(v, m) for v, m in hgn if m in BASELINES]
        hgn = [(v, m) for v, m in hgn if m not in BASELINES]
        hgn = [(v[0], m) for v, m in hgn if v is not None]
        base = [(v[0], m) for v, m in base if v is not None]
        if hgn and base:
            h, b = min(hgn), min(base)
            verdict = "matches the paper" if h[0] < b[0] else "does NOT match the paper"
            out.append(
                f"- **Ordering, {SYSTEM_TITLES[system]}:** best HGN ({MODELS[h[1]][0]}, "
                f"{h[0] * 1e4:.2f}) vs best PixelHNN ({MODELS[b[1]][0]}, {b[0] * 1e4:.2f}): "
                f"ratio {b[0] / h[0]:.1f}×; the ordering {verdict}."
            )
    return out


def energy_lines(plan: Plan) -> list[str]:
    """Fig. 6's energy statistic: mean ± variance of the learned H along test rollouts."""
    out = []
    for system in plan.systems:
        stats = {}
        for model in plan.models:
            m = plan.result(system, model, "test")
            var = m.get("energy_var")
            if var is not None:
                stats[model] = (m.get("energy_mean", float("nan")), float(var))
        if not stats:
            continue
        parts = [
            f"{MODELS[k][0]}: E = {mu:.3g} ± {var * 1e4:.3g}" for k, (mu, var) in stats.items()
        ]
        line = f"- {SYSTEM_TITLES[system]}: " + "; ".join(parts)
        if "hgn_leapfrog" in stats and "hgn_euler" in stats and stats["hgn_leapfrog"][1] > 0:
            ratio = stats["hgn_euler"][1] / stats["hgn_leapfrog"][1]
            line += f". Euler / leapfrog variance: {ratio:.1f}× (paper: about 10×)."
        out.append(line)
    return out


def mean_image_lines(plan: Plan, max_sequences: int = 256) -> list[str]:
    """The MSE of always predicting the training set's mean image: the level a model that
    "learned to reconstruct a constant average image" (paper, Fig. 6 caption) reaches."""
    lines = []
    for system in plan.systems:
        data = plan.data_dir(system)
        if not (data / "metadata.json").exists():
            continue
        from hamflow_hgn.data import open_dataset

        train = open_dataset(data, "train", verify=False)
        test = open_dataset(data, "test", verify=False)
        mean = train.render_batch(range(min(max_sequences, len(train)))).mean(dim=(0, 1))
        n = len(test) if plan.scale.eval_sequences is None else plan.scale.eval_sequences
        images = test.render_batch(range(min(n, len(test), max_sequences)))
        mse = float((images - mean).square().mean())
        lines.append(
            f"- Reference, {SYSTEM_TITLES[system]}: always predicting the training mean image "
            f"scores {mse * 1e4:.2f} on test."
        )
    return lines


def hnn_check_lines(root: Path) -> list[str]:
    """The HNN-on-states sanity check (paper Sec. 4), when ``--hnn-check`` wrote it."""
    path = root / "hnn_state_check.json"
    if not path.exists():
        return []
    checks = json.loads(path.read_text())
    lines = [
        "## HNN on ground-truth states (the paper's sanity check, Sec. 4 and A.3)",
        "",
        "HNN and the plain-MLP vector-field baseline of Greydanus et al., trained on clean states",
        "with finite-difference targets (`hamflow_hgn.hnn.state_space_check`); errors on held-out",
        "states; energy drift = mean |E_true(x_t) − E_true(x_0)| / |E_true(x_0)| along RK4",
        "rollouts from held-out initial states. Lower is better.",
        "",
        "| system | train steps | rollout steps | HNN field error | MLP field error "
        "| HNN energy drift | MLP energy drift |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        cfg, h, m = c["config"], c["hnn"], c["mlp"]
        lines.append(
            f"| {cfg['system']} | {cfg['train_steps']} | {cfg['rollout_steps']} | "
            f"{h['field_rel_error']:.3f} | {m['field_rel_error']:.3f} | "
            f"{h['energy_drift']:.4f} | {m['energy_drift']:.4f} |"
        )
    return [*lines, ""]


def run_hnn_check(root: Path, systems=("mass_spring", "pendulum", "two_body")) -> None:
    """Run :func:`hamflow_hgn.hnn.state_space_check` per system into ``hnn_state_check.json``."""
    import torch

    from hamflow_hgn.hnn import StateCheckConfig, state_space_check

    torch.set_num_threads(1)
    out = [state_space_check(StateCheckConfig(system=s)) for s in systems]
    root.mkdir(parents=True, exist_ok=True)
    (root / "hnn_state_check.json").write_text(json.dumps(out, indent=1))


def machine_description() -> str:
    return os.environ.get(
        "REPRODUCE_MACHINE", f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )


def results_markdown(
    plan: Plan,
    command: str,
    *,
    date: str | None = None,
    machine: str | None = None,
    figures: list[str] = (),
    records: list[dict] = (),
    notes: list[str] = (),
) -> str:
    """The whole of ``docs/results.md``."""
    scale = plan.scale
    date = date or _dt.date.today().isoformat()
    machine = machine or machine_description()
    lines = [
        "# Results: Table 1 and Fig. 6–8 of the HGN paper",
        "",
        "Produced by `scripts/reproduce_table1.py` from the runs it trained; nothing in this page",
        "is typed by hand except the paper's numbers (transcribed from Table 1 into the script).",
        "",
        f"- **Command:** `{command}`",
        f"- **Machine:** {machine}",
        f"- **Date:** {date}",
        f"- **Scale:** `{scale.name}` ({scale.note}): {scale.n_train} train / {scale.n_test} "
        f"test sequences of {scale.frames} frames at {scale.size}×{scale.size}; "
        f"HGN {scale.hgn_steps} steps, PixelHNN {scale.baseline_steps} steps, batch "
        f"{scale.batch_size}; evaluated on "
        + (
            "the whole split."
            if scale.eval_sequences is None
            else f"the first {scale.eval_sequences} sequences of each split."
        ),
        f"- **Protocol:** `{plan.protocol}` for every number below "
        + (
            "(the encoder sees all T+1 frames and the MSE covers all of them, Eq. 4)."
            if plan.protocol == "reconstruct"
            else "(the encoder sees the first k frames; the MSE covers the frames after them)."
        ),
        f"- **Systems run:** {', '.join(plan.systems)}; **models run:** {', '.join(plan.models)}.",
        "",
        "## Table 1",
        "",
        "Average pixel MSE over the unroll, ×1e4, mean ± std over sequences. **Ours** in bold,",
        "the paper's (Toth et al. 2019, Table 1; 30-step unroll, 32×32, 50 000 sequences) in",
        "brackets. A dash marks a run not made at this scale. HNN is PixelHNN with MLPs (A.3).",
        "",
        table1_markdown(plan),
        "",
        "## Where we differ from the paper",
        "",
        *comparison_lines(plan),
        *mean_image_lines(plan),
        *notes,
        "",
        *hnn_check_lines(plan.root),
        "## Energy along rollouts (Fig. 6 legend)",
        "",
        "Learned Hamiltonian along test rollouts as μ ± σ²·1e4 (the paper's legend format): the",
        "mean, and the variance over time averaged over sequences (the paper shows one rollout).",
        "",
        *(energy_lines(plan) or ["- no energy statistics were recorded by the evaluation."]),
        "",
        "## Figures",
        "",
    ]
    for fig in figures:
        lines += [f"![{Path(fig).stem}](img/{Path(fig).name})", ""]
    if not figures:
        lines += ["No figures were produced (see the run log).", ""]
    lines += [
        "## Paper scale",
        "",
        "On a machine with one GPU, the whole of Table 1 (4 systems × 6 models, 50 000 / 10 000",
        "sequences, 15 000 steps; resumable) is one command:",
        "",
        "```bash",
        "scripts/reproduce_table1.sh --scale paper --root /path/with/space --hnn-check",
        "```",
        "",
    ]
    if records:
        lines += ["## Run log", "", "| step | status | seconds | command |", "|---|---|---|---|"]
        for r in records:
            lines.append(
                f"| {r['kind']} | {r['status']} | {r.get('seconds', '')} | `{r['command']}` |"
            )
        lines.append("")
    return "\n".join(lines)


def make_figures(plan: Plan, img_dir: Path) -> list[str]:
    """Fig. 6, 7 and 8 from the trained runs (whatever exists); paths written."""
    from hamflow_hgn import figures

    paths, _ = figures.make_all(plan.root, plan.systems, plan.models, img_dir)
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--root", type=Path, default=None, help="data and runs (default runs/)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--protocol", choices=("reconstruct", "predict"), default="reconstruct")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results.md")
    parser.add_argument("--img-dir", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--date", default=None, help="date written into results.md")
    parser.add_argument("--machine", default=None, help="machine written into results.md")
    parser.add_argument("--assemble-only", action="store_true", help="skip training")
    parser.add_argument("--note", action="append", default=[], help="a line for results.md")
    parser.add_argument(
        "--hnn-check", action="store_true", help="also run the HNN-on-states sanity check"
    )
    parser.add_argument("--jobs", type=int, default=1, help="(system, model) runs in parallel")
    parser.add_argument(
        "--evaluator",
        choices=("auto", "builtin"),
        default="auto",
        help="auto: python -m hamflow_hgn.evaluate when it exists; builtin: "
        "hamflow_hgn.figures.evaluate_split (same rollouts and MSE for every model)",
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--exec-module"]:
        return _exec_module(argv[1], argv[2:])
    if argv[:1] == ["--fallback-evaluate"]:
        return _fallback_evaluate(argv[1:])
    args = parser.parse_args(argv)

    global EVALUATOR
    EVALUATOR = args.evaluator
    scale = SCALES[args.scale]
    root = args.root or REPO / "runs" / f"table1_{scale.name}"
    models = tuple(m for m in MODELS if m in args.models)  # the paper's row order
    systems = tuple(dict.fromkeys(args.systems))  # run in the order given
    plan = build_plan(scale, root, systems, models, args.protocol)
    if args.dry_run:
        for kind, cmd, marker in plan.steps:
            state = "done" if is_done(kind, cmd, marker) else "todo"
            print(f"# {kind} ({state})")
            print(shlex.join(cmd))
        return 0
    records = [] if args.assemble_only else run_plan(plan, args.jobs)
    if args.hnn_check and not (root / "hnn_state_check.json").exists():
        run_hnn_check(root)
    figures = [] if args.no_figures else make_figures(plan, args.img_dir)
    command = shlex.join(["python", "scripts/reproduce_table1.py", *argv])
    text = results_markdown(
        plan,
        command,
        date=args.date,
        machine=args.machine,
        figures=figures,
        records=records,
        notes=[f"- {n}" for n in args.note],
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(args.results)
    (root / "plan.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "plan.json").write_text(
        json.dumps({"scale": asdict(scale), "records": records}, indent=1)
    )
    print(f"wrote {args.results}")
    failed = [r for r in records if r["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
