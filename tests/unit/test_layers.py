"""The import rule of ARCHITECTURE.md, checked on every import in the tree (inside functions too).

The layer of each file comes from the ```layers block of ARCHITECTURE.md (an explicit file wins
over a glob), so the page and the code cannot drift apart.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("annotator", "models", "pipelines", "pages")
ALLOWED = {  # layer -> what it may import (layers, or "third-party"); stdlib is always allowed
    "core": {"core", "numpy", "scipy"},  # scipy: statistics only (the audit's bounds)
    "adapter": {"core", "adapter", "numpy", "torch", "scipy", "third-party"},
    "model": {"core", "model", "numpy", "torch"},
    "job": {"core", "adapter", "model", "job", "numpy", "torch", "scipy", "third-party"},
    "surface": {"core", "adapter", "model", "job", "surface", "numpy", "torch", "scipy", "third-party"},
}
MODEL_LIBS = {"torch", "numpy", "h5py", "onnx", "onnxruntime", "cv2"}


def layer_table() -> list[tuple[str, list[str]]]:
    text = (REPO / "ARCHITECTURE.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no ```layers block"
    rows = []
    for line in block.group(1).strip().splitlines():
        layer, *patterns = line.split()
        rows.append((layer, patterns))
    return rows


def layer_of(path: str, table) -> str | None:
    """Explicit file names win over globs; among globs the first match wins."""
    for layer, patterns in table:
        if path in patterns:
            return layer
    for layer, patterns in table:
        if any(Path(path).match(p) or (p.endswith("/**") and path.startswith(p[:-2]))
               for p in patterns if "*" in p):
            return layer
    return None


def module_path(name: str) -> str | None:
    """``annotator.db`` -> ``annotator/db.py`` (packages -> their ``__init__.py``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return str(candidate.relative_to(REPO))
    return None


def imports(source: str, filename: str) -> list[tuple[int, str]]:
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if module_path(f"{node.module}.{a.name}") and node.module in PACKAGES]
    return found


def kind_of_import(name: str, table) -> str:
    top = name.split(".")[0]
    if top in PACKAGES:
        target = module_path(name)
        return layer_of(target, table) if target else "missing"
    if top in sys.stdlib_module_names or top == "__future__":
        return "stdlib"
    if top in ("numpy", "torch", "scipy"):
        return top
    return "third-party"


def violations(extra: dict[str, str] | None = None) -> list[str]:
    """Every import that breaks the rule, for the tree plus ``extra`` files (path -> source)."""
    table = layer_table()
    out = []
    sources = {str(p.relative_to(REPO)): p.read_text()
               for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
    sources.update(extra or {})
    for rel, source in sources.items():
        layer = layer_of(rel, table)
        if layer is None:
            out.append(f"{rel}: not in the ```layers table of ARCHITECTURE.md")
            continue
        for line, name in imports(source, rel):
            kind = kind_of_import(name, table)
            if kind == "stdlib":
                continue
            ok = kind in ALLOWED[layer]
            if layer == "model" and kind == "third-party":
                ok = name.split(".")[0] in MODEL_LIBS
            if layer == "core" and kind == "third-party":
                ok = False
            if not ok:
                out.append(f"{rel}:{line}: {layer} module imports {name} ({kind})")
    return out


def test_imports_only_point_down():
    assert violations() == []


def test_architecture_table_names_real_files():
    for layer, patterns in layer_table():
        assert layer in ALLOWED, layer
        for p in patterns:
            assert "*" in p or (REPO / p).is_file(), f"ARCHITECTURE.md names {p}, which is gone"


@pytest.mark.parametrize("path, source, expected", [
    ("annotator/probe.py", "import pipelines.extract\n", "adapter module imports pipelines.extract"),
    ("annotator/probe.py", "def f():\n    from pages import common\n", "imports pages.common"),
    ("annotator/geometry.py", "import cv2\n", "core module imports cv2"),
    ("annotator/geometry.py", "from annotator import db\n", "core module imports annotator.db"),
    ("models/probe.py", "from annotator import db\n", "model module imports annotator.db"),
    ("pipelines/probe.py", "from pages import common\n", "job module imports pages.common"),
])
def test_the_rule_catches_an_upward_import(path, source, expected):
    assert any(expected in v for v in violations({path: source}))
