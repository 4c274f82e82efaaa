"""The layer rule of docs/architecture.md, checked on the source: every import counts,
those inside functions too, so a cycle cannot hide behind a late import."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first: a package may import only itself and those before it.
LAYERS = ["kernel", "accounts", "telephony", "scim", "portal"]
# Inside telephony: its models, then the contexts, then what sits on all of them
# (tasks, selectors, views, forms, admin, api, network, urls, commands).
TELEPHONY = ["models", "inventory", "identities", "registrations", "callauth", "bulk"]


def _project_modules() -> dict[str, Path]:
    modules = {}
    for top in LAYERS:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "tests" in parts or "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported_names(module: str, path: Path):
    """Every dotted name an import statement anywhere in the module may refer to."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name resolves to its longest module)."""
    modules = _project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in _imported_names(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def package_of(module: str, graph: dict[str, set[str]]) -> str:
    """A package's own modules count as the package; a plain module counts as its parent."""
    is_package = any(other.startswith(module + ".") for other in graph)
    return module if is_package else module.rpartition(".")[0] or module


def rank(module: str) -> tuple[int, int]:
    parts = module.split(".")
    inner = len(TELEPHONY)
    if parts[0] == "telephony" and len(parts) > 1 and parts[1] in TELEPHONY:
        inner = TELEPHONY.index(parts[1])
    return LAYERS.index(parts[0]), inner if parts[0] == "telephony" else 0


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_packages():
    graph = import_graph()
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        own = package_of(module, graph)
        packages.setdefault(own, set()).update(
            package_of(t, graph) for t in targets if package_of(t, graph) != own
        )
    assert cycles(packages) == []


def test_layers_point_one_way():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if rank(target) > rank(module)
    )
    assert upward == []


def test_the_checks_see_what_they_guard():
    """The walk must find imports inside functions and relative ones, or it proves nothing."""
    graph = import_graph()
    assert "kernel.errors" in graph["kernel.forms"]  # relative, module level
    assert (
        "telephony.tasks" in graph["portal.celery"]
        or "telephony.identities.hss" in (graph["portal.celery"])
    )  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert rank("accounts.models") < rank("telephony.models") < rank("telephony.tasks")
