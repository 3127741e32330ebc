"""benchmarks/hgn_table1_horizons.py: the mean-image reference row is scored as a run is, and a
run that draws the truth itself is tracked in every frame of every window."""

import pytest
import torch
from _benchmarks import benchmark_module

from hamflow_hgn.data import DataConfig, generate, open_dataset
from hamflow_hgn.horizon import summarize_horizon
from hamflow_hgn.tracking import body_radius_px, centroid_error


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("hgn_table1_horizons_test", "hgn_table1_horizons.py") as module:
        yield module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cfg = DataConfig("pendulum", n_train=4, n_test=3, steps=6, size=16, seed=3)
    return generate(cfg, tmp_path_factory.mktemp("pendulum"), 1, False)


def test_mean_image_row_has_the_windows_of_a_run(bench, data):
    row = bench.mean_image_row(data, sequences=8, multiple=3, span=6)
    assert row["sequences"] == 3 and row["mse_ratio_to_mean_image"] == 1.0
    assert row["x2_frames_range"] == [6, 10] and row["x4_frames_range"] == [6, 15]
    for key in ("in_span", "x2", "x4"):
        assert 0.0 <= row[key]["sequences"] <= row[key]["frames"] <= 1.0
    # a swinging bob is rarely where the mean image's blur is: far from every frame tracked
    assert row["x4"]["frames"] < 0.5


def test_the_truth_replayed_tracks_every_frame_far_past_the_span(data):
    """What the script's rows measure is bounded above by the simulated truth itself."""
    test = open_dataset(data, "test")
    truth = test.replay([0, 1, 2], 1.0, 16)
    far = summarize_horizon(
        centroid_error(truth, truth, colors=test.system.colors),
        body_radius_px(test.system, test.config.size), 6,
    )  # fmt: skip
    assert far["beyond"]["frames"] == 1.0 and far["windows"][0]["sequences"] == 1.0
    shifted = torch.roll(truth, 3, dims=1)  # the same motion, 3 frames late
    late = summarize_horizon(
        centroid_error(shifted, truth, colors=test.system.colors),
        body_radius_px(test.system, test.config.size), 6,
    )  # fmt: skip
    assert late["beyond"]["frames"] < 1.0


def test_markdown_names_table1_rows_and_the_reference(bench):
    share = {"frames": 0.5, "sequences": 0.25}
    rows = [{"system": "two_body", "model": m, "train_steps": s, "mse_ratio_to_mean_image": r,
             "in_span": share, "x2": share, "x4": share}
            for m, s, r in (("hgn_leapfrog", 1000, 0.19), ("mean_image", 0, 1.0))]  # fmt: skip
    text = bench.markdown(rows, "python benchmarks/hgn_table1_horizons.py --root r")
    assert "| two-body | HGN (leapfrog) | 1000 | 0.19 | 50 % / 25 % |" in text
    assert "| two-body | mean image | - | 1.00 |" in text
