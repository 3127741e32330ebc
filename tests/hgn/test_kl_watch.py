"""The trainer says once when GECO's multiplier sits at its cap (the KL switched off)."""

import pytest
import torch

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DataConfig, generate
from hamflow_hgn.kl_watch import LambdaCapWatch
from hamflow_hgn.models import HGN
from hamflow_hgn.train import train


def _model(**kw):
    return HGN(ModelConfig.reduced(8, image_size=8, frames=4, **kw))


def test_watch_waits_for_patience_resets_off_the_cap_and_speaks_once():
    model = _model(geco_tolerance=0.3)
    watch = LambdaCapWatch(model, patience=20)
    geco = model.geco
    geco.lagrange.fill_(geco.lambda_max)
    geco.constraint_ma.fill_(1.5)  # the error runs at 2.5x the tolerance: 0.75 of the variance
    assert watch.check(10) is None and watch.check(25) is None
    geco.lagrange.fill_(geco.lambda_max / 2)  # off the cap: the count starts again
    assert watch.check(31) is None
    geco.lagrange.fill_(geco.lambda_max)
    assert watch.check(40) is None and watch.check(59) is None
    message = watch.check(60)
    assert "since step 40" in message and "about 0.75 of the pixel variance" in message
    assert "--geco-tolerance (for example 0.83)" in message
    assert watch.check(500) is None


@pytest.mark.parametrize("kw", [dict(variant="deterministic"), dict(kl_balance="fixed")])
def test_watch_ignores_models_whose_lambda_does_not_adapt(kw):
    model = _model(**kw)
    model.geco.lagrange.fill_(model.geco.lambda_max)
    watch = LambdaCapWatch(model, patience=1)
    assert all(watch.check(step) is None for step in range(10))


def test_trainer_warns_when_the_tolerance_is_out_of_reach(tmp_path, capsys):
    torch.set_num_threads(1)
    data = generate(
        DataConfig("pendulum", n_train=8, n_test=2, steps=4, size=8),
        tmp_path / "data",
        workers=1,
        progress=False,
    )

    def run(name, **kw):
        model = ModelConfig.reduced(4, image_size=8, frames=4, **kw)
        cfg = TrainConfig(
            data=str(data), out=str(tmp_path / name), model=model, steps=210, batch_size=2,
            progress=False, checkpoint_every=1000,
        )  # fmt: skip
        train(cfg)
        return capsys.readouterr().err

    # lambda starts at its cap, and an error of 1e-6 of the variance is out of reach
    # read at log steps (every 10): at the cap from the first, said at step 210
    assert "sat at its cap (1e+06) since step 10:" in run(
        "capped", geco_lambda_init=1e6, geco_tolerance=1e-6
    )
    assert "sat at its cap" not in run("default")  # from 1e5, lambda cannot reach 1e6 in 210 steps
