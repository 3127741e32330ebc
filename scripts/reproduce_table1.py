"""Reproduce Table 1 and Fig. 6-8 of the HGN paper: generate, train, evaluate, assemble.

The work lives in ``scripts/table1/``: ``paper.py`` (the paper's numbers), ``plan.py`` (scales,
commands, running them) and ``report.py`` (the results page and figures). This is its CLI.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Table 1, Fig. 6-8, A.3.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table1.paper import ROWS, SYSTEMS  # noqa: E402
from table1.plan import REPO, SCALES, build_plan, is_done, run_plan  # noqa: E402
from table1.report import (  # noqa: E402
    machine_description,
    make_figures,
    render_record,
    results_record,
    run_hnn_check,
)

from hamflow_hgn.io import write_json, write_text  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from _common import machine_info  # noqa: E402

EXAMPLES = """examples:
  python scripts/reproduce_table1.py --scale tiny                 # smoke test, into runs/ only
  python scripts/reproduce_table1.py --scale small --jobs 2       # 2-CPU machine, about an hour
  python scripts/reproduce_table1.py --scale reduced --hnn-check --publish
      # one thread, under an hour: 3 rows, 1000 steps (the published page)
  python scripts/reproduce_table1.py --scale small --jobs 2 --hnn-check --publish
      # ... and update docs/reproduction.md
  python scripts/reproduce_table1.py --scale paper --root /data/hgn --publish   # one GPU, days
  python scripts/reproduce_table1.py --scale small --systems mass_spring \\
      --models hgn_leapfrog pixel_hnn_mlp --dry-run               # print the commands

Without --publish the results page, its results file and the figures go to ROOT/results.md,
ROOT/table1_SCALE.json and ROOT/img/ (ROOT is runs/table1_SCALE by default); only --publish
writes docs/reproduction.md, benchmarks/results/table1_SCALE.json and docs/img/. The page is
rendered from the results file, which holds the command, machine, date, commit and settings;
--from-results FILE renders it again from that file alone.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python scripts/reproduce_table1.py",
        description="Reproduce Table 1 and Fig. 6-8 of the HGN paper: generate, train, "
        "evaluate, assemble. Work whose output exists is skipped, so a run resumes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", choices=sorted(SCALES), default="small", help="default: small")
    p.add_argument(
        "--root", type=Path, default=None, help="data and runs (default: runs/table1_SCALE)"
    )
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    p.add_argument(
        "--models", nargs="+", choices=list(ROWS), default=None,
        help="default: the scale's rows (every row but at --scale reduced)",
    )  # fmt: skip
    p.add_argument("--protocol", choices=("reconstruct", "predict"), default="reconstruct")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument(
        "--publish",
        action="store_true",
        help="write docs/reproduction.md and docs/img/ (default: ROOT/results.md and ROOT/img/)",
    )
    p.add_argument("--results", type=Path, default=None, help="results page (overrides --publish)")
    p.add_argument("--img-dir", type=Path, default=None, help="figure folder (overrides --publish)")
    p.add_argument("--date", default=None, help="date recorded in the results file")
    p.add_argument("--machine", default=None, help="machine recorded in the results file")
    p.add_argument(
        "--from-results", type=Path, default=None, metavar="FILE",
        help="render the results page from a results file alone (no runs needed)",
    )  # fmt: skip
    p.add_argument("--assemble-only", action="store_true", help="skip training")
    p.add_argument("--note", action="append", default=[], help="a line for results.md")
    p.add_argument("--hnn-check", action="store_true", help="also run the HNN-on-states check")
    p.add_argument("--jobs", type=int, default=1, help="(system, model) runs in parallel")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs: expected an integer >= 1, got {args.jobs}")
    if args.publish and args.scale == "tiny":
        p.error("--publish: the tiny scale is a smoke test; its numbers are not for docs/")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the reproduction; returns the exit status (1 if any step failed)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    scale = SCALES[args.scale]
    root = args.root or REPO / "runs" / f"table1_{scale.name}"
    wanted = args.models or scale.models or tuple(ROWS)
    models = tuple(m for m in ROWS if m in wanted)  # the paper's row order
    systems = tuple(dict.fromkeys(args.systems))  # run in the order given
    plan = build_plan(scale, root, systems, models, args.protocol)
    if args.dry_run:
        for kind, cmd, marker in plan.steps:
            state = "done" if is_done(kind, cmd, marker) else "todo"
            print(f"# {kind} ({state})")
            print(shlex.join(cmd))
        return 0
    docs = REPO / "docs"
    results = args.results or (docs / "reproduction.md" if args.publish else root / "results.md")
    if args.from_results is not None:
        write_text(results, render_record(json.loads(args.from_results.read_text())))
        print(f"wrote {results} from {args.from_results}")
        return 0
    img_dir = args.img_dir or (docs / "img" if args.publish else root / "img")
    command = shlex.join(["python", "scripts/reproduce_table1.py", *argv])
    records = [] if args.assemble_only else run_plan(plan, args.jobs)
    plan_file = root / "plan.json"
    # Work skipped because it exists keeps the record (seconds) of the invocation that ran it.
    previous = json.loads(plan_file.read_text()) if plan_file.exists() else {}
    before = {r["command"]: r for r in previous.get("records", [])}
    records = [
        before.get(r["command"], r) if r["status"].startswith("skipped") else r for r in records
    ] or previous.get("records", [])
    ran_now = any(r["status"] == "ok" for r in records if r not in before.values())
    trained_by = command if ran_now or not previous else previous.get("command")
    write_json(
        plan_file,
        {"command": trained_by, "scale": asdict(scale), "records": records},
        indent=1,
    )
    if args.hnn_check and not (root / "hnn_state_check.json").exists():
        run_hnn_check(root)
    figures = [] if args.no_figures else make_figures(plan, img_dir)
    stats = root / "figure_stats.json"
    json_path = (REPO / "benchmarks" / "results" if args.publish else root) / (
        f"table1_{scale.name}.json"
    )
    provenance = machine_info()
    provenance["machine"] = args.machine or provenance["machine"]
    provenance["date"] = args.date or provenance["date"]
    provenance["cpu"] = machine_description()
    record = results_record(
        plan,
        command,
        provenance,
        results_file=_shown(json_path),
        figures=figures,
        notes=[f"- {n}" for n in args.note],
        trained_by=trained_by,
        runs=records,
        figure_stats=json.loads(stats.read_text()) if figures and stats.exists() else None,
    )
    write_json(json_path, record, sort_keys=False, indent=1)
    write_text(results, render_record(record))
    print(f"wrote {results} and {json_path}")
    failed = [r for r in records if r["status"].startswith("failed")]
    return 1 if failed else 0


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the page names it)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
