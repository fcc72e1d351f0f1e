"""The package's shape: no import cycles between modules, and every layer imports only downward
(imports inside functions included: a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fer_ensemble"

# what each layer may import from the package besides itself
ALLOWED = {
    "outputs": {"errors"},
    "runtime": {"constants", "errors", "outputs", "preprocess", "prior"},
    "media": {"errors", "outputs"},
    "data": {"constants", "errors", "outputs"},
    "batch": {"constants", "errors", "media", "outputs", "runtime"},
    "server": {"", "constants", "errors", "runtime", "prior", "media"},
}
COMMANDS = {"apps", "cli"}  # the top: nothing below imports them


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names[".".join(p for p in parts if p != "__init__")] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (``a.b`` for ``fer_ensemble.a.b``; ``""`` for the root)."""
    names = module_names()

    def known(dotted: str) -> str:
        while dotted and dotted not in names:
            dotted = dotted.rpartition(".")[0]
        return dotted

    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fer_ensemble":
                base = node.module.removeprefix("fer_ensemble").lstrip(".")
                targets |= {known(f"{base}.{a.name}".lstrip(".")) for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {known(a.name.removeprefix("fer_ensemble").lstrip("."))
                            for a in node.names if a.name.split(".")[0] == "fer_ensemble"}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first search, as the path that closes it."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [node, target])
            elif target not in state:
                visit(target, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def layer(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    assert "export" in graph["apps.evaluate"]  # imported inside load_predictor (torch)
    assert "runtime.face" in graph["runtime.drawing"]


def test_the_package_never_imports_the_checkouts_tools() -> None:
    """tools/ is not installed: an import of it from src/ would pass the tests (pytest's pythonpath
    holds the checkout's root) and fail in every installed package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ("tools", "scripts", "tests")]
    assert found == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check itself


def test_layers_import_only_downward() -> None:
    wrong = []
    for module, targets in import_graph().items():
        for target in targets:
            if layer(target) == layer(module):
                continue
            if layer(target) in COMMANDS and layer(module) not in COMMANDS:
                wrong.append(f"{module} -> {target}")
            elif layer(module) in ALLOWED and layer(target) not in ALLOWED[layer(module)]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_ruff_is_clean() -> None:
    """The rules pyproject.toml selects (pyflakes, bugbear, import order, pyupgrade) hold everywhere."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is missing: pip install -e '.[dev]'"
    result = subprocess.run([ruff, "check", "src", "tests", "scripts", "benchmarks", "docs_src", "tools"],
                            cwd=PACKAGE.parents[1], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_is_clean() -> None:
    """The type check of pyproject.toml's [tool.mypy] (basic mode, the files it names) passes."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=PACKAGE.parents[1], capture_output=True, text=True)
    assert "No module named mypy" not in result.stderr, "mypy is missing: pip install -e '.[dev]'"
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_tests_skip_only_through_support() -> None:
    """A missing extra fails under CI=true: tests ask ``support.need`` (or ``skip_or_fail``), never
    ``pytest.importorskip`` or ``pytest.skip`` themselves, which would skip in CI too."""
    tests = Path(__file__).resolve().parent
    home = tests / "support" / "__init__.py"  # the rule's home
    offenders = [f"{path.relative_to(tests)}:{number}" for path in sorted(tests.rglob("*.py"))
                 if path not in (home, Path(__file__).resolve())  # and this check
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\bpytest\.(importorskip|skip)\(", line)]
    assert offenders == []


def test_the_tests_pass_from_any_working_folder(tmp_path: Path) -> None:
    """pytest finds the project's configuration from the path of the tests it is given, and with it
    tests/ on sys.path (``from support import ...``): a fast test file, named by its absolute path
    from an unrelated folder, passes."""
    import subprocess

    test_file = Path(__file__).resolve().parent / "test_face_rows.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and " passed" in result.stdout, (result.stdout + result.stderr)[-3000:]
