"""A self-contained HTML report: inline SVG drawn here, no script, nothing fetched.

Plots: ack and delivery latency histograms (log-spaced buckets), accepted gifts/s and
deliveries/s over time, and ack and delivery latency over time (a sample of points), with chaos
events marked. Everything else is the JSON report as a table.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.runner import RunData
from loadtest.stats import log_histogram

W, H, PAD = 720, 260, 48
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")
MAX_POINTS = 4000


def _esc(value: object) -> str:
    return html.escape(str(value))


def _axes(title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{_esc(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">{_esc(x_label)}</text>',
        f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" '
        f'text-anchor="middle">{_esc(y_label)}</text>',
    ]


def histogram_svg(title: str, series: dict[str, Sequence[float]]) -> str:
    """Log-x histogram of latencies (seconds in, milliseconds on the axis), one line per series."""
    hists = {name: log_histogram(values) for name, values in series.items() if values}
    parts = _axes(title, "latency, ms (log scale)", "share of samples")
    if not hists:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no samples</text>')
        return "".join(parts) + "</svg>"
    lo = math.log10(0.1)
    hi = math.log10(10_000)
    peak = max(c / max(1, sum(x[2] for x in h)) for h in hists.values() for *_, c in h) or 1

    def x(ms: float) -> float:
        return PAD + (math.log10(ms) - lo) / (hi - lo) * (W - PAD - 10)

    def y(share: float) -> float:
        return H - PAD - share / peak * (H - PAD - 30)

    for tick in (0.1, 1, 10, 100, 1000, 10_000):
        parts.append(f'<text x="{x(tick):.1f}" y="{H - PAD + 14}" text-anchor="middle" '
                     f'font-size="11">{tick:g}</text>')
    for i, (name, h) in enumerate(hists.items()):
        total = max(1, sum(c for *_, c in h))
        pts = " ".join(f"{x(math.sqrt(a * b)):.1f},{y(c / total):.1f}" for a, b, c in h)
        color = COLORS[i % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{W - 20}" y="{40 + 16 * i}" fill="{color}" '
                     f'text-anchor="end">{_esc(name)}</text>')
    return "".join(parts) + "</svg>"


def series_svg(
    title: str, y_label: str, series: dict[str, Sequence[tuple[float, float]]],
    events: Sequence[dict[str, Any]] = (), dots: bool = False,
) -> str:
    parts = _axes(title, "seconds since the start of the load", y_label)
    points = [p for s in series.values() for p in s]
    if not points:
        return "".join(parts) + "</svg>"
    x_max = max(p[0] for p in points) or 1.0
    y_max = max(p[1] for p in points) or 1.0

    def x(t: float) -> float:
        return PAD + max(0.0, t) / x_max * (W - PAD - 10)

    def y(v: float) -> float:
        return H - PAD - v / y_max * (H - PAD - 30)

    top = f"{y_max:,.0f}" if y_max >= 100 else f"{y_max:.3g}"
    parts.append(f'<text x="{PAD + 4}" y="32" font-size="11">{top}</text>')
    parts.append(f'<text x="{W - 10}" y="{H - PAD + 14}" text-anchor="end" font-size="11">'
                 f'{x_max:.1f}</text>')
    for event in events:
        ex = x(float(event["t"]))
        parts.append(f'<line x1="{ex:.1f}" y1="24" x2="{ex:.1f}" y2="{H - PAD}" stroke="#999" '
                     f'stroke-dasharray="4 3"><title>{_esc(event["event"])}</title></line>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        step = max(1, len(pts) // MAX_POINTS)
        sample = pts[::step]
        if dots:
            parts += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="1.2" fill="{color}"/>'
                      for a, b in sample]
        else:
            coords = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in sample)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                         f'points="{coords}"/>')
        parts.append(f'<text x="{W - 20}" y="{40 + 16 * i}" fill="{color}" '
                     f'text-anchor="end">{_esc(name)}</text>')
    return "".join(parts) + "</svg>"


def write_html(out: dict[str, Any], data: RunData, path: Path) -> None:
    v = data.verification
    timeline = out.get("timeline") or []
    events = out.get("chaos_events", [])
    figures = [
        histogram_svg("Latency histograms", {
            "ack (send to ack)": v.ack_s if v else [],
            "delivery (send to receive)": v.delivery_s if v else [],
        }),
        # Two plots: deliveries outnumber gifts by the room size, one scale would hide gifts.
        series_svg("Accepted gifts per second", "gifts/s",
                   {"accepted gifts/s": [(p["t"], p["accepted_per_s"]) for p in timeline]},
                   events),
        series_svg("Deliveries per second", "events/s",
                   {"deliveries/s": [(p["t"], p["received_per_s"]) for p in timeline]}, events),
        series_svg("Delivery latency over time (sample)", "seconds",
                   {"delivery latency": v.delivery_points if v else []}, events, dots=True),
        series_svg("Ack latency over time (sample)", "seconds",
                   {"ack latency": v.ack_points if v else []}, events, dots=True),
    ]
    summary = {k: val for k, val in out.items() if k not in ("timeline",)}
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td><code>{_esc(json.dumps(val, default=str))}</code></td></tr>"
        for k, val in summary.items()
    )
    verdict = "OK" if out.get("ok") else "FAILED"
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>giftwire load test: {_esc(out['scenario'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}
th{{text-align:left;padding-right:1rem;vertical-align:top}}td code{{white-space:pre-wrap;
word-break:break-all}}svg{{display:block;margin:1rem 0;border:1px solid #ddd}}</style>
</head><body>
<h1>giftwire load test: {_esc(out['scenario'])} &mdash; {verdict}</h1>
<p>{_esc(out.get('limit') or '')}</p>
{''.join(figures)}
<h2>Report</h2><table>{rows}</table>
</body></html>
"""
    path.write_text(doc)
