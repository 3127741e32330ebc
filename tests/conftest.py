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
