"""The folders of ``harness/`` are layers: a module imports only from its own layer and
the layers below it, and docs/layout.md names every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "harness"
# lowest first; a module may import from its own layer and those before it
LAYERS = [
    ("foundation", {"errors", "axes"}),
    ("models", {"models"}),
    ("measure", {"measure"}),
    ("sweep", {"sweep"}),
    ("store", {"store"}),
    ("execute", {"execute"}),
    ("analysis", {"analysis"}),
    ("abtest", {"abtest"}),
    ("bridges", {"bridges"}),
    ("front", {"api", "cli", "console", "commands", "interleave", "__main__", "__init__"}),
]
RANK = {part: rank for rank, (_, parts) in enumerate(LAYERS) for part in parts}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _part(path: Path) -> str:
    """The first part of a module's path inside ``harness/``: its package, or its name."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_parts(tree: ast.Module) -> set[str]:
    """The ``harness`` parts a module imports at run time (not for type checking only)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "harness":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("harness."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("harness.")]
        found.update(n for n in names if n in RANK)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_from_its_layer_and_those_below(path):
    part = _part(path)
    assert part in RANK, f"{path.name}: in no layer; add its folder to LAYERS and docs/layout.md"
    upward = {
        imported
        for imported in _imported_parts(ast.parse(path.read_text()))
        if RANK[imported] > RANK[part]
    }
    assert not upward, f"{path.relative_to(PACKAGE)} imports from higher layers: {upward}"


def test_the_layout_page_names_every_module():
    layout = (PACKAGE.parent / "docs" / "layout.md").read_text()
    for path in _modules():
        if path.name != "__init__.py":
            assert f"{path.stem}.py" in layout, f"docs/layout.md does not name {path.name}"
