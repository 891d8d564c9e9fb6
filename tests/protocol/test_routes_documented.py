"""Every HTTP route the app serves is documented with its request and its answer (issue 14: the
goal route was missing from the docs): some Markdown table in README.md or docs/*.md has a row
whose first cell starts with the route's method and path, under a header with a request column
(`request` or `body`) and an `answer` column, the answer filled in, and the request filled in
too unless the method is GET ("none" says a POST takes no body). Path parameters match by place
(`{id}` in the docs is the code's `{battle}`); the demo's routes count, as `--demo` serves them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from server.app import create_app
from server.config import Config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REQUEST_COLUMNS = ("request", "body")
ROW_ROUTE = re.compile(r"^`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)")
CELL_SPLIT = re.compile(r"(?<!\\)\|")  # `viewer\|creator` stays one cell


def normalised(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def served_routes() -> set[tuple[str, str]]:
    app = create_app(dataclasses.replace(Config(), demo=True))
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Route):
            found |= {(m, normalised(route.path)) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, WebSocketRoute):
            found.add(("GET", route.path))  # the upgrade is a GET
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/{}"))
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")
    return found


@dataclasses.dataclass(frozen=True)
class Row:
    where: str
    request: str | None  # None: the table has no request column
    answer: str | None  # None: the table has no answer column


def table_rows() -> Iterator[tuple[tuple[str, str], Row]]:
    for doc in DOCS:
        header: list[str] | None = None
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in CELL_SPLIT.split(line.strip().strip("|"))]
            if header is None:
                header = [c.lower() for c in cells]
                continue
            found = ROW_ROUTE.match(cells[0])
            if found is None:
                continue
            by_name = dict(zip(header, cells, strict=False))
            request = next((by_name[c] for c in REQUEST_COLUMNS if c in by_name), None)
            yield ((found[1], normalised(found[2])),
                   Row(f"{doc.name}:{number}", request, by_name.get("answer")))


def test_the_app_serves_what_this_test_reads() -> None:
    routes = served_routes()
    # Spot checks that the enumeration sees every kind of route (and the demo's).
    assert {("POST", "/api/rooms/{}/goal"), ("GET", "/ws"), ("GET", "/static/{}"),
            ("POST", "/demo/api/guest"), ("GET", "/healthz")} <= routes


@pytest.mark.parametrize("route", sorted(served_routes()), ids=" ".join)
def test_every_route_is_documented_with_request_and_answer(route: tuple[str, str]) -> None:
    rows = [row for key, row in table_rows() if key == route]
    assert rows, f"{' '.join(route)} is in no route table of README.md or docs/*.md"
    complete = [row for row in rows
                if row.answer and row.request is not None
                and (row.request or route[0] == "GET")]
    assert complete, (f"{' '.join(route)}: documented at {[r.where for r in rows]}, but in no "
                      "table with its request and its answer")


def test_documented_routes_exist() -> None:
    """The other way round: a route in a table that the app does not serve is a stale row."""
    served = served_routes()
    stale = sorted({f"{' '.join(key)} ({row.where})" for key, row in table_rows()
                    if key not in served})
    assert stale == []
