"""No import circles anywhere in engine/ and sidecar/: every import counts, lazy ones inside functions and
those under TYPE_CHECKING too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "sidecar", "sidecar/sources")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            found[f"{package.replace('/', '.')}.{path.stem}".removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = (node.module or "").removeprefix("suture.")
            out |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            out |= {alias.name.removeprefix("suture.") for alias in node.names}
    return (out & set(known)) - {name}


def reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_its_way_back_to_itself(module: str) -> None:
    """Following every import from the module never leads back to it."""
    back = sorted(m for m in GRAPH[module] if module in reachable(m, GRAPH) or m == module)
    assert back == [], f"{module} is in a circle through {back}"


@pytest.mark.parametrize(("one", "other"), [("sidecar.api", "sidecar.dashboard"), ("sidecar.cli", "sidecar.demo"),
                                            ("sidecar.telemetry", "sidecar.runtime")])
def test_the_circles_that_were_are_gone(one: str, other: str) -> None:
    """api and dashboard, cli and demo, telemetry and the runtime: neither reaches the other both ways."""
    assert not (other in reachable(one, GRAPH) and one in reachable(other, GRAPH))
