"""Logging: plain lines for people, one JSON object per line for log pipelines."""

from __future__ import annotations

import json
import logging
import time


class JSONFormatter(logging.Formatter):
    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Structured fields passed as logging's `extra=` ride along.
        for key, value in vars(record).items():
            if key not in self._SKIP and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler()
    if as_json:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        # uvicorn logs every WebSocket open/close and pgserver every initdb line at INFO: noise
        # at thousands of connections. giftwire logs its own start, drain and stop.
        for noisy in ("uvicorn.error", "pgserver"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
