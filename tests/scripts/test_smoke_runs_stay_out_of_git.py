"""Smoke runs write under runs/ or a temporary folder: docs/ and benchmarks/results/ stay as
committed (only an explicit --publish writes there)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("docs", "benchmarks/results")

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)


def _status() -> str:
    cmd = ["git", "status", "--porcelain", "--untracked-files=all", "--", *WATCHED]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _load(relative: str, name: str):
    sys.path.insert(0, str((ROOT / relative).parent))
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _clean_git():
    torch.set_num_threads(1)
    before = _status()
    yield
    assert _status() == before, "a smoke run wrote into docs/ or benchmarks/results/"


def test_reproduce_table1_tiny_writes_under_its_root(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    rt = _load("scripts/reproduce_table1.py", "reproduce_table1_smoke")
    argv = ["--scale", "tiny", "--root", str(tmp_path), "--systems", "pendulum"]
    assert rt.main([*argv, "--models", "hgn_leapfrog", "pixel_hnn_mlp"]) == 0
    assert "HGN (leapfrog)" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "img" / "results_fig6_mse.png").exists()
    with pytest.raises(SystemExit):
        rt.parse_args(["--scale", "tiny", "--publish"])  # tiny numbers never go to docs/


def test_hgn_step_by_default_writes_under_runs():
    hgn_step = _load("benchmarks/hgn_step.py", "hgn_step_smoke")
    argv = ["--device", "cpu", "--width", "4", "--size", "8", "--frames", "3", "--batch", "2",
            "--repeats", "1", "--warmup", "0", "--options", "baseline"]  # fmt: skip
    hgn_step.main(argv)
    assert (ROOT / "runs" / "benchmarks" / "hgn_step.json").exists()
    assert hgn_step.parse_args(["--publish"]).out == ROOT / "benchmarks/results/hgn_step.json"


def test_data_generation_quick_writes_under_runs():
    bench = _load("benchmarks/data_generation.py", "data_generation_smoke")
    out = bench.main(["--quick", "--workers", "1"])
    assert out["quick"] and (ROOT / "runs/benchmarks/data_generation_quick.json").exists()
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--publish"])


def test_quick_publish_never_writes_the_committed_results(tmp_path):
    common = _load("benchmarks/_common.py", "_common")
    path, md = common.publish(
        "smoke_test", {"x": 1}, "<!-- smoke_test:begin -->\n<!-- smoke_test:end -->",
        ROOT / "benchmarks" / "results", quick=True, markdown=tmp_path / "b.md",
    )  # fmt: skip
    assert path == ROOT / "runs" / "benchmarks" / "smoke_test_quick.json"
    path.unlink()
