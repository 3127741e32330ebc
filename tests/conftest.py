"""Shared test configuration: seeding, the ``slow`` marker and float64 helpers."""

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if os.environ.get("HAMFLOW_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow check: set HAMFLOW_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_hgn_run():
    """A factory: ``tiny_hgn_run(data_dir, run_dir, system, n_train)`` generates a small data
    set and trains a width-8 HGN on it for a few steps; returns the run directory."""
    from hamflow_hgn.config import ModelConfig, TrainConfig
    from hamflow_hgn.data import DataConfig, generate
    from hamflow_hgn.train import train

    def make(data_dir, run_dir, system="mass_spring", n_train=24, steps=2):
        torch.set_num_threads(1)
        data = generate(
            DataConfig(system, n_train=n_train, n_test=6, steps=5, size=16),
            data_dir,
            workers=1,
            progress=False,
        )
        cfg = TrainConfig(
            data=str(data), out=str(run_dir), model=ModelConfig.reduced(8), steps=steps,
            batch_size=4, progress=False,
        )  # fmt: skip
        return train(cfg)

    return make
