"""The import rule of ARCHITECTURE.md, checked on every import in the tree (inside functions too).

A file's layer is the folder it lives in (``FOLDERS``, longest prefix wins), so moving a file is
the only way to change what it may import. Two more rules: a job never imports another job
(except the orchestrators named in ``ORCHESTRATORS``), and no two files import each other, even
through a chain.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("annotator", "models", "pipelines", "pages")
FOLDERS = {  # folder (or file) -> layer; the longest matching prefix wins
    "annotator": "core",  # annotator/__init__.py: the version only
    "annotator/core": "core",
    "annotator/data": "data",
    "annotator/media": "media",
    "annotator/service": "service",
    "models": "model",
    "pipelines": "job",
    "pipelines/common": "jobkit",
    "pipelines/cli": "surface",
    "pages": "surface",
}
ALLOWED = {  # layer -> what it may import (layers, or "third-party"); stdlib is always allowed
    "core": {"core", "numpy", "scipy"},  # scipy: statistics only (the audit's bounds)
    "data": {"core", "data", "numpy", "third-party"},
    "media": {"core", "data", "media", "numpy", "torch", "third-party"},
    "service": {"core", "data", "media", "service", "numpy", "torch", "scipy", "third-party"},
    "model": {"core", "model", "numpy", "torch"},
    "jobkit": {"core", "data", "media", "service", "model", "jobkit", "numpy", "torch", "scipy",
               "third-party"},
    "job": {"core", "data", "media", "service", "model", "jobkit", "job", "numpy", "torch",
            "scipy", "third-party"},
    "surface": {"core", "data", "media", "service", "model", "jobkit", "job", "surface", "numpy",
                "torch", "scipy", "third-party"},
}
MODEL_LIBS = {"torch", "numpy", "h5py", "onnx", "onnxruntime", "cv2"}
# A job is an entry point. Only these run other jobs, each only the ones named.
ORCHESTRATORS = {
    "pipelines/retrain.py": {"pipelines/build_dataset.py", "pipelines/train.py",
                             "pipelines/promote.py", "pipelines/score.py"},
    "pipelines/promote.py": {"pipelines/score.py"},
}


def layer_of(path: str) -> str | None:
    parts = Path(path).with_suffix("").parts
    for n in range(len(parts), 0, -1):
        layer = FOLDERS.get("/".join(parts[:n]))
        if layer:
            return layer
    return None


def job_unit(path: str) -> str:
    """``pipelines/detect/outputs.py`` -> ``pipelines/detect`` (a package is one job)."""
    parts = Path(path).parts
    return "/".join(parts[:2]) if len(parts) > 2 else path


def module_path(name: str, root: Path = REPO) -> str | None:
    """``annotator.db`` -> ``annotator/data/db.py`` (packages -> their ``__init__.py``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return str(candidate.relative_to(root))
    return None


def imports(source: str, filename: str, root: Path = REPO) -> list[tuple[int, str]]:
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if module_path(f"{node.module}.{a.name}", root)
                      and node.module.split(".")[0] in PACKAGES]
    return found


def kind_of_import(name: str) -> str:
    top = name.split(".")[0]
    if top in PACKAGES:
        target = module_path(name)
        return layer_of(target) if target else "missing"
    if top in sys.stdlib_module_names or top == "__future__":
        return "stdlib"
    if top in ("numpy", "torch", "scipy"):
        return top
    return "third-party"


def tree_sources(root: Path = REPO) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text()
            for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def violations(extra: dict[str, str] | None = None) -> list[str]:
    """Every import that breaks the rule, for the tree plus ``extra`` files (path -> source)."""
    out = []
    sources = tree_sources()
    sources.update(extra or {})
    for rel, source in sources.items():
        layer = layer_of(rel)
        if layer is None:
            out.append(f"{rel}: in no layer folder (see FOLDERS)")
            continue
        for line, name in imports(source, rel):
            kind = kind_of_import(name)
            if kind == "stdlib":
                continue
            ok = kind in ALLOWED[layer]
            if layer == "model" and kind == "third-party":
                ok = name.split(".")[0] in MODEL_LIBS
            if layer == "core" and kind == "third-party":
                ok = False
            if ok and layer == "job" and kind == "job":
                target = module_path(name)
                ok = (job_unit(target) == job_unit(rel)
                      or target.endswith("__init__.py") and job_unit(target) == "pipelines/__init__.py"
                      or target in ORCHESTRATORS.get(rel, ()))
                if not ok:
                    out.append(f"{rel}:{line}: job imports another job, {name}")
                    continue
            if not ok:
                out.append(f"{rel}:{line}: {layer} module imports {name} ({kind})")
    return out


