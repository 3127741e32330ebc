"""Smoke tests: the HGN benchmark scripts run end to end and write their outputs.

The NHF benchmarks have theirs in ``test_nhf_benchmarks.py``.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_hgn_step_tiny_writes_json_and_one_docs_block(tmp_path):
    import hgn_step

    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    argv = ["--device", "cpu", "--width", "8", "--size", "8", "--frames", "3", "--batch", "2",
            "--repeats", "2", "--warmup", "0", "--options", "baseline", "channels_last", "default",
            "--out", str(tmp_path / "hgn_step.json"), "--docs", str(docs)]  # fmt: skip
    first = hgn_step.main(argv)
    hgn_step.main(argv)  # a second run replaces the block instead of appending another
    rows = json.loads((tmp_path / "hgn_step.json").read_text())["results"]
    assert [r["option"] for r in rows] == ["baseline", "channels_last", "default"]
    # The same work in either memory format; the fused decoder does less of it (4 of 9 taps).
    assert rows[0]["gflop"] == pytest.approx(rows[1]["gflop"], rel=1e-12)
    assert 0 < rows[2]["gflop"] < rows[0]["gflop"]
    assert rows[0]["speedup_vs_baseline"] == 1.0
    assert all(r["step_s_median"] > 0 and r["sequences_per_s"] > 0 for r in rows)
    assert first["model"]["frames"] == 3
    assert first["conv_gflop_per_s"] > 0
    assert first["render_batch_s"] > 0 and 0 < first["render_share_of_step"] < 1
    text = docs.read_text()
    assert text.count("hgn_step:begin") == 1 and "| channels_last |" in text


def test_step_gflop_counts_forward_and_backward_matmuls():
    import hgn_step
    import torch

    a = torch.randn(8, 5, requires_grad=True)
    b = torch.randn(5, 3, requires_grad=True)

    def step():
        (a @ b).sum().backward()

    # forward 2*8*5*3 flops, backward the same again for each of the two input gradients
    assert hgn_step.step_gflop(step) == pytest.approx(3 * 2 * 8 * 5 * 3 / 1e9, rel=1e-12)


def test_hgn_step_bad_arguments():
    import hgn_step

    with pytest.raises(SystemExit):
        hgn_step.parse_args(["--repeats", "0"])


def test_campusai_step_refuses_a_directory_that_is_not_their_checkout(tmp_path):
    import campusai_step

    with pytest.raises(SystemExit, match="expected a checkout of CampusAI"):
        campusai_step.main(["--campusai", str(tmp_path), "--repeats", "1"])
