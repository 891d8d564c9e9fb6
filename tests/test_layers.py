"""The house layout: one package per subsystem, imports running one way, no cycles.

The graph is read with `ast` from the source (every import, also those inside functions and
`if TYPE_CHECKING:` blocks: a lazy import is still a dependency), so a new module or import that
breaks the layering fails here before it becomes a tangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "loadtest", "protocol")

# Highest first. A module may import its own layer and any layer below it, never one above.
# A lower layer that must call back up takes a callable or a small Protocol it defines itself
# (e.g. server/money/credits.py `Crediter`, server/hub/rooms.py `Outbox`).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loadtest", ("loadtest",)),  # drives servers from outside; nothing in server/ imports it
    ("top", ("server.__main__", "server.cli", "server.ledger_cli", "server.serve", "server.app",
             "server.supervisor")),
    ("web", ("server.web",)),  # HTTP API, pages, demo, health: may use any layer below
    ("edge", ("server.edge",)),  # the WebSocket session, its writer, rate limits, drain
    # Features around the loop: moderation, battles, overlay keys and settings, user pushes.
    ("live", ("server.live",)),
    ("hub", ("server.hub",)),  # rooms, broker, fan-out, recovery, room state, combos
    ("money", ("server.money",)),  # wallet, ledger, flusher, reconcile, payments, catalog
    # The process's shared parts: configuration, the runtime bag of clients, tokens, metrics.
    ("core", ("server.config", "server.runtime", "server.auth", "server.metrics",
              "server.logsetup", "server")),
    ("storage", ("server.storage",)),  # RESP, scripts and Lua, key names, Postgres, embedded
    ("protocol", ("protocol",)),  # sans-I/O wire protocol: imports nothing of ours
)

MAX_MODULES_PER_FOLDER = 12
MAX_MODULE_LINES = 400

Graph = dict[str, set[str]]


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    # `from pkg import mod` names a module; `from mod import name` names the module itself.
    return [f"{target}.{alias.name}" for alias in node.names] + [target]


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> Graph:
    """module -> the modules of `packages` it imports (the nearest existing module of a name)."""
    files = module_files(root, packages)
    graph: Graph = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _targets(module, is_package, node)
            if isinstance(node, ast.ImportFrom):
                # The submodule when it is one, else the module the names come from.
                names = [n for n in names[:-1] if n in files] or names[-1:]
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                # A package's own modules importing it (or it them) is not a dependency edge.
                if name and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> int | None:
    """The rank of the layer holding `module` (0 = the top); the longest prefix wins."""
    best: tuple[int, int] | None = None  # (prefix length, rank)
    for rank, (_name, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def upward_imports(graph: Graph, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS
                   ) -> list[str]:
    """Every import from a lower layer into a higher one, as 'importer -> imported'."""
    found = []
    for module, imported in sorted(graph.items()):
        mine = layer_of(module, layers)
        for target in sorted(imported):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs < mine:
                found.append(f"{module} ({layers[mine][0]}) -> {target} ({layers[theirs][0]})")
    return found


# -- the checks themselves, shown to work on small synthetic graphs -------------------------------

def test_cycle_detection_finds_a_cycle_and_only_cycles() -> None:
    graph: Graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    graph["c"] = set()
    assert cycles(graph) == []


def test_layer_check_finds_an_import_against_the_order() -> None:
    layers = (("web", ("x.web",)), ("hub", ("x.hub",)), ("storage", ("x.storage",)))
    graph: Graph = {"x.web.api": {"x.hub.rooms"}, "x.hub.rooms": {"x.storage.keys"},
                    "x.storage.keys": set()}
    assert upward_imports(graph, layers) == []
    graph["x.storage.keys"].add("x.web.api")
    assert upward_imports(graph, layers) == ["x.storage.keys (storage) -> x.web.api (web)"]


def test_the_graph_sees_lazy_relative_and_from_package_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "low.py").write_text("def f():\n    from p import top\n")
    (pkg / "sub" / "mid.py").write_text("from . import low\nfrom .low import f\n")
    (pkg / "top.py").write_text("from p.sub import mid\n")
    graph = import_graph(tmp_path, ("p",))
    assert graph["p.sub.low"] == {"p.top"}
    assert graph["p.sub.mid"] == {"p.sub.low"}
    assert graph["p.top"] == {"p.sub.mid"}
    assert cycles(graph) == [["p.sub.low", "p.sub.mid", "p.top"]]


# -- the project --------------------------------------------------------------------------------

def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in import_graph() if layer_of(m) is None] == []


def test_imports_run_down_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_protocol_is_sans_io() -> None:
    for path in module_files(ROOT, ("protocol",)).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                assert not [n for n in names if n.split(".")[0] in ("asyncio", "socket")], path


def test_folders_and_modules_stay_small() -> None:
    per_folder: dict[Path, int] = {}
    too_long = []
    for path in module_files(ROOT, ("server",)).values():
        if path.name != "__init__.py":
            per_folder[path.parent] = per_folder.get(path.parent, 0) + 1
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    crowded = {str(f.relative_to(ROOT)): n for f, n in per_folder.items()
               if n > MAX_MODULES_PER_FOLDER}
    assert crowded == {}
    assert too_long == []
