"""Why the pendulum example's rollout leaves the truth past its training span (issue 35, goal 1).

Loads a run of ``examples/pendulum_hgn.py`` (its ``--out`` folder: ``data/`` and ``run/``) and
measures on every test sequence (:mod:`hamflow_hgn.diagnostics`):

- the learned period (the latent rollout's, over ``--period-steps`` steps) against the true one
  (the simulator's, from the same clean first state);
- the **encoder orbit**: the states the encoder infers from the true sequence shifted by
  ``t = 0 … 4T`` frames, i.e. the true orbit in the model's own coordinates; the period along
  it, and how well the decoder draws the bob from those states past the span;
- how far the latent rollout, and the encoder orbit, lie from the states the encoder gives the
  training sequences (nearest-neighbour distance, over the median of the test sequences'
  first states, so 1 means "as close as a fresh sequence");
- the rollout's tracking with its own ``dt`` and with ``dt/4`` (four times the steps): what the
  integrator's step costs; and that of a rollout that re-encodes its own frames every span
  (:func:`~hamflow_hgn.diagnostics.reanchored_rollout`).

Writes ``diagnosis.json`` (command, machine, date, commit, settings, results) and
``diagnosis.png`` under ``--out``; ``--publish`` writes them to
``benchmarks/results/hgn_rollout_diagnosis.json`` and ``docs/img/hgn_rollout_diagnosis.png``.

    python examples/pendulum_hgn.py --out runs/example_s0
    python scripts/hgn_rollout_diagnosis.py runs/example_s0 [--publish]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from hamflow_hgn.data import open_dataset
from hamflow_hgn.diagnostics import (
    encoder_orbit,
    nearest_distance,
    oscillation_period,
    reanchored_rollout,
    true_period,
)
from hamflow_hgn.horizon import summarize_horizon
from hamflow_hgn.io import save_figure, write_json
from hamflow_hgn.runs import load_run
from hamflow_hgn.tracking import body_radius_px, centroid_error

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine_info  # noqa: E402

NAME = "hgn_rollout_diagnosis"


def commit() -> str:
    """The repository's commit (with ``+dirty`` when tracked files differ from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def flat(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """States ``(B, S, ...)`` pairs as ``(B, S, D)``."""
    return torch.cat([q.flatten(2), p.flatten(2)], -1)


