"""Assembling the results page: Table 1 next to the paper's, the comparison, Fig. 6-8.

:func:`collect` reads everything the page shows from the runs (their ``eval/metrics.json``,
written by ``python -m hamflow_hgn.evaluate``, training logs and data) into one JSON-able
snapshot; :func:`results_markdown` renders the page from a snapshot (:class:`Recorded`) or,
collecting first, from a :class:`~table1.plan.Plan`. The published results file holds the
snapshot with the command, machine, date and commit (:func:`results_record`), so the page can
be rendered again from it alone (``--from-results``), and a test checks that it is.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hamflow_hgn.data import open_dataset
from hamflow_hgn.io import write_json

from .paper import BASELINES, PAPER_TABLE1, ROWS, SYSTEM_TITLES, SYSTEMS
from .plan import Plan, Scale

__all__ = [
    "PAPER_PENDULUM_COMMAND",
    "Recorded",
    "collect",
    "results_record",
    "render_record",
    "kl_balance_stats",
    "table1_markdown",
    "comparison_lines",
    "energy_lines",
    "kl_balance_lines",
    "mean_image_mse",
    "mean_image_lines",
    "ratio_markdown",
    "vpt_markdown",
    "tracking_markdown",
    "hnn_check_lines",
    "run_hnn_check",
    "results_markdown",
    "make_figures",
]


FIG8_CAPTION = (
    "Fig. 8 draws, for each system, three prior samples (`z` from the run's own prior: the "
    "paper's `N(0, I)`, or, for runs trained with `--latent-prior matched` as the HGNs of the "
    "CPU scales are, the Gaussian matched to the training posteriors) and below them three samples "
    "from a Gaussian fitted to the run's training posteriors after training "
    "(`hamflow_hgn.samples.LatentGaussian`); "
    "[the HGN evaluation guide](hgn/evaluation.md#prior-samples-and-the-matched-prior) "
    "says why the paper's prior shows no "
    "system at the small scale and what the matched one changes."
)

PAPER_PENDULUM_COMMAND = (
    "python scripts/reproduce_table1.py --scale paper --systems pendulum --models hgn_leapfrog "
    "--root runs/paper_pendulum"
)
"""The paper-scale pendulum HGN (leapfrog, 32×32, 30-step unroll, 15 000 steps) alone: the GPU
run of issue 10. ``tests/scripts/test_reproduce.py`` runs the same line at ``--scale tiny``."""


def _cell(ours: tuple[float, float] | None, paper: tuple[float, float]) -> str:
    p = f"{paper[0]:g} ± {paper[1]:g}"
    if ours is None:
        return f"— ({p})"
    mean, std = ours[0] * 1e4, ours[1] * 1e4
    o = f"{mean:.2f}" if std != std else f"{mean:.2f} ± {std:.2f}"
    return f"**{o}** ({p})"


class Recorded:
    """A :class:`~table1.plan.Plan` as recorded by :func:`collect`: the same ``scale``,
    ``systems``, ``models``, ``protocol`` and :meth:`result`, read from the snapshot instead of
    the run directories, so the page renders from a results file alone."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in snapshot["scale"].items()}
        self.scale = Scale(**fields)
        self.systems = tuple(snapshot["systems"])
        self.models = tuple(snapshot["models"])
        self.protocol = snapshot["protocol"]

    def result(self, system: str, model: str, split: str) -> dict:
        """As :meth:`Plan.result <table1.plan.Plan.result>`, from the snapshot."""
        r = dict(self.snapshot["results"].get(system, {}).get(model, {}).get(split, {}))
        if "mse" in r:
            r["mse"] = tuple(r["mse"])
        return r


def collect(plan: Plan) -> dict[str, Any]:
    """Everything the results page shows, read from the runs of ``plan``, as plain JSON data:
    the scale, per system, model and split :meth:`Plan.result <table1.plan.Plan.result>`, the
    mean-image reference, GECO's multiplier per run and the HNN-on-states check."""
    hnn = plan.root / "hnn_state_check.json"
    return {
        "scale": asdict(plan.scale),
        "systems": list(plan.systems),
        "models": list(plan.models),
        "protocol": plan.protocol,
        "results": {
            system: {
                model: {split: plan.result(system, model, split) for split in ("train", "test")}
                for model in plan.models
            }
            for system in plan.systems
        },
        "mean_image_mse": mean_image_mse(plan),
        "kl_balance": kl_balance_stats(plan),
        "hnn_check": json.loads(hnn.read_text()) if hnn.exists() else None,
    }


