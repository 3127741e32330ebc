"""Long-horizon rollouts of the pendulum example, by training option and seed (issue 35, goal 2).

Runs ``examples/pendulum_hgn.py`` once per option and seed (one torch thread; a finished run in
the same ``--out`` is only evaluated again) and tabulates what its ``summary.json`` records:
the test MSE over the frames the encoder sees, against the mean image's; the bob tracked in
that span; and, against the truth simulated that far (:mod:`hamflow_hgn.horizon`), the frames
``T+1 … 2T`` (2x the span) and ``T+1 … 4T`` (4x) of one forward rollout.

Options (:data:`OPTIONS`):

- ``paper_span``: the example as it is (3000 steps), trained on 16-frame sequences, the encoder
  seeing all;
- ``long31``: 31-frame sequences, the encoder seeing the first 16 and the loss covering all 31
  (``ModelConfig.encoder_frames``), 1000 steps (the matched prior from step 500), so that it
  costs less than ``paper_span``'s 3000 steps of 16 frames (a 31-frame step decodes twice the
  frames);
- ``consistency31``: ``long31`` with ``--latent-consistency 0.01``: the rollout's state ``t``
  frames in is asked to be the encoder's state of the window starting at ``t``
  (``ModelConfig.latent_consistency``);
- ``long31_resumed``: ``long31``, then resumed to 2000 steps;
- ``confined``, ``confined_weak``: ``paper_span`` with the confining Hamiltonian
  ``H + c/2 (|q|^2 + |p|^2)`` (``ModelConfig.confinement``), c = 1.8 (the well alone turns at
  about the pendulum's angular frequency) and 0.5;
- ``state2``, ``confined_state2``: ``paper_span`` and ``confined`` with q and p of 2 channels
  (32 numbers each) instead of 16 (256 each);
- ``confined_1dof``: ``confined`` with q and p one number each (``--state-channels 1
  --latent-size 1``): a conserved, confining H in one degree of freedom has closed orbits;
  ``weak_1dof`` the same with c = 0.5, so that the learned energies, not the well, set how the
  period changes with the amplitude;
- ``confined_1dof_long31``: ``confined_1dof`` trained as ``long31`` (31 frames, the encoder
  seeing 16), 1500 steps (the matched prior from step 750), the cost of ``confined_1dof``;
- ``confined_1dof_hlr``: ``confined_1dof`` with the Hamiltonian's learning rate at the other
  networks' 1e-3 (``--hamiltonian-lr``; the example's is 3e-4);
- ``confined_1dof_wide``: ``confined_1dof`` with K and V 32 filters wide instead of 16
  (``--hamiltonian-width 32``);
- ``confined_1dof_determ``: ``confined_1dof`` with Table 1's deterministic variant (z is the
  posterior mean: no sampling, no KL; ``--variant deterministic``);
- ``confined_1dof_klwarm``: ``confined_1dof`` with the KL's weight rising from 0 to full over
  the first 1000 steps (``--kl-warmup-steps 1000``, ``ModelConfig.kl_warmup_steps``), so that
  the encoder is not pulled to the prior while the decoder still draws the mean image;
- ``confined_1dof_klwarm_resumed``: ``confined_1dof_klwarm``, then resumed to 6000 steps,
  twice the example's budget (how far more training takes a seed);
- ``mid_1dof_klwarm``: ``confined_1dof_klwarm`` with a weaker well, c = 1.0 (its own period
  2π, longer than the pendulum's), so that the learned energies set how the period grows with
  the amplitude.

    python benchmarks/hgn_rollouts.py --options paper_span long31 --seeds 0 [--publish]
    python benchmarks/hgn_rollouts.py --options paper_span --seeds 0 --more confined_1dof:1

With ``--publish`` the rows run join the published ones (:func:`merge`): a row run again
replaces its old self, the other rows stay unless their option's flags have changed since, and
the caption names one command that makes them all (:func:`whole_command`).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine_info, publish  # noqa: E402

NAME = "hgn_rollouts"
OPTIONS: dict[str, list[str]] = {
    "paper_span": ["--steps", "3000"],
    "long31": [
        "--frames", "31", "--encoder-frames", "16", "--steps", "1000",
        "--prior-warmup-steps", "500",
    ],
    "long31_resumed": [
        "--frames", "31", "--encoder-frames", "16", "--steps", "1000", "--steps", "2000",
        "--prior-warmup-steps", "500",
    ],
    "consistency31": [
        "--frames", "31", "--encoder-frames", "16", "--steps", "1000",
        "--prior-warmup-steps", "500", "--latent-consistency", "0.01",
    ],
    "confined": ["--steps", "3000", "--confinement", "1.8"],
    "confined_weak": ["--steps", "3000", "--confinement", "0.5"],
    "state2": ["--steps", "3000", "--state-channels", "2"],
    "confined_state2": ["--steps", "3000", "--confinement", "1.8", "--state-channels", "2"],
    "confined_1dof": [
        "--steps", "3000", "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
    ],
    "weak_1dof": [
        "--steps", "3000", "--confinement", "0.5", "--state-channels", "1", "--latent-size", "1",
    ],
    "confined_1dof_long31": [
        "--frames", "31", "--encoder-frames", "16", "--steps", "1500",
        "--prior-warmup-steps", "750", "--confinement", "1.8", "--state-channels", "1",
        "--latent-size", "1",
    ],
    "confined_1dof_hlr": [
        "--steps", "3000", "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
        "--hamiltonian-lr", "1e-3",
    ],
    "confined_1dof_wide": [
        "--steps", "3000", "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
        "--hamiltonian-width", "32",
    ],
    "confined_1dof_determ": [
        "--steps", "3000", "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
        "--variant", "deterministic",
    ],
    "confined_1dof_klwarm": [
        "--steps", "3000", "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
        "--kl-warmup-steps", "1000",
    ],
    "confined_1dof_klwarm_resumed": [
        "--steps", "3000", "--steps", "6000", "--confinement", "1.8", "--state-channels", "1",
        "--latent-size", "1", "--kl-warmup-steps", "1000",
    ],
    "mid_1dof_klwarm": [
        "--steps", "3000", "--confinement", "1.0", "--state-channels", "1", "--latent-size", "1",
        "--kl-warmup-steps", "1000",
    ],
}  # fmt: skip
"""The example's flags for each option; ``paper_span`` is the example's default. An option that
names ``--steps`` twice runs in stages: the example trains to the first count, then resumes to
the second (its learning rates decay over the last 30 % of each stage)."""
QUICK: dict[str, list[str]] = {
    "paper_span": ["--quick", "--prior-warmup-steps", "20", "--steps", "30"],
    "long31": ["--quick", "--prior-warmup-steps", "20", "--frames", "12", "--encoder-frames", "8"],
    "long31_resumed": [
        "--quick", "--prior-warmup-steps", "20", "--frames", "12", "--encoder-frames", "8",
        "--steps", "20", "--steps", "30",
    ],
    "consistency31": [
        "--quick", "--prior-warmup-steps", "20", "--frames", "12", "--encoder-frames", "8",
        "--latent-consistency", "0.01",
    ],
    "confined": ["--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8"],
    "confined_weak": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "0.5",
    ],
    "state2": ["--quick", "--prior-warmup-steps", "20", "--steps", "30", "--state-channels", "2"],
    "confined_state2": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8",
        "--state-channels", "2",
    ],
    "confined_1dof": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8",
        "--state-channels", "1", "--latent-size", "1",
    ],
    "weak_1dof": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "0.5",
        "--state-channels", "1", "--latent-size", "1",
    ],
    "confined_1dof_long31": [
        "--quick", "--prior-warmup-steps", "20", "--frames", "12", "--encoder-frames", "8",
        "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
    ],
    "confined_1dof_hlr": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8",
        "--state-channels", "1", "--latent-size", "1", "--hamiltonian-lr", "1e-3",
    ],
    "confined_1dof_wide": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8",
        "--state-channels", "1", "--latent-size", "1", "--hamiltonian-width", "32",
    ],
    "confined_1dof_determ": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8",
        "--state-channels", "1", "--latent-size", "1", "--variant", "deterministic",
    ],
    "confined_1dof_klwarm": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.8",
        "--state-channels", "1", "--latent-size", "1", "--kl-warmup-steps", "10",
    ],
    "confined_1dof_klwarm_resumed": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "20", "--steps", "30",
        "--confinement", "1.8", "--state-channels", "1", "--latent-size", "1",
        "--kl-warmup-steps", "10",
    ],
    "mid_1dof_klwarm": [
        "--quick", "--prior-warmup-steps", "20", "--steps", "30", "--confinement", "1.0",
        "--state-channels", "1", "--latent-size", "1", "--kl-warmup-steps", "10",
    ],
}  # fmt: skip
"""The same options at the example's ``--quick`` scale (smoke runs, written under runs/)."""


