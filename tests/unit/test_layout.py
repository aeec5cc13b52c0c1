"""The package floors of DESIGN §6: a package imports only packages on lower floors, so no two
packages form a cycle and a stage core never reaches up into the engine wiring or the CLI.

Every import counts, the ones inside functions too: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. Packages on one floor do not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("schemas",),
    ("config", "market", "topics"),
    ("strategies", "venues", "sinks"),
    ("trading",),
    ("feeds",),
    ("flows",),
    ("research",),
    ("dashboards",),
    ("tapeflow",),
)
FLOOR_OF = {package: level for level, floor in enumerate(FLOORS) for package in floor}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & FLOOR_OF.keys()


def package_imports() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the importer's files that make that edge."""
    edges: dict[tuple[str, str], list[str]] = {}
    for package in FLOOR_OF:
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in imported_packages(path) - {package}:
                edges.setdefault((package, imported), []).append(str(path.relative_to(ROOT)))
    return edges


def test_every_package_is_on_a_floor():
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks", "examples"}
    assert on_disk <= FLOOR_OF.keys(), f"packages without a floor: {sorted(on_disk - FLOOR_OF.keys())}"


def test_no_package_imports_one_on_its_floor_or_above():
    upward = {
        f"{importer} -> {imported}": files
        for (importer, imported), files in package_imports().items()
        if FLOOR_OF[imported] >= FLOOR_OF[importer]
    }
    assert not upward, f"imports that go up or sideways: {upward}"


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for importer, imported in package_imports():
        graph.setdefault(importer, set()).add(imported)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(p for p in graph if reaches(p, p, set()))
    assert not cycles, f"packages on an import cycle: {cycles}"


def test_the_floor_check_sees_a_deferred_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flows.pipeline import run_flow\n    import tapeflow.cli\n")
    assert imported_packages(module) == {"flows", "tapeflow"}
