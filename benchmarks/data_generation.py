"""Benchmark HGN data generation: simulation time, disk size, renderer throughput.

Usage::

    python benchmarks/data_generation.py --publish  # paper scale, into benchmarks/results/
    python benchmarks/data_generation.py            # the same, into runs/benchmarks/
    python benchmarks/data_generation.py --quick    # 2 000 + 500, measured as is (runs/ only)

Prints a table and writes JSON (the configs, machine and figures): to
``runs/benchmarks/data_generation[_quick].json``, or with ``--publish`` (not with ``--quick``)
to the committed ``benchmarks/results/data_generation.json``. Nothing is extrapolated: every
figure is what was measured at the counts it reports.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hamflow_hgn.data import DataConfig, generate, get_system, open_dataset
from hamflow_hgn.data.render import render
from hamflow_hgn.io import write_json


def bench_generation(config: DataConfig, workers: int) -> dict:
    """Generate ``config`` into a temporary directory; time it and size it."""
    out = Path(tempfile.mkdtemp(prefix="hamflow_bench_"))
    try:
        start = time.perf_counter()
        generate(config, out, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in out.iterdir())
        start = time.perf_counter()
        open_dataset(out, "train", expect=config)
        open_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out)
    return {
        "config": asdict(config),
        "sequences": config.n_train + config.n_test,
        "seconds": round(seconds, 2),
        "disk_mb": round(size / 1e6, 2),
        "open_train_seconds": round(open_seconds, 3),
    }


def bench_render(system_name: str, frames: int, size: int, device: str, repeat: int = 3) -> dict:
    """Best-of-``repeat`` frames/s of one ``render`` call on ``frames`` random frames."""
    system = get_system(system_name)
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(frames, system.state_dim, generator=gen).to(device)
    positions = system.positions(states)
    render(positions[:8], system, size)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        render(positions, system, size)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return {
        "system": system_name,
        "device": device,
        "size": size,
        "frames": frames,
        "frames_per_s": round(frames / best),
    }


ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--out`` resolved from ``--quick`` and ``--publish``."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, a few seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--publish", action="store_true", help="write benchmarks/results/data_generation.json"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (overrides --publish)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers: expected an integer >= 1, got {args.workers}")
    if args.publish and args.quick:
        parser.error("--publish: a --quick run is a smoke test; its numbers are not committed")
    if args.out is None:
        name = "data_generation_quick.json" if args.quick else "data_generation.json"
        args.out = ROOT / ("benchmarks/results" if args.publish else "runs/benchmarks") / name
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the result that is written as JSON."""
    args = parse_args(argv)
    n_train, n_test = (2_000, 500) if args.quick else (50_000, 10_000)
    frames = 4_096 if args.quick else 31 * 1_024
    gen = [
        bench_generation(DataConfig(name, n_train, n_test), args.workers)
        for name in ("pendulum", "three_body")
    ]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rend = [
        bench_render(name, frames, size, device)
        for device in devices
        for name in ("pendulum", "three_body")
        for size in (32, 64)
    ]
    result = {
        "quick": args.quick,
        "workers": args.workers,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "generation": gen,
        "render": rend,
    }
    write_json(args.out, result, sort_keys=False)
    print(f"{'system':<12}{'sequences':>10}{'seconds':>9}{'disk MB':>9}{'open s':>8}")
    for g in gen:
        name = g["config"]["system"]
        print(
            f"{name:<12}{g['sequences']:>10}{g['seconds']:>9}{g['disk_mb']:>9}"
            f"{g['open_train_seconds']:>8}"
        )
    print(f"\n{'render':<12}{'device':>7}{'size':>6}{'frames':>8}{'frames/s':>10}")
    for r in rend:
        print(
            f"{r['system']:<12}{r['device']:>7}{r['size']:>6}{r['frames']:>8}"
            f"{r['frames_per_s']:>10}"
        )
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