def _view(plan: Plan | Recorded) -> Recorded:
    return plan if isinstance(plan, Recorded) else Recorded(collect(plan))


def results_record(
    plan: Plan,
    command: str,
    provenance: dict[str, Any],
    *,
    results_file: str | None = None,
    figures=(),
    notes=(),
    **extra: Any,
) -> dict[str, Any]:
    """The results file of a reproduction: ``command``, ``provenance`` (machine, date,
    commit, ...), the settings, where the file lives (``results_file``, named by the page's
    caption lines), the names of the figures, the notes and the :func:`collect` snapshot that
    :func:`render_record` renders the page from; ``extra`` keys (run records, figure
    statistics) are kept as given."""
    return {
        "command": command,
        **provenance,
        "settings": {"scale": asdict(plan.scale), "protocol": plan.protocol},
        "results_file": results_file,
        "figures": [Path(f).name for f in figures],
        "notes": list(notes),
        **extra,
        "snapshot": collect(plan),
    }


def render_record(record: dict[str, Any]) -> str:
    """The results page of a results file (:func:`results_record`), from the file alone."""
    return results_markdown(
        Recorded(record["snapshot"]),
        record["command"],
        results_file=record.get("results_file"),
        figures=[f"img/{name}" for name in record.get("figures", [])],
        notes=record.get("notes", []),
    )


def table1_markdown(plan: Plan) -> str:
    """Table 1 in the paper's layout: ours in bold, the paper's in brackets, both x 1e4."""
    head = "| Model | " + " | ".join(
        f"{SYSTEM_TITLES[s]} train | {SYSTEM_TITLES[s]} test" for s in SYSTEMS
    )
    lines = [head + " |", "|---" * (1 + 2 * len(SYSTEMS)) + "|"]
    for model, (label, _) in ROWS.items():
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
                f"- {SYSTEM_TITLES[system]}, {ROWS[model].label}: test {ours[0] * 1e4:.2f} vs the "
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
                f"- **Ordering, {SYSTEM_TITLES[system]}:** best HGN ({ROWS[h[1]].label}, "
                f"{h[0] * 1e4:.2f}) vs best PixelHNN ({ROWS[b[1]].label}, {b[0] * 1e4:.2f}): "
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
            f"{ROWS[k].label}: E = {mu:.3g} ± {var * 1e4:.3g}" for k, (mu, var) in stats.items()
        ]
        line = f"- {SYSTEM_TITLES[system]}: " + "; ".join(parts)
        if "hgn_leapfrog" in stats and "hgn_euler" in stats and stats["hgn_leapfrog"][1] > 0:
            ratio = stats["hgn_euler"][1] / stats["hgn_leapfrog"][1]
            line += f". Euler / leapfrog variance: {ratio:.1f}× (paper: about 10×)"
            rel = [
                plan.result(system, m, "test").get("energy_rel_std")
                for m in ("hgn_euler", "hgn_leapfrog")
            ]
            if None not in rel and rel[1] > 0:
                line += (
                    f"; relative std of H along a rollout (std / |mean|, free of the learned "
                    f"energy's scale): Euler {rel[0]:.3g}, leapfrog {rel[1]:.3g}, "
                    f"{rel[0] / rel[1]:.1f}×"
                )
            line += "."
        out.append(line)
    return out


def kl_balance_stats(plan: Plan) -> list[dict[str, Any]]:
    """GECO's multiplier λ over each HGN run whose λ moves (``kl_balance`` ``"geco"`` or
    ``"calibrated"``; not ``"fixed"``, nor the deterministic variant, whose λ is fixed), read
    from its ``metrics.csv``: its first and last value, its range, the share of logged steps at
    a clamp (where the KL's weight ``1/λ`` is pinned), and the final KL per sequence."""
    from hamflow import GECO

    bounds = GECO(1.0)
    rows = []
    for system in plan.systems:
        for model in plan.models:
            run = plan.run_dir(system, model)
            log, config = run / "metrics.csv", run / "config.json"
            if model in BASELINES or not (log.exists() and config.exists()):
                continue
            cfg = json.loads(config.read_text()).get("model", {})
            if cfg.get("variant") == "deterministic" or cfg.get("kl_balance") == "fixed":
                continue
            with open(log, newline="") as f:
                logged = [r for r in csv.DictReader(f) if r.get("lambda") not in (None, "")]
            if not logged:
                continue
            lam = [float(r["lambda"]) for r in logged]
            at_clamp = sum(
                v >= bounds.lambda_max * (1 - 1e-6) or v <= bounds.lambda_min * (1 + 1e-6)
                for v in lam
            )
            rows.append(
                {
                    "system": system, "model": model, "first": lam[0], "last": lam[-1],
                    "min": min(lam), "max": max(lam), "at_clamp": at_clamp / len(lam),
                    "final_kl": float(logged[-1]["kl"]),
                }
            )  # fmt: skip
    return rows


