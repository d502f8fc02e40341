"""The package's layering: no scripts inside it, and the lower layers never import the upper ones."""

import ast
from pathlib import Path

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
