"""hamflow_hgn.figures.figure8: prior samples and samples from the fitted posterior Gaussian."""

from __future__ import annotations

import torch

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DataConfig, generate
from hamflow_hgn.figures import figure8
from hamflow_hgn.models.hgn import HGN
from hamflow_hgn.samples import LatentGaussian


def test_figure8_draws_prior_then_fitted_samples(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    data = generate(
        DataConfig("mass_spring", n_train=12, n_test=4, steps=5, size=16),
        tmp_path / "data",
        workers=1,
        progress=False,
    )
    run = tmp_path / "runs" / "mass_spring" / "hgn_leapfrog"
    cfg = ModelConfig.reduced(8)
    train_cfg = TrainConfig(
        data=str(data), out=str(run), model=cfg, steps=1, batch_size=4, progress=False
    )
    from hamflow_hgn.train import train

    train(train_cfg)
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
