"""Time our HGN step beside the CampusAI reproduction's, same workload, interleaved (issue 10).

CampusAI's code (github.com/CampusAI/Hamiltonian-Generative-Networks) is not part of this
repository and nothing of it is copied here: pass a checkout with ``--campusai``. Their classes
are built with the sizes of their default config (the paper's A.1 widths), and their training
step is driven the way their trainer does with GECO (their ``geco_constraint`` and ``kld_loss``,
lambda multiplied by ``exp(0.1 C)``). The workload is the one the issue names: batch 16 of 34
frames at 32x32, the encoder sees 5, the loss covers the rest, rendered pendulum sequences from
our simulator, leapfrog, fp32, one torch thread, each step timed as the process's CPU time.

    python benchmarks/campusai_step.py --campusai /path/to/Hamiltonian-Generative-Networks

Their rendering module imports ``cv2``; it is only used to render their own data, so a stub
module stands in for it. Prints a table and writes ``runs/benchmarks/campusai_step.json``.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hgn_step  # noqa: E402
from _common import MACHINE, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH, FRAMES, SEEN, SIZE = 16, 34, 5, 32


def campusai_step(root: Path, images: torch.Tensor):
    """CampusAI's HGN at their default sizes and one GECO training step of it, as a closure."""
    if not (root / "hamiltonian_generative_network.py").exists():
        raise SystemExit(
            f"--campusai: expected a checkout of CampusAI/Hamiltonian-Generative-Networks "
            f"(with hamiltonian_generative_network.py), got {root}"
        )
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    sys.path.insert(0, str(root))
    from hamiltonian_generative_network import HGN
    from networks.decoder_net import DecoderNet
    from networks.encoder_net import EncoderNet
    from networks.hamiltonian_net import HamiltonianNet
    from networks.transformer_net import TransformerNet
    from utilities.integrator import Integrator
    from utilities.losses import geco_constraint, kld_loss

    torch.manual_seed(0)
    enc = EncoderNet(
        seq_len=SEEN, in_channels=3, hidden_conv_layers=6, n_filters=[32] + [64] * 6,
        kernel_sizes=[3] * 8, strides=[1] * 8, out_channels=48,
    )  # fmt: skip
    transform = TransformerNet(
        in_channels=48, hidden_conv_layers=1, n_filters=[64, 64], kernel_sizes=[3, 3, 3],
        strides=[2, 2, 2], out_channels=16,
    )  # fmt: skip
    hamiltonian = HamiltonianNet(
        in_shape=[16, 4, 4], hidden_conv_layers=3, n_filters=[32, 64, 64, 64],
        kernel_sizes=[3, 2, 2, 2, 2], strides=[1, 2, 1, 1, 1],
        paddings=[1, 0, [0, 1, 0, 1], [0, 1, 0, 1], 0],
    )  # fmt: skip
    dec = DecoderNet(in_channels=16, out_channels=3, n_residual_blocks=3, n_filters=[64] * 3,
                     kernel_sizes=[3] * 4)  # fmt: skip
    nets = (enc, transform, hamiltonian, dec)
    model = HGN(*nets, Integrator(0.125, "Leapfrog"), "cpu", torch.float, FRAMES, 3)
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=1.5e-4)
    state = {"lambda": 1.0, "average": None}

    def step() -> None:
        opt.zero_grad()
        out = model.forward(rollout_batch=images[:, :SEEN], n_steps=FRAMES - SEEN)
        pred = out.reconstructed_rollout
        c, _ = geco_constraint(images[:, SEEN - 1 :], pred, 3.3e-2)
        avg = state["average"]
        state["average"] = c.detach() if avg is None else 0.99 * avg + 0.01 * c.detach()
        c = c + (state["average"] - c.detach())
        kl = kld_loss(mu=out.z_mean, logvar=out.z_logvar) / pred.flatten(1).size(1)
        loss = kl + state["lambda"] * c
        state["lambda"] = torch.clamp(state["lambda"] * torch.exp(0.1 * c.detach()), 1e-10, 1e10)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in hamiltonian.parameters())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--campusai", type=Path, required=True, help="their checkout")
    p.add_argument("--ours", nargs="+", default=["baseline", "default", "hamiltonian_32"],
                   choices=hgn_step.OPTIONS)  # fmt: skip
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--machine", default=MACHINE)
    p.add_argument("--out", type=Path, default=ROOT / "runs/benchmarks/campusai_step.json")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        p.error(f"--repeats >= 1 and --warmup >= 0 expected, got {args.repeats}, {args.warmup}")
    torch.set_num_threads(1)
    ours_args = hgn_step.parse_args(
        ["--protocol", "predict", "--predict-k", str(SEEN), "--frames", str(FRAMES),
         "--batch", str(BATCH), "--size", str(SIZE), "--no-docs"]
    )  # fmt: skip
    cpu = torch.device("cpu")
    images = hgn_step.batch_images(ours_args, cpu)
    steps = {}
    steps["campusai"], their_params = campusai_step(args.campusai, images)
    for option in args.ours:
        steps[option] = hgn_step.build_step(option, ours_args, cpu, images)
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t = time.process_time()
            step()
            times[name].append(time.process_time() - t)
    theirs = statistics.median(times["campusai"])
    rows = []
    print(f"{'step':<16} {'median s':>9} {'ratio to CampusAI':>18}")
    for name, ts in times.items():
        median = statistics.median(ts)
        rows.append({"option": name, "step_s_median": median, "ratio": median / theirs})
        print(f"{name:<16} {median:>9.3f} {median / theirs:>18.3f}")
    result = {
        "benchmark": "campusai_step",
        "command": " ".join(["python", "benchmarks/campusai_step.py", *(argv or [])]),
        "date": datetime.date.today().isoformat(),
        "machine": args.machine,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "campusai_hamiltonian_params": their_params,
        "results": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
