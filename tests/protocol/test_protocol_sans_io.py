"""protocol/ stays sans-I/O: it imports only pure modules, never asyncio, sockets or server/."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "protocol"
# Pure computation only; anything else needs a reason to be added here.
ALLOWED = {
    "abc",
    "collections",
    "dataclasses",
    "enum",
    "json",
    "msgpack",
    "protocol",
    "re",
    "types",
    "typing",
    "unicodedata",  # the display-name policy (protocol/names.py): pure, no I/O
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_protocol_imports_only_pure_modules() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert files
    for path in files:
        assert imported_roots(path) <= ALLOWED, path.name
