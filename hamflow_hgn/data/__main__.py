"""Generate an HGN dataset, or preview the four systems (``python -m hamflow_hgn.data``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .dataset import DataConfig
from .generation import generate, preview
from .systems import SYSTEMS

__all__ = ["main"]

USAGE = """Generate the states of an HGN dataset (paper Sec. 4, A.4); frames are rendered on demand.

    python -m hamflow_hgn.data --system pendulum --n-train 50000 --n-test 10000 \\
        --size 32 --steps 31 --seed 0 --out data/pendulum [--materialize]
    python -m hamflow_hgn.data --preview docs/img      # one strip per system
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hamflow_hgn.data", description=USAGE)
    d = DataConfig("pendulum")
    parser.add_argument("--system", choices=sorted(SYSTEMS))
    parser.add_argument("--n-train", type=int, default=d.n_train)
    parser.add_argument("--n-test", type=int, default=d.n_test)
    parser.add_argument("--steps", type=int, default=d.steps, help="frames per sequence (T+1)")
    parser.add_argument("--size", type=int, default=d.size)
    parser.add_argument("--dt", type=float, default=d.dt)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--materialize", action="store_true", help="also write uint8 images")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--preview", type=Path, metavar="DIR", help="write data_<system>.png")
    args = parser.parse_args(argv)
    if args.preview is not None:
        for path in preview(args.preview):
            print(path)
        return
    if args.system is None or args.out is None:
        parser.error("--system and --out are required (or use --preview DIR)")
    try:
        config = DataConfig(
            args.system, args.n_train, args.n_test, args.steps, args.size, args.dt, args.seed
        )
    except ValueError as err:
        parser.error(str(err))
    out = generate(config, args.out, args.workers, not args.no_progress, args.materialize)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()


if __name__ == "__main__":
    main()
