"""Smoke tests: the benchmark scripts run end to end in --quick mode and write their outputs."""

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import nhf_step  # noqa: E402
import toy_density  # noqa: E402
from _common import num_params  # noqa: E402


def test_baselines_are_parameter_matched():
    cfg = toy_density.BenchConfig()
    models = toy_density.build_models(replace(cfg, hidden=32))
    target = num_params(models["nhf"][0])
    for name in ("realnvp", "nsf"):
        assert abs(num_params(models[name][0]) - target) / target < 0.10, name


def test_toy_density_quick(tmp_path):
    out = toy_density.main(["--quick", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "toy_density_quick.json").read_text())
    assert data["config"]["steps"] == out["config"]["steps"]
    for dname, res in data["results"].items():
        assert res["true_entropy"] > -5
        for mname in ("nhf", "realnvp", "nsf"):
            r = res["models"][mname]
            for key in ("steps", "seconds"):
                assert math.isfinite(r[key]["test_nll"]), (dname, mname, key)
                assert r[key]["sampling_per_s"] > 0 and r[key]["density_eval_per_s"] > 0
    md = (tmp_path / "benchmarks.md").read_text()
    assert "toy_density:begin" in md and "| eight_gaussians |" in md
    assert (tmp_path / "density_benchmark.png").stat().st_size > 1000


def test_nhf_step_quick(tmp_path):
    out = nhf_step.main(["--quick", "--out-dir", str(tmp_path)])
    r = out["results"]
    assert r["ratio_nhf_over_realnvp"] > 0 and r["speedup_closed_form_over_autograd"] > 0
    assert r["loss_diff_closed_vs_autograd"] < 1e-4
    assert (tmp_path / "nhf_step_quick.json").exists()
    assert "nhf_step:begin" in (tmp_path / "benchmarks.md").read_text()


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--densities", "nope"], ["--dt", "-1"]])
def test_toy_density_bad_arguments(argv):
    with pytest.raises(SystemExit):
        toy_density.parse_args(argv)


def test_hgn_step_tiny_writes_json_and_one_docs_block(tmp_path):
    import hgn_step

    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    argv = ["--device", "cpu", "--width", "8", "--size", "8", "--frames", "3", "--batch", "2",
            "--repeats", "2", "--warmup", "0", "--options", "baseline", "channels_last",
            "--out", str(tmp_path / "hgn_step.json"), "--docs", str(docs)]  # fmt: skip
    first = hgn_step.main(argv)
    hgn_step.main(argv)  # a second run replaces the block instead of appending another
    rows = json.loads((tmp_path / "hgn_step.json").read_text())["results"]
    assert [r["option"] for r in rows] == ["baseline", "channels_last"]
    assert rows[0]["speedup_vs_baseline"] == 1.0
    assert all(r["step_s_median"] > 0 and r["sequences_per_s"] > 0 for r in rows)
    assert first["model"]["frames"] == 3
    assert first["render_batch_s"] > 0 and 0 < first["render_share_of_step"] < 1
    text = docs.read_text()
    assert text.count("hgn_step:begin") == 1 and "| channels_last |" in text


def test_hgn_step_bad_arguments():
    import hgn_step

    with pytest.raises(SystemExit):
        hgn_step.parse_args(["--repeats", "0"])


def test_nhf_defaults_quick(tmp_path):
    import nhf_defaults

    out = nhf_defaults.main(["--quick", "--out-dir", str(tmp_path)])
    res = out["results"]["grid_gaussians"]
    assert set(res["runs"]) == set(nhf_defaults.CANDIDATES)
    assert all(math.isfinite(r[str(1e-3)]["test_nll"]) for r in res["runs"].values())
    assert out["current_defaults"].keys() == {"dt", "learn_dt"}
    md = (tmp_path / "benchmarks.md").read_text()
    assert "nhf_defaults:begin" in md and "| grid_gaussians |" in md
