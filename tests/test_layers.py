"""The package's rooms depend only downward: no import circle, and no module
imports one from a room above it (read from the source, so it cannot drift)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtsmlip"

# Rooms from the ground floor up; a module may import its own room and the rooms below.
LAYERS = [
    {"errors", "_version", "progress", "wall"},
    {"files", "shipped", "limits"},
    {"data", "arguments", "system"},
    {"forces"},
    {"analysis", "md"},
    {"teacher"},
    {"models"},
    {"training", "evaluate"},
    {"probe"},
    {"stability"},
    {"compare_report"},
    {"compare", "md_cli", "training_cli", "distill", "integrations"},
    {"compare_repeats"},
    {"demo"},
    {"cli"},
    {"__main__", ""},
]


def room(module: str) -> str:
    """'mtsmlip.md.engine' -> 'md'; the package itself -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    return next(k for k, rooms in enumerate(LAYERS) if room(module) in rooms)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exists(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """mtsmlip modules imported anywhere in `path` (top level or inside functions)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mtsmlip"))
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            subs = {f"{target}.{a.name}" for a in node.names if exists(f"{target}.{a.name}")}
            found |= subs if len(subs) == len(node.names) else subs | {target}
    return {m for m in found if m.startswith("mtsmlip") and m != here}


def graph() -> dict:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_is_in_a_layer():
    assert all(any(room(m) in rooms for rooms in LAYERS) for m in graph())


def test_no_module_imports_a_room_above_its_own():
    upward = [(m, d) for m, deps in graph().items() for d in deps if room(d) != room(m) and layer(d) >= layer(m)]
    assert upward == []


def test_md_imports_neither_models_nor_training():
    for module, deps in graph().items():
        if room(module) == "md":
            assert not {d for d in deps if room(d) in ("models", "training", "")}, module


def test_no_import_circle():
    g, done, cycles = graph(), set(), []

    def visit(node, stack):
        for dep in g.get(node, ()):
            if dep in stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, stack + [dep])
        done.add(node)

    for node in sorted(g):
        visit(node, [node])
    assert cycles == []
