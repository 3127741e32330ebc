"""Evaluation: metrics.json, the Markdown table, the MSE curve, VPT, rollout strips and GIFs."""

import json
import math

import pytest
import torch
from PIL import Image

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DataConfig, generate, open_dataset
from hamflow_hgn.data.render import BACKGROUND
from hamflow_hgn.evaluate import (
    VPT_LOOSE_THRESHOLD,
    VPT_THRESHOLD,
    evaluate,
    evaluate_split,
    foreground_power,
    main,
)
from hamflow_hgn.models.base import Rollout
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
        assert 0 <= m["vpt"]["mean"] <= m["vpt_loose"]["mean"] <= 6
        assert m["energy"]["variance"]["mean"] >= 0
        assert m["energy"]["relative_std"]["mean"] >= 0
        assert 0 <= m["tracking"]["sequences"] <= m["tracking"]["frames"] <= 1
        others = dict(m["tracking_other_rollouts"])  # backward, 2x, 1/2x against their truth
        assert others.pop("sequences_scored") == 6
        assert set(others) == {"backward", "double_speed", "half_speed"}
        assert all(0 <= t["sequences"] <= t["frames"] <= 1 for t in others.values())
    out = run_dir / "eval"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    table = (out / "metrics.md").read_text()
    assert "MSE ×1e4" in table and "tracked frames / sequences" in table
    t = metrics["splits"]["test"]["tracking"]
    assert f"{100 * t['frames']:.1f} % / {100 * t['sequences']:.1f} % |" in table
    assert (out / "mse_curve.png").stat().st_size > 0
    kinds = ("forward", "backward", "double_speed", "half_speed", "samples", "fitted_samples")
    for kind in kinds:
        assert (out / "rollouts" / f"{kind}.png").exists()
        gif = Image.open(out / "rollouts" / f"{kind}_1.gif")
        # truth | white column | model, 4x upscaled; samples have no truth beside them
        width = 64 if kind.endswith("samples") else 4 * (16 + 1 + 16)
        assert gif.size == (width, 64) and gif.n_frames >= 1  # PIL merges identical frames


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


class _Painter(torch.nn.Module):
    """A stand-in model whose rollout draws fixed frames (a blank background, or the truth)."""

    def __init__(self, frames, config):
        super().__init__()
        self.frames, self.config, self.w = frames, config, torch.nn.Parameter(torch.zeros(()))

    def rollout(self, images):
        return Rollout(self.frames(images), None, None, torch.ones(images.shape[:2]))


@pytest.fixture(scope="module")
def pendulum_test(tmp_path_factory):
    cfg = DataConfig("pendulum", n_train=2, n_test=8, steps=6, size=16)
    root = generate(cfg, tmp_path_factory.mktemp("vpt"), workers=1, progress=False)
    return open_dataset(root, "test")


def test_vpt_of_a_blank_background_model_is_zero_and_of_a_perfect_one_full(pendulum_test):
    # Issue 10: normalised by mean(truth^2) ≈ 0.8 on the light background, a model that draws no
    # pendulum at all scored the full VPT. Normalised by the truth's variance it scores 0.
    config = ModelConfig.reduced(8, frames=6, image_size=16)
    background = torch.tensor(BACKGROUND).view(1, 1, 3, 1, 1)
    blank = _Painter(lambda x: background.expand_as(x).clone(), config)
    m = evaluate_split(blank, pendulum_test)
    assert m["vpt"] == m["vpt_loose"] == {"mean": 0.0, "std": 0.0}
    # the old normaliser would have called the blank model valid for every step
    images = pendulum_test.render_batch(range(8))
    err = (background - images).square().mean(dim=(2, 3, 4))
    assert bool((err / images.square().mean(dim=(2, 3, 4)) < VPT_THRESHOLD).all())
    perfect = evaluate_split(_Painter(lambda x: x.clone(), config), pendulum_test)
    assert perfect["vpt"] == perfect["vpt_loose"] == {"mean": 6.0, "std": 0.0}
    assert evaluate_split(blank, pendulum_test)["energy"]["relative_std"]["mean"] == 0.0


def test_evaluate_split_reports_tracking_at_the_bodies_radius(pendulum_test):
    # hamflow_hgn.tracking over the target frames, within the pendulum's radius at 16x16
    config = ModelConfig.reduced(8, frames=6, image_size=16)
    perfect = evaluate_split(_Painter(lambda x: x.clone(), config), pendulum_test)["tracking"]
    assert perfect.pop("radius_px") == pytest.approx(1.5)
    assert perfect == {"error_px": 0.0, "frames": 1.0, "sequences": 1.0}
    background = torch.tensor(BACKGROUND).view(1, 1, 3, 1, 1)
    blank = _Painter(lambda x: background.expand_as(x).clone(), config)
    drawn = evaluate_split(blank, pendulum_test)["tracking"]
    assert drawn["frames"] == drawn["sequences"] == 0.0
    assert drawn["error_px"] == pytest.approx(math.hypot(16, 16))  # nothing drawn: the worst


def test_vpt_counts_the_steps_before_the_first_frame_over_each_threshold(pendulum_test):
    # Off by a uniform shade whose MSE is 0.1x the frame's variance for 3 frames, then 0.5x:
    # over 0.025 from the first frame, within 0.3 for exactly 3 steps.
    assert VPT_THRESHOLD < 0.1 < VPT_LOOSE_THRESHOLD < 0.5
    config = ModelConfig.reduced(8, frames=6, image_size=16)

    def shaded(x):
        ratio = torch.tensor([0.1, 0.1, 0.1, 0.5, 0.5, 0.5])
        shade = (ratio * foreground_power(x)).sqrt()
        return x + shade[:, :, None, None, None]

    m = evaluate_split(_Painter(shaded, config), pendulum_test)
    assert m["vpt"] == {"mean": 0.0, "std": 0.0}
    assert m["vpt_loose"] == {"mean": 3.0, "std": 0.0}


