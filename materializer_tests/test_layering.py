"""Dependencies point one way: pipeline → resources → lib.

lib/ is pure functions on Arrow tables (no Dagster), resources/ holds the
IO managers and resources built on lib/, and pipeline/ is the Dagster graph
on top of both. Read from the source with ``ast`` (every import, also those
inside functions), so nothing is imported and the test stays fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "materializer_assets"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return names


def _within(name: str, module: str) -> bool:
    """``name`` is ``module`` or inside it (dagster also covers its own packages: dagster_shared …)."""
    return name == module or name.startswith(module + ".") or (module == "dagster" and name.startswith("dagster_"))


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in sorted(_imports(path)):
            if any(_within(name, layer) for layer in forbidden):
                found.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    return found


def test_lib_imports_neither_dagster_nor_the_layers_above_it():
    assert _violations("lib", ("dagster", f"{PACKAGE}.resources", f"{PACKAGE}.pipeline")) == []


def test_resources_do_not_import_the_pipeline():
    assert _violations("resources", (f"{PACKAGE}.pipeline",)) == []


def test_the_walk_sees_relative_and_lazy_imports():
    sensors = _imports(ROOT / "pipeline" / "ingest" / "sensors.py")
    assert "dagster" in sensors
    assert f"{PACKAGE}.pipeline.partitions" in sensors  # from ..partitions import …
    assert f"{PACKAGE}.lib.sources.files" in sensors  # inside a function: from ...lib.sources.files import …
    assert f"{PACKAGE}.pipeline" in _imports(ROOT / "definitions.py")  # from .pipeline import …
