"""examples/pendulum_hgn.py: the quick run trains, reverses its rollout and writes the strips."""

import csv
import json
import math

import pytest
import torch

from hamflow_hgn.checkpoint import load_checkpoint


def test_quick_run_rolls_out_and_reverses(example, tmp_path):
    torch.set_num_threads(1)
    # the matched prior follows the posteriors over the last 10 of the 30 steps
    quick = ["--quick", "--out", str(tmp_path), "--no-progress", "--prior-warmup-steps", "20"]
    record = example.main(quick)
    assert math.isfinite(record["test_mse"]) and record["mean_image_mse"] > 0
    assert record["reversal_error"] < 1e-4  # leapfrog run backwards retraces the latent path
    kinds = ("forward", "backward", "double_speed", "half_speed", "samples", "fitted_samples")
    for kind in kinds:
        png = tmp_path / "rollouts" / f"{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_steps"] == 30 and summary["encoder_widths"] == [8] * 7  # QUICK's
    assert summary["latent_channels"] == example.QUICK["latent_channels"]
    assert (summary["latent_prior"], summary["prior_warmup_steps"]) == ("matched", 20)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert state["prior.first_moment"].abs().max() > 0  # it left N(0, I)
    track = record["tracking"]  # hamflow_hgn.tracking over every test sequence
    assert 0.0 <= track["sequences"] <= track["frames"] <= 1.0
    assert track["radius_px"] == pytest.approx(1.5)
    others = record["tracking_other_rollouts"]  # each against its own truth (replayed at 2x, 1/2x)
    kinds = {"backward", "forward_beyond", "double_speed", "half_speed"}
    assert set(others) == kinds
    assert all(0.0 <= t["sequences"] <= t["frames"] <= 1.0 for t in others.values())
    low, high = record["lambda_range"]  # GECO's multiplier over the logged steps
    assert low <= record["final_lambda"] <= high and 0.0 <= record["share_at_clamp"] <= 1.0
    # the default decay: 9 of the 30 steps decay, so the last one runs at 1/10 of each rate
    groups = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["optimizer"]["param_groups"]
    rates = (example.LR, example.HAMILTONIAN_LR)
    assert [g["lr"] for g in groups] == pytest.approx([r / 10 for r in rates], rel=1e-12)
    with open(tmp_path / "run" / "metrics.csv") as f:  # logged steps 28-30: the last tenth
        tail = [float(r["mse"]) for r in csv.DictReader(f) if int(r["step"]) > 27]
    assert record["train_mse_last_tenth"]["logged_steps"] == len(tail) >= 1
    assert record["train_mse_last_tenth"]["mean"] == pytest.approx(sum(tail) / len(tail))
    # A second call into the same folder resumes (the trainer refuses to overwrite a run
    # without resume) and trains on to the new step count.
    again = example.main([*quick, "--steps", "35"])
    assert again["train_steps"] == 35
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 35


def test_bad_arguments_are_refused(example):
    with pytest.raises(SystemExit):
        example.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        example.parse_args(["--system", "four_body"])
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit):
            example.parse_args(["--lr-decay", bad])
    assert example.parse_args(["--lr-decay", "0"]).lr_decay == 0.0
    for bad in ("0", "-2", "wide"):
        with pytest.raises(SystemExit):
            example.parse_args(["--encoder-width", bad])
    for bad in ("15", "0", "many"):
        with pytest.raises(SystemExit):
            example.parse_args(["--n-train", bad])
    for bad in ("0", "-1", "four"):
        with pytest.raises(SystemExit):
            example.parse_args(["--latent-channels", bad])
    for flag, bad in (("--prior-warmup-steps", "-1"), ("--latent-prior", "vamp")):
        with pytest.raises(SystemExit):
            example.parse_args([flag, bad])


def test_the_example_defaults_unless_asked(example):
    # The example's model: every network 16 wide but the encoder, 32 (docs/hgn.md, "Try it").
    assert (example.FULL["width"], example.FULL["encoder_width"]) == (16, 32)
    assert example.FULL["n_train"] == 2048  # 512 until 2026-12-06
    assert example.parse_args(["--n-train", "512"]).n_train == 512
    assert example.parse_args([]).encoder_width is None
    assert example.parse_args(["--encoder-width", "16"]).encoder_width == 16
    # z has 4 channels and the KL is balanced as the ELBO balances it (2026-12-06)
    assert example.FULL["latent_channels"] == 4 and example.parse_args([]).latent_channels is None
    assert example.parse_args([]).geco_setting == example.GECO_SETTING == "calibrated"
    assert example.parse_args(["--latent-channels", "16"]).latent_channels == 16
    # the prior follows the posteriors after 1500 steps at N(0, I) (2026-12-06)
    args = example.parse_args([])
    assert (args.latent_prior, args.prior_warmup_steps) == ("matched", 1500)
