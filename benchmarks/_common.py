"""Shared benchmark helpers: machine info, atomic JSON writing, parameter-matched baselines.

The baselines are normflows models over 2-D data with a fixed standard-normal base:

- ``realnvp``: affine coupling blocks (``AffineCouplingBlock`` + swap permutation), Dinh et al.
- ``nsf``: autoregressive rational-quadratic Neural Spline Flow (``AutoregressiveRationalQuadratic
  Spline`` + ``LULinearPermute``), Durkan et al.

:func:`match_params` picks the hidden width that brings a baseline within a few per cent of a
target parameter count (the NHF being compared).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fcntl
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import normflows as nf
import torch
from torch import nn

from hamflow.training import LR_FLOOR as _LR_FLOOR
from hamflow.training import cosine_factor

MACHINE = "2-core CPU dev machine, no GPU"
DATE = _dt.date.today().isoformat()


def machine_info() -> dict:
    """What the numbers were measured on."""
    return {
        "machine": MACHINE,
        "date": DATE,
        "measured_at": _dt.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "normflows": getattr(nf, "__version__", "?"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "commit": git_commit(),
    }


def git_commit() -> str:
    """The repository's HEAD commit (``"unknown"`` outside a git checkout)."""
    import subprocess

    try:
        root = Path(__file__).resolve().parents[1]
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(path: str | Path, obj: dict) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)
    return path


