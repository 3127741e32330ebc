"""The package's shape (issue 11): no import cycle, nobody imports the trainer, no repeated
blocks of code, a docstring on every public name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "hamflow_hgn"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """hamflow_hgn modules imported by ``name`` (at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("hamflow_hgn"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hamflow_hgn"))
    return found


def test_no_import_cycle_and_only_the_cli_imports_the_trainer():
    modules = _modules()
    graph = {m: {i for i in _imports(m, p) if i in modules and i != m} for m, p in modules.items()}
    importers = sorted(m for m, deps in graph.items() if "hamflow_hgn.train" in deps)
    assert importers == [], importers
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if d.startswith(m + ".") or m.startswith(d + ".") and d == m.rsplit(".", 1)[0]:
                continue  # a package and its own submodules
            assert state.get(d) != 1, f"import cycle: {' -> '.join([*stack, m, d])}"
            if d not in state:
                visit(d, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_no_block_of_six_lines_is_repeated():
    seen: dict[tuple[str, ...], str] = {}
    repeats = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = [line.strip() for line in path.read_text().splitlines()]
        for i in range(len(lines) - 5):
            block = tuple(lines[i : i + 6])
            if sum(len(x) > 3 for x in block) < 6:  # blank lines, brackets, "..." only
                continue
            where = f"{path.relative_to(PACKAGE)}:{i + 1}"
            if (
                block in seen
                and seen[block].split(":")[0] != where.split(":")[0]
                or (block in seen and abs(int(seen[block].split(":")[1]) - i - 1) >= 6)
            ):
                repeats.append((seen[block], where))
            seen.setdefault(block, where)
    assert repeats == [], repeats[:5]


def test_public_names_have_docstrings():
    """Modules, public functions and classes, and public methods (inherited docs count)."""
    import importlib
    import inspect

    missing = []
    for name in _modules():
        module = importlib.import_module(name)
        if not module.__doc__:
            missing.append(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not inspect.getdoc(obj):
                    missing.append(f"{name}.{attr}")
            if inspect.isclass(obj):
                for meth, member in vars(obj).items():
                    if meth.startswith("_") or not callable(getattr(member, "fget", member)):
                        continue
                    if not inspect.getdoc(getattr(obj, meth)):
                        missing.append(f"{name}.{attr}.{meth}")
    assert missing == [], missing
