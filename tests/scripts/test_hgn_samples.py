"""scripts/hgn_samples.py: the posterior diagnostics of a trained run, and nothing written into
docs/ without --publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hamflow_hgn.runs import load_run
from hamflow_hgn.samples import nearest_sequence_ratio

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "hgn_samples.py"


@pytest.fixture(scope="module")
def script(load_script):
    return load_script(SCRIPT, "hgn_samples_script")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_hgn_run):
    root = tmp_path_factory.mktemp("samples")
    return tiny_hgn_run(root / "data", root / "run")


def test_reports_the_kl_split_the_spectrum_and_the_ratios(script, run_dir, tmp_path):
    docs = (ROOT / "docs" / "hgn" / "evaluation.md").read_text()
    (record,) = script.main([str(run_dir), "--out", str(tmp_path), "--samples", "5"])
    assert (ROOT / "docs" / "hgn" / "evaluation.md").read_text() == docs  # no --publish, no docs
    saved = json.loads((tmp_path / "summary.json").read_text())["records"][0]
    assert saved == record
    assert record["kl_per_sequence"] == pytest.approx(
        record["kl_variance_part"] + record["kl_mean_part"]
    )
    top = record["top_variances"]
    assert top == sorted(top, reverse=True) and top[-1] >= 0
    assert 1 <= record["directions_for_99pct"] <= record["latent_dims"]
    # the test sequences' score, recomputed here from the data
    loaded = load_run(run_dir, device="cpu")
    from hamflow_hgn.data import open_dataset

    test = open_dataset(loaded.data_dir, "test")
    train_images = loaded.dataset.render_batch(range(len(loaded.dataset)))
    expected = nearest_sequence_ratio(test.render_batch(range(len(test))), train_images)
    assert record["nearest_ratio_median"]["test sequences"] == pytest.approx(
        float(expected.median()), rel=1e-6
    )
    # the KL against HGN's own per-sequence KL of the posteriors, and its two parts
    with torch.no_grad():
        mean, logvar = loaded.model.encode(train_images)
    mean, logvar = mean.double().flatten(1), logvar.double().flatten(1)
    kl_mean = 0.5 * mean.square().sum(1).mean()
    kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum(1).mean()
    assert record["kl_per_sequence"] == pytest.approx(float(kl), rel=1e-6)
    assert record["kl_mean_part"] == pytest.approx(float(kl_mean), rel=1e-6)
    assert record["mean_posterior_variance"] == pytest.approx(float(logvar.exp().mean()))
    assert "| run | prior | KL (var + mean) | mean σ²" in (tmp_path / "samples.md").read_text()
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_refuses_a_folder_without_a_checkpoint(script, tmp_path):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path)])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--samples", "0"])