@torch.no_grad()
def diagnose(example: Path, multiple: int, period_steps: int, reference: int) -> dict:
    loaded = load_run(example / "run", example / "data", device="cpu")
    model = loaded.model.eval()
    test = open_dataset(loaded.data_dir, "test")
    train = open_dataset(loaded.data_dir, "train")
    cfg = model.config
    window = len(cfg.input_frames)  # the frames the encoder sees: the training span
    horizon = multiple * (window - 1)
    idx = list(range(len(test)))
    images = test.render_batch(idx)
    colors, radius = test.system.colors, body_radius_px(test.system, test.config.size)
    # learned and true periods
    roll = model.rollout(images, max(period_steps, horizon))
    learned = oscillation_period(flat(roll.q, roll.p)[:, : period_steps + 1], cfg.dt)
    first = np.asarray(test.clean_states[idx, 0], dtype=np.float64)
    truth_period = true_period(test.system, first, test.config.dt, period_steps)
    # the encoder orbit: the true sequence shifted by t frames, encoded
    truth = test.replay(idx, 1.0, horizon + cfg.frames)
    oq, op = encoder_orbit(model, truth, horizon)
    orbit_period = oscillation_period(flat(oq, op), cfg.dt)
    truth = truth[:, : horizon + 1]
    rolled = roll.frames[:, : horizon + 1]
    errors = {
        "rollout": centroid_error(rolled, truth, colors),
        "decoder_on_encoder_orbit": centroid_error(model.decode(oq.transpose(0, 1)), truth, colors),
    }
    track = {kind: summarize_horizon(e, radius, window) for kind, e in errors.items()}
    by_frame = {kind: (e <= radius).float().mean(0).tolist() for kind, e in errors.items()}
    fine = model.rollout(images, 4 * horizon, dt=cfg.dt / 4).frames[:, ::4]
    track["rollout_dt_over_4"] = summarize_horizon(
        centroid_error(fine, truth, colors), radius, window
    )
    anchored = reanchored_rollout(model, images, horizon)
    track["reanchored_rollout"] = summarize_horizon(
        centroid_error(anchored, truth, colors), radius, window
    )
    # distances to the training sequences' encoder states
    ref_images = train.render_batch(range(min(reference, len(train))))
    ref = torch.cat([
        torch.cat([t.flatten(1) for t in model.initial_state(b, sample=False)[:2]], 1)
        for b in ref_images.split(64)
    ])  # fmt: skip
    states = flat(roll.q, roll.p)[:, : horizon + 1]
    scale = float(nearest_distance(states[:, 0], ref).median())
    # the learned period again, in the plane of each sequence's encoder orbit: the rollout's
    # own principal plane can be taken by a drift
    orbit = flat(oq, op).double()
    centre = orbit.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(orbit - centre, full_matrices=False)
    long_states = flat(roll.q, roll.p)[:, : period_steps + 1].double()
    in_plane = (long_states - centre) @ vh[:, :2].transpose(1, 2)
    learned_in_plane = oscillation_period(in_plane, cfg.dt)
    # how far the state moves from where it started, over the spread of the training states
    spread_q = float(ref[:, : oq[0, 0].numel()].std(0).norm())
    spread_p = float(ref[:, oq[0, 0].numel() :].std(0).norm())
    drift = {
        "q": ((roll.q - roll.q[:, :1]).flatten(2).norm(dim=-1) / spread_q)[:, : horizon + 1],
        "p": ((roll.p - roll.p[:, :1]).flatten(2).norm(dim=-1) / spread_p)[:, : horizon + 1],
        "q_encoder_orbit": (oq - oq[:, :1]).flatten(2).norm(dim=-1) / spread_q,
    }
    # does the decoder read the rollout off the encoder states' principal subspace? Decode
    # the rollout's q projected onto it (8 directions) and track that.
    ref_q = ref[:, : oq[0, 0].numel()]
    mu_q = ref_q.mean(0)
    _, _, vq = torch.linalg.svd(ref_q - mu_q, full_matrices=False)
    basis = vq[:8]
    qf = roll.q[:, : horizon + 1].flatten(2)
    projected = (mu_q + (qf - mu_q) @ basis.T @ basis).view_as(roll.q[:, : horizon + 1])
    track["decoder_on_rollout_projected_to_8_encoder_pcs"] = summarize_horizon(
        centroid_error(model.decode(projected.transpose(0, 1)), truth, colors), radius, window
    )
    b, s = states.shape[:2]
    away = nearest_distance(states.flatten(0, 1), ref).view(b, s) / scale
    orbit_away = nearest_distance(flat(oq, op).flatten(0, 1), ref).view(b, s) / scale
    gap = (states - flat(oq, op)).norm(dim=-1) / scale  # rollout against the encoder orbit
    return {
        "example": str(example),
        "settings": {
            "encoder_frames": window,
            "frames": cfg.frames,
            "horizon_steps": horizon,
            "period_steps": period_steps,
            "reference_sequences": int(ref.shape[0]),
            "test_sequences": len(idx),
            "dt": cfg.dt,
            "radius_px": radius,
        },  # fmt: skip
        "period": {
            "true": truth_period.tolist(),
            "learned": learned.tolist(),
            "learned_in_encoder_orbit_plane": learned_in_plane.tolist(),
            "learned_in_plane_over_true": {
                "median": float((learned_in_plane / truth_period).median()),
                "mean_abs_error": float((learned_in_plane / truth_period - 1).abs().mean()),
            },
            "encoder_orbit": orbit_period.tolist(),
            "learned_over_true": {
                "median": float((learned / truth_period).median()),
                "mean_abs_error": float((learned / truth_period - 1).abs().mean()),
            },
            "encoder_orbit_over_true": {
                "median": float((orbit_period / truth_period).median()),
                "mean_abs_error": float((orbit_period / truth_period - 1).abs().mean()),
            },
        },
        "tracking": track,
        "tracked_share_by_frame": by_frame,
        "drift_over_training_spread_median_by_frame": {
            k: v.median(0).values.tolist() for k, v in drift.items()
        },
        "distance_to_training_states": {
            "scale": scale,
            "rollout_median_by_frame": away.median(0).values.tolist(),
            "encoder_orbit_median_by_frame": orbit_away.median(0).values.tolist(),
            "rollout_to_orbit_median_by_frame": gap.median(0).values.tolist(),
        },
        "_plot": {"states": states, "orbit": flat(oq, op)},
    }


