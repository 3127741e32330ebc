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
