"""hamflow-evaluate on frames imported with hamflow-data import (no simulated system behind them).

A tiny uint8 array is imported, trained on for two steps the way hamflow-train does, and
evaluated through the CLI. The test recomputes the MSE, the per-frame curve and the mean-image
reference from the checkpoint and the stored test frames, so it fails if the evaluator scores
anything other than the data's own frames; and it checks what is skipped, and why, and that a
horizon past the stored frames is refused.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import import_frames, open_dataset
from hamflow_hgn.data.__main__ import main as data_main
from hamflow_hgn.evaluate import evaluate_split, has_system, main, mean_image
from hamflow_hgn.models.base import Rollout
from hamflow_hgn.runs import load_run
from hamflow_hgn.train import train

T, SIZE = 5, 16


def bouncing_blocks(n: int, seed: int = 0) -> np.ndarray:
    """``(n, T, SIZE, SIZE, 3)`` uint8: an orange block swinging left and right."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, T, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        amplitude, phase = rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
        for k in range(T):
            c = int(round(SIZE / 2 + amplitude * np.cos(0.6 * k + phase)))
            x[i, k, 6:10, c - 2 : c + 2] = (255, 160, 0)
    return x


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("imported_eval")
    np.save(root / "frames.npy", bouncing_blocks(14))
    args = ["import", str(root / "frames.npy"), "--out", str(root / "ds"), "--no-progress"]
    assert data_main(args) == 0
    cfg = TrainConfig(
        data=str(root / "ds"), out=str(root / "run"), model=ModelConfig.reduced(8),
        steps=2, batch_size=4, progress=False, device="cpu",
    )  # fmt: skip
    return train(cfg), root / "ds"


def test_cli_scores_imported_frames_and_says_what_it_skipped(run, capsys):
    run_dir, data = run
    assert main([str(run_dir), "--rollouts", "2", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "test"}
    test = metrics["splits"]["test"]

    # the numbers are those of the checkpoint's rollouts against the stored test frames
    loaded = load_run(run_dir, device="cpu")
    frames = open_dataset(data, "test")
    images = frames.render_batch(range(len(frames)))
    with torch.no_grad():
        drawn = loaded.model.rollout(images).frames
    per_frame = (drawn - images).square().mean(dim=(2, 3, 4))  # (n_test, T)
    targets = list(loaded.config.model.target_frames)
    assert test["sequences"] == len(frames) == 3
    assert test["mse_curve"] == pytest.approx(per_frame.mean(0).tolist(), rel=1e-5)
    want = per_frame[:, targets].mean(1) * 1e4
    assert test["mse_x1e4"]["mean"] == pytest.approx(float(want.mean()), rel=1e-5)
    assert test["mse_x1e4"]["std"] == pytest.approx(float(want.std(unbiased=False)), rel=1e-4)
    train_set = open_dataset(data, "train")
    mean = train_set.render_batch(range(len(train_set))).mean(dim=(0, 1))
    ref = (mean - images).square().mean(dim=(2, 3, 4))[:, targets].mean(1) * 1e4
    assert test["reference_mse_x1e4"]["mean"] == pytest.approx(float(ref.mean()), rel=1e-5)
    ratio = test["mse_x1e4"]["mean"] / test["reference_mse_x1e4"]["mean"]
    assert test["mse_ratio_to_reference"] == pytest.approx(ratio, rel=1e-6)
    assert 0 <= test["vpt"]["mean"] <= test["vpt_loose"]["mean"] <= T - 1
    assert test["energy"]["relative_std"]["mean"] >= 0  # the learned H needs no system

    # what needs a simulated system is skipped, with the reason on one line each
    assert test["tracking"] is None
    assert "tracking_other_rollouts" not in test and "horizon" not in test
    assert set(metrics["skipped"]) == {"tracking", "tracking_other_rollouts", "replay"}
    lines = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(lines) == 3
    assert all("imported dataset 'frames' has no simulated system" in line for line in lines)

    # the tables printed and written: Table 1's row and the mean-image reference
    assert f"| {test['mse_x1e4']['mean']:.2f} ± {test['mse_x1e4']['std']:.2f} |" in out
    assert f"| {test['mse_ratio_to_reference']:.3f} |" in out
    assert (run_dir / "eval" / "metrics.md").read_text() == out
    assert (run_dir / "eval" / "mse_curve.png").stat().st_size > 0
    strips = run_dir / "eval" / "rollouts"
    for kind in ("forward", "backward", "double_speed", "half_speed", "samples"):
        assert (strips / f"{kind}.png").exists()
    # the double-speed GIF stands beside the stored frames: truth | gap | model, 4x upscaled
    assert Image.open(strips / "double_speed_1.gif").size == (4 * (2 * SIZE + 1), 4 * SIZE)


def test_horizon_within_the_stored_frames_sets_the_strips_and_past_them_is_refused(run, capsys):
    run_dir, _ = run
    args = [str(run_dir), "--split", "test", "--rollouts", "1", "--device", "cpu"]
    assert main([*args, "--horizon", str(T - 1)]) == 0
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert metrics["horizon"] == T - 1 and "horizon" not in metrics["splits"]["test"]
    assert "--horizon 4 only sets the rollout strips" in metrics["skipped"]["horizon"]
    capsys.readouterr()
    assert main([*args, "--horizon", str(T + 4)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: horizon: the imported dataset 'frames'")
    assert err.endswith(f"expected --horizon <= {T - 1}, got {T + 4}")
    assert len(err.splitlines()) == 1


class _MeanPainter(torch.nn.Module):
    """A stand-in model that draws one fixed image at every step."""

    def __init__(self, image, config):
        super().__init__()
        self.image, self.config, self.w = image, config, torch.nn.Parameter(torch.zeros(()))

    def rollout(self, images):
        return Rollout(self.image.expand_as(images).clone(), None, None, None)


def test_the_mean_image_scores_a_ratio_of_one_and_other_rollouts_are_refused(tmp_path):
    out = import_frames(bouncing_blocks(10, seed=1), tmp_path / "ds")
    train_set, test_set = open_dataset(out, "train"), open_dataset(out, "test")
    assert not has_system(test_set)
    config = ModelConfig.reduced(8, frames=T, image_size=SIZE)
    reference = mean_image(train_set, batch_size=3)  # batches must not change the mean
    full = train_set.render_batch(range(len(train_set))).mean(dim=(0, 1))
    assert torch.allclose(reference, full, atol=1e-6)
    m = evaluate_split(_MeanPainter(reference, config), test_set, reference=reference)
    assert m["mse_ratio_to_reference"] == pytest.approx(1.0)
    assert m["mse_x1e4"] == pytest.approx(m["reference_mse_x1e4"])
    assert m["tracking"] is None and "energy" not in m
    with pytest.raises(ValueError, match="no simulated system.*expected other_rollouts=0"):
        evaluate_split(_MeanPainter(reference, config), test_set, other_rollouts=2)
    with pytest.raises(ValueError, match="horizon=None, got 0 and 8"):
        evaluate_split(_MeanPainter(reference, config), test_set, horizon=8)
