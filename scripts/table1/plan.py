"""The reproduction plan: scales, the commands per system and model, and running them.

Every run goes through the public CLIs, so the numbers are comparable line by line::

    python -m hamflow_hgn.data      --system S ... --out ROOT/data/S
    python -m hamflow_hgn.train     --data ROOT/data/S --out ROOT/runs/S/MODEL --model ...
    python -m hamflow_hgn.evaluate  ROOT/runs/S/MODEL --data ROOT/data/S

Work whose output exists is skipped, so an interrupted reproduction resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .paper import BASELINES, ROWS

__all__ = ["REPO", "Scale", "SCALES", "Plan", "build_plan", "is_done", "run_plan"]

REPO = Path(__file__).resolve().parents[2]


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
    # the data set a Table 1 column is generated from, where it is not the column's system
    data_systems: dict = field(default_factory=dict)
    # HGN flags for one system only, appended after hgn_args (so they override them)
    hgn_system_args: dict = field(default_factory=dict)
    # the Table 1 rows run when --models is not given (empty: every row)
    models: tuple[str, ...] = ()

    def data_system(self, system: str) -> str:
        """The ``hamflow_hgn.data`` system that stands for Table 1's ``system`` at this scale."""
        return self.data_systems.get(system, system)

    def hgn_args_for(self, system: str) -> tuple[str, ...]:
        """The HGN training flags of ``system``: :attr:`hgn_args`, then its own."""
        return (*self.hgn_args, *self.hgn_system_args.get(system, ()))


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
    # 2 CPU cores with --jobs 2: all four systems and six models in about an hour; 16x16
    # frames, a 15-step unroll, narrow networks (width 16, the encoder 32), 3000 HGN steps with
    # the learned Hamiltonian at lr 3e-4: the pendulum example's settings of 2026-12-06 (its
    # 2048 training sequences, z of 4 channels, calibrated KL balance and matched prior).
    "small": Scale(
        name="small",
        n_train=2048,
        n_test=64,
        frames=16,
        size=16,
        hgn_steps=3000,
        baseline_steps=2000,
        batch_size=16,
        eval_sequences=64,
        hgn_args=(
            "--width",
            "16",
            "--encoder-width",
            "32",
            "--latent-channels",
            "4",
            "--lr",
            "1e-3",
            "--hamiltonian-lr",
            "3e-4",
            "--lr-decay",
            "0.3",
            "--geco-setting",
            "calibrated",
            "--latent-prior",
            "matched",
        ),  # fmt: skip
        baseline_args=("--width", "16", "--lr", "1e-3"),
        device_args=("--device", "cpu"),
        note="16x16 frames, 15-step unroll, width-16 networks with a 32-wide encoder and z of "
        "4 x 4 x 4, lr 1e-3 (HGN's Hamiltonian 3e-4) decaying linearly over HGN's last 30 % of "
        "steps, the calibrated KL balance and the matched prior (N(0, I) for 1500 steps), HGN "
        "3000 steps: the pendulum example's settings of 2026-12-06; "
        "PixelHNN 2000 steps (a tenth of HGN's cost per step, so it gets more); "
        "three-body drawn with discs of radius 0.5 instead of 0.3 (system "
        "`three_body_big_discs`): at 16x16 the paper's discs are 1 px in radius; "
        "three-body's GECO tolerance is 0.5 of the variance instead of 0.3 (kept from the "
        "GECO-balanced runs, which did not reach 0.3 there; under the calibrated balance it "
        "only sets the units of lambda; docs/hgn/training.md)",
        # One thread per process: on shared, oversubscribed cores torch's default thread pool
        # made a training step 100x slower; --jobs 2 then uses both cores.
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        data_systems={"three_body": "three_body_big_discs"},
        # At 0.3 every three-body HGN ended at 0.41-0.45x the mean image's error on its
        # training sequences, so GECO's lambda climbed to its cap for the last 23 % of the
        # steps (2026-12-05).
        hgn_system_args={"three_body": ("--geco-tolerance", "0.5")},
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
        hgn_args=("--lr", "1.5e-4", "--geco-setting", "paper"),
        baseline_args=("--lr", "1e-3"),
        device_args=("--device", "cuda"),
        note="the paper's data sizes, step counts and GECO setting (one GPU)",
    ),
}


SCALES["reduced"] = replace(
    SCALES["small"],
    name="reduced",
    hgn_steps=1000,
    baseline_steps=1000,
    hgn_args=(*SCALES["small"].hgn_args, "--prior-warmup-steps", "500"),
    models=("pixel_hnn_mlp", "hgn_euler", "hgn_leapfrog"),
    note="REDUCED SCALE, a third of the small scale's training: HGN (Euler and leapfrog) and "
    "PixelHNN (MLP) only, 1000 steps each, the matched prior after 500; otherwise the small "
    "scale's settings (16x16 frames, 15-step unroll, width-16 networks with a 32-wide encoder "
    "and z of 4 x 4 x 4, lr 1e-3 (HGN's Hamiltonian 3e-4) decaying linearly over the last 30 % "
    "of steps, the calibrated KL balance; three-body drawn with discs of radius 0.5, its GECO "
    "tolerance 0.5)",
)
"""The small scale cut to fit under an hour of one CPU thread (``--jobs 1``): the rows and
steps that Fig. 6-8 need, labelled as reduced wherever its numbers are shown."""


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

    def result(self, system: str, model: str, split: str) -> dict:
        """``{"mse": (mean, std), "vpt", "vpt_loose", "energy_mean", "energy_var",
        "energy_rel_std", "tracked_frames", "tracked_sequences"}`` (raw MSE; the others when the
        evaluation recorded them), or ``{}``.

        Read from the evaluate CLI's ``metrics.json``, the only evaluation format.
        """
        path = self.eval_path(system, model)
        if not path.exists():
            return {}
        m = json.loads(path.read_text()).get("splits", {}).get(split)
        if m is None:
            return {}
        out = {"mse": (m["mse_x1e4"]["mean"] / 1e4, m["mse_x1e4"]["std"] / 1e4)}
        for key in ("vpt", "vpt_loose"):
            if key in m:
                out[key] = m[key]["mean"]
        if "energy" in m:
            out["energy_mean"] = m["energy"]["mean"]["mean"]
            out["energy_var"] = m["energy"]["variance"]["mean"]
            if "relative_std" in m["energy"]:
                out["energy_rel_std"] = m["energy"]["relative_std"]["mean"]
        if m.get("tracking"):
            out["tracked_frames"] = m["tracking"]["frames"]
            out["tracked_sequences"] = m["tracking"]["sequences"]
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
                [py, "-m", "hamflow_hgn.data", "--system", scale.data_system(system)]
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
            extra = scale.baseline_args if is_baseline else scale.hgn_args_for(system)
            plan.steps.append(
                (
                    "train",
                    [py, "-m", "hamflow_hgn.train", "--data", str(data), "--out", str(run)]
                    + list(ROWS[model].train_args)
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
    proc = subprocess.run([python(), *argv[1:]], cwd=REPO, env=env)
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
