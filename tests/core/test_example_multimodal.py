"""examples/multimodal.py: the quick run writes the Fig. 9 PNG; bad input gets a clear error."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multimodal.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("multimodal_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny 2-D models: a second thread gains nothing and stalls on a shared machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_quick_run_writes_figure(example, tmp_path, capsys):
    out = tmp_path / "fig" / "multimodal.png"
    record = example.main(["--quick", "--out", str(out), "--no-progress"])
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
    assert math.isfinite(record["test_nll_iwae"])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["config"]["prior"] == "normal" and saved["config"]["steps"] > 0
    assert saved["command"] == f"python examples/multimodal.py --quick --out {out} --no-progress"
    assert saved["date"] and saved["commit"] and saved["machine"]
    printed = capsys.readouterr().out
    assert "test NLL (IWAE" in printed and str(out) in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--density", "nope"], "invalid choice: 'nope'"),
        (["--steps", "0"], "expected an integer >= 1, got 0"),
        (["--steps", "x"], "expected an integer >= 1, got 'x'"),
        (["--prior", "laplace"], "invalid choice: 'laplace'"),
    ],
)
def test_bad_arguments(example, argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        example.parse_args(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_density_doc_snippet_runs():
    import re

    text = (EXAMPLE.parents[1] / "docs" / "density" / "index.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    exec(compile(code, "docs/density/index.md", "exec"), {})
