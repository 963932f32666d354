"""Every third-party module the library imports is declared in pyproject.toml, and what is installed fits."""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, str]:
    """distribution -> requirement string, required and optional alike."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    return {_canon(Requirement(r).name): r for r in reqs}


def _imported_top_modules() -> set[str]:
    names = set()
    for path in (ROOT / "genir").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n != "genir" and n not in sys.stdlib_module_names}


def test_every_imported_package_is_declared():
    declared, dists = _declared(), packages_distributions()
    missing = {}
    for module in sorted(_imported_top_modules()):
        owners = {_canon(d) for d in dists.get(module, [module])}
        if not owners & set(declared):
            missing[module] = sorted(owners)
    assert not missing, f"imported by genir but not declared in pyproject.toml: {missing}"


def test_installed_versions_satisfy_the_declared_bounds():
    from packaging.requirements import Requirement

    bad = {}
    for dist, req in _declared().items():
        try:
            have = version(dist)
        except PackageNotFoundError:
            continue  # an optional extra that is not installed
        if not Requirement(req).specifier.contains(have.split("+")[0], prereleases=True):
            bad[dist] = (req, have)
    assert not bad, f"installed versions outside the declared bounds: {bad}"


def test_no_private_transformers_modules():
    # internals such as transformers.masking_utils move between releases; genir builds what it needs itself
    public = {"transformers", "transformers.utils"}  # transformers.utils.logging is the documented logging API
    used = set()
    for path in (ROOT / "genir").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers"):
                used.add((path.relative_to(ROOT).as_posix(), node.module))
            elif isinstance(node, ast.Import):
                used.update((path.relative_to(ROOT).as_posix(), a.name) for a in node.names if a.name.startswith("transformers"))
    private = sorted(u for u in used if u[1] not in public)
    assert not private, f"genir imports transformers internals: {private}"
