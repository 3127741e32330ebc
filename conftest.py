"""Root conftest: makes doctests deterministic and gives them ``torch`` in scope."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    torch.manual_seed(0)
    doctest_namespace["torch"] = torch
