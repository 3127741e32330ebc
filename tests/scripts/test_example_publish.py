"""examples/pendulum_hgn.py --publish: the strips of docs/hgn/evaluation.md and their record."""

import json
from pathlib import Path

import pytest


def test_publish_copies_the_strips_and_records_command_and_numbers(example, tmp_path):
    figures = {}
    for i, kind in enumerate((*example.PUBLISHED, "half_speed")):
        png = tmp_path / "rollouts" / f"{kind}.png"
        png.parent.mkdir(exist_ok=True)
        png.write_bytes(b"\x89PNG fake " + bytes([i]))
        figures[kind] = [str(png), str(tmp_path / "rollouts" / f"{kind}_0.gif")]
    record = {"test_mse": 0.0123, "ratio": 0.2, "figures": figures}
    settings = {"seed": 0, "out": tmp_path / "ex"}
    path = example.publish(record, "python examples/pendulum_hgn.py --publish", settings,
                           tmp_path / "img")  # fmt: skip
    out = json.loads(path.read_text())
    assert out["command"] == "python examples/pendulum_hgn.py --publish"
    assert out["date"] and out["commit"] and out["machine"]
    assert out["settings"] == {"seed": 0, "out": str(tmp_path / "ex")}
    assert out["results"] == {"test_mse": 0.0123, "ratio": 0.2}  # the numbers, not the paths
    assert out["figures"] == [f"hgn_example_{k}.png" for k in example.PUBLISHED]
    for kind in example.PUBLISHED:  # each strip copied byte for byte, the half speed not
        copied = tmp_path / "img" / f"hgn_example_{kind}.png"
        assert copied.read_bytes() == Path(figures[kind][0]).read_bytes()
    assert not (tmp_path / "img" / "hgn_example_half_speed.png").exists()


def test_a_quick_run_cannot_publish(example, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(["--quick", "--publish"])
    assert "--publish: a --quick smoke run is not for docs/" in capsys.readouterr().err
