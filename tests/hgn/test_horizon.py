"""Rollouts of any length (``--horizon N``): the truth simulated that far, tracked past the span."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hamflow_hgn import rollouts
from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DataConfig, generate, open_dataset
from hamflow_hgn.data.dataset import render_states
from hamflow_hgn.evaluate import evaluate, evaluate_split, main
from hamflow_hgn.horizon import check_horizon, horizon_errors, summarize_horizon
from hamflow_hgn.models.base import Rollout
from hamflow_hgn.runs import load_run
from hamflow_hgn.train import train

SHORT, LONG = 6, 25  # frames of the data, frames of the same sequences simulated further


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same test sequences (same seed) simulated for 6 and for 25 frames."""
    root = tmp_path_factory.mktemp("horizon")
    out = {}
    for frames in (SHORT, LONG):
        cfg = DataConfig("pendulum", n_train=2, n_test=6, steps=frames, size=16, seed=3)
        out[frames] = open_dataset(generate(cfg, root / str(frames), 1, False), "test")
    return out[SHORT], out[LONG]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("horizon_run")
    cfg = DataConfig("pendulum", n_train=16, n_test=6, steps=SHORT, size=16)
    data = generate(cfg, root / "data", workers=1, progress=False)
    config = TrainConfig(
        data=str(data), out=str(root / "run"), model=ModelConfig.reduced(8), steps=2,
        batch_size=4, progress=False,
    )  # fmt: skip
    return train(config)


class _Player(torch.nn.Module):
    """A stand-in model that draws given frames: the longer simulation, or the span looped."""

    def __init__(self, short, frames_of):
        super().__init__()
        self.config = ModelConfig.reduced(8, frames=SHORT, image_size=16)
        self.short, self.frames_of = short, frames_of
        self.w = torch.nn.Parameter(torch.zeros(()))

    def rollout(self, images, steps=None, *, dt=None):
        every = self.short.render_batch(range(len(self.short)))
        idx = [int((every - x).abs().flatten(1).sum(1).argmin()) for x in images]
        frames = self.frames_of(idx)[:, : steps + 1]
        return Rollout(frames, None, None, None)


def test_truth_of_any_length_is_the_simulation_run_that_far(pair):
    short, long = pair
    idx = [0, 3, 5]
    truth = short.replay(idx, 1.0, LONG)
    simulated = render_states(torch.from_numpy(long.clean_states[idx]), long.system, 16)
    assert truth.shape == (3, LONG, 3, 16, 16)
    assert (truth - simulated).abs().max() < 2e-3  # the same trajectory, 4x past the data
    # inside the data's span it is the data's own trajectory, noise-free
    clean = render_states(torch.from_numpy(short.clean_states[idx]), short.system, 16)
    assert (truth[:, :SHORT] - clean).abs().max() < 2e-3
    assert (truth[:, -1] - truth[:, SHORT - 1]).abs().max() > 0.1  # and it moves on


