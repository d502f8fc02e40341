"""The package's layering: no scripts inside it, and the lower layers never import the upper ones."""

import ast
from pathlib import Path

import pytest

import conceptlang

PACKAGE = Path(conceptlang.__file__).parent


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _imports(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_scripts_inside_the_package():
    for path, tree in _modules():
        if path == PACKAGE / "__main__.py":
            continue
        assert "argparse" not in _imports(tree), path
        mains = [n for n in ast.walk(tree) if isinstance(n, ast.Compare) and isinstance(n.left, ast.Name)
                 and n.left.id == "__name__"]
        assert not mains, f"{path} has an `if __name__ == ...` block"


def test_lower_layers_do_not_import_upper_ones():
    for path, tree in _modules():
        rel = path.relative_to(PACKAGE).parts
        names = _imports(tree)
        if rel[0] != "cli" and path.name != "__main__.py":
            assert not any(n.startswith("conceptlang.cli") for n in names), path
        if rel[0] == "models":
            assert not any(n.startswith("conceptlang.evaluation") for n in names), path


def test_the_registry_loads_without_the_compiler():
    import subprocess
    import sys

    code = ("import sys, conceptlang.models.registry; "
            "print(sorted(m for m in sys.modules if m.startswith(('conceptlang.compiler', 'conceptlang.syntax', 'lark'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"


def _runtime_imports(tree) -> set[str]:
    """Imported module names, lazy ones included, ``if TYPE_CHECKING:`` blocks left out
    (``from package import module`` counts as importing ``package.module``)."""
    names, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        stack.extend(ast.iter_child_nodes(node))
    return names


@pytest.mark.parametrize("package, members", [
    ("compiler", {"graph", "explain", "lower"}),
    ("judge", {"judge", "networks", "load", "training", "augment", "measure", "validity", "labelled"}),
])
def test_the_modules_of_a_package_import_each_other_without_cycles(package, members):
    graph = {}
    for path, tree in _modules():
        if path.parent.name == package and path.name != "__init__.py":
            graph[f"conceptlang.{package}.{path.stem}"] = {n for n in _runtime_imports(tree)
                                                          if n.startswith(f"conceptlang.{package}.")}
    assert {f"conceptlang.{package}.{m}" for m in members} <= set(graph)
    state: dict[str, int] = {}

    def visit(mod: str, trail: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph.get(mod, ())):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*trail, mod, dep])
            if dep not in state:
                visit(dep, [*trail, mod])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])