def num_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def realnvp(hidden: int, num_layers: int = 8, dim: int = 2) -> nf.NormalizingFlow:
    """RealNVP: ``num_layers`` affine couplings, MLP ``[d/2, h, h, d]``, swapped halves."""
    flows: list[nf.flows.Flow] = []
    for _ in range(num_layers):
        net = nf.nets.MLP([dim // 2, hidden, hidden, dim], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(dim, mode="swap")]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def nsf(hidden: int, num_layers: int = 4, dim: int = 2, tail_bound: float = 5.0):
    """Neural Spline Flow: autoregressive RQ splines (8 bins, 2 blocks) with LU permutations."""
    flows: list[nf.flows.Flow] = []
    for _ in range(num_layers):
        flows += [
            nf.flows.AutoregressiveRationalQuadraticSpline(dim, 2, hidden, tail_bound=tail_bound),
            nf.flows.LULinearPermute(dim),
        ]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


BASELINES: dict[str, Callable[[int], nn.Module]] = {"realnvp": realnvp, "nsf": nsf}


def match_params(build: Callable[[int], nn.Module], target: int, lo: int = 4, hi: int = 1024):
    """The model from ``build(hidden)`` whose parameter count is closest to ``target``."""
    best = None
    while lo < hi:  # parameter count grows with width: bisect
        mid = (lo + hi) // 2
        if num_params(build(mid)) < target:
            lo = mid + 1
        else:
            hi = mid
    for h in (lo - 1, lo):
        if h < 1:
            continue
        m = build(h)
        if best is None or abs(num_params(m) - target) < abs(num_params(best[1]) - target):
            best = (h, m)
    return best


def median(xs: list[float]) -> float:
    return statistics.median(xs)


BENCHMARK_PAGES: dict[str, str] = {
    "nhf_step": "benchmarks/nhf-speed.md",
    "nhf_denormals": "benchmarks/nhf-speed.md",
    "nhf_log_prob": "benchmarks/nhf-speed.md",
    "toy_density": "benchmarks/toy.md",
    "toy_density_heldout": "benchmarks/toy.md",
    "toy_density_heldout_seeds": "benchmarks/toy.md",
    "toy_density_seeds": "benchmarks/toy.md",
    "toy_density_steep": "benchmarks/nhf-options.md",
    "toy_density_steep_seeds": "benchmarks/nhf-options.md",
    "toy_density_options": "benchmarks/nhf-options.md",
    "toy_density_deep_steep_seeds": "benchmarks/nhf-options.md",
    "toy_density_learned_tails_seeds": "benchmarks/nhf-options.md",
    "nhf_ablation": "benchmarks/nhf-options.md",
    "tabular": "benchmarks/tabular.md",
    "hgn_step": "benchmarks/hgn-step.md",
    "hgn_rollouts": "benchmarks/hgn-rollouts.md",
    "sampling": "benchmarks/sampling.md",
    "sbi": "benchmarks/sbi.md",
}
"""Which docs page (under ``docs/``) holds each published block: a result's name, or the part of
it before its first ``_`` (``tabular_digits`` -> ``tabular``). A name in neither gets a page of its
own, ``docs/benchmarks/NAME.md``, to be added to ``mkdocs.yml``'s nav."""


def benchmark_page(name: str) -> str:
    """The page (relative to ``docs/``) that a published result called ``name`` goes into.

    Example:
        >>> benchmark_page("toy_density_seeds"), benchmark_page("tabular_iris")
        ('benchmarks/toy.md', 'benchmarks/tabular.md')
        >>> benchmark_page("sbi_tasks"), benchmark_page("hgn_rollouts")
        ('benchmarks/sbi.md', 'benchmarks/hgn-rollouts.md')
        >>> benchmark_page("my_new_run")
        'benchmarks/my_new_run.md'
    """
    if name in BENCHMARK_PAGES:
        return BENCHMARK_PAGES[name]
    return BENCHMARK_PAGES.get(name.split("_", 1)[0], f"benchmarks/{name}.md")


def caption(block: str, results: str | None = None) -> str:
    r"""One caption line per block: ``Command: `...` · results: `RESULTS```; no machine or date.

    The machine, date, commit and settings live in the results JSON. A line starting
    ``Machine:`` is dropped; the ``Command:`` line gets the results file; what followed the
    command on its line (minus a leading date and the machine's name) starts the next line.

    Example:
        >>> caption("Command: `python b.py`  \nMachine: M; date: D\nSettings: S.", "r.json")
        'Command: `python b.py` · results: `r.json`  \nSettings: S.'
    """
    out: list[str] = []
    for line in block.split("\n"):
        if line.startswith("Machine:"):
            continue
        if line.startswith("Command: `") and "· results:" not in line:
            end = line.index("`", len("Command: `")) + 1
            head, rest = line[:end], line[end:].strip()
            if results:
                head += f" · results: `{results}`"
            rest = re.sub(r"^[;,.]\s*", "", rest)
            rest = re.sub(r"^\d{4}-\d{2}-\d{2},?\s*", "", rest)
            rest = rest.replace(f"{MACHINE}, ", "")
            out.append(head + "  ")
            if rest:
                out.append(rest[0].upper() + rest[1:])
            continue
        out.append(line)
    return "\n".join(out)


def update_markdown(path: Path, block: str, tag: str, results: str | None = None) -> None:
    """Replace the ``<!-- tag:begin -->…<!-- tag:end -->`` block in ``path`` (append if absent).

    The block is written with one caption line (:func:`caption`), naming ``results`` if given.
    Processes that update blocks of one page at the same time (one per seed) take turns: the
    read, the edit and the atomic replace happen under a lock on the page's folder.
    """
    block = caption(block, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        begin, end = f"<!-- {tag}:begin", f"<!-- {tag}:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        os.close(folder)  # releases the lock


def publish(
    name: str,
    out: dict,
    block: str,
    out_dir: Path | None = None,
    quick: bool = False,
    markdown: Path | None = None,
    *,
    to_docs: bool = False,
    page: str | None = None,
) -> tuple[Path, Path]:
    """Write ``out`` to ``OUT_DIR/NAME[_quick].json`` and its Markdown block into ``markdown``.

    Only ``to_docs`` (a script's ``--publish``) writes into the committed
    ``benchmarks/results/`` and the block's page under ``docs/`` (``page``, by default
    :func:`benchmark_page` of ``name``); otherwise the JSON and a ``benchmarks.md`` go to
    ``runs/benchmarks/`` (or ``out_dir``). A quick run never writes into
    ``benchmarks/results/``, whatever ``out_dir`` says, so smoke runs leave ``git status`` clean.
    Returns both paths.
    """
    root = Path(__file__).resolve().parents[1]
    results = root / "benchmarks" / "results"
    if quick and to_docs:
        raise ValueError("publish: a quick (smoke) run cannot be published into docs/")
    out_dir = Path(out_dir) if out_dir is not None else (results if to_docs else None)
    if out_dir is None or (quick and out_dir.resolve() == results.resolve()):
        out_dir = root / "runs" / "benchmarks"
    path = write_json(out_dir / (f"{name}_quick.json" if quick else f"{name}.json"), out)
    docs_page = root / "docs" / (page or benchmark_page(name))
    md = markdown or (docs_page if to_docs else out_dir / "benchmarks.md")
    try:
        shown = path.resolve().relative_to(root).as_posix()
    except ValueError:
        shown = path.name
    update_markdown(md, block, tag=name, results=shown)
    return path, md


NHF_OPTIONS: dict[str, dict] = {
    "nhf_steep": {"potential_in_scale": 3.0},
    "nhf_deep": {"num_flows": 6, "hidden": (104, 104)},
    "nhf_deep_steep": {"num_flows": 6, "hidden": (104, 104), "potential_in_scale": 3.0},
    "nhf_bounded": {"prior": "soft_uniform", "potential_in_scale": 3.0},
    "nhf_learned_tails": {"prior": "generalized_normal"},
}
"""The NHF options the toy and tabular benchmarks run on request: ``NHF(dim, **NHF_OPTIONS[row])``
(steeper potentials at initialisation, six narrower flows, both, the soft-uniform prior with the
steep start, the prior with learned tails; docs/benchmarks/nhf-options.md)."""

LR_FLOOR = _LR_FLOOR
"""The cosine schedule's last learning rate, as a fraction of the first (``hamflow.training``'s,
as in ``examples/multimodal.py``)."""


def cosine_lr(opt: torch.optim.Optimizer, base_lr: float, progress: float) -> float:
    """Set every group's learning rate to the cosine schedule at ``progress`` (0 to 1); return it.

    ``base_lr`` at 0, decaying to ``LR_FLOOR * base_lr`` at 1 (and staying there after). Every
    model of a benchmark gets the same schedule over the same budget.

    Example:
        >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> [round(cosine_lr(opt, 1e-3, t), 6) for t in (0.0, 0.5, 1.0, 2.0)]
        [0.001, 0.000525, 5e-05, 5e-05]
    """
    lr = base_lr * cosine_factor(progress)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def points_per_step(model: nn.Module, batch: int) -> int:
    """Data points per training step so that every model moves ``batch`` samples through its layers.

    NHF's loss draws ``train_samples`` momenta per point (``NHF.forward_kld``), so it gets
    ``batch // train_samples`` points: its step moves as many phase-space states as a flow's
    step moves points. Other models get ``batch``.

    Example:
        >>> from hamflow import NHF
        >>> points_per_step(NHF(2), 512), points_per_step(NHF.paper(2), 512)
        (128, 512)
    """
    return max(1, batch // int(getattr(model, "train_samples", 1)))


def timed_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: torch.Tensor
) -> tuple[float, bool]:
    """One ``forward_kld`` + backward + optimiser step: its CPU time and whether it was taken.

    A non-finite loss skips the update (the caller counts it). CPU time
    (``time.process_time``) leaves out the time other jobs hold a shared core.
    """
    t0 = time.process_time()
    loss = model.forward_kld(batch)
    opt.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if finite:
        loss.backward()
        opt.step()
    return time.process_time() - t0, finite


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--out-dir``, ``--publish`` and ``--markdown``, the same for every benchmark."""
    p.add_argument("--out-dir", type=Path, default=None, help="default runs/benchmarks/")
    p.add_argument(
        "--publish",
        action="store_true",
        help="write into benchmarks/results/ and the docs/benchmarks/ page (not with --quick)",
    )
    p.add_argument("--markdown", type=Path, default=None, help="Markdown file to update")


def check_output_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--quick --publish``: a smoke run never writes into docs/ or results/."""
    if getattr(args, "quick", False) and args.publish:
        p.error("--publish: a --quick smoke run is never published")
