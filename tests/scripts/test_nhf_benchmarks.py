"""Smoke tests of the NHF benchmark scripts: quick runs end to end, their outputs, their errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common  # noqa: E402
import nhf_ablation  # noqa: E402
import nhf_step  # noqa: E402
import toy_density  # noqa: E402
from _common import num_params  # noqa: E402

from hamflow import NHF  # noqa: E402
from hamflow.distributions import SoftUniform  # noqa: E402


def test_baselines_are_parameter_matched_to_the_default_nhf():
    models = toy_density.build_models(toy_density.BenchConfig())
    target = num_params(NHF(2))
    assert num_params(models["nhf"][0]) == target
    for name in ("realnvp", "nsf"):
        assert abs(num_params(models[name][0]) - target) / target < 0.10, name
    assert num_params(models["nhf_paper"][0]) == num_params(NHF.paper(2))


def test_toy_density_option_rows_are_what_their_descriptions_say():
    target = num_params(NHF(2))
    first_layers = {}
    for name in ("nhf_deep", "nhf_deep_steep"):
        torch.manual_seed(0)
        model = toy_density.NHF_BUILDERS[name]()
        assert len(model.flows) == 6, name
        assert abs(num_params(model) - target) / target < 1e-3, name  # "within 0.1 %"
        first_layers[name] = model.flows[0].hamiltonian.potential.layers[0].weight
    # the steep row is the deep row with its potentials' first layers three times steeper
    torch.testing.assert_close(first_layers["nhf_deep_steep"], 3 * first_layers["nhf_deep"])
    assert isinstance(toy_density.NHF_BUILDERS["nhf_bounded"]().prior, SoftUniform)
    assert set(toy_density.OPTIONAL_MODELS) <= set(toy_density.NHF_ROWS)
    # the settings sentence names the NHF rows of the run, and only those
    sentence = toy_density.describe_rows(["nhf", "realnvp", "nhf_bounded"])
    assert sentence.count("` is ") == 2
    assert "nhf_paper" not in sentence and "realnvp" not in sentence
    assert "soft_uniform" in sentence


def test_toy_density_quick(tmp_path):
    out = toy_density.main(["--quick", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "toy_density_quick.json").read_text())
    assert data["config"]["steps"] == out["config"]["steps"]
    for dname, res in data["results"].items():
        assert res["true_entropy"] > -5
        assert set(res["models"]) == {"nhf", "nhf_paper", "realnvp", "nsf"}
        for mname, r in res["models"].items():
            for key in ("steps", "seconds"):
                assert math.isfinite(r[key]["test_nll"]), (dname, mname, key)
                assert r[key]["sampling_per_s"] > 0 and r[key]["density_eval_per_s"] > 0
    md = (tmp_path / "benchmarks.md").read_text()
    assert "toy_density:begin" in md and "| eight_gaussians |" in md
    assert (tmp_path / "toy_density.png").stat().st_size > 1000


def test_toy_density_figure_draws_nhf_smoothly():
    """The figure's NHF estimate uses one set of momenta for every grid point and every chunk:
    split or whole, a grid gets the same values, and they vary smoothly along a line."""
    torch.manual_seed(0)
    model = NHF(2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
    model.initialize_affine(torch.randn(256, 2))
    line = torch.stack([torch.linspace(-2, 2, 401), torch.zeros(401)], -1)
    whole = toy_density.figure_log_prob("nhf", model, line, 16)
    parts = torch.cat([toy_density.figure_log_prob("nhf", model, c, 16) for c in line.split(50)])
    assert torch.allclose(whole, parts, atol=1e-5)  # float32 matmuls differ by batch size
    # neighbours 0.01 apart: the common draws' estimate is smooth, independent ones are not
    rough = toy_density.log_prob("nhf", model, line, 16)
    assert whole.diff().abs().max() < 0.05
    assert rough.diff().abs().max() > 4 * whole.diff().abs().max()


def test_nhf_step_compiled_row(tmp_path):
    """``--compile`` times a compiled copy of the same model, whose loss equals the eager one."""
    out = nhf_step.main(["--quick", "--compile", "--out-dir", str(tmp_path)])
    r = out["results"]
    assert r["loss_diff_compiled_vs_eager"] < 1e-4
    assert r["speedup_compiled_over_eager"] > 0 and r["compile_seconds"] > 0
    assert "torch.compile" in (tmp_path / "benchmarks.md").read_text()


def test_nhf_step_quick(tmp_path):
    out = nhf_step.main(["--quick", "--out-dir", str(tmp_path)])
    r = out["results"]
    assert r["ratio_nhf_over_realnvp"] > 0
    # every model steps on the same number of samples: NHF on a quarter of the points, each
    # with its loss's 4 momenta, and a copy on all the points for the other reading
    batch = out["config"]["batch"]
    assert r["points"]["realnvp"] == r["points"]["nhf_paper"] == batch
    assert r["points"]["nhf"] * NHF(2).train_samples == batch
    assert r["points"]["nhf_full_batch"] == batch
    assert (tmp_path / "nhf_step_quick.json").exists()
    assert "nhf_step:begin" in (tmp_path / "benchmarks.md").read_text()


def test_nhf_denormals_quick(tmp_path):
    import nhf_denormals

    out = nhf_denormals.main(["--quick", "--out-dir", str(tmp_path)])
    (row,) = out["results"]["two_moons"]
    assert row["ms_flushed"] > 0 and row["ms_unflushed"] > 0
    assert row["after_steps"] == out["config"]["train_steps"]
    assert "nhf_denormals:begin" in (tmp_path / "benchmarks.md").read_text()
    from hamflow import _mlp_grad

    assert _mlp_grad.FLUSH_DENORMALS  # the library's setting, restored


def test_nhf_denormals_counts_the_subnormals_of_a_saturated_potential():
    """A unit at ``z ≈ −50`` with a 1e-20 output weight saves ``σ(z)·1e-20`` (subnormal)."""
    import nhf_denormals

    torch.manual_seed(0)
    model = NHF(2, num_flows=1, hidden=(4,), encoder_hidden=(4,))
    x = torch.randn(16, 2)
    model.initialize_affine(x)
    assert nhf_denormals._subnormal_share(model, x) == 0.0
    potential = model.flows[0].hamiltonian.potential
    with torch.no_grad():  # weights are stored divided by the potential's gain
        potential.layers[0].weight.zero_()
        potential.layers[0].bias.fill_(-50.0 / potential.gain)
        potential.layers[1].weight.fill_(1e-20 / potential.gain)
    assert nhf_denormals._subnormal_share(model, x) > 0.0


def test_cosine_lr_and_points_per_step():
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    lrs = [_common.cosine_lr(opt, 1e-3, t / 10) for t in range(12)]
    assert lrs[0] == 1e-3 and opt.param_groups[0]["lr"] == lrs[-1]
    assert all(a > b for a, b in zip(lrs[:10], lrs[1:11]))  # strictly decreasing to the end
    assert lrs[10] == lrs[11] == pytest.approx(1e-3 * _common.LR_FLOOR)  # then stays
    assert lrs[5] == pytest.approx(1e-3 * (1 + _common.LR_FLOOR) / 2)
    assert _common.points_per_step(NHF(2, train_samples=3), 512) == 170
    assert _common.points_per_step(NHF(2, train_samples=1), 512) == 512
    assert _common.points_per_step(torch.nn.Linear(2, 2), 512) == 512


def test_ablation_settings_are_paper_plus_levers():
    settings = nhf_ablation.settings()
    torch.manual_seed(0)
    default = NHF.paper(2, **settings["default"])
    torch.manual_seed(0)
    plain = NHF(2)
    # the ablation's "default" row is NHF(2) itself: same structure, and from the same seed the
    # same initial values (a lever that only changes the initialisation shows up here)
    assert repr(default) == repr(plain)
    a, b = default.state_dict(), plain.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(settings) == 2 + 2 * len(nhf_ablation.LEVERS)


def test_nhf_ablation_quick(tmp_path):
    out = nhf_ablation.main(["--quick", "--out-dir", str(tmp_path)])
    runs = out["results"]["eight_gaussians"]["runs"]
    assert set(runs) == set(nhf_ablation.settings())
    assert all(math.isfinite(r["test_nll"]) and r["steps"] >= 1 for r in runs.values())
    assert "nhf_ablation:begin" in (tmp_path / "benchmarks.md").read_text()


@pytest.mark.parametrize(
    "script",
    [
        "toy_density.py",
        "nhf_step.py",
        "nhf_ablation.py",
        "tabular.py",
        "nhf_stability.py",
        "nhf_log_prob.py",
        "nhf_denormals.py",
    ],
)
def test_quick_runs_cannot_publish(script):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--publish"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--publish" in proc.stderr, proc.stderr


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--densities", "nope"], ["--seconds", "-1"]])
def test_toy_density_bad_arguments(argv):
    with pytest.raises(SystemExit):
        toy_density.parse_args(argv)


def test_nhf_log_prob_quick(tmp_path):
    import nhf_log_prob

    out = nhf_log_prob.main(["--quick", "--out-dir", str(tmp_path)])
    r = out["results"]
    assert r["default_k"] == nhf_log_prob.default_k()
    assert {row["k"] for row in r["rows"]} >= {r["default_k"], *out["config"]["ks"]}
    assert all(row["points_per_s"] > 0 and math.isfinite(row["test_nll"]) for row in r["rows"])
    # the default rows use the calibrated width; the reference is the tighter K = 2048 estimate
    cal = r["calibration"]
    assert cal["scale"] == max(cal["mean_log_prob_by_scale"], key=cal["mean_log_prob_by_scale"].get)
    calibrated = r["rows"][: len(out["config"]["ks"])]
    assert all(row["proposal_scale"] == cal["scale"] for row in calibrated)
    assert r["reference"]["test_nll"] == min(ref["test_nll"] for ref in r["references"])
    # the default steps on batch / 4 points (x 4 momenta); the check model on the whole batch
    assert r["points_per_step"] * 4 == out["config"]["batch"]
    fb = r["full_batch"]
    assert fb["train_steps"] >= 1 and math.isfinite(fb["reference"]["test_nll"])
    md = (tmp_path / "benchmarks.md").read_text()
    assert "nhf_log_prob:begin" in md and "ELBO (K = 1" in md
    assert f"trained instead on {out['config']['batch']} points per step" in md


def _fake_toy_run(nhf: float, realnvp: float) -> dict:
    models = {"nhf": nhf, "realnvp": realnvp}
    return {
        "results": {
            "ring_mixture": {
                "true_entropy": 2.275,
                "models": {m: {"seconds": {"test_nll": v}} for m, v in models.items()},
            }
        }
    }


def test_seed_summary_is_the_gap_per_seed_and_its_spread():
    import toy_density_seeds

    runs = {
        0: _fake_toy_run(2.70, 2.41),
        1: _fake_toy_run(2.60, 2.62),
        2: _fake_toy_run(2.65, 2.60),
    }
    r = toy_density_seeds.summarise(runs)["ring_mixture"]
    assert r["nll"] == {"nhf": [2.70, 2.60, 2.65], "realnvp": [2.41, 2.62, 2.60]}
    assert r["gap"] == pytest.approx([0.29, -0.02, 0.05])
    assert r["gap_mean"] == pytest.approx(0.32 / 3)
    assert r["gap_std"] == pytest.approx(0.16258331197676)  # sample std (n - 1)
    assert r["nhf_ahead"] == 1 and not r["held_out"]
    # --nhf nhf_steep: the steep row is the one compared, whatever else the runs hold
    for run in runs.values():
        models = run["results"]["ring_mixture"]["models"]
        models["nhf_steep"] = {"seconds": {"test_nll": models["nhf"]["seconds"]["test_nll"] - 1}}
    steep = toy_density_seeds.summarise(runs, "nhf_steep")["ring_mixture"]
    assert steep["nll"]["nhf"] == pytest.approx([1.70, 1.60, 1.65])
    assert steep["nhf_ahead"] == 3


def test_seed_summary_leaves_a_diverged_run_out_of_the_gap():
    import toy_density_seeds

    runs = {0: _fake_toy_run(2.70, 2.41), 1: _fake_toy_run(2.60, math.nan)}
    runs[2] = _fake_toy_run(2.65, 2.60)
    r = toy_density_seeds.summarise(runs)["ring_mixture"]
    assert r["gap_seeds"] == 2 and r["gap_mean"] == pytest.approx((0.29 + 0.05) / 2)
    assert r["nhf_ahead"] == 1  # RealNVP has no density in seed 1: NHF is ahead there
    out = {"machine": {"machine": "m", "date": "d", "torch": "t", "normflows": "n"},
           "config": {"seeds": [0, 1, 2], "jobs": 1, "seconds": 1, "steps": 1, "n_test": 1,
                      "iwae_k": 1}, "command": "c", "summary": {"ring_mixture": r}}  # fmt: skip
    table = toy_density_seeds.markdown(out)
    assert "2.410 / diverged / 2.600" in table and "(2 seeds)" in table
    assert "`diverged`: no test point got a finite density" in table


def test_toy_density_seeds_quick(tmp_path):
    import toy_density_seeds

    out = toy_density_seeds.main(["--quick", "--seeds", "0", "1", "--out-dir", str(tmp_path)])
    r = out["summary"]["eight_gaussians"]
    assert len(r["nll"]["nhf"]) == len(r["nll"]["realnvp"]) == 2
    assert r["nll"]["nhf"][0] != r["nll"]["nhf"][1]  # the seeds differ
    assert out["config"]["seconds"] == toy_density.QUICK["seconds"]
    assert "toy_density_seeds:begin" in (tmp_path / "benchmarks.md").read_text()
    with pytest.raises(SystemExit):
        toy_density_seeds.main(["--quick", "--seeds", "3", "3"])
    # --reuse reads both seeds back instead of training them: the same numbers, and it says so
    again = toy_density_seeds.main(
        ["--quick", "--seeds", "0", "1", "--reuse", "--out-dir", str(tmp_path)]
    )
    assert again["summary"] == out["summary"] and again["config"]["reused_seeds"] == [0, 1]
    assert "Seeds 0, 1 were read from an earlier run" in (tmp_path / "benchmarks.md").read_text()


def test_toy_density_seeds_reuses_only_runs_with_the_same_settings(tmp_path):
    import argparse

    import toy_density_seeds

    args = argparse.Namespace(
        quick=False, densities=["two_moons"], seconds=40.0, steps=1000, n_test=3000
    )
    assert toy_density_seeds.reusable(0, args, tmp_path) is None  # nothing there yet
    cfg = {"densities": ["two_moons"], "models": ["nhf", "realnvp"], "seed": 0,
           "seconds": 40.0, "steps": 1000, "n_test": 3000}  # fmt: skip
    path = tmp_path / "toy_density_seed0.json"
    path.write_text(json.dumps({"config": cfg}))
    assert toy_density_seeds.reusable(0, args, tmp_path) == {"config": cfg}
    for key, other in (
        ("seconds", 20.0),
        ("densities", ["rings"]),
        ("models", ["nhf"]),
        ("models", ["nhf_steep", "realnvp"]),  # another NHF row is another run
    ):
        path.write_text(json.dumps({"config": {**cfg, key: other}}))
        assert toy_density_seeds.reusable(0, args, tmp_path) is None, key
    path.write_text("{}")
    with pytest.raises(RuntimeError, match="not a toy_density.py result"):
        toy_density_seeds.reusable(0, args, tmp_path)


def test_toy_density_seeds_under_another_name_keeps_the_main_tables_files(tmp_path):
    import toy_density_seeds

    argv = ["--quick", "--seeds", "0", "1", "--densities", "banana", "--name", "heldout_seeds"]
    out = toy_density_seeds.main([*argv, "--out-dir", str(tmp_path)])
    assert list(out["summary"]) == ["banana"] and out["summary"]["banana"]["held_out"]
    text = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- heldout_seeds:begin" in text and "toy_density_seeds:begin" not in text
    assert (tmp_path / "heldout_seeds_quick.json").exists()
    work = toy_density_seeds.ROOT / "runs" / "benchmarks" / "toy_density_seeds"
    assert (work / "heldout_seeds_seed1_quick.json").exists()
    assert toy_density_seeds.seed_name("toy_density_seeds", 1) == "toy_density_seed1"
