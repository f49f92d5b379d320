"""The package's shape, checked on every test run (docs/architecture.md says why it is this one).

Layers, lowest first; a module may import its own layer and those below it, never one above:

    errors <- core <- data <- io <- engine | experiments <- api <- cli

`engine` and `experiments` are siblings that never import each other. The root modules metrics.py,
thresholds.py and device.py belong to the core layer; the root package (`ssd_cli/__init__.py`) holds
only the version and the lazy public names, and every layer may read its `__version__`. Every
import counts, at module level or inside a function or `if TYPE_CHECKING:`, as import-linter's
layers contract counts them: a function-level import is still a dependency.

Also: no two modules import each other, even through others (a circle); only the CLI prints or
uses rich or typer; no test file imports from another test file (shared helpers live in conftest.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ssd_cli"

LAYERS: list[tuple[str, ...]] = [  # lowest first; the modules (and packages) of each layer
    ("ssd_cli.errors",),
    ("ssd_cli.core", "ssd_cli.metrics", "ssd_cli.thresholds", "ssd_cli.device"),
    ("ssd_cli.data",),
    ("ssd_cli.io",),
    ("ssd_cli.engine", "ssd_cli.experiments"),
    ("ssd_cli.api",),
    ("ssd_cli.cli", "ssd_cli.__main__"),
]
SIBLINGS = {"ssd_cli.engine": "ssd_cli.experiments", "ssd_cli.experiments": "ssd_cli.engine"}  # independent
ROOT_NAMES = {"__version__"}  # what any module may take from the root package
PRINTING = ("rich", "typer")  # only the CLI talks to the terminal


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top(module: str) -> str:
    """The layer unit a module belongs to: ssd_cli.core.nets -> ssd_cli.core."""
    return ".".join(module.split(".")[:2])


def layer_of(module: str) -> int:
    unit = top(module)
    found = [i for i, units in enumerate(LAYERS) if unit in units]
    assert found, f"{module} is in no layer: add {unit} to LAYERS in tests/test_architecture.py and to docs/architecture.md"
    return found[0]


def imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, imported module, name taken from it) for every import in the file, at any depth.
    `from pkg import sub` names the submodule pkg.sub when there is one."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (node.lineno, sub, None) if sub in MODULES else (node.lineno, target, alias.name)


def internal_imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    for line, target, name in imports(path):
        if target == "ssd_cli" or target.startswith("ssd_cli."):
            yield line, target, name


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        if module != "ssd_cli":
            layer_of(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for module, path in MODULES.items():
        for line, target, name in internal_imports(path):
            if target == "ssd_cli":  # the root package: its version only
                if name not in ROOT_NAMES:
                    upward.append(f"{path.relative_to(REPO)}:{line} takes {name} from the root package (only {', '.join(ROOT_NAMES)})")
            elif module != "ssd_cli" and layer_of(target) > layer_of(module):
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}, a layer above {top(module)}")
    assert not upward, "\n".join(upward)


def test_engine_and_experiments_do_not_import_each_other() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line} imports {target}"
        for module, path in MODULES.items()
        for line, target, _ in internal_imports(path)
        if SIBLINGS.get(top(module)) == top(target)
    ]
    assert not found, "\n".join(found)


def test_no_import_circles() -> None:
    """Not even through function-level imports: a circle is a dependency both ways."""
    graph = {m: {t for _, t, _ in internal_imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    graph["ssd_cli"] = set()  # the root package imports its public names lazily, by name
    circles = []
    for start in graph:  # depth-first from each module; small graph, so plain search is enough
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not circles, "\n".join(sorted(set(circles))[:10])


def test_only_the_cli_prints() -> None:
    found = []
    for module, path in MODULES.items():
        if top(module) == "ssd_cli.cli":
            continue
        for line, target, _ in imports(path):
            if target.split(".")[0] in PRINTING:
                found.append(f"{path.relative_to(REPO)}:{line} imports {target}")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{path.relative_to(REPO)}:{node.lineno} prints")
    assert not found, "\n".join(found)


def test_no_test_file_imports_another() -> None:
    tests = {p.stem for p in (REPO / "tests").glob("*.py")} - {"conftest"}
    found = [
        f"{path.relative_to(REPO)}:{line} imports {target}"
        for path in sorted((REPO / "tests").glob("*.py"))
        for line, target, _ in imports(path)
        if target.split(".")[0] in tests or target.startswith("tests.")
    ]
    assert not found, "\n".join(found)
