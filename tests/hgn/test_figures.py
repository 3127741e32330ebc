"""hamflow_hgn.figures.figure8: prior samples and samples from the fitted posterior Gaussian."""

from __future__ import annotations

from hamflow_hgn.figures import figure8
from hamflow_hgn.models.hgn import HGN
from hamflow_hgn.samples import LatentGaussian


def test_figure8_draws_prior_then_fitted_samples(tmp_path, monkeypatch, tiny_hgn_run):
    run = tmp_path / "runs" / "mass_spring" / "hgn_leapfrog"
    tiny_hgn_run(tmp_path / "data", run, n_train=12, steps=1)
    seen = []
    original = HGN.sample

    def spy(self, n, steps=None, **kwargs):
        seen.append(kwargs.get("latent"))
        return original(self, n, steps, **kwargs)

    monkeypatch.setattr(HGN, "sample", spy)
    out = figure8(tmp_path, ["mass_spring", "pendulum"], tmp_path / "fig8.png", n_samples=2)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert seen[0] is None and isinstance(seen[1], LatentGaussian) and len(seen) == 2
    assert int(seen[1].num_sequences) == 12  # fitted on the run's training sequences
