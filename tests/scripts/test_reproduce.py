"""scripts/reproduce_table1.py: the planned commands, resumability and the Table 1 assembly."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reproduce_table1.py"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def dry_run(rt, capsys, *args) -> list[str]:
    assert rt.main([*args, "--dry-run"]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]


def test_dry_run_lists_the_expected_runs(rt, capsys, tmp_path):
    cmds = dry_run(
        rt,
        capsys,
        *("--scale", "small", "--root", str(tmp_path)),
        *("--systems", "mass_spring", "--models", "hgn_leapfrog", "pixel_hnn_mlp"),
    )
    assert len(cmds) == 1 + 2 * 2  # data, then (train, evaluate) per model
    argvs = [shlex.split(c) for c in cmds]
    assert argvs[0][:3] == ["python", "-m", "hamflow_hgn.data"]
    assert "--system" in argvs[0] and "mass_spring" in argvs[0]
    trains = [a for a in argvs if a[2] == "hamflow_hgn.train"]
    assert [a[a.index("--model") + 1] for a in trains] == ["pixel_hnn_mlp", "hgn"]  # paper order
    assert trains[1][trains[1].index("--variant") + 1] == "leapfrog"
    runs = {a[a.index("--out") + 1] for a in trains}
    assert runs == {
        str(tmp_path / "runs" / "mass_spring" / m) for m in ("hgn_leapfrog", "pixel_hnn_mlp")
    }
    evals = [a for a in argvs if a[2] == "hamflow_hgn.evaluate"]
    assert {a[3] for a in evals} == runs  # both splits of every run
    assert all(a[a.index("--data") + 1] == str(tmp_path / "data" / "mass_spring") for a in evals)


def test_small_plan_draws_three_body_with_big_discs_and_decays_hgns_rate(rt, capsys, tmp_path):
    cmds = dry_run(
        rt,
        capsys,
        *("--scale", "small", "--root", str(tmp_path), "--systems", "three_body", "pendulum"),
        *("--models", "hgn_leapfrog", "pixel_hnn_mlp"),
    )
    argvs = [shlex.split(c) for c in cmds]
    data = {
        a[a.index("--out") + 1]: a[a.index("--system") + 1] for a in argvs if a[2].endswith("data")
    }
    assert data == {
        str(tmp_path / "data" / "three_body"): "three_body_big_discs",
        str(tmp_path / "data" / "pendulum"): "pendulum",
    }
    trains = {a[a.index("--model") + 1] + ":" + a[a.index("--out") + 1].split("/")[-2]: a
              for a in argvs if a[2] == "hamflow_hgn.train"}  # fmt: skip
    assert len(trains) == 4
    for key, argv in trains.items():
        decays = "--lr-decay" in argv
        assert decays == key.startswith("hgn"), key
        if decays:
            assert argv[argv.index("--lr-decay") + 1] == "0.3"
        # three-body's HGNs ask for a tolerance they can reach; nothing else changes it
        tolerance = argv[argv.index("--geco-tolerance") + 1] if "--geco-tolerance" in argv else None
        assert tolerance == ("0.5" if key == "hgn:three_body" else None), key
    paper = rt.build_plan(rt.SCALES["paper"], tmp_path, ("three_body",), ("hgn_leapfrog",))
    assert "three_body" == paper.steps[0][1][paper.steps[0][1].index("--system") + 1]


def test_full_paper_plan(rt, capsys, tmp_path):
    cmds = dry_run(rt, capsys, "--scale", "paper", "--root", str(tmp_path))
    assert len(cmds) == 4 + 4 * 6 * 2  # 4 systems, 6 models, train + evaluate
    text = "\n".join(cmds)
    assert "--n-train 50000 --n-test 10000" in text
    assert "--steps 15000" in text and "--device cuda" in text
    for variant in ("leapfrog", "euler", "deterministic", "no_fpsi"):
        assert text.count(f"--variant {variant}") == 4
    assert text.count("--model pixel_hnn_conv") == 4
    assert text.count("--geco-setting paper") == 4 * 4  # the paper's GECO for every HGN row


def test_dry_run_marks_finished_work(rt, capsys, tmp_path):
    args = ("--root", str(tmp_path), "--systems", "pendulum", "--models", "hgn_euler")
    (tmp_path / "data" / "pendulum").mkdir(parents=True)
    (tmp_path / "data" / "pendulum" / "metadata.json").write_text("{}")
    assert rt.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# data (done)" in out and "# train (todo)" in out
    run = tmp_path / "runs" / "pendulum" / "hgn_euler"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("step,loss\n10,1.0\n")  # interrupted at step 10
    assert rt.main([*args, "--dry-run"]) == 0
    assert "# train (todo)" in capsys.readouterr().out
    steps = rt.SCALES["small"].hgn_steps
    (run / "metrics.csv").write_text(f"step,loss\n10,1.0\n{steps},0.5\n")
    assert rt.main([*args, "--dry-run"]) == 0
    assert "# train (done)" in capsys.readouterr().out


def test_cli_evaluation_format_is_read(rt, tmp_path):
    plan = rt.build_plan(rt.SCALES["small"], tmp_path, ("two_body",), ("hgn_leapfrog",))
    path = plan.eval_path("two_body", "hgn_leapfrog")
    path.parent.mkdir(parents=True)
    split = {
        "mse_x1e4": {"mean": 12.5, "std": 3.0},
        "energy": {"mean": {"mean": 2.0, "std": 0}, "variance": {"mean": 1e-5, "std": 0}},
    }
    path.write_text(json.dumps({"splits": {"test": split}}))
    assert plan.result("two_body", "hgn_leapfrog", "test") == {
        "mse": (12.5e-4, 3e-4),
        "energy_mean": 2.0,
        "energy_var": 1e-5,
    }
    text = rt.results_markdown(plan, "cmd")
    assert "**12.50 ± 3.00** (16.47 ± 7.15)" in text


def test_paper_table_is_complete_and_matches_the_goals(rt):
    table = rt.PAPER_TABLE1
    assert set(table) == set(rt.ROWS)
    for rows in table.values():
        assert set(rows) == set(rt.SYSTEMS)
        for cell in rows.values():
            assert set(cell) == {"train", "test"}
    leapfrog_test = {s: table["hgn_leapfrog"][s]["test"][0] for s in rt.SYSTEMS}
    assert leapfrog_test == {
        "mass_spring": 6.23,
        "pendulum": 11.72,
        "two_body": 16.47,
        "three_body": 9.8,
    }
    assert table["pixel_hnn_conv"]["two_body"]["train"] == (7.3, 0.38)


def fake_metrics(
    plan, system, model, split, mse, std, energy_var=None, vpt=None, rel_std=None, tracked=None
) -> None:
    """Add one split to a run's ``eval/metrics.json`` in the evaluate CLI's format."""
    path = plan.eval_path(system, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"splits": {}}
    m = {"mse_x1e4": {"mean": mse * 1e4, "std": std * 1e4}}
    if energy_var is not None:
        m["energy"] = {"mean": {"mean": 1.5, "std": 0}, "variance": {"mean": energy_var, "std": 0}}
        if rel_std is not None:
            m["energy"]["relative_std"] = {"mean": rel_std, "std": 0}
    if vpt is not None:
        m["vpt"], m["vpt_loose"] = ({"mean": v, "std": 0} for v in vpt)
    if tracked is not None:
        m["tracking"] = {"error_px": 0.5, "frames": tracked[0], "sequences": tracked[1]}
    data["splits"][split] = m
    path.write_text(json.dumps(data))


def test_results_markdown_puts_ours_next_to_the_papers(rt, tmp_path):
    plan = rt.build_plan(
        rt.SCALES["small"],
        tmp_path,
        ("mass_spring",),
        ("pixel_hnn_mlp", "hgn_euler", "hgn_leapfrog"),
    )
    fake_metrics(plan, "mass_spring", "hgn_leapfrog", "test", 5e-4, 1e-4, 2e-6)
    fake_metrics(plan, "mass_spring", "hgn_leapfrog", "train", 3e-4, 0.5e-4, 2e-6)
    fake_metrics(plan, "mass_spring", "hgn_euler", "test", 6e-4, 1e-4, 4e-5)
    fake_metrics(plan, "mass_spring", "pixel_hnn_mlp", "test", 9.9e-3, 2e-4, 0.0)
    text = rt.results_markdown(
        plan, "python scripts/reproduce_table1.py --scale small", results_file="r.json"
    )
    assert "**5.00 ± 1.00** (6.23 ± 2.03)" in text  # leapfrog test: ours, then the paper's
    assert "**3.00 ± 0.50** (3.84 ± 1.07)" in text  # leapfrog train
    assert "**99.00 ± 2.00** (104.37 ± 52.51)" in text  # PixelHNN test
    assert "— (11.72 ± 4.14)" in text  # pendulum was not run
    row = next(line for line in text.splitlines() if line.startswith("| HGN (leapfrog)"))
    assert row.count("**") == 4  # two numbers of ours (train, test), the rest dashes
    # one caption line names the command and the results file; no date or machine in the page
    assert "Command: `python scripts/reproduce_table1.py --scale small` · results: `r.json`" in text
    assert "Machine" not in text and "Date" not in text
    assert "`reconstruct`" in text
    assert "test 5.00 vs the paper's 6.23 (×0.80)" in text
    assert "ordering matches the paper" in text
    assert "Euler / leapfrog variance: 20.0×" in text


def test_fig8_is_captioned_with_its_fitted_samples(rt, tmp_path):
    plan = rt.build_plan(rt.SCALES["small"], tmp_path, ("mass_spring",), ("hgn_leapfrog",))
    figures = ["img/results_fig6_mse.png", "img/results_fig8_samples.png"]
    lines = rt.results_markdown(plan, "cmd", figures=figures).splitlines()
    at = lines.index("![results_fig8_samples](img/results_fig8_samples.png)")
    assert lines[at + 2] == "Command: `cmd`"  # each figure's caption line
    assert "LatentGaussian" in lines[at + 4] and "prior samples" in lines[at + 4]
    assert not any("LatentGaussian" in line for line in lines[:at])  # only under Fig. 8


def test_vpt_and_relative_energy_std_are_reported(rt, tmp_path):
    plan = rt.build_plan(
        rt.SCALES["small"], tmp_path, ("pendulum", "two_body"), ("hgn_euler", "hgn_leapfrog")
    )
    fake_metrics(plan, "pendulum", "hgn_leapfrog", "test", 5e-4, 0, 2e-6, (0.0, 12.5), 0.01)
    fake_metrics(plan, "pendulum", "hgn_euler", "test", 6e-4, 0, 4e-5, (1.0, 3.25), 0.04)
    text = rt.results_markdown(plan, "cmd")
    assert "| HGN (Euler) | **3.2** (1.0) | — |" in text  # loose threshold first
    assert "| HGN (leapfrog) | **12.5** (0.0) | — |" in text
    assert "out of the 16 frames of the `reconstruct` protocol" in text
    assert "Euler 0.04, leapfrog 0.01, 4.0×" in text


def test_tracking_is_reported_per_model_and_system(rt, tmp_path):
    plan = rt.build_plan(
        rt.SCALES["small"], tmp_path, ("pendulum", "two_body"), ("hgn_euler", "hgn_leapfrog")
    )
    fake_metrics(plan, "pendulum", "hgn_leapfrog", "test", 5e-4, 0, tracked=(0.99, 0.906))
    fake_metrics(plan, "two_body", "hgn_leapfrog", "test", 5e-4, 0, tracked=(0.5, 0.0))
    fake_metrics(plan, "pendulum", "hgn_euler", "test", 6e-4, 0)  # evaluated before tracking
    lines = rt.results_markdown(plan, "cmd").splitlines()
    at = lines.index("### Tracking")
    table = lines[at : at + 9]
    assert "| HGN (leapfrog) | **91 %** (99 %) | **0 %** (50 %) |" in table  # sequences first
    assert "| HGN (Euler) | — | — |" in table


def test_ordering_failure_is_reported(rt, tmp_path):
    plan = rt.build_plan(
        rt.SCALES["small"], tmp_path, ("pendulum",), ("pixel_hnn_mlp", "hgn_leapfrog")
    )
    fake_metrics(plan, "pendulum", "hgn_leapfrog", "test", 5e-3, 1e-4)
    fake_metrics(plan, "pendulum", "pixel_hnn_mlp", "test", 4e-3, 1e-4)
    text = rt.results_markdown(plan, "cmd")
    assert "does NOT match the paper" in text


def test_latent_scale_diagnostic_reports_mse_and_state_size(tmp_path):
    from hamflow_hgn.data import DataConfig, generate

    path = Path(__file__).resolve().parents[2] / "scripts" / "hgn_latent_scale.py"
    spec = importlib.util.spec_from_file_location("hgn_latent_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = generate(DataConfig("pendulum", 8, 2, steps=4, size=8), tmp_path, workers=1,
                    progress=False)  # fmt: skip
    rows = module.main(["--data", str(data), "--steps", "4", "--every", "2", "--width", "4",
                        "--batch-size", "2"])  # fmt: skip
    assert [r["step"] for r in rows] == [1, 2, 4]
    assert all(r["mse"] > 0 and r["q0"] > 0 and r["p0"] > 0 for r in rows)
    with pytest.raises(SystemExit):
        module.main(["--data", str(data), "--lr", "0"])


def test_deterministic_variant_holds_its_latent_scale(tmp_path):
    """50 steps at lr 1e-3: on the bare MSE the mean |q0| reached 431 here (the decoder then
    saturates and the variant draws the mean image); with ½|μ|² in its loss it stays near 4."""
    from hamflow_hgn.data import DataConfig, generate

    path = Path(__file__).resolve().parents[2] / "scripts" / "hgn_latent_scale.py"
    spec = importlib.util.spec_from_file_location("hgn_latent_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = generate(DataConfig("mass_spring", 32, 2, steps=8, size=16), tmp_path, workers=1,
                    progress=False)  # fmt: skip
    rows = module.main(["--data", str(data), "--variant", "deterministic", "--steps", "50",
                        "--every", "50", "--width", "16", "--batch-size", "8"])  # fmt: skip
    assert rows[-1]["q0"] < 50 and rows[-1]["p0"] < 50


def test_ratio_to_the_mean_image_is_tabled(rt, tmp_path):
    from hamflow_hgn.data import DataConfig, generate

    plan = rt.build_plan(rt.SCALES["small"], tmp_path, ("mass_spring",), ("hgn_leapfrog",))
    cfg = DataConfig("mass_spring", n_train=8, n_test=4, steps=4, size=8)
    generate(cfg, plan.data_dir("mass_spring"), workers=1, progress=False)
    reference = rt.mean_image_mse(plan)
    assert set(reference) == {"mass_spring"} and reference["mass_spring"] > 0
    fake_metrics(plan, "mass_spring", "hgn_leapfrog", "test", 0.25 * reference["mass_spring"], 0)
    text = rt.results_markdown(plan, "cmd")
    row = next(line for line in text.splitlines() if line.startswith("| HGN (leapfrog) | **0"))
    assert row == "| HGN (leapfrog) | **0.25** (6.23) |"
    assert f"scores {reference['mass_spring'] * 1e4:.2f} on test" in text


def test_ratio_table_without_data_says_so(rt, tmp_path):
    plan = rt.build_plan(rt.SCALES["small"], tmp_path, ("pendulum",), ("hgn_leapfrog",))
    text = rt.results_markdown(plan, "cmd")
    assert "No data was generated, so there is no mean image to compare with." in text


def fake_training_log(plan, system, model, lambdas, variant="leapfrog", balance="geco") -> None:
    run = plan.run_dir(system, model)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(
        json.dumps({"model": {"variant": variant, "kl_balance": balance}})
    )
    rows = ["step,loss,mse,kl,kl_weight,lambda,seconds"]
    rows += [f"{10 * i},1,0.1,{100 + i},{1 / v},{v},{i}" for i, v in enumerate(lambdas, 1)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_kl_balance_reports_lambda_at_its_clamps(rt, tmp_path):
    plan = rt.build_plan(
        rt.SCALES["small"], tmp_path, ("pendulum",), ("hgn_leapfrog", "hgn_deterministic")
    )
    fake_training_log(plan, "pendulum", "hgn_leapfrog", [1e5, 3e5, 1e6, 1e6])
    fake_training_log(plan, "pendulum", "hgn_deterministic", [1e6] * 4, variant="deterministic")
    text = rt.results_markdown(plan, "cmd")
    assert "| Pendulum | HGN (leapfrog) | 1e+05 → 1e+06 | 1e+05 – 1e+06 | 50 % | 104 |" in text
    assert "| Pendulum | HGN (determ)" not in text  # lambda is fixed there: nothing to report


def test_kl_balance_reports_calibrated_runs_and_not_fixed_ones(rt, tmp_path):
    plan = rt.build_plan(rt.SCALES["small"], tmp_path, ("pendulum",), ("hgn_leapfrog", "hgn_euler"))
    fake_training_log(plan, "pendulum", "hgn_leapfrog", [1e5, 2e4], balance="calibrated")
    fake_training_log(plan, "pendulum", "hgn_euler", [1e5, 1e5], balance="fixed")
    text = rt.results_markdown(plan, "cmd")
    assert "| Pendulum | HGN (leapfrog) | 1e+05 → 2e+04 | 2e+04 – 1e+05 | 0 % | 102 |" in text
    assert "| Pendulum | HGN (Euler)" not in text


def test_kl_balance_without_runs_says_so(rt, tmp_path):
    plan = rt.build_plan(rt.SCALES["small"], tmp_path, ("pendulum",), ("hgn_leapfrog",))
    lines = rt.kl_balance_lines(plan)
    assert lines == ["- no HGN run with a moving multiplier has logged it."]


def test_documented_gpu_run_is_the_paper_pendulum_and_runs_at_tiny_scale(rt, capsys, tmp_path):
    """Issue 10's GPU run: one line in results.md, the paper's pendulum HGN (leapfrog, 32×32,
    30-step unroll, 15 000 steps, on CUDA), and the same line at ``--scale tiny`` runs here."""
    line = rt.PAPER_PENDULUM_COMMAND
    docs = (SCRIPT.parents[1] / "docs" / "reproduction.md").read_text()
    assert line in docs.splitlines()
    argv = shlex.split(line)[2:]  # after "python scripts/reproduce_table1.py"
    root = argv.index("--root") + 1
    argv[root] = str(tmp_path / "paper")
    cmds = [shlex.split(c) for c in dry_run(rt, capsys, *argv)]
    data, train, evaluate = cmds
    assert data[data.index("--size") + 1] == "32" and data[data.index("--steps") + 1] == "31"
    assert data[data.index("--system") + 1] == "pendulum"
    assert train[train.index("--variant") + 1] == "leapfrog"
    assert train[train.index("--steps") + 1] == "15000"
    assert train[train.index("--device") + 1] == "cuda" == evaluate[evaluate.index("--device") + 1]

    tiny = [a if a != "paper" else "tiny" for a in argv]
    tiny[root] = str(tmp_path / "tiny")
    assert rt.main([*tiny, "--no-figures"]) == 0
    plan = rt.build_plan(rt.SCALES["tiny"], tmp_path / "tiny", ("pendulum",), ("hgn_leapfrog",))
    assert plan.eval_path("pendulum", "hgn_leapfrog").exists()
    assert "HGN (leapfrog)" in (tmp_path / "tiny" / "results.md").read_text()
