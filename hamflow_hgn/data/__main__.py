"""Generate an HGN dataset, or preview the four systems (``python -m hamflow_hgn.data``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import default_of, make_parser, positive_int
from .dataset import DataConfig
from .generation import generate, preview
from .systems import SYSTEMS

__all__ = ["main"]

EXAMPLES = """\
  python -m hamflow_hgn.data --system pendulum --out data/pendulum        # the paper's size
  python -m hamflow_hgn.data --system three_body --n-train 512 --n-test 64 --steps 16 \\
      --size 16 --out data/three_body_small
  python -m hamflow_hgn.data --system pendulum --steps 34 --out data/pendulum34  # 'predict'
  python -m hamflow_hgn.data --preview docs/img                           # one strip per system
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    d = DataConfig
    parser = make_parser(
        "python -m hamflow_hgn.data",
        "Generate the states of an HGN dataset (paper Sec. 4, A.4): clean and noisy phase-space\n"
        "trajectories with their hashes. Frames are rendered from them on demand when training.",
        EXAMPLES,
    )
    parser.add_argument("--system", choices=sorted(SYSTEMS), help="required unless --preview")
    parser.add_argument("--out", type=Path, help="dataset directory; required unless --preview")
    parser.add_argument(
        "--n-train", type=positive_int, default=default_of(d, "n_train"), help="train sequences"
    )
    parser.add_argument(
        "--n-test", type=positive_int, default=default_of(d, "n_test"), help="test sequences"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=default_of(d, "steps"), help="frames per sequence"
    )
    parser.add_argument(
        "--size", type=positive_int, default=default_of(d, "size"),
        help="image size: a power of two from 8 to 256",
    )  # fmt: skip
    parser.add_argument("--dt", type=float, default=default_of(d, "dt"), help="time between frames")
    parser.add_argument("--seed", type=int, default=default_of(d, "seed"), help="data seed")
    parser.add_argument("--workers", type=positive_int, default=2, help="simulation processes")
    parser.add_argument("--materialize", action="store_true", help="also write uint8 images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--preview", type=Path, metavar="DIR", help="write data_<system>.png")
    args = parser.parse_args(argv)
    if args.preview is not None:
        for path in preview(args.preview):
            print(path)
        return 0
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
