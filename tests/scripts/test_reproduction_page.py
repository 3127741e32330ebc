"""docs/reproduction.md is rendered from its committed results file, and that file is complete.

The page's caption names a results JSON (``benchmarks/results/table1_*.json``); rendering that
file alone (``scripts/reproduce_table1.py --from-results``) must give the page byte for byte,
so no number in it is typed by hand or left over from runs whose results were not committed.
The round-trip test checks that the snapshot holds everything the page reads from the runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reproduction.md"


def published_record() -> tuple[str, dict]:
    """The results file named by the page's caption line, and its contents."""
    text = PAGE.read_text()
    found = re.search(r"^Command: `[^`]+` · results: `([^`]+\.json)`$", text, re.MULTILINE)
    assert found, "docs/reproduction.md has no caption line naming its results file"
    return found.group(1), json.loads((ROOT / found.group(1)).read_text())


def test_the_page_is_rendered_from_its_committed_results_file(rt):
    name, record = published_record()
    assert name.startswith("benchmarks/results/table1_") and record["results_file"] == name
    for key in ("command", "machine", "date", "commit", "settings", "snapshot"):
        assert record.get(key), key
    assert record["command"].startswith("python scripts/reproduce_table1.py ")
    assert "--publish" in record["command"]
    assert PAGE.read_text() == rt.render_record(record)
    for figure in record["figures"]:  # every figure the page shows was committed beside it
        assert (ROOT / "docs" / "img" / figure).is_file(), figure


def test_a_reduced_scale_says_so_in_the_page_and_the_file(rt):
    _, record = published_record()
    scale = record["settings"]["scale"]
    if scale["name"] != "reduced":
        pytest.skip("the published page is not at the reduced scale")
    text = PAGE.read_text()
    assert "## Table 1 (reduced scale)" in text and "**Reduced scale.**" in text
    assert scale["hgn_steps"] < rt.SCALES["small"].hgn_steps
    assert f"HGN trained {scale['hgn_steps']} steps" in text


def fake_run(plan, system, model, mse, lambdas=None) -> None:
    """A run's ``eval/metrics.json`` (evaluate CLI format) and, for HGN, its training log."""
    path = plan.eval_path(system, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    split = {
        "mse_x1e4": {"mean": mse * 1e4, "std": mse * 1e3},
        "vpt": {"mean": 1.0, "std": 0}, "vpt_loose": {"mean": 4.5, "std": 1},
        "energy": {"mean": {"mean": -2.0, "std": 0}, "variance": {"mean": mse, "std": 0},
                   "relative_std": {"mean": mse * 10, "std": 0}},
        "tracking": {"error_px": 0.4, "frames": 0.75, "sequences": 0.5},
    }  # fmt: skip
    path.write_text(json.dumps({"splits": {"train": split, "test": split}}))
    if lambdas:
        (path.parents[1] / "config.json").write_text(
            json.dumps({"model": {"variant": "leapfrog", "kl_balance": "calibrated"}})
        )
        rows = ["step,loss,mse,kl,kl_weight,lambda,seconds"]
        rows += [f"{i},1,0.1,{90 + i},{1 / v},{v},{i}" for i, v in enumerate(lambdas, 1)]
        (path.parents[1] / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_a_results_file_renders_the_same_page_as_the_runs(rt, tmp_path):
    plan = rt.build_plan(
        rt.SCALES["reduced"], tmp_path, ("pendulum", "two_body"), rt.SCALES["reduced"].models
    )
    fake_run(plan, "pendulum", "hgn_leapfrog", 5e-4, lambdas=[1e5, 3e4, 2e4])
    fake_run(plan, "pendulum", "hgn_euler", 7e-4, lambdas=[1e5, 1e6])
    fake_run(plan, "pendulum", "pixel_hnn_mlp", 6e-3)
    fake_run(plan, "two_body", "hgn_leapfrog", 2e-4)
    (tmp_path / "hnn_state_check.json").write_text(json.dumps([{
        "config": {"system": "pendulum", "train_steps": 5, "rollout_steps": 7},
        "hnn": {"field_rel_error": 0.01, "energy_drift": 0.002},
        "mlp": {"field_rel_error": 0.03, "energy_drift": 0.02},
    }]))  # fmt: skip
    figures = ["img/results_fig6_mse.png", "img/results_fig8_samples.png"]
    provenance = {"machine": "M", "date": "D", "commit": "C"}
    record = rt.results_record(
        plan, "cmd --publish", provenance, results_file="r.json", figures=figures,
        notes=["- a note"],
    )  # fmt: skip
    record = json.loads(json.dumps(record))  # what the file holds
    direct = rt.results_markdown(
        plan, "cmd --publish", results_file="r.json", figures=figures, notes=["- a note"]
    )
    assert rt.render_record(record) == direct
    # the page shows what the runs hold: numbers, the KL table, the HNN check, the captions
    assert "**5.00 ± 0.50** (4.9 ± 1.86)" in direct
    assert "| Pendulum | HGN (Euler) | 1e+05 → 1e+06 | 1e+05 – 1e+06 | 50 % | 92 |" in direct
    assert "| pendulum | 5 | 7 | 0.010 | 0.030 | 0.0020 | 0.0200 |" in direct
    assert direct.count("Command: `cmd --publish` · results: `r.json`") == 1 + len(figures)
    assert "**Reduced scale.** 3 of Table 1's 6 rows" in direct
    assert "Machine" not in direct and "Date" not in direct
    # and --from-results writes it without any run directory
    (tmp_path / "r.json").write_text(json.dumps(record))
    out = tmp_path / "page.md"
    assert rt.main(["--from-results", str(tmp_path / "r.json"), "--results", str(out)]) == 0
    assert out.read_text() == direct
