"""Learn a pendulum's dynamics from pixels with a Hamiltonian Generative Network (paper Sec. 3.2).

Generates a small pendulum data set, trains HGN (leapfrog) on it, then rolls the learned
dynamics out from test sequences: forward, backward in time (``-dt``), at double and half
speed, from fresh prior samples (paper Fig. 7 and 8) and from a Gaussian fitted to the training
posteriors after training (``fitted_samples``). It prints the test MSE next to the
"always predict the mean training image" reference, how often the rollout draws the bob where
the truth has it (:mod:`hamflow_hgn.tracking`), also along a forward rollout four spans long
against the truth simulated that far (:mod:`hamflow_hgn.horizon`; past the span it loses the
bob, docs/hgn/rollouts.md), and how exactly the backward rollout returns to the initial latent
state, and saves PNG strips and GIFs. ``--frames`` with ``--encoder-frames`` and
``--latent-consistency``, ``--confinement``, ``--state-channels`` and ``--latent-size`` are the
long-rollout options of docs/benchmarks/hgn-rollouts.md.

At its defaults (3000 steps, both learning rates decaying over the last 30 %, 2048 training
sequences, an encoder 32 wide and every other network 16, z of 4 x 4 x 4, the KL balanced as
the ELBO balances it, a prior over z matched to the training posteriors from step 1500 on) it
reached a test MSE of 0.19, 0.18, 0.19, 0.17 and 0.20 times the mean image's with seeds 0-4,
one torch thread per run, 467-492 s of CPU time each, with the multiplier never at a clamp, a
KL of 88-103 nats per sequence, the bob tracked in every frame of 31, 32, 30, 30 and 29 of the
32 test sequences, and prior samples that mostly swing like a pendulum (2-core CPU, no GPU,
2026-12-06; docs/hgn.md, "Try it" and "Prior samples").

    python examples/pendulum_hgn.py                      # under 10 min on the 2-core CPU
    python examples/pendulum_hgn.py --system mass_spring --steps 3000
    python examples/pendulum_hgn.py --quick              # smoke run: ~1 min, 2 on busy cores
    python examples/pendulum_hgn.py --publish            # the strips of docs/hgn/evaluation.md

``--publish`` copies the forward, backward, double-speed, prior-sample and fitted-sample strips
to ``docs/img/hgn_example_*.png`` and writes ``docs/img/hgn_example.json`` beside them: the
command, machine, date, commit, settings and the numbers it printed.

Running it again with the same ``--out`` resumes the training from its checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import sys
from pathlib import Path

import torch

from hamflow_hgn.cli import non_negative_int, positive_int
from hamflow_hgn.config import (
    GECO_SETTINGS,
    LATENT_PRIORS,
    TRAIN_PRESETS,
    VARIANTS,
    ModelConfig,
    TrainConfig,
)
from hamflow_hgn.data import SYSTEMS, DataConfig, generate, open_dataset
from hamflow_hgn.evaluate import other_rollout_errors
from hamflow_hgn.horizon import horizon_errors, summarize_horizon
from hamflow_hgn.io import write_bytes, write_json
from hamflow_hgn.rollouts import save_rollouts
from hamflow_hgn.runs import load_run
from hamflow_hgn.samples import LatentGaussian
from hamflow_hgn.schedule import check_decay
from hamflow_hgn.tracking import body_radius_px, centroid_error, summarize, tracking
from hamflow_hgn.train import train

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("forward", "backward", "double_speed", "samples", "fitted_samples")
"""The strips ``--publish`` copies to ``docs/img/hgn_example_KIND.png``."""
SMALL = TRAIN_PRESETS["small"]
"""The training settings: ``hamflow-train --preset small`` (hamflow_hgn.config.TRAIN_PRESETS)."""
FULL = {
    "n_train": 2048, "n_test": 32, "frames": 16, "size": 16, "width": SMALL.width,
    "encoder_width": SMALL.encoder_width, "latent_channels": SMALL.latent_channels,
    "steps": SMALL.steps,
}  # fmt: skip
"""The example's size. Every network is ``width`` wide but the encoder, ``encoder_width``: it runs
once per sequence (the decoder once per frame), so doubling it costs little, and it infers the
initial state, where the rollouts missed the bob most. 2048 training sequences, not 512: 3000
steps of 16 passed over each of 512 about 94 times, and the test error sat 11-35 % above the
training error; simulating more costs seconds, and a step costs the same. ``z`` has 4 channels
(4 x 4 x 4 = 64 numbers; 16 channels, 256 numbers, until 2026-12-06): a pendulum's state is two
numbers, and with the calibrated KL (:data:`GECO_SETTING`) the smaller latent carried half the
KL of 16 channels and tracked the bob in more sequences (seed 1; docs/hgn.md, "Try it")."""
GECO_SETTING = SMALL.geco_setting
"""The KL balance: λ moves toward the weight of a Gaussian decoder whose variance is the running
MSE, the ELBO's own balance ("default", GECO at 0.3 of the pixel variance, until 2026-12-06)."""
LATENT_PRIOR = SMALL.latent_prior
"""The prior over ``z``: ``N(0, I)`` for the first 1500 steps, then a full-covariance Gaussian that
follows the training posteriors' running mean and covariance, so that prior samples show a
pendulum (``"standard"``, the paper's ``N(0, I)``, until 2026-12-06; docs/hgn.md)."""
LR, HAMILTONIAN_LR = SMALL.lr, SMALL.hamiltonian_lr
"""Adam's learning rates: the encoder, f_psi and decoder, and the learned Hamiltonian."""
LR_DECAY = SMALL.lr_decay
"""Fraction of the steps, at the end, over which both rates decay linearly toward zero."""
HORIZON_MULTIPLE = 4
"""The long forward rollout, in encoder spans: frames ``T+1 … 2T`` give the 2x tracking figure,
``T+1 … 4T`` the 4x one (issue 35), ``T + 1`` being the frames the encoder sees."""
QUICK = {
    "n_train": 64, "n_test": 8, "frames": 8, "size": 16, "width": 8, "encoder_width": 8,
    "latent_channels": 8, "steps": 30,
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", default="pendulum", choices=sorted(SYSTEMS))
    p.add_argument("--steps", type=int, default=None, help=f"default {FULL['steps']}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=Path("out/hgn_example"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run (51 s on 2 shared CPU cores, 2026-11-25)",
    )
    p.add_argument(
        "--lr-decay", type=float, default=LR_DECAY,
        help="fraction of the steps, at the end, over which the learning rates decay linearly "
        "toward 0 (default: %(default)s; 0 keeps them constant)",
    )  # fmt: skip
    p.add_argument(
        "--n-train", type=int, default=None,
        help=f"training sequences to simulate (default {FULL['n_train']}; 512 until 2026-12-06)",
    )  # fmt: skip
    p.add_argument(
        "--encoder-width", type=positive_int, default=None,
        help=f"filters of the encoder's seven conv layers (default {FULL['encoder_width']}; "
        "16, every network's width, was the default until 2026-12-06)",
    )  # fmt: skip
    p.add_argument(
        "--latent-channels", type=positive_int, default=None,
        help=f"channels of z = latent_channels x 4 x 4 (default {FULL['latent_channels']})",
    )  # fmt: skip
    p.add_argument(
        "--latent-prior", default=LATENT_PRIOR, choices=sorted(LATENT_PRIORS),
        help="the prior over z (docs/hgn.md; default: %(default)s); 'standard' is the paper's "
        "N(0, I)",
    )  # fmt: skip
    p.add_argument(
        "--prior-warmup-steps", type=non_negative_int, default=ModelConfig().prior_warmup_steps,
        help="steps during which the matched prior stays N(0, I) (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--kl-warmup-steps", type=non_negative_int, default=0,
        help="steps over which the KL's weight rises linearly from 0 to full "
        "(ModelConfig.kl_warmup_steps; default: %(default)s, the full weight from the start)",
    )  # fmt: skip
    p.add_argument(
        "--frames", type=positive_int, default=None,
        help=f"frames per simulated sequence (default {FULL['frames']}); with --encoder-frames "
        "smaller, the loss covers frames the encoder does not see (docs/hgn/rollouts.md)",
    )  # fmt: skip
    p.add_argument(
        "--encoder-frames", type=positive_int, default=None,
        help="frames the encoder sees, the first ones (default: every frame, the paper's)",
    )  # fmt: skip
    p.add_argument(
        "--latent-consistency", type=float, default=0.0,
        help="weight of the term that asks the rollout to follow the encoder's states of the "
        "later windows (ModelConfig.latent_consistency; needs --encoder-frames below --frames; "
        "default: %(default)s, none)",
    )  # fmt: skip
    p.add_argument(
        "--confinement", type=float, default=0.0,
        help="c of the confining Hamiltonian H + c/2 (|q|^2 + |p|^2) (ModelConfig.confinement; "
        "docs/hgn/rollouts.md; default: %(default)s, none, the paper's H)",
    )  # fmt: skip
    p.add_argument(
        "--state-channels", type=positive_int, default=None,
        help="channels of q and of p each, 4 x 4 positions each (default: "
        f"{ModelConfig().state_channels})",
    )  # fmt: skip
    p.add_argument(
        "--latent-size", type=positive_int, default=None,
        help="positions of q, p and z, latent-size x latent-size (default: "
        f"{ModelConfig().latent_size}); 1 with --state-channels 1 gives one degree of freedom",
    )  # fmt: skip
    p.add_argument(
        "--hamiltonian-width", type=positive_int, default=None,
        help="filters of the conv layers of K and V (default: the network width)",
    )  # fmt: skip
    p.add_argument(
        "--variant", default="leapfrog", choices=sorted(VARIANTS),
        help="the HGN variant of Table 1 (ModelConfig.variant; default: %(default)s); "
        "'deterministic' takes the posterior mean as z, with no sampling and no KL",
    )  # fmt: skip
    p.add_argument(
        "--hamiltonian-lr", type=float, default=HAMILTONIAN_LR,
        help="Adam's learning rate for the Hamiltonian's parameters (TrainConfig.hamiltonian_lr; "
        "default: %(default)s; the other networks' is " + f"{LR})",
    )  # fmt: skip
    p.add_argument(
        "--horizon-multiple", type=positive_int, default=HORIZON_MULTIPLE,
        help="the long rollout runs this many times the encoder's span (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--publish", action="store_true",
        help="copy the strips to docs/img/hgn_example_*.png with docs/img/hgn_example.json",
    )  # fmt: skip
    p.add_argument(
        "--geco-setting", default=GECO_SETTING, choices=sorted(GECO_SETTINGS),
        help="KL balancing (docs/hgn.md, 'Balancing the KL'; default: %(default)s); 'paper' is "
        "GECO as the paper configures it",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.publish and args.quick:
        p.error("--publish: a --quick smoke run is not for docs/")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps: expected an integer >= 1, got {args.steps}")
    frames = args.frames or (QUICK if args.quick else FULL)["frames"]
    if frames < 2 or (args.encoder_frames is not None and args.encoder_frames > frames):
        p.error(f"--frames {frames}, --encoder-frames {args.encoder_frames}: expected frames >= "
                "2 and encoder frames at most frames")  # fmt: skip
    if not (math.isfinite(args.confinement) and args.confinement >= 0):
        p.error(f"--confinement: expected a finite number >= 0, got {args.confinement}")
    if not (math.isfinite(args.hamiltonian_lr) and args.hamiltonian_lr > 0):
        p.error(f"--hamiltonian-lr: expected a finite number > 0, got {args.hamiltonian_lr}")
    if args.n_train is not None and args.n_train < 16:
        p.error(f"--n-train: expected an integer >= 16 (one batch), got {args.n_train}")
    try:
        check_decay(args.lr_decay)
    except ValueError as err:
        p.error(str(err).replace("lr_decay", "--lr-decay", 1))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    size = QUICK if args.quick else FULL
    steps = args.steps or size["steps"]
    torch.manual_seed(args.seed)
    data_cfg = DataConfig(
        args.system, args.n_train or size["n_train"], size["n_test"],
        steps=args.frames or size["frames"],
        size=size["size"], seed=args.seed,
    )  # fmt: skip
    data_dir = args.out / "data"
    if not (data_dir / "metadata.json").exists():
        generate(data_cfg, data_dir, workers=1, progress=not args.no_progress)
    run_dir = args.out / "run"
    encoder = (args.encoder_width or size["encoder_width"],) * len(ModelConfig().encoder_widths)
    model_cfg = ModelConfig.reduced(
        size["width"], encoder_widths=encoder,
        latent_channels=args.latent_channels or size["latent_channels"],
        latent_prior=args.latent_prior, prior_warmup_steps=args.prior_warmup_steps,
        encoder_frames=args.encoder_frames, latent_consistency=args.latent_consistency,
        confinement=args.confinement, variant=args.variant,
        kl_warmup_steps=args.kl_warmup_steps,
        state_channels=args.state_channels or ModelConfig().state_channels,
        latent_size=args.latent_size or ModelConfig().latent_size,
        hamiltonian_width=args.hamiltonian_width or size["width"],
        **GECO_SETTINGS[args.geco_setting],
    )  # fmt: skip
    config = TrainConfig(
        data=str(data_dir), out=str(run_dir), steps=steps, lr=LR,
        hamiltonian_lr=args.hamiltonian_lr, lr_decay=args.lr_decay, seed=args.seed,
        device=args.device, model=model_cfg,
        checkpoint_every=max(1, steps // 5), progress=not args.no_progress,
        resume=(run_dir / "checkpoint.pt").exists(),
    )  # fmt: skip
    train(config)

    model = load_run(run_dir, data_dir, device=args.device).model
    device = next(model.parameters()).device
    test = open_dataset(data_dir, "test", expect=data_cfg)
    train_set = open_dataset(data_dir, "train", expect=data_cfg)
    images = test.render_batch(range(len(test)), device)
    train_images = train_set.render_batch(range(len(train_set)), device)
    mean_image = train_images.mean(0, keepdim=True)
    with torch.no_grad():
        forward = model.rollout(images)
        back = model.rollout_from(
            forward.q[:, -1], forward.p[:, -1], images.shape[1] - 1, dt=-model.config.dt
        )
    energy = forward.energy.double()
    window = len(model.config.input_frames)  # the frames the encoder sees: the test MSE's span
    with open(run_dir / "metrics.csv") as f:
        logged = list(csv.DictReader(f))
    last, lambdas = logged[-1], [float(row["lambda"]) for row in logged]
    # the per-batch training error over the last tenth of the run: how settled the end is
    tail = torch.tensor([float(r["mse"]) for r in logged if int(r["step"]) > 0.9 * steps])
    lam_min, lam_max = model.geco.lambda_min, model.geco.lambda_max
    record = {
        "system": args.system,
        "train_steps": steps,
        "geco_setting": args.geco_setting,
        "encoder_widths": list(model.config.encoder_widths),
        "latent_channels": model.config.latent_channels,
        "latent_prior": model.config.latent_prior,
        "prior_warmup_steps": model.config.prior_warmup_steps,
        "lr_decay": args.lr_decay,
        "frames": images.shape[1],
        "encoder_frames": window,
        "hamiltonian_width": model.config.hamiltonian_width,
        "latent_consistency": model.config.latent_consistency,
        "confinement": model.config.confinement,
        "kl_warmup_steps": model.config.kl_warmup_steps,
        "hamiltonian_lr": args.hamiltonian_lr,
        "variant": model.config.variant,
        "state_channels": model.config.state_channels,
        "latent_size": model.config.latent_size,
        "test_mse": float((forward.frames - images)[:, :window].square().mean()),
        "mean_image_mse": float((mean_image - images)[:, :window].square().mean()),
        "reversal_error": float((back.q[:, -1] - forward.q[:, 0]).abs().max()),
        "energy_relative_std": float((energy.std(1) / energy.mean(1).abs()).mean()),
        "final_lambda": float(last["lambda"]),
        "lambda_range": [min(lambdas), max(lambdas)],
        "share_at_clamp": sum(
            lam >= lam_max * (1 - 1e-6) or lam <= lam_min * (1 + 1e-6) for lam in lambdas
        )
        / len(lambdas),
        "final_kl": float(last["kl"]),
        "train_mse_last_tenth": {
            "mean": float(tail.mean()),
            "relative_std": float(tail.std(correction=0) / tail.mean()),
            "logged_steps": len(tail),
        },
        "train_seconds": float(last["seconds"]),
    }
    record["ratio"] = record["test_mse"] / record["mean_image_mse"]
    # Does the rollout follow the bodies? Drawn centre against the truth's, frame by frame.
    radius = body_radius_px(test.system, size["size"])
    tracked = tracking(forward.frames, images, radius, colors=test.system.colors)
    record["tracking"] = {**tracked, "radius_px": radius}
    # The other rollouts against their own truth (hamflow_hgn.evaluate): the data reversed for
    # -dt, and the system played again at 2x (over the time the data covers) and 1/2x speed for
    # 2dt and dt/2 (SequenceDataset.replay). Frames T+1 ... 2T of a forward rollout twice as
    # long as the data lie past the time the model was trained on ("forward_beyond").
    every, horizon = list(range(len(test))), images.shape[1] - 1
    errors = other_rollout_errors(model, test, every, images, forward.q, forward.p)
    with torch.no_grad():
        longer = model.rollout(images, 2 * horizon).frames
    truth = test.replay(every, 1.0, 2 * horizon + 1).to(device)
    beyond = centroid_error(longer, truth, colors=test.system.colors)
    errors["forward_beyond"] = beyond[:, horizon + 1 :]
    record["tracking_other_rollouts"] = {kind: summarize(e, radius) for kind, e in errors.items()}
    # Further still, against the truth simulated that far (hamflow_hgn.horizon): frames past the
    # encoder's span, and in windows one span long (16-30: the 2x figure; 16-60: the 4x one).
    far = horizon_errors(model, test, every, images, args.horizon_multiple * (window - 1))
    record["tracking_horizon"] = summarize_horizon(far["centroid"].cpu(), radius, window)
    # Prior samples show little at this scale (docs/hgn.md); also draw from a Gaussian fitted
    # to the training posteriors (hamflow_hgn.samples).
    latent = LatentGaussian.fit(model, train_images.split(64))
    replay = lambda speed: test.replay([0, 1], speed)  # noqa: E731  (the strips' truth at 2x, 1/2x)
    paths = save_rollouts(model, images[:2], args.out / "rollouts", latent=latent, replay=replay)
    record["figures"] = {kind: [str(p) for p in ps] for kind, ps in paths.items()}
    write_json(args.out / "summary.json", record)  # atomic
    r = record
    print(f"{args.system}: test MSE {r['test_mse']:.5f} after {steps} steps, {r['ratio']:.2f}x "
          f"the mean training image's {r['mean_image_mse']:.5f}")  # fmt: skip
    print(f"KL {r['final_kl']:.3g} nats per sequence, lambda {r['final_lambda']:.3g} (from "
          f"{r['lambda_range'][0]:.3g} to {r['lambda_range'][1]:.3g} over the run, "
          f"{100 * r['share_at_clamp']:.0f} % of logged steps at a clamp); learned "
          f"energy's relative std along rollouts {r['energy_relative_std']:.2g}")  # fmt: skip
    track = r["tracking"]
    print(
        f"tracking: drawn centre {track['error_px']:.2f} px from the truth's on average; "
        f"{100 * track['frames']:.0f} % of frames within a body's radius "
        f"({track['radius_px']:g} px), {100 * track['sequences']:.0f} % of sequences in every frame"
    )
    others = ", ".join(
        f"{kind.replace('_', ' ')} {100 * t['frames']:.0f} % / {100 * t['sequences']:.0f} %"
        for kind, t in r["tracking_other_rollouts"].items()
    )
    print(f"frames / sequences tracked against their own truth: {others} (double speed: the "
          f"first {horizon // 2 + 1} frames, the training sequences' time span; forward "
          f"beyond: frames {horizon + 1}-{2 * horizon} of a rollout twice as long as the "
          f"data)")  # fmt: skip
    far = r["tracking_horizon"]
    windows = ", ".join(
        f"{w['frames_range'][0]}-{w['frames_range'][1]} {100 * w['frames']:.0f} % / "
        f"{100 * w['sequences']:.0f} %"
        for w in far["windows"]
    )
    print(f"a rollout of {far['steps']} steps against the truth simulated that far: frames "
          f"{window}-{far['steps']} {100 * far['beyond']['frames']:.0f} % of frames tracked, "
          f"by window (frames / sequences) {windows}")  # fmt: skip
    tail = r["train_mse_last_tenth"]
    print(
        f"training MSE over the last tenth of the steps: mean {tail['mean']:.5f}, relative "
        f"std {100 * tail['relative_std']:.0f} % over {tail['logged_steps']} logged batches"
    )
    print(f"forward then backward {images.shape[1] - 1} steps returns q0 to within "
          f"{record['reversal_error']:.1e}")  # fmt: skip
    print(f"rollouts (PNG strips and GIFs): {args.out / 'rollouts'}")
    if args.publish:
        argv = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["python", "examples/pendulum_hgn.py", *argv])
        print(f"wrote {publish(record, command, vars(args), ROOT / 'docs' / 'img')}")
    return record


def publish(record: dict, command: str, settings: dict, img_dir: Path) -> Path:
    """Copy the strips :data:`PUBLISHED` of ``record`` (its ``figures``) to
    ``img_dir/hgn_example_KIND.png`` and write ``img_dir/hgn_example.json``: ``command``, the
    machine, date and commit, ``settings`` and the numbers of ``record``. Returns the JSON's
    path."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine_info

    names = []
    for kind in PUBLISHED:
        strip = next(Path(p) for p in record["figures"][kind] if str(p).endswith(".png"))
        names.append(f"hgn_example_{kind}.png")
        write_bytes(img_dir / names[-1], strip.read_bytes())
    out = {
        "command": command,
        **machine_info(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()},
        "figures": names,
        "results": {k: v for k, v in record.items() if k != "figures"},
    }
    write_json(img_dir / "hgn_example.json", out, sort_keys=False)
    return img_dir / "hgn_example.json"


if __name__ == "__main__":
    main()
