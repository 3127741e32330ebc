"""benchmarks/_common.update_markdown: blocks written by processes at the same time all land."""

from __future__ import annotations

import multiprocessing as mp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _common  # noqa: E402


def _write(path: str, i: int) -> None:
    for _ in range(20):
        _common.update_markdown(
            Path(path), f"<!-- b{i}:begin -->\nrow {i}\n<!-- b{i}:end -->", f"b{i}"
        )


def test_concurrent_updates_keep_every_block_and_leave_no_temporary_file(tmp_path):
    page = tmp_path / "page.md"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write, args=(str(page), i)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    text = page.read_text()
    for i in range(6):  # a lost update would drop a block; a shared temp file would crash
        assert text.count(f"<!-- b{i}:begin") == 1 and f"row {i}" in text
    assert [f.name for f in tmp_path.iterdir()] == ["page.md"]