def kl_balance_lines(plan: Plan | Recorded) -> list[str]:
    """:func:`kl_balance_stats` as a table, one row per HGN run whose λ moves. Issue 10 asks λ
    to stay off its clamps."""
    from hamflow import GECO

    bounds = GECO(1.0)
    stats = plan.snapshot["kl_balance"] if isinstance(plan, Recorded) else kl_balance_stats(plan)
    rows = [
        f"| {SYSTEM_TITLES[r['system']]} | {ROWS[r['model']].label} | {r['first']:.3g} → "
        f"{r['last']:.3g} | {r['min']:.3g} – {r['max']:.3g} | {100 * r['at_clamp']:.0f} % "
        f"| {r['final_kl']:.4g} |"
        for r in stats
    ]
    if not rows:
        return ["- no HGN run with a moving multiplier has logged it."]
    return [
        f"λ's clamps are [{bounds.lambda_min:g}, {bounds.lambda_max:g}]; the KL's weight is 1/λ.",
        "",
        "| system | model | λ first → last | λ range | logged steps at a clamp | final KL |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def mean_image_mse(plan: Plan, max_sequences: int = 256) -> dict[str, float]:
    """Per system, the test MSE of always predicting the training set's mean image: the level a
    model that "learned to reconstruct a constant average image" (paper, Fig. 6 caption) reaches.

    Systems whose data has not been generated are left out.
    """
    out = {}
    for system in plan.systems:
        data = plan.data_dir(system)
        if not (data / "metadata.json").exists():
            continue
        train = open_dataset(data, "train", verify=False)
        test = open_dataset(data, "test", verify=False)
        mean = train.render_batch(range(min(max_sequences, len(train)))).mean(dim=(0, 1))
        n = len(test) if plan.scale.eval_sequences is None else plan.scale.eval_sequences
        images = test.render_batch(range(min(n, len(test), max_sequences)))
        out[system] = float((images - mean).square().mean())
    return out


def mean_image_lines(reference: dict[str, float]) -> list[str]:
    """One line per system with its mean-image MSE (see :func:`mean_image_mse`)."""
    return [
        f"- Reference, {SYSTEM_TITLES[system]}: always predicting the training mean image "
        f"scores {mse * 1e4:.2f} on test."
        for system, mse in reference.items()
    ]


def ratio_markdown(plan: Plan, reference: dict[str, float]) -> str:
    """Test MSE over the mean image's, per model and system, the paper's test MSE in brackets.

    Below 1 a model does better than drawing the average frame; the ratio does not depend on the
    scale's frame size or background, so the small scale can be read on its own.
    """
    systems = [s for s in SYSTEMS if s in plan.systems and s in reference]
    if not systems:
        return "No data was generated, so there is no mean image to compare with."
    head = "| Model | " + " | ".join(f"{SYSTEM_TITLES[s]} test / mean image" for s in systems)
    lines = [head + " |", "|---" * (1 + len(systems)) + "|"]
    for model in plan.models:
        cells = [ROWS[model].label]
        for system in systems:
            ours = plan.result(system, model, "test").get("mse")
            paper = f"({PAPER_TABLE1[model][system]['test'][0]:g})"
            ratio = "—" if ours is None else f"**{ours[0] / reference[system]:.2f}**"
            cells.append(f"{ratio} {paper}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _test_grid(plan: Plan, key: str, cell: Callable[[dict], str]) -> list[str]:
    """A model × system Markdown table of test results: ``cell(result)``, or a dash for the
    runs whose evaluation has no ``key``."""
    systems = [s for s in SYSTEMS if s in plan.systems]
    head = "| Model | " + " | ".join(SYSTEM_TITLES[s] for s in systems)
    lines = [head + " |", "|---" * (1 + len(systems)) + "|"]
    for model in plan.models:
        cells = [ROWS[model].label]
        for system in systems:
            r = plan.result(system, model, "test")
            cells.append(cell(r) if key in r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def vpt_markdown(plan: Plan) -> str:
    """Test VPT per model and system: at the loose threshold, the standard one in brackets.

    Each is the mean over test sequences of the steps before the first frame whose MSE exceeds
    the threshold times the truth's variance (:mod:`hamflow_hgn.evaluate`).
    """
    from hamflow_hgn.evaluate import VPT_LOOSE_THRESHOLD, VPT_THRESHOLD

    lines = _test_grid(plan, "vpt_loose", lambda r: f"**{r['vpt_loose']:.1f}** ({r['vpt']:.1f})")
    frames = (
        f"out of the {plan.scale.frames} frames of the `reconstruct` protocol"
        if plan.protocol == "reconstruct"
        else "out of the frames after the encoder's input"
    )
    intro = (
        "Mean over test sequences of the steps predicted before the first frame whose MSE "
        f"exceeds {VPT_LOOSE_THRESHOLD:g}× the truth's variance about its mean colour (the "
        f"default GECO tolerance), {frames}; in brackets the same at {VPT_THRESHOLD:g}× "
        "(DeepMind's threshold). Drawing the mean image or an empty background scores 0 at both."
    )
    return "\n".join([intro, "", *lines])


def tracking_markdown(plan: Plan) -> str:
    """Test sequences tracked in every frame per model and system, frames tracked in brackets.

    A frame is tracked when each body's centroid in the model's frame lies within the body's
    rendered radius of its centroid in the truth's (:mod:`hamflow_hgn.tracking`).
    """
    lines = _test_grid(
        plan,
        "tracked_sequences",
        lambda r: f"**{100 * r['tracked_sequences']:.0f} %** ({100 * r['tracked_frames']:.0f} %)",
    )
    intro = (
        "Share of test sequences in which the rollout draws every body within its rendered "
        "radius of the truth in every frame (in brackets: the share of frames), each body found "
        "by its colour (`hamflow_hgn.tracking`). An empty background scores 0 %."
    )
    return "\n".join([intro, "", *lines])


def hnn_check_lines(checks: list[dict] | None) -> list[str]:
    """The HNN-on-states sanity check (paper Sec. 4), when ``--hnn-check`` ran it (the
    snapshot's ``hnn_check``)."""
    if not checks:
        return []
    lines = [
        "## HNN on ground-truth states (the paper's sanity check, Sec. 4 and A.3)",
        "",
        "HNN and the plain-MLP vector-field baseline of Greydanus et al., trained on clean",
        "states with finite-difference targets (`hamflow_hgn.models.hnn.state_space_check`);",
        "errors on held-out states; energy drift = mean |E_true(x_t) − E_true(x_0)| /",
        "|E_true(x_0)| along RK4 rollouts from held-out initial states. Lower is better.",
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
    """Run :func:`hamflow_hgn.models.hnn.state_space_check` per system.

    The results go to ``ROOT/hnn_state_check.json``.
    """
    import torch

    from hamflow_hgn.models.hnn import StateCheckConfig, state_space_check

    torch.set_num_threads(1)
    out = [state_space_check(StateCheckConfig(system=s)) for s in systems]
    write_json(root / "hnn_state_check.json", out, sort_keys=False, indent=1)


def machine_description() -> str:
    return os.environ.get(
        "REPRODUCE_MACHINE", f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )


def results_markdown(
    plan: Plan | Recorded,
    command: str,
    *,
    results_file: str | None = None,
    figures: list[str] = (),
    notes: list[str] = (),
) -> str:
    """The whole of ``docs/reproduction.md``, from ``plan``'s runs or a :class:`Recorded`
    snapshot. ``results_file`` is the results JSON the caption lines name; the machine, date
    and commit live there, not in the page."""
    view = _view(plan)
    scale = view.scale
    reference = view.snapshot["mean_image_mse"]
    caption = f"Command: `{command}`" + (f" · results: `{results_file}`" if results_file else "")
    lines = [
        "# Results: Table 1 and Fig. 6–8 of the HGN paper",
        "",
        "Rendered by `scripts/reproduce_table1.py` from its results file; nothing in this page",
        "is typed by hand except the paper's numbers (transcribed from Table 1 into the script).",
        "",
        caption,
        "",
        f"- **Scale:** `{scale.name}` ({scale.note}): {scale.n_train} train / {scale.n_test} "
        f"test sequences of {scale.frames} frames at {scale.size}×{scale.size}; "
        f"HGN {scale.hgn_steps} steps, PixelHNN {scale.baseline_steps} steps, batch "
        f"{scale.batch_size}; evaluated on "
        + (
            "the whole split."
            if scale.eval_sequences is None
            else f"the first {scale.eval_sequences} sequences of each split."
        ),
        f"- **Protocol:** `{view.protocol}` for every number below "
        + (
            "(the encoder sees all T+1 frames and the MSE covers all of them, Eq. 4)."
            if view.protocol == "reconstruct"
            else "(the encoder sees the first k frames; the MSE covers the frames after them)."
        ),
        f"- **Systems run:** {', '.join(view.systems)}; **models run:** {', '.join(view.models)}.",
        "",
        f"## Table 1 ({scale.name} scale)",
        "",
        *_reduced_lines(view),
        "Average pixel MSE over the unroll, ×1e4, mean ± std over sequences. **Ours** in bold,",
        "the paper's (Toth et al. 2019, Table 1; 30-step unroll, 32×32, 50 000 sequences) in",
        "brackets. A dash marks a run not made at this scale. HNN is PixelHNN with MLPs (A.3).",
        "",
        table1_markdown(view),
        "",
        "### Against the mean image",
        "",
        "Test MSE divided by that of always predicting the training set's mean image (below 1",
        "beats it; lower is better), which reads the same at any scale. In brackets the",
        "paper's test MSE ×1e4, whose own mean-image level the paper does not give.",
        "",
        ratio_markdown(view, reference),
        "",
        "### Valid prediction time",
        "",
        vpt_markdown(view),
        "",
        "### Tracking",
        "",
        tracking_markdown(view),
        "",
        "## Where we differ from the paper",
        "",
        *comparison_lines(view),
        *mean_image_lines(reference),
        *notes,
        "",
        *hnn_check_lines(view.snapshot.get("hnn_check")),
        "## Energy along rollouts (Fig. 6 legend)",
        "",
        "Learned Hamiltonian along test rollouts as μ ± σ²·1e4 (the paper's legend format): the",
        "mean, and the variance over time averaged over sequences (the paper shows one rollout).",
        "",
        *(energy_lines(view) or ["- no energy statistics were recorded by the evaluation."]),
        "",
        "## Balancing the KL (GECO's multiplier during training)",
        "",
        *kl_balance_lines(view),
        "",
        "## Figures",
        "",
    ]
    for fig in figures:
        lines += [f"![{Path(fig).stem}](img/{Path(fig).name})", "", caption, ""]
        if Path(fig).name == "results_fig8_samples.png":
            lines += [FIG8_CAPTION, ""]
    if not figures:
        lines += ["No figures were produced (see the run log).", ""]
    lines += [
        "## Paper scale",
        "",
        "On a machine with one GPU, the whole of Table 1 (4 systems × 6 models, 50 000 / 10 000",
        "sequences, 15 000 steps; resumable) is one command:",
        "",
        "```bash",
        "scripts/reproduce_table1.sh --scale paper --root /path/with/space --hnn-check --publish",
        "```",
        "",
        "The pendulum's HGN (leapfrog) alone at that scale (32×32 frames, a 30-step unroll, 15 000",
        "steps), the run to time on one GPU, is:",
        "",
        "```bash",
        PAPER_PENDULUM_COMMAND,
        "```",
        "",
    ]
    return "\n".join(lines)


def _reduced_lines(view: Recorded) -> list[str]:
    """A warning paragraph for the ``reduced`` scale: what it leaves out of ``small``."""
    if view.scale.name != "reduced":
        return []
    from .plan import SCALES

    small = SCALES["small"]
    return [
        f"**Reduced scale.** {len(view.models)} of Table 1's {len(ROWS)} rows, HGN trained "
        f"{view.scale.hgn_steps} steps and PixelHNN {view.scale.baseline_steps} (the `small` "
        f"scale: every row, {small.hgn_steps} and {small.baseline_steps}), to fit under an hour "
        "of one CPU thread. `--scale small` runs the rest.",
        "",
    ]


def make_figures(plan: Plan, img_dir: Path) -> list[str]:
    """Fig. 6, 7 and 8 from the trained runs (whatever exists); paths written."""
    from hamflow_hgn import figures

    paths, _ = figures.make_all(plan.root, plan.systems, plan.models, img_dir)
    return [str(p) for p in paths]