def circles(root: Path = REPO) -> list[list[str]]:
    """Groups of files that import each other (directly or through a chain): Tarjan's SCCs."""
    graph: dict[str, set[str]] = {}
    for rel, source in tree_sources(root).items():
        targets = {module_path(name, root) for _, name in imports(source, rel, root)
                   if name.split(".")[0] in PACKAGES}
        graph[rel] = {t for t in targets if t and t != rel and not t.endswith("__init__.py")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_imports_only_point_down():
    assert violations() == []


def test_no_two_files_import_each_other():
    assert circles() == []


def test_the_cli_package_is_surface():
    cli = sorted(str(p.relative_to(REPO)) for p in (REPO / "pipelines" / "cli").glob("*.py"))
    assert "pipelines/cli/runner.py" in cli and "pipelines/cli/__main__.py" in cli
    assert {layer_of(f) for f in cli} == {"surface"}


def test_every_folder_of_the_tree_has_a_layer():
    folders = {str(p.parent.relative_to(REPO)) for pkg in PACKAGES
               for p in (REPO / pkg).rglob("*.py")}
    assert all(layer_of(f + "/x.py") for f in folders)
    assert set(FOLDERS.values()) == set(ALLOWED)


@pytest.mark.parametrize("path, source, expected", [
    ("annotator/data/probe.py", "import pipelines.extract\n", "data module imports pipelines.extract"),
    ("annotator/media/probe.py", "def f():\n    from pages import common\n", "imports pages.common"),
    ("annotator/core/geometry.py", "import cv2\n", "core module imports cv2"),
    ("annotator/core/geometry.py", "from annotator.data import db\n",
     "core module imports annotator.data.db"),
    ("annotator/data/probe.py", "from annotator.service import workspace\n",
     "data module imports annotator.service.workspace"),
    ("models/probe.py", "from annotator.data import db\n", "model module imports annotator.data.db"),
    ("pipelines/probe.py", "from pages import common\n", "job module imports pages.common"),
    ("pipelines/probe.py", "from pipelines import train\n", "job imports another job"),
    ("pipelines/common/probe.py", "from pipelines import train\n",
     "jobkit module imports pipelines.train"),
    # the CLI and the job runner are surface: a service starts a job without naming the runner
    ("annotator/service/probe.py", "def f():\n    from pipelines.cli import runner\n",
     "service module imports pipelines.cli.runner (surface)"),
    ("pipelines/probe.py", "from pipelines.cli.render import emit\n",
     "job module imports pipelines.cli.render (surface)"),
])
def test_the_rule_catches_an_upward_import(path, source, expected):
    assert any(expected in v for v in violations({path: source}))


def test_a_circle_between_files_is_found(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "a.py").write_text("from pipelines import b\n")
    (tmp_path / "pipelines" / "b.py").write_text("def f():\n    import pipelines.c\n")
    (tmp_path / "pipelines" / "c.py").write_text("from pipelines.a import x\n")
    (tmp_path / "pipelines" / "d.py").write_text("from pipelines import a\n")
    assert circles(tmp_path) == [["pipelines/a.py", "pipelines/b.py", "pipelines/c.py"]]


def test_no_file_holds_more_than_500_lines():
    """A file past 500 lines holds two things; split it where the seam is (ARCHITECTURE.md)."""
    long = {rel: n for rel, source in tree_sources().items()
            if (n := source.count("\n")) > 500}
    assert long == {}