def test_horizon_errors_score_against_the_simulated_truth(pair):
    short, long = pair
    n = LONG - 1
    images = short.render_batch(range(6))

    def simulated(idx):
        return render_states(torch.from_numpy(long.clean_states[idx]), long.system, 16)

    honest = horizon_errors(_Player(short, simulated), short, range(6), images, n)
    assert honest["centroid"].shape == honest["mse"].shape == (6, LONG)
    summary = summarize_horizon(honest["centroid"], 1.5, SHORT)
    assert summary["beyond"]["frames"] == 1.0 and summary["beyond"]["sequences"] == 1.0

    def looped(idx):  # right inside the span, then the span again from its start
        span = simulated(idx)[:, :SHORT]
        return span.repeat(1, LONG // SHORT + 1, 1, 1, 1)

    stuck = horizon_errors(_Player(short, looped), short, range(6), images, n)
    summary = summarize_horizon(stuck["centroid"], 1.5, SHORT)
    assert summary["in_span"]["frames"] == 1.0
    assert summary["beyond"]["sequences"] < 0.5 and summary["beyond"]["error_px"] > 1.0
    assert float(stuck["mse"][:, SHORT:].mean()) > 10 * float(honest["mse"][:, SHORT:].mean())


@settings(max_examples=60, deadline=None)
@given(
    span=st.integers(2, 8),
    extra=st.integers(-1, 30),
    seed=st.integers(0, 2**16),
)
def test_windows_cut_the_frames_past_the_span_into_span_long_pieces(span, extra, seed):
    steps = max(1, span - 1 + extra)
    gen = torch.Generator().manual_seed(seed)
    error = 3.0 * torch.rand(4, steps + 1, generator=gen)
    s = summarize_horizon(error, 1.0, span)
    assert s["steps"] == steps
    ranges = [w["frames_range"] for w in s["windows"]]
    covered = [t for a, b in ranges for t in range(a, b + 1)]
    assert covered == list(range(span, steps + 1))  # every frame past the span, once, in order
    assert all(b - a + 1 <= span - 1 for a, b in ranges)
    if s["beyond"] is None:
        assert steps < span and not ranges
    else:  # the windows' shares, weighted by their lengths, are the share past the span
        weighted = sum((b - a + 1) * w["frames"] for (a, b), w in zip(ranges, s["windows"]))
        assert weighted / len(covered) == pytest.approx(s["beyond"]["frames"])
        share = float((error[:, span:] <= 1.0).float().mean())
        assert s["beyond"]["frames"] == pytest.approx(share)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, None])
def test_bad_horizons_are_refused(bad, pair):
    with pytest.raises(ValueError, match="horizon: expected an integer >= 1"):
        check_horizon(bad)
    if bad is not None:  # None is evaluate_split's "no horizon"
        with pytest.raises(ValueError, match="horizon: expected an integer >= 1"):
            evaluate_split(_Player(pair[0], None), pair[0], horizon=bad)


def test_evaluate_horizon_scores_and_draws_every_frame(run_dir, monkeypatch):
    drawn = {}
    real_gif = rollouts.save_gif
    monkeypatch.setattr(
        rollouts, "save_gif", lambda frames, p: drawn.setdefault(p.name, frames) is None
        or real_gif(frames, p),
    )  # fmt: skip
    metrics = evaluate(run_dir, splits=("test",), rollouts=2, horizon=3 * (SHORT - 1) + 2)
    h = metrics["splits"]["test"]["horizon"]
    n = 3 * (SHORT - 1) + 2
    assert metrics["horizon"] == h["steps"] == n and len(h["mse_curve"]) == n + 1
    assert h["sequences_scored"] == 6
    ranges = [w["frames_range"] for w in h["windows"]]
    assert ranges == [[6, 10], [11, 15], [16, 17]]
    assert 0 <= h["beyond"]["sequences"] <= h["beyond"]["frames"] <= 1
    out = run_dir / "eval"
    assert json.loads((out / "metrics.json").read_text())["splits"]["test"]["horizon"] == h
    assert "| 17 |" in (out / "metrics.md").read_text()
    # strips and GIFs cover the whole horizon, the simulated truth beside the model
    test = open_dataset(load_run(run_dir).data_dir, "test")
    for kind in ("forward", "backward", "double_speed", "half_speed"):
        assert drawn[f"{kind}_1.gif"].shape[0] == n + 1, kind
    truth = test.replay([1], 1.0, n + 1)[0]
    assert torch.equal(drawn["forward_1.gif"][..., :16], truth)
    assert torch.equal(drawn["backward_1.gif"][..., :16], truth.flip(0))


def test_evaluate_cli_horizon(run_dir, capsys):
    args = [str(run_dir), "--split", "test", "--rollouts", "0", "--max-sequences", "3"]
    assert main([*args, "--horizon", "12"]) == 0
    printed = capsys.readouterr().out
    assert "rollout steps" in printed and "| 12 |" in printed and "6-10:" in printed
    assert main(args) == 0  # without --horizon: no horizon table
    assert "rollout steps" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--horizon", "0"])


def test_long_strips_need_the_simulated_truth(run_dir, tmp_path):
    loaded = load_run(run_dir)
    images = open_dataset(loaded.data_dir, "test").render_batch([0, 1])
    with pytest.raises(ValueError, match="replay: a rollout of 9 steps runs past the data's 5"):
        rollouts.save_rollouts(loaded.model, images, tmp_path, steps=9)
