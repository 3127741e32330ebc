"""Generate an HGN dataset, preview the four systems, or import your own frames.

``python -m hamflow_hgn.data`` (``hamflow-data``) generates; ``hamflow-data import SRC --out DIR``
imports a uint8 ``(N, T, H, W, 3)`` array (:func:`~hamflow_hgn.data.import_frames`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import default_of, make_parser, positive_int
from .dataset import DataConfig
from .generation import generate, preview
from .imported import import_frames
from .systems import SYSTEMS

__all__ = ["main", "import_main"]

EXAMPLES = """\
  python -m hamflow_hgn.data --system pendulum --out data/pendulum        # the paper's size
  python -m hamflow_hgn.data --system three_body --n-train 512 --n-test 64 --steps 16 \\
      --size 16 --out data/three_body_small
  python -m hamflow_hgn.data --system pendulum --steps 34 --out data/pendulum34  # 'predict'
  python -m hamflow_hgn.data --preview docs/img                           # one strip per system
  hamflow-data import frames.npy --out data/mine     # your own uint8 (N, T, H, W, 3) frames
"""

IMPORT_EXAMPLES = """\
  hamflow-data import frames.npy --out data/mine
  hamflow-data import clips/ --out data/clips --test-fraction 0.1 --frames 16
  hamflow-data import frames.npz --key video --out data/mine --seed 1
"""


def import_main(argv: Sequence[str] | None = None) -> int:
    """``hamflow-data import``: write a dataset from your own frames; returns the exit status."""
    parser = make_parser(
        "hamflow-data import",
        "Import your own image sequences as an HGN dataset: a uint8 array of RGB frames,\n"
        "shape (N, T, H, W, 3), in a .npy or .npz file or in the .npy/.npz files of a folder\n"
        "(same T, H, W; sequences pooled). Frames must be square, 8, 16, 32, 64, 128 or 256\n"
        "pixels, with T >= 2. The sequences are shuffled with --seed and split into train and\n"
        "test; train with: hamflow-train --data DIR --out RUN --preset small",
        IMPORT_EXAMPLES,
    )
    parser.add_argument("source", type=Path, help=".npy or .npz file, or a folder of them")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of the sequences held out for test"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test shuffle")
    parser.add_argument(
        "--frames", type=positive_int, default=None,
        help="keep the first FRAMES frames of each sequence (default: all T)",
    )  # fmt: skip
    parser.add_argument("--key", default=None, help="the array of an .npz that holds several")
    parser.add_argument("--name", default=None, help="dataset name (default: the source's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        out = import_frames(
            args.source, args.out, test_fraction=args.test_fraction, seed=args.seed,
            frames=args.frames, key=args.key, name=args.name, progress=not args.no_progress,
        )  # fmt: skip
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (``import ...``: :func:`import_main`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["import"]:
        return import_main(argv[1:])
    d = DataConfig
    parser = make_parser(
        "python -m hamflow_hgn.data",
        "Generate the states of an HGN dataset (paper Sec. 4, A.4): clean and noisy phase-space\n"
        "trajectories with their hashes. Frames are rendered from them on demand when training.\n"
        "To train on your own frames instead: hamflow-data import --help",
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
