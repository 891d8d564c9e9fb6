"""Query parameters of a paged list, newest first: `before` (an item id) and `limit`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from starlette.requests import Request

from server.web.problem import refusal

MAX_PAGE = 200


class PageItem(Protocol):
    @property
    def id(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


def page_params(request: Request) -> tuple[int | None, int]:
    """(before, limit), refused with a problem (`wrong_type`, `out_of_range`) when malformed."""
    try:
        before = request.query_params.get("before")
        before_id = int(before) if before else None
        limit = int(request.query_params.get("limit", "50"))
    except ValueError:
        raise refusal("wrong_type", "before and limit must be integers") from None
    if not 1 <= limit <= MAX_PAGE or (before_id is not None and before_id < 1):
        raise refusal("out_of_range", f"limit must be 1..{MAX_PAGE}, before positive")
    return before_id, limit


def page_answer(items: Sequence[PageItem], limit: int) -> dict[str, Any]:
    """The page's items and the `before` of the next page (null on the last page)."""
    nxt = items[-1].id if len(items) == limit else None
    return {"items": [item.to_json() for item in items], "next_before": nxt}
