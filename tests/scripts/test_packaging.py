"""pyproject.toml: SPDX licence with its file, project URLs, the extras, the console scripts."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS = {
    "hamflow-data": "hamflow_hgn.data.__main__:main",
    "hamflow-train": "hamflow_hgn.train:main",
    "hamflow-evaluate": "hamflow_hgn.evaluate:main",
}


def test_licence_is_an_spdx_expression_with_its_file():
    assert PROJECT["license"] == "MIT"  # the table form warns on every install
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_urls_and_extras():
    assert PROJECT["urls"] and all(u.startswith("https://") for u in PROJECT["urls"].values())
    extras = PROJECT["optional-dependencies"]
    assert extras["tensorboard"] == ["tensorboard"] and "extras" not in extras


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_scripts_point_at_the_cli_mains(name, capsys):
    assert PROJECT["scripts"][name] == SCRIPTS[name]
    module, func = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "(default:" in text and "``" not in text and ":func:" not in text


def test_console_scripts_are_installed():
    try:
        version("hamflow")
    except PackageNotFoundError:
        pytest.skip("hamflow is not installed")
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    for name, target in SCRIPTS.items():
        assert installed.get(name) == target, name


def test_data_help_defaults_come_from_data_config(capsys):
    from hamflow_hgn.data import DataConfig
    from hamflow_hgn.data.__main__ import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = DataConfig("pendulum")
    assert f"--n-train N_TRAIN train sequences (default: {d.n_train})" in text
    assert f"(default: {d.dt})" in text
