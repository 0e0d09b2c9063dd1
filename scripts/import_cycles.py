"""Import cycles among the project's packages: ``python scripts/import_cycles.py``.

Builds the import graph with grimp (import-linter's engine; imports inside functions and under
``TYPE_CHECKING`` count) and prints every group of modules that import each other, directly or
through others (a strongly connected component of more than one module). Exits 1 when there is
one. The import-linter contracts in pyproject.toml keep the cycles removed in issue 16 out.
"""

from __future__ import annotations

import sys

import grimp

PACKAGES = ("common", "hw", "recon", "calibration", "blurvid_rig")


def cycle_groups(packages: tuple[str, ...] = PACKAGES) -> list[list[str]]:
    """The groups of modules in an import cycle, each sorted, largest first."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    modules = sorted(m for m in graph.modules if m.split(".")[0] in packages)
    edges = {
        m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules)
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules)))
    for m in modules:
        if m not in index:
            visit(m)
    return sorted(groups, key=lambda g: (-len(g), g))


def main() -> int:
    groups = cycle_groups()
    print(f"import cycles among {', '.join(PACKAGES)}: {len(groups)}")
    for g in groups:
        print(f"  {len(g)} modules: {', '.join(g)}")
    return 1 if groups else 0


if __name__ == "__main__":
    raise SystemExit(main())
