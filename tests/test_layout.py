"""The package's shape: module sizes, no private names across modules, no import cycles."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "adgan"
ROOTS = [SRC, Path(__file__).parents[1] / "benchmarks", Path(__file__).parent]
MAX_LINES = 600


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: _module(p))
def test_no_module_is_too_long(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for root in ROOTS:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adgan"):
                    names = [*node.module.split("."), *(a.name for a in node.names)]
                elif isinstance(node, ast.Import):
                    names = [
                        p
                        for a in node.names
                        if a.name.startswith("adgan")
                        for p in a.name.split(".")
                    ]
                else:
                    continue
                if any(n.startswith("_") and not n.startswith("__") for n in names):
                    bad.append(f"{path}:{node.lineno}")
    assert not bad


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The adgan modules a file imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adgan"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("adgan")}
    return out


def test_no_import_cycle_at_import_time():
    graph = {m: _imports(p, top_level_only=True) - {m} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph.get(m, ()):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*stack, m, n])
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_the_detector_contract_does_not_import_the_registry():
    assert not {m for m in _imports(SRC / "base.py", top_level_only=False) if "registry" in m}


def test_import_adgan_runs_cleanly():
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import adgan"], capture_output=True, text=True
    )
    assert res.returncode == 0
    assert "adgan.registry" in res.stderr and "adgan.search.native" in res.stderr
