"""MkDocs hook: expand ``<!-- api: MODULE -->`` markers into one mkdocstrings block per name.

``<!-- api: hamflow -->`` becomes ``::: hamflow.NAME`` for every name in ``hamflow.__all__``, read
when the site is built, so a name added to ``__all__`` appears in the API reference without an
edit here. ``<!-- api-modules: hamflow_hgn.config hamflow_hgn.train ... -->`` becomes one
``::: MODULE`` block per module (each module's own ``__all__`` picks its members).
``tests/docs/test_api_pages.py`` checks both against the packages.
"""

from __future__ import annotations

import importlib
import re

_NAMES = re.compile(r"<!-- api: ([\w.]+) -->")
_MODULES = re.compile(r"<!-- api-modules: ([\w. ]+?) -->")


def public_names(module: str) -> list[str]:
    """The names in ``module.__all__``, in its order."""
    return list(importlib.import_module(module).__all__)


def expand(markdown: str) -> str:
    """Replace every marker in ``markdown`` by its mkdocstrings blocks."""

    def names(match: re.Match) -> str:
        module = match.group(1)
        return "\n\n".join(f"::: {module}.{name}" for name in public_names(module))

    def modules(match: re.Match) -> str:
        return "\n\n".join(f"::: {name}" for name in match.group(1).split())

    return _MODULES.sub(modules, _NAMES.sub(names, markdown))


def on_page_markdown(markdown: str, **kwargs) -> str:  # the MkDocs hook
    return expand(markdown)
