"""HTTP errors as RFC 9457 problem documents, with the same stable codes as the wire protocol."""

from __future__ import annotations

from starlette.responses import JSONResponse

PROBLEM_TYPE = "application/problem+json"


class HTTPProblem(Exception):
    """Raise from a route; the app's handler turns it into a problem response."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"https://giftwire.dev/errors/{code}",
            "title": code.replace("_", " "),
            "status": status,
            "code": code,
            "detail": detail,
        },
        status_code=status,
        media_type=PROBLEM_TYPE,
    )
