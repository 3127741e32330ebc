"""The API pages list every public name: the build hook expands each page's marker from the
package's ``__all__`` at build time, so a name added there cannot be missing from the site."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_name_in_hamflow_all_is_on_the_api_page(hooks):
    import hamflow

    raw = (DOCS / "api" / "hamflow.md").read_text()
    modules = {
        m for group in re.findall(r"<!-- api-modules: ([\w. ]+?) -->", raw) for m in group.split()
    }
    page = hooks.expand(raw)
    blocks = [
        b for b in re.findall(r"^::: hamflow\.(\w+)$", page, re.M) if f"hamflow.{b}" not in modules
    ]
    assert blocks == list(hamflow.__all__)
    assert len(blocks) == len(set(blocks)) > 10
    for name in (
        modules
    ):  # modules kept out of ``import hamflow`` (optional extras) document their own __all__
        assert importlib.import_module(name).__all__, name


def test_hamflow_hgn_page_documents_modules_that_exist_and_declare_all(hooks):
    page = hooks.expand((DOCS / "api" / "hamflow_hgn.md").read_text())
    modules = re.findall(r"^::: (hamflow_hgn[\w.]*)$", page, re.M)
    assert "hamflow_hgn.train" in modules and "hamflow_hgn.data" in modules
    for name in modules:
        module = importlib.import_module(name)
        assert module.__all__, name  # members come from __all__


def test_expand_leaves_other_text_and_fails_on_unknown_modules(hooks):
    assert hooks.expand("# Title\n\ntext") == "# Title\n\ntext"
    with pytest.raises(ModuleNotFoundError):
        hooks.expand("<!-- api: hamflow_no_such_module -->")


def test_every_page_is_in_the_nav_or_owned_elsewhere():
    """A page not in mkdocs.yml's nav is unreachable; strict mode only logs it."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = [p for p in pages if p not in nav]
    assert not missing, f"add these pages to mkdocs.yml's nav: {missing}"
