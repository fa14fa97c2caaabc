"""Line charts drawn on the server as inline SVG: no JavaScript library, nothing fetched.

Every label is escaped; colours come from the stylesheet (classes ``s0`` .. ``s7``), so the
page's content security policy can forbid inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

COLOURS = 8


@dataclass
class Line:
    name: str
    points: list[tuple[float, float]]  # (x, y), any order (drawn sorted by x)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at or below ``low`` to at or above ``high`` (1, 2 or 5 times a
    power of ten apart); the chart's axis spans them."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [0.0 if i == 0 else i * step for i in range(first, last + 1)]


def _label(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.3g}"


def line_chart(lines: Sequence[Line], *, xlabel: str = "", width: int = 520,
               height: int = 220) -> Markup:
    """An SVG of ``lines`` over shared axes (an empty chart says so)."""
    left, right, top, bottom = 56, 12, 10, 34
    pw, ph = width - left - right, height - top - bottom
    pts = [(x, y) for line in lines for x, y in line.points
           if math.isfinite(x) and math.isfinite(y)]
    head = (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img">')
    if not pts:
        return Markup(head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                      'class="empty">no data yet</text></svg>')
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        pad = abs(y0) * 0.1 or 0.5
        y0, y1 = y0 - pad, y1 + pad
    xt, yt = nice_ticks(x0, x1), nice_ticks(y0, y1)
    x0, x1 = min(x0, xt[0]), max(x1, xt[-1])
    y0, y1 = min(y0, yt[0]), max(y1, yt[-1])

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    parts = [head, f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>']
    for t in yt:
        y = sy(t)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(_label(t))}</text>')
    for t in xt:
        x = sx(t)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}"/>'
                     f'<text class="tick" x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">'
                     f'{escape(_label(t))}</text>')
    if xlabel:
        parts.append(f'<text class="axis" x="{left + pw / 2}" y="{height - 4}" '
                     f'text-anchor="middle">{escape(xlabel)}</text>')
    for i, line in enumerate(lines):
        cls = f"s{i % COLOURS}"
        points = sorted((x, y) for x, y in line.points if math.isfinite(x) and math.isfinite(y))
        if not points:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        parts.append(f'<polyline class="line {cls}" points="{coords}">'
                     f'<title>{escape(line.name)}</title></polyline>')
        if len(points) <= 40:
            for x, y in points:
                parts.append(f'<circle class="dot {cls}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5">'
                             f'<title>{escape(line.name)}: {escape(_label(x))}, '
                             f'{escape(f"{y:.4g}")}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


def chart(title: str, lines: Sequence[Line], *, xlabel: str = "", main: bool = False) -> dict:
    """A chart as the run page shows it and its JSON twin gives it (``main``: shown first; the
    rest are folded away)."""
    return {"title": title, "xlabel": xlabel, "main": main,
            "lines": [{"name": ln.name, "class": f"s{i % COLOURS}",
                       "points": [[x, y] for x, y in sorted(ln.points)]}
                      for i, ln in enumerate(lines)],
            "svg": line_chart(lines, xlabel=xlabel)}
