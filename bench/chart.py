"""The streaming chart in docs/: hand-written SVG (no plotting library to install or import).

Two panels side by side, CPU per streamed event and added first-token p99, each against the
streams open at the time, one line per app.
"""

from __future__ import annotations

import math
from html import escape

PANELS = (
    ("cpu_per_event_us", "CPU per streamed event (µs)"),
    ("added_first_token_p99_ms", "added first-token p99 (ms)"),
)
COLOURS = {"service": "#d62728", "minimal-proxy": "#1f77b4", "raw-relay": "#2ca02c"}
OTHER = "#7f7f7f"
WIDTH, HEIGHT = 420, 300  # one panel
LEFT, RIGHT, TOP, BOTTOM = 60, 15, 35, 45  # margins inside a panel
Series = dict[str, list[tuple[float, float]]]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above `value` (an axis end)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def ticks(top: float, count: int = 5) -> list[float]:
    return [top * index / count for index in range(count + 1)]


def label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def panel(series: Series, title: str, offset: float) -> list[str]:
    points = [point for line in series.values() for point in line]
    x_top = nice_ceiling(max((x for x, _ in points), default=1))
    y_top = nice_ceiling(max((y for _, y in points), default=1))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(x: float, y: float) -> str:
        px = offset + LEFT + plot_w * x / x_top
        py = TOP + plot_h * (1 - max(y, 0) / y_top)
        return f"{px:.1f},{py:.1f}"

    out = [
        f'<text x="{offset + WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<rect x="{offset + LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>',
    ]
    for x in ticks(x_top):
        px = offset + LEFT + plot_w * x / x_top
        out.append(f'<text x="{px:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                   f"{label(x)}</text>")  # fmt: skip
    for y in ticks(y_top):
        py = TOP + plot_h * (1 - y / y_top)
        out.append(f'<line x1="{offset + LEFT}" x2="{offset + LEFT + plot_w}" y1="{py:.1f}" '
                   f'y2="{py:.1f}" stroke="#eee"/>')  # fmt: skip
        out.append(f'<text x="{offset + LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">'
                   f"{label(y)}</text>")  # fmt: skip
    out.append(f'<text x="{offset + LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
               "open streams</text>")  # fmt: skip
    for app, line in series.items():
        if not line:
            continue
        colour = COLOURS.get(app, OTHER)
        coords = " ".join(xy(x, y) for x, y in sorted(line))
        out.append(f'<polyline class="{escape(app)}" points="{coords}" fill="none" '
                   f'stroke="{colour}" stroke-width="2"/>')  # fmt: skip
        out += [f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2.5" '
                f'fill="{colour}"/>' for c in coords.split()]  # fmt: skip
    return out


def svg(figures: dict[str, dict[str, list[tuple[float, float]]]]) -> str:
    """figures: app → {panel key → [(open streams, value)]}."""
    legend_y = HEIGHT + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * WIDTH}" height="{HEIGHT + 30}" '
        f'viewBox="0 0 {2 * WIDTH} {HEIGHT + 30}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for index, (key, title) in enumerate(PANELS):
        series = {app: curves.get(key, []) for app, curves in figures.items()}
        parts += panel(series, title, index * WIDTH)
    for index, app in enumerate(figures):
        x = LEFT + index * 150
        colour = COLOURS.get(app, OTHER)
        parts.append(f'<rect x="{x}" y="{legend_y}" width="14" height="4" fill="{colour}"/>')
        parts.append(f'<text x="{x + 20}" y="{legend_y + 6}">{escape(app)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
