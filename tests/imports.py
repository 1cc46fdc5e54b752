"""The project's own imports, read from the source (ast): no module is imported to find them.

`closure(entries, root)` is every first-party module a program can import, starting from its
entry files: module-level and function-level imports alike (a lazy import still runs), but
not those under `if TYPE_CHECKING:`. Importing `a.b.c` also runs `a/__init__.py` and
`a/b/__init__.py`, so those count too.

`graph(root)` is which module imports which, by the same rules, and `circles(graph)` the
import circles in it (tests/test_imports.py).
"""

from __future__ import annotations

import ast
from pathlib import Path


def packages(root: Path) -> set[str]:
    """The top-level packages under root (folders with an `__init__.py`)."""
    return {p.parent.name for p in root.glob("*/__init__.py")}


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test)


def imported(root: Path, path: Path) -> set[str]:
    """The module names one file's import statements name (candidates: `from a import b`
    names both `a` and `a.b`, since b may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(n) for top in ast.walk(tree) if _type_checking_only(top) for n in ast.walk(top)}
    own = module_name(root, path) if root in path.parents else ""
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def closure(entries: list[Path], root: Path) -> set[str]:
    """Every first-party module (dotted name) reachable from the entry files, those of them
    inside a package included."""
    first_party = packages(root)
    seen: set[str] = set()
    todo = list(entries)

    def visit(name: str) -> None:
        parts = name.split(".")
        if parts[0] not in first_party:
            return
        for depth in range(1, len(parts) + 1):  # a.b.c runs a/ and a/b/ first
            module = ".".join(parts[:depth])
            found = module_file(root, module)
            if found and module not in seen:
                seen.add(module)
                todo.append(found)

    for entry in entries:
        if root in entry.parents:
            visit(module_name(root, entry))
    while todo:
        for name in imported(root, todo.pop()):
            visit(name)
    return seen


def runs(root: Path, path: Path) -> dict[str, int]:
    """{first-party module: line} of what one file's imports run: `from a import b` is the
    module a.b where a/b.py exists, else names from a's __init__. Importing a.b runs a's
    __init__ first, which counts from outside package a only: inside it, a is already being
    imported, and Python hands its submodules over unfinished without a circle."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(n) for top in ast.walk(tree) if _type_checking_only(top) for n in ast.walk(top)}
    here = module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            named = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            named = [f"{base}.{a.name}" for a in node.names]
            named = [n if module_file(root, n) else base for n in named]
        for name in named:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                inside = here == prefix or here.startswith(prefix + ".")
                if module_file(root, prefix) and (depth == len(parts) or not inside):
                    found.setdefault(prefix, node.lineno)
    found.pop(here, None)
    return found


def graph(root: Path) -> dict[str, dict[str, int]]:
    """{module: {first-party module its imports run: line}} for every module of every
    top-level package under root."""
    files = sorted(p for name in packages(root) for p in (root / name).rglob("*.py"))
    return {module_name(root, p): runs(root, p) for p in files}


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan's
    algorithm), each a path that closes on itself: [a, b, a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(cycle_in(component, edges))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def cycle_in(component: set[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """The shortest circle through the component's first module (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(edges[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in component and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    raise AssertionError(f"no circle through {start} in {sorted(component)}")
