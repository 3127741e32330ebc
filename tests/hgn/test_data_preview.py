"""``python -m hamflow_hgn.data --preview DIR``: the dataset strips of docs/hgn/data.md and the
record beside them that names the command, settings and figures (issue 36, provenance)."""

import json

from hamflow_hgn.data import SYSTEMS
from hamflow_hgn.data.__main__ import main
from hamflow_hgn.data.generation import PREVIEW_RECORD


def test_preview_records_its_command_settings_and_figures(tmp_path):
    assert main(["--preview", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / PREVIEW_RECORD).read_text())
    assert record["command"] == f"python -m hamflow_hgn.data --preview {tmp_path / 'a'}"
    assert record["figures"] == [f"data_{name}.png" for name in SYSTEMS]
    assert record["settings"]["seed"] == 0 and record["settings"]["size"] == 64
    assert record["date"] and record["commit"] and record["torch"]
    # the recorded command draws the same bytes again
    assert main(["--preview", str(tmp_path / "b")]) == 0
    for name in record["figures"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
