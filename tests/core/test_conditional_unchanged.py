"""An NHF built without ``context_dim`` is the model it was before conditioning existed.

The reference is computed by the NHF of commit ``REFERENCE`` (the last one before
:mod:`hamflow.conditional`), extracted with ``git archive`` into a temporary folder and run in a
subprocess: its parameter names and shapes, and seeded values of ``forward_kld``, ``log_prob``,
``sample`` and one optimiser step in float64. The current code must give the same names and
shapes and the same values to round-off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hamflow import NHF

REFERENCE = "fa10a5dfcb0e95e9c94f720b6969ac9396405e4d"
ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
import torch
torch.set_num_threads(1)
from hamflow import NHF

def probe(kwargs):
    torch.manual_seed(0)
    model = NHF(2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,), **kwargs).double()
    x = torch.randn(32, 2, dtype=torch.float64) * torch.tensor([2.0, 0.5], dtype=torch.float64)
    torch.manual_seed(1)
    loss = model.forward_kld(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss.backward()
    opt.step()
    torch.manual_seed(2)
    lp = model.log_prob(x, num_samples=8)
    torch.manual_seed(3)
    xs = model.sample(4)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"shapes": shapes, "loss": loss.item(), "log_prob": lp.tolist(),
            "sample": xs.flatten().tolist()}

configs = json.loads(sys.argv[1])
print(json.dumps([probe(c) for c in configs]))
"""

CONFIGS = [{}, {"affine": "diagonal", "prior": "generalized_normal"}, {"share_hamiltonian": True}]


def _run(pythonpath: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CONFIGS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("reference")
    archive = tmp / "ref.tar"
    try:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "-o", str(archive), REFERENCE, "hamflow"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git or commit {REFERENCE[:8]} unavailable (a shallow or exported checkout)")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    return _run(tmp)


def test_unconditional_nhf_matches_the_reference_commit(reference):
    current = _run(ROOT)
    for config, ref, now in zip(CONFIGS, reference, current):
        assert now["shapes"] == ref["shapes"], config
        assert now["loss"] == pytest.approx(ref["loss"], rel=1e-12, abs=1e-12), config
        assert now["log_prob"] == pytest.approx(ref["log_prob"], rel=1e-10, abs=1e-10), config
        assert now["sample"] == pytest.approx(ref["sample"], rel=1e-10, abs=1e-10), config


def test_unconditional_nhf_has_no_context_parameters():
    model = NHF(2, num_flows=2, hidden=(16,), encoder_hidden=(16,))
    assert model.context_dim is None
    assert model.encoder.net[0].in_features == 2
    assert all(f.hamiltonian.potential.layers[0].in_features == 2 for f in model.flows)
