"""Live progress while a run goes: a rich panel on a terminal, a line every few seconds elsewhere
(CI logs), nothing with --quiet."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from loadtest.scenarios import Plan

LINE_EVERY_S = 2.0


class Progress:
    def __init__(self, plan: Plan, console: Console, *, enabled: bool) -> None:
        self.plan = plan
        self.console = console
        self.enabled = enabled
        self._live: Live | None = None
        self._last_line = 0.0

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            self._live = Live(self._render({}), console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(et, e, tb)
            self._live = None

    def tick(self, data: Any, point: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._render(point))
            return
        now = time.monotonic()
        if now - self._last_line >= LINE_EVERY_S:
            self._last_line = now
            self.console.print(
                f"t={point['t']:6.1f}s sent={point['sent']} accepted={point['accepted']} "
                f"({point['accepted_per_s']:.0f}/s) received={point['received']} "
                f"({point['received_per_s']:.0f}/s) closed={point['closed']} lag={point['lag']}"
            )
            self.console.file.flush()  # a CI log (or a watching test) sees progress as it happens

    def _render(self, point: dict[str, Any]) -> Table:
        t = Table(title=f"{self.plan.scenario}: {self.plan.duration_s:g}s, "
                        f"{self.plan.connections} connections", show_header=False)
        t.add_column("figure", style="bold")
        t.add_column("value", justify="right")
        for name, key in (("elapsed s", "t"), ("gifts sent", "sent"),
                          ("accepted", "accepted"), ("accepted/s", "accepted_per_s"),
                          ("rejected", "rejected"), ("deliveries", "received"),
                          ("deliveries/s", "received_per_s"), ("closed", "closed"),
                          ("behind target", "behind"), ("flusher lag", "lag")):
            t.add_row(name, str(point.get(key, "-")))
        return t