def figure(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plot = result.pop("_plot")
    states, orbit = plot["states"].double(), plot["orbit"].double()
    window = result["settings"]["encoder_frames"]
    centre = orbit.flatten(0, 1).mean(0)
    _, _, vh = torch.linalg.svd(orbit.flatten(0, 1) - centre, full_matrices=False)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    ax = axes[0]
    for i, colour in zip(range(3), ("tab:blue", "tab:orange", "tab:green")):
        o = ((orbit[i] - centre) @ vh[:2].T).numpy()
        r = ((states[i] - centre) @ vh[:2].T).numpy()
        ax.plot(o[:, 0], o[:, 1], "-", color=colour, lw=1.2, label=f"#{i} true (encoded)")
        ax.plot(r[:, 0], r[:, 1], "--", color=colour, lw=1.0, label=f"#{i} learned")
        ax.plot(*r[window - 1], "o", color=colour, ms=4)
        ax.plot(*o[window - 1], "s", color=colour, ms=4, mfc="none")
    ax.set_title("latent orbits, top two principal axes\n(marker: end of the span)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1]
    period = result["period"]
    ax.plot(period["true"], period["learned"], "o", ms=4, label="latent rollout")
    ax.plot(period["true"], period["encoder_orbit"], "x", ms=4, label="encoder orbit")
    lo, hi = min(period["true"]), max(period["true"])
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel("true period")
    ax.set_ylabel("measured period")
    ax.set_title("period per test sequence", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    shares = result["tracked_share_by_frame"]
    ax.plot(shares["rollout"], label="rollout: share tracked")
    ax.plot(shares["decoder_on_encoder_orbit"], label="decoder on the encoder orbit: tracked")
    dist = result["distance_to_training_states"]
    ax2 = ax.twinx()
    ax2.plot(dist["rollout_median_by_frame"], "r--", lw=1, label="rollout: distance")
    ax2.plot(dist["encoder_orbit_median_by_frame"], "m:", lw=1, label="encoder orbit: distance")
    ax2.set_ylabel("distance to training states\n(1 = a fresh sequence's)", fontsize=8)
    ax.axvline(window - 1, color="grey", lw=0.8)
    ax.set_xlabel("frame")
    ax.set_ylim(0, 1.05)
    ax.set_title("tracking and distance past the span", fontsize=9)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=6, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("example", type=Path, help="an examples/pendulum_hgn.py --out folder")
    p.add_argument("--multiple", type=int, default=4, help="horizon in encoder spans")
    p.add_argument("--period-steps", type=int, default=160, help="latent steps for the period")
    p.add_argument("--reference", type=int, default=2048, help="training sequences encoded")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / NAME)
    p.add_argument("--publish", action="store_true", help="write into benchmarks/ and docs/img")
    args = p.parse_args(argv)
    if not (args.example / "run" / "checkpoint.pt").is_file():
        p.error(f"{args.example}: no run/checkpoint.pt; pass an examples/pendulum_hgn.py --out")
    if min(args.multiple, args.period_steps, args.reference) < 1:
        p.error("--multiple, --period-steps and --reference: expected integers >= 1")
    torch.set_num_threads(1)
    result = diagnose(args.example, args.multiple, args.period_steps, args.reference)
    command = "python scripts/hgn_rollout_diagnosis.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    result = {"command": command, **machine_info(), "commit": commit(), **result}
    out = args.out
    json_path = ROOT / "benchmarks" / "results" / f"{NAME}.json" if args.publish else out / (
        f"{NAME}.json"
    )  # fmt: skip
    png = ROOT / "docs" / "img" / f"{NAME}.png" if args.publish else out / f"{NAME}.png"
    figure(result, png)
    write_json(json_path, result)
    per, tr = result["period"], result["tracking"]
    print(f"in the encoder orbit's plane: learned / true period median "
          f"{per['learned_in_plane_over_true']['median']:.3f}, mean |error| "
          f"{100 * per['learned_in_plane_over_true']['mean_abs_error']:.1f} %")  # fmt: skip
    dr = result["drift_over_training_spread_median_by_frame"]
    print("drift from the first state over the training states' spread, frames", marks := [
        1, result["settings"]["encoder_frames"] - 1, result["settings"]["horizon_steps"]
    ], {k: [round(v[i], 2) for i in marks] for k, v in dr.items()})  # fmt: skip
    print(f"learned / true period: median {per['learned_over_true']['median']:.3f}, mean |error| "
          f"{100 * per['learned_over_true']['mean_abs_error']:.1f} %; encoder orbit / true: "
          f"median {per['encoder_orbit_over_true']['median']:.3f}")  # fmt: skip
    for kind, t in tr.items():
        w = ", ".join(f"{x['frames_range']} {100 * x['frames']:.0f} %" for x in t["windows"])
        print(f"{kind}: in span {100 * t['in_span']['frames']:.0f} %, past it "
              f"{100 * t['beyond']['frames']:.0f} % of frames ({w})")  # fmt: skip
    d = result["distance_to_training_states"]
    marks = [0, *marks[1:]]
    at = {k: [round(d[f"{k}_median_by_frame"][i], 2) for i in marks] for k in
          ("rollout", "encoder_orbit", "rollout_to_orbit")}  # fmt: skip
    print(f"distance to the training states (1 = a fresh sequence's), frames {marks}: {at}")
    print(f"wrote {json_path} and {png}")
    return result


if __name__ == "__main__":
    main()
