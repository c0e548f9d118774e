"""The package's import graph: no circle, no private name imported across modules, and a CLI that does not
import TensorFlow to print its help. Every import counts, also those inside functions."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import competition

PACKAGE = Path(competition.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every `import competition...` / `from competition... import`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("competition"):
            names = [alias.name for alias in node.names]
            for name in names:  # `from competition.data import similarity` imports a module
                if f"{node.module}.{name}" in modules:
                    found.append((f"{node.module}.{name}", []))
            found.append((node.module, [n for n in names if f"{node.module}.{n}" not in modules]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("competition")]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _ in _imports(path, modules):
            if target != name and target in modules:
                graph[name].add(target)
        package = name.rpartition(".")[0]
        while package:  # importing a submodule runs its packages' __init__ first
            if package in modules and package != name:
                graph[name].add(package)
            package = package.rpartition(".")[0]
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    # Package __init__ files re-export their submodules; an edge from a submodule back to its own package
    # is the interpreter's doing, not a design circle, so only edges between different packages' modules
    # and from __init__ to submodules count.
    design = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    assert _cycle(design) is None, " -> ".join(_cycle(design) or [])


def test_the_checker_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_is_imported_across_modules() -> None:
    modules = _modules()
    offenders = [f"{name} imports {target}.{n}" for name, path in modules.items()
                 for target, names in _imports(path, modules) for n in names
                 if n.startswith("_") and not n.startswith("__") and target != name]
    assert offenders == []


def test_one_module_owns_the_run_folder_layout() -> None:
    owners = {name for name, path in _modules().items()
              if any(f'"{file}"' in path.read_text(encoding="utf-8")
                     for file in ("done.json", "history.csv", "oof.npy", "run.json", "folds.csv"))}
    assert owners == {"competition.runs.folder"}


def test_training_module_is_an_orchestration() -> None:
    assert len((PACKAGE / "training.py").read_text(encoding="utf-8").splitlines()) < 200


def test_the_cli_help_does_not_import_tensorflow() -> None:
    code = ("import sys; from competition.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF' if 'tensorflow' in sys.modules else 'noTF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().endswith("noTF")


def test_run_records_are_read_only_through_runs() -> None:
    """run.json has one owner (competition.runs: folder.read_meta checks it, record.RunRecord types it): no module
    outside runs/ reads its keys by hand (`meta.get(`, `meta[...]`), and none parses a recipe's YAML itself."""
    package = Path(__file__).resolve().parents[2] / "competition"
    raw = re.compile(r"\bmeta(\.get\(|\[)")
    recipe_yaml = re.compile(r"Recipe\.model_validate\(yaml\.safe_load")
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "runs":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if raw.search(line) or recipe_yaml.search(line):
                found.append(f"{path.relative_to(package.parent)}:{number}: {line.strip()}")
    assert found == []
