"""Evaluation: metrics.json, the Markdown table, the MSE curve, VPT, rollout strips and GIFs."""

import json

import pytest
import torch
from PIL import Image

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DataConfig, generate
from hamflow_hgn.evaluate import evaluate, main
from hamflow_hgn.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    data = generate(
        DataConfig("pendulum", n_train=16, n_test=8, steps=6, size=16),
        root / "data",
        workers=1,
        progress=False,
    )
    cfg = TrainConfig(
        data=str(data),
        out=str(root / "run"),
        model=ModelConfig.reduced(8),
        steps=2,
        batch_size=4,
        progress=False,
    )
    return train(cfg)


def test_evaluate_writes_metrics_and_rollouts(run_dir):
    metrics = evaluate(run_dir, max_sequences=6, rollouts=2)
    for split in ("train", "test"):
        m = metrics["splits"][split]
        assert m["sequences"] == 6
        assert len(m["mse_curve"]) == 6  # T + 1 frames
        assert m["mse_x1e4"]["mean"] > 0 and m["mse_x1e4"]["std"] >= 0
        assert 0 <= m["vpt"]["mean"] <= 6
        assert m["energy"]["variance"]["mean"] >= 0
    out = run_dir / "eval"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert "MSE ×1e4" in (out / "metrics.md").read_text()
    assert (out / "mse_curve.png").stat().st_size > 0
    for kind in ("forward", "backward", "double_speed", "half_speed", "samples"):
        assert (out / "rollouts" / f"{kind}.png").exists()
        gif = Image.open(out / "rollouts" / f"{kind}_1.gif")
        assert gif.size == (64, 64) and gif.n_frames >= 1  # PIL merges identical frames


def test_evaluate_cli_one_split(run_dir, capsys):
    assert main([str(run_dir), "--split", "test", "--max-sequences", "3", "--rollouts", "0"]) == 0
    assert "| test |" in capsys.readouterr().out
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert list(metrics["splits"]) == ["test"]


def test_evaluate_errors(tmp_path, run_dir):
    with pytest.raises(ValueError, match="run_dir: no config.json"):
        evaluate(tmp_path)
    with pytest.raises(ValueError, match="data_dir: no dataset"):
        evaluate(run_dir, data_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="max_sequences: expected a positive int"):
        evaluate(run_dir, max_sequences=0)
