"""What tapeflow depends on is declared, ranged in pyproject.toml and pinned in the lock files.

pyproject.toml states the version ranges tapeflow works with, so it installs into a user's own
environment beside their strategies; requirements-test.lock pins the exact set `make` and CI
install, and requirements.lock the runtime subset at the same versions (the Docker image).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OWN_PACKAGES = set(PROJECT.get("name", "").split()) | {
    p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()
} | {"tests", "examples", "benchmarks"}


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    lines = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def locked(lock_file: str) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / lock_file).read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def third_party_imports(folders: list[str]) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under ``folders`` (deferred imports too) -> importing files."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(imports: dict[str, set[str]], declared: set[str]) -> list[str]:
    distributions = metadata.packages_distributions()
    problems = []
    for module, files in sorted(imports.items()):
        providers = {canonicalize_name(d) for d in distributions.get(module, [])}
        if not providers:
            problems.append(f"{module} (imported by {sorted(files)[0]}) is not installed")
        elif not providers & declared:
            problems.append(f"{module} (imported by {sorted(files)[0]}) comes from {sorted(providers)}, "
                            "which pyproject.toml does not declare")
    return problems


def test_every_package_the_code_imports_is_a_declared_runtime_dependency():
    packages = sorted(p for p in OWN_PACKAGES if (ROOT / p / "__init__.py").exists() and p != "tests")
    assert undeclared(third_party_imports(packages), set(requirements())) == []


def test_every_package_the_tests_import_is_declared():
    declared = set(requirements()) | set(requirements("test"))
    assert undeclared(third_party_imports(["tests"]), declared) == []


def test_the_locks_pin_every_requirement_inside_its_range():
    test_lock, runtime_lock = locked("requirements-test.lock"), locked("requirements.lock")
    problems = []
    for lock_name, lock, reqs in (("requirements-test.lock", test_lock, {**requirements(), **requirements("test")}),
                                  ("requirements.lock", runtime_lock, requirements())):
        for name, req in sorted(reqs.items()):
            if name not in lock:
                problems.append(f"{lock_name} does not pin {name}: run `make lock`")
            elif not req.specifier.contains(lock[name], prereleases=True):
                problems.append(f"{lock_name} pins {name}=={lock[name]} outside {req}: run `make lock`")
    problems += [f"the locks disagree on {name}: {runtime_lock[name]} vs {test_lock.get(name)}"
                 for name in runtime_lock if runtime_lock[name] != test_lock.get(name)]
    assert problems == []


def test_bytewax_stays_exactly_the_community_release_with_wheels():
    assert str(requirements()["bytewax"].specifier) == "==0.21.1"


def test_the_environment_is_exactly_the_test_lock():
    """`make setup` installs requirements-test.lock; anything else installed by hand shows up here."""
    drift = []
    for name, version in sorted(locked("requirements-test.lock").items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name}=={version} is locked but not installed: run `make setup`")
            continue
        if installed != version:
            drift.append(f"{name} is {installed}, locked {version}: run `make setup` (or `make lock` after "
                         "changing pyproject.toml)")
    assert drift == []
