"""DDP on the CPU: ``torchrun --nproc-per-node 2`` (gloo) matches one process, same global batch.

Each rank draws the same global batch of indices and of reparametrisation noise and keeps its
slice, DDP averages the gradients, GECO sees the constraint averaged over ranks and the matched
prior the posteriors' moments averaged over ranks, so the logged losses (averaged over ranks)
equal a single-process run with batch 2B to float tolerance.
"""

import csv
import os
import subprocess
import sys

import pytest
import torch

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DataConfig, generate
from hamflow_hgn.runs import load_run
from hamflow_hgn.train import train

STEPS = 4


def _losses(run) -> dict[int, tuple[float, float, float]]:
    with open(run / "metrics.csv") as f:
        return {
            int(r["step"]): (float(r["loss"]), float(r["mse"]), float(r["lambda"]))
            for r in csv.DictReader(f)
        }


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo on posix")
def test_torchrun_two_ranks_match_one_process(tmp_path):
    torch.set_num_threads(1)
    data = generate(
        DataConfig("pendulum", n_train=64, n_test=8, steps=6, size=16),
        tmp_path / "data",
        workers=1,
        progress=False,
    )
    single = train(
        TrainConfig(
            data=str(data),
            out=str(tmp_path / "single"),
            # the matched prior from step 2 on: its moments must agree across ranks
            model=ModelConfig.reduced(16, latent_prior="matched", prior_warmup_steps=1),
            steps=STEPS,
            batch_size=4,
            log_every=1,
            progress=False,
        )
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "hamflow_hgn.train", "--data", str(data), "--out",
           str(tmp_path / "ddp"), "--width", "16", "--steps", str(STEPS), "--batch-size", "2",
           "--log-every", "1", "--device", "cpu", "--no-progress", "--latent-prior", "matched",
           "--prior-warmup-steps", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FutureWarning" not in proc.stderr  # e.g. DDP's broadcast_buffers, once per rank
    a, b = _losses(single), _losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        torch.testing.assert_close(torch.tensor(b[step]), torch.tensor(a[step]), rtol=1e-4,
                                   atol=1e-6)  # fmt: skip
    # the prior's moments are those of the global batch, not of rank 0's half
    priors = [load_run(tmp_path / run, data).model.prior for run in ("single", "ddp")]
    torch.testing.assert_close(priors[1].loc, priors[0].loc, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(priors[1].covariance, priors[0].covariance, rtol=1e-5, atol=1e-7)
