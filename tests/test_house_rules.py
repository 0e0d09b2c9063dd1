"""House rules of the source tree that no linter checks (issue 16).

No ``from x import _private`` across modules: a name with a leading underscore is private to its
module. A module that needs it from another module gets a public name (with a docstring) or the
code moves to where it is used. ``ALLOWED`` lists the cases left when the rule came in; it may
only shrink: a new case fails :func:`test_no_private_names_imported_across_modules`, and an
entry that no longer occurs fails :func:`test_the_allow_list_only_shrinks` until it is removed.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The project's own top-level packages: a private name imported from one of them is checked.
OWN = ("common", "hw", "recon", "calibration", "blurvid_rig", "tests", "bench")
#: Where the importing files are looked for.
SCANNED = (*OWN, "scripts")

#: ``(importing file, module, name)`` still allowed; remove an entry when its import goes.
ALLOWED: set[tuple[str, str, str]] = set()  # empty since issue 16: keep it so


def _module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_module(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The absolute module of ``from ... import``, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = _module_of(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@functools.cache
def private_imports(root: Path = ROOT) -> frozenset[tuple[str, str, str]]:
    """Every ``from <own module> import _name`` in the scanned folders, as
    ``(importing file, module, name)`` (scanned once per root: two tests ask)."""
    found = set()
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom):
                    continue
                module = _imported_module(node, path, root)
                if module.split(".")[0] not in OWN or module == _module_of(path, root):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.add((path.relative_to(root).as_posix(), module, alias.name))
    return frozenset(found)


def test_no_private_names_imported_across_modules() -> None:
    new = sorted(private_imports() - ALLOWED)
    assert not new, (
        "Private names imported from another module (give them a public name with a docstring, "
        "or move the code to where it is used; do not grow ALLOWED):\n"
        + "\n".join(f"  {f}: from {m} import {n}" for f, m, n in new)
    )


def test_the_allow_list_only_shrinks() -> None:
    gone = sorted(ALLOWED - private_imports())
    assert not gone, (
        "These private imports are gone: remove them from ALLOWED in tests/test_house_rules.py:\n"
        + "\n".join(f"  {entry}," for entry in gone)
    )


def test_the_check_sees_absolute_relative_and_multi_line_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "hw" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import _x as y, public\n")
    (pkg / "b.py").write_text(
        "from hw.sub.a import (\n    ok,\n    _hidden,\n)\nfrom ..c import _up\n"
        "from numpy import _private_of_others\nfrom hw.sub.a import __version__\n"
    )
    (pkg / "a.py").write_text("def f():\n    from hw.sub.b import _late\n")
    assert private_imports(tmp_path) == {
        ("hw/sub/__init__.py", "hw.sub.a", "_x"),
        ("hw/sub/b.py", "hw.sub.a", "_hidden"),
        ("hw/sub/b.py", "hw.c", "_up"),
        ("hw/sub/a.py", "hw.sub.b", "_late"),
    }


def test_import_contracts_see_indirect_imports() -> None:
    """A contract with ``allow_indirect_imports`` would not see a chain (a -> b -> forbidden), which
    is how the cycles of issue 16 went unnoticed; every contract in pyproject.toml checks chains."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lax = [c["name"] for c in config["contracts"] if c.get("allow_indirect_imports")]
    assert not lax, f"contracts that ignore indirect imports: {lax}"
    assert len(config["contracts"]) >= 8


#: Issue 16's size rules: no module over this many lines outside tests ...
MAX_MODULE_LINES = 800
#: ... and no function (docstring included) over this many lines.
MAX_FUNCTION_LINES = 80
#: Modules still over the limit when the rule came in; may only shrink (remove an entry when its
#: module is split).
LONG_MODULES: set[str] = set()
#: ``(file, function)`` still over the limit; may only shrink.
LONG_FUNCTIONS: set[tuple[str, str]] = set()
SIZED = ("common", "hw", "recon", "calibration", "blurvid_rig")


@functools.cache
def long_modules_and_functions() -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """The modules over :data:`MAX_MODULE_LINES` and the ``(file, function)`` pairs over
    :data:`MAX_FUNCTION_LINES` in the project's packages."""
    modules, functions = set(), set()
    for pkg in SIZED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            src = path.read_text()
            if len(src.splitlines()) > MAX_MODULE_LINES:
                modules.add(rel)
            for node in ast.walk(ast.parse(src)):
                if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES):
                    functions.add((rel, node.name))
    return frozenset(modules), frozenset(functions)


def test_no_new_long_modules_or_functions() -> None:
    modules, functions = long_modules_and_functions()
    new_m, new_f = sorted(modules - LONG_MODULES), sorted(functions - LONG_FUNCTIONS)
    assert not new_m and not new_f, (
        f"Over {MAX_MODULE_LINES} lines (split by job): {new_m}; functions over "
        f"{MAX_FUNCTION_LINES} lines (extract steps with names): {new_f}. Do not grow the lists.")


def test_the_size_allow_lists_only_shrink() -> None:
    modules, functions = long_modules_and_functions()
    gone = sorted(LONG_MODULES - modules) + sorted(map(str, LONG_FUNCTIONS - functions))
    assert not gone, ("Now within the limits: remove from LONG_MODULES / LONG_FUNCTIONS in "
                      f"tests/test_house_rules.py: {gone}")