def _other_data(root, name, **kw):
    cfg = DataConfig(kw.pop("system", "pendulum"), n_train=4, n_test=4, **kw)
    return generate(cfg, root / name, workers=1, progress=False)


def test_evaluate_refuses_another_dataset_unless_asked(run_dir, tmp_path, capsys):
    other = _other_data(tmp_path, "ms", system="mass_spring", steps=6, size=16)
    argv = [str(run_dir), "--data", str(other), "--max-sequences", "2", "--rollouts", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "trained on pendulum data" in err and "--allow-other-data" in err
    assert main([*argv, "--allow-other-data"]) == 0


def test_evaluate_on_another_image_size_is_one_line(run_dir, tmp_path, capsys):
    other = _other_data(tmp_path, "big", steps=6, size=32)
    argv = [str(run_dir), "--data", str(other), "--rollouts", "0", "--allow-other-data"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "6 frames of 16x16" in err and "6 frames of 32x32" in err


def test_evaluate_batch_size_zero_is_a_usage_error(run_dir, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(run_dir), "--batch-size", "0"])
    assert info.value.code == 2
    assert "--batch-size: expected an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        evaluate(run_dir, batch_size=0)


def test_speed_rollouts_stand_beside_the_replayed_truth(run_dir, tmp_path, monkeypatch):
    """With ``replay``, the 2x and 1/2x GIFs show the system played at that speed."""
    from hamflow_hgn import rollouts
    from hamflow_hgn.runs import load_run

    loaded = load_run(run_dir)
    model, test = loaded.model, open_dataset(loaded.data_dir, "test")
    images = test.render_batch([0, 1])
    asked, shown = [], {}
    monkeypatch.setattr(rollouts, "save_gif", lambda frames, p: shown.setdefault(p.name, frames))

    def replay(speed):
        asked.append(speed)
        return test.replay([0, 1], speed)

    rollouts.save_rollouts(model, images, tmp_path, replay=replay)
    assert sorted(asked) == [0.5, 2.0]
    for name, speed in (("double_speed_1.gif", 2.0), ("half_speed_1.gif", 0.5)):
        truth_half = shown[name][..., :16]
        assert torch.equal(truth_half, test.replay([1], speed)[0])
    assert torch.equal(shown["forward_1.gif"][..., :16], images[1])  # the data's own frames
    with pytest.raises(ValueError, match=r"replay\(2\): expected at least 6 frames, got 3"):
        rollouts.save_rollouts(model, images, tmp_path, replay=lambda s: test.replay([0, 1], s, 3))


class _Replayer(torch.nn.Module):
    """A stand-in model that draws the true system, at the speed asked (``honest``) or at 1x."""

    def __init__(self, dataset, config, honest):
        super().__init__()
        self.dataset, self.config, self.honest = dataset, config, honest
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.all = dataset.render_batch(range(len(dataset)))

    def rollout(self, images, steps=None, *, dt=None):
        idx = [int((self.all - x).abs().flatten(1).sum(1).argmin()) for x in images]
        speed = 1.0 if dt is None or not self.honest else dt / self.config.dt
        frames = self.dataset.replay(idx, speed)
        q = torch.tensor(idx, dtype=torch.float32)[:, None, None].expand(-1, frames.shape[1], 1)
        return Rollout(frames, q, q, torch.ones(frames.shape[:2]))

    def rollout_from(self, q, p, steps, dt=None):
        frames = self.dataset.render_batch(q[:, 0].long().tolist()).flip(1)
        return Rollout(frames if self.honest else frames.flip(1), None, None, None)


def test_other_rollouts_are_tracked_against_their_own_truth(pendulum_test):
    config = ModelConfig.reduced(8, frames=6, image_size=16)
    honest = evaluate_split(_Replayer(pendulum_test, config, True), pendulum_test, other_rollouts=8)
    kinds = dict(honest["tracking_other_rollouts"])
    assert kinds.pop("sequences_scored") == 8
    assert set(kinds) == {"backward", "double_speed", "half_speed"}
    for kind in ("double_speed", "half_speed"):  # drawn exactly as the replayed truth
        assert kinds[kind] == {"error_px": 0.0, "frames": 1.0, "sequences": 1.0}
    assert kinds["backward"]["frames"] == 1.0  # the data's frames, reversed
    # a model that ignores the speed (and runs forward when asked to run back) is caught
    blind = evaluate_split(_Replayer(pendulum_test, config, False), pendulum_test, other_rollouts=8)
    kinds = dict(blind["tracking_other_rollouts"])
    kinds.pop("sequences_scored")
    for kind, tracked in kinds.items():
        assert tracked["sequences"] < 1.0 and tracked["error_px"] > 0.5, kind
    painter = _Painter(lambda x: x, config)
    assert "tracking_other_rollouts" not in evaluate_split(painter, pendulum_test)
    # only the first sequences are scored, in batches that straddle the limit too
    few = evaluate_split(_Replayer(pendulum_test, config, True), pendulum_test, 7, 2, None, 3)
    assert few["sequences"] == 7 and few["tracking_other_rollouts"]["sequences_scored"] == 3


@pytest.mark.parametrize("bad", [-1, True, 2.5])
def test_evaluate_split_refuses_a_bad_other_rollouts_count(pendulum_test, bad):
    painter = _Painter(lambda x: x, ModelConfig.reduced(8, frames=6, image_size=16))
    with pytest.raises(ValueError, match="other_rollouts: expected an integer >= 0"):
        evaluate_split(painter, pendulum_test, other_rollouts=bad)