def _example():
    spec = importlib.util.spec_from_file_location(
        "pendulum_hgn", ROOT / "examples" / "pendulum_hgn.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head


def stages(flags: list[str]) -> list[list[str]]:
    """One list of flags per training stage: one per ``--steps`` count (see :data:`OPTIONS`)."""
    counts = [flags[i + 1] for i, f in enumerate(flags) if f == "--steps"]
    rest = [
        f for i, f in enumerate(flags) if f != "--steps" and (i == 0 or flags[i - 1] != "--steps")
    ]
    return [[*rest, "--steps", c] for c in counts]


def trained_steps(out: Path) -> int:
    """The step of the example's checkpoint in ``out`` (0 without one)."""
    from hamflow_hgn.checkpoint import load_checkpoint

    path = out / "run" / "checkpoint.pt"
    return int(load_checkpoint(path)["step"]) if path.is_file() else 0


def cached(out: Path, flags: list[str]) -> dict | None:
    """The example's summary in ``out`` if it was written by this code for these flags' steps
    (``tracking_horizon`` in it), else None: the example then resumes or evaluates again."""
    path = out / "summary.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    steps = int(flags[flags.index("--steps") + 1])
    if "tracking_horizon" not in record or record["train_steps"] != steps:
        return None
    return record


def slope(learned: torch.Tensor, truth: torch.Tensor) -> float:
    """Least-squares slope of ``learned`` against ``truth`` (periods over the test sequences):
    1 when the learned period grows with the amplitude as the pendulum's does, 0 when it does
    not change (a quadratic well's).

    >>> slope(torch.tensor([3.0, 3.1, 3.2]), torch.tensor([2.8, 3.3, 3.8]))
    0.2
    """
    dt = truth - truth.mean()
    return round(float((dt * (learned - learned.mean())).sum() / dt.square().sum()), 12)


ESCAPE_BELOW, ESCAPE_WINDOW = 0.8, 5
"""A run has left the mean image once its training MSE, averaged over this many logged steps,
is below this fraction of the mean image's (:func:`escape_step`)."""


def escape_step(steps: list[int], mses: list[float], reference: float) -> int | None:
    """The first logged step at which the training MSE, averaged over the
    :data:`ESCAPE_WINDOW` logged steps ending there, is below :data:`ESCAPE_BELOW` times
    ``reference`` (the mean image's MSE): when the model starts to draw the bob rather than the
    mean image. None if it never does.

    >>> escape_step([10, 20, 30, 40, 50, 60], [1.0, 1.0, 1.0, 0.6, 0.6, 0.6], 1.0)
    60
    >>> escape_step([10, 20, 30, 40, 50], [1.0] * 5, 1.0) is None
    True
    """
    for i in range(ESCAPE_WINDOW - 1, len(mses)):
        if statistics.mean(mses[i - ESCAPE_WINDOW + 1 : i + 1]) < ESCAPE_BELOW * reference:
            return int(steps[i])
    return None


def escape(out: Path, record: dict) -> int | None:
    """:func:`escape_step` of the example's run in ``out`` (its ``run/metrics.csv``)."""
    with open(out / "run" / "metrics.csv") as f:
        logged = list(csv.DictReader(f))
    steps, mses = [int(r["step"]) for r in logged], [float(r["mse"]) for r in logged]
    return escape_step(steps, mses, record["mean_image_mse"])


PERIOD_STEPS = 160
"""Latent steps (20 time units, about six pendulum periods) over which the period is measured."""


@torch.no_grad()
def periods(out: Path) -> dict:
    """The learned period against the true one on the test sequences of the example in ``out``:
    the forward latent rollout's over :data:`PERIOD_STEPS` steps and the simulator's from the
    same clean first state (:mod:`hamflow_hgn.diagnostics`); their ratio's median, its mean
    distance from 1, the spread (5th-95th percentile) of each, and the least-squares slope of
    the learned period against the true one over the sequences (:func:`slope`)."""
    from hamflow_hgn.data import open_dataset
    from hamflow_hgn.diagnostics import oscillation_period, true_period
    from hamflow_hgn.runs import load_run

    model = load_run(out / "run", out / "data", device="cpu").model.eval()
    test = open_dataset(out / "data", "test")
    roll = model.rollout(test.render_batch(range(len(test))), PERIOD_STEPS)
    learned = oscillation_period(torch.cat([roll.q.flatten(2), roll.p.flatten(2)], -1),
                                 model.config.dt)  # fmt: skip
    first = np.asarray(test.clean_states[:, 0], dtype=np.float64)
    truth = true_period(test.system, first, test.config.dt, PERIOD_STEPS)
    ratio = learned.double() / truth.double()

    def spread(x):
        return [float(x.quantile(0.05)), float(x.quantile(0.95))]

    return {
        "ratio_median": float(ratio.median()),
        "ratio_mean_abs_error": float((ratio - 1).abs().mean()),
        "learned_5_95": spread(learned.double()),
        "true_5_95": spread(truth.double()),
        "slope": slope(learned.double(), truth.double()),
        "steps": PERIOD_STEPS,
    }


def row(option: str, seed: int, record: dict) -> dict:
    """The table's numbers from one run's summary."""
    far = record["tracking_horizon"]
    double = far["windows"][0]
    return {
        "option": option,
        "seed": seed,
        "in_span_ratio": record["ratio"],
        "in_span_tracked": far["in_span"],  # frames 0 … T against the noise-free truth
        "x2": {k: double[k] for k in ("frames", "sequences", "error_px")},
        "x2_frames_range": double["frames_range"],
        "x4": far["beyond"],
        "x4_frames_range": [far["windows"][0]["frames_range"][0], far["steps"]],
        "train_seconds": record["train_seconds"],
        "train_steps": record["train_steps"],
        "frames": record["frames"],
        "encoder_frames": record["encoder_frames"],
    }


def merge(earlier: dict | None, rows: list[dict], options: dict[str, list[str]]) -> list[dict]:
    """The published rows: ``rows``, then each of ``earlier``'s (a results file this script
    wrote) whose option and seed were not run again and whose option's flags are still
    ``options``'s, in the order of ``options`` and then seed. A row without the command that
    made it takes ``earlier``'s.

    >>> old = {"command": "c0", "settings": {"options": {"a": ["--x"], "b": ["--y"]}},
    ...        "rows": [{"option": "a", "seed": 0}, {"option": "b", "seed": 0}]}
    >>> [(r["option"], r["seed"], r["command"]) for r in
    ...  merge(old, [{"option": "a", "seed": 1, "command": "c1"}], {"a": ["--x"], "b": ["--z"]})]
    [('a', 0, 'c0'), ('a', 1, 'c1')]
    """
    if earlier is None:
        return list(rows)
    if not isinstance(earlier.get("rows"), list) or "settings" not in earlier:
        raise ValueError(f"earlier: expected a {NAME} results file with rows and settings, got "
                         f"keys {sorted(earlier)}; delete it to publish afresh")  # fmt: skip
    flags, done = earlier["settings"].get("options", {}), {(r["option"], r["seed"]) for r in rows}
    kept = [
        {"command": earlier.get("command"), **r} for r in earlier["rows"]
        if (r["option"], r["seed"]) not in done
        and flags.get(r["option"]) == options.get(r["option"])
    ]  # fmt: skip
    order = {o: i for i, o in enumerate(options)}
    return sorted([*kept, *rows], key=lambda r: (order.get(r["option"], len(order)), r["seed"]))


def whole_command(rows: list[dict]) -> str:
    """One command that makes every row of ``rows`` (runs already in ``--out`` are only scored
    again), for the caption of a table merged from several.

    >>> whole_command([{"option": "a", "seed": 0}, {"option": "b", "seed": 0},
    ...                {"option": "b", "seed": 1}])
    'python benchmarks/hgn_rollouts.py --options a b --seeds 0 --more b:1 --publish'
    """
    first = [r["option"] for r in rows if r["seed"] == 0]
    more = [f"{r['option']}:{r['seed']}" for r in rows if r["seed"] != 0]
    words = ["python benchmarks/hgn_rollouts.py"]
    if first:
        words += ["--options", *dict.fromkeys(first), "--seeds", "0"]
    if more:
        words += ["--more", *more]
    return " ".join([*words, "--publish"])


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        f"<!-- {NAME}:begin (generated by benchmarks/hgn_rollouts.py; do not edit) -->",
        f"Command: `{command}`  ",
        "Test MSE over the 16 frames the encoder sees, over the mean image's; then the share of "
        "frames / of sequences in which the bob is drawn within its radius of the truth: in "
        "that span, in frames 16-30 (2x the span) and 16-60 (4x) of one forward rollout "
        "against the truth simulated that far; 32 test sequences each. With 31-frame sequences "
        "frames 16-30 are inside the loss (not the encoder's window). Period: the latent "
        "rollout's over 160 steps against the simulator's, 5th-95th percentile over the test "
        "sequences (the truth's: 2.9-4.2 time units), and in brackets its slope against the "
        "true period over the sequences (1: it grows with the amplitude as the pendulum's). "
        "Leaves the mean image: the first step at which the training MSE, averaged over 50 "
        "steps, is below 0.8 of the mean image's.",
        "",
        "| option | seed | sequence frames (encoder) | steps | MSE / mean image | in span | "
        "2x the span | 4x the span | period | leaves the mean image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def share(t: dict) -> str:
        return f"{100 * t['frames']:.0f} % / {100 * t['sequences']:.0f} %"

    def period(t: dict) -> str:
        low, high = t["learned_5_95"]
        if high >= 1e3:
            return "does not turn"
        return f"{low:.1f}-{high:.1f}" + (f" ({t['slope']:.2f})" if "slope" in t else "")

    def escaped(r: dict) -> str:
        if "escape_step" not in r:  # a row scored before the column
            return "-"
        return "never" if r["escape_step"] is None else str(r["escape_step"])

    for r in rows:
        lines.append(
            f"| {r['option']} | {r['seed']} | {r['frames']} ({r['encoder_frames']}) | "
            f"{r['train_steps']} | {r['in_span_ratio']:.2f} | {share(r['in_span_tracked'])} | "
            f"{share(r['x2'])} | {share(r['x4'])} | {period(r['period'])} | "
            f"{escaped(r)} |"
        )
    lines.append(f"<!-- {NAME}:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=sorted(OPTIONS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument(
        "--more", nargs="+", default=[], metavar="OPTION:SEED",
        help="further runs, option and seed, after the --options x --seeds grid",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "runs" / NAME, help="the example runs")
    p.add_argument("--quick", action="store_true", help="the example's --quick (smoke run)")
    p.add_argument("--publish", action="store_true", help="write into benchmarks/ and docs/")
    args = p.parse_args(argv)
    if args.quick and args.publish:
        p.error("--quick runs cannot be published")
    pairs = [(o, s) for o in args.options for s in args.seeds]
    for item in args.more:
        option, _, seed = item.partition(":")
        if option not in OPTIONS or not seed.isdigit():
            p.error(f"--more: expected OPTION:SEED with OPTION in {sorted(OPTIONS)}, got {item!r}")
        pairs.append((option, int(seed)))
    torch.set_num_threads(1)
    example = _example()
    rows = []
    for option, seed in pairs:
        flags = [*OPTIONS[option], "--seed", str(seed), "--no-progress"]
        if args.quick:
            flags = [*QUICK[option], "--seed", str(seed), "--no-progress"]
        out = args.out / f"{option}_s{seed}"
        record, done = None, trained_steps(out)
        for stage in stages(flags):
            steps = int(stage[stage.index("--steps") + 1])
            if steps < done:  # a later stage has already run
                continue
            record = cached(out, stage) or example.main([*stage, "--out", str(out)])
        rows.append({**row(option, seed, record), "period": periods(out),
                     "escape_step": escape(out, record)})  # fmt: skip
    command = "python benchmarks/hgn_rollouts.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    rows = [{**r, "command": command} for r in rows]
    results = ROOT / "benchmarks" / "results" / f"{NAME}.json"
    if args.publish and results.is_file():  # keep the published rows of the options not rerun
        rows = merge(json.loads(results.read_text()), rows, OPTIONS)
        command = whole_command(rows)
    summary = {}
    for option in dict.fromkeys(r["option"] for r in rows):
        mine = [r for r in rows if r["option"] == option]
        summary[option] = {
            key: statistics.mean(r[key]["frames"] for r in mine) for key in ("x2", "x4")
        }
    out = {
        "command": command, **machine_info(), "commit": commit(),
        "settings": {"options": {o: OPTIONS[o] for o in dict.fromkeys(r["option"] for r in rows)},
                     "runs": [[r["option"], r["seed"]] for r in rows],
                     "example": "examples/pendulum_hgn.py", "torch_threads": 1},
        "rows": rows, "mean_frames_tracked": summary,
    }  # fmt: skip
    block = markdown(rows, command)
    print(block)
    publish(
        NAME, out, block, quick=args.quick, to_docs=args.publish, page="benchmarks/hgn-rollouts.md"
    )
    return out


if __name__ == "__main__":
    main()
