"""A small line chart written as SVG by hand (no plotting library is installed here).

What goes in: x values and panels, each with a y label and named series of numbers. What comes
out: one SVG document with the panels stacked (shared x axis), axes from zero, a few ticks and a
legend per panel; the docs can link it like an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH = 720
PANEL_HEIGHT = 220
MARGIN_LEFT = 70
MARGIN_RIGHT = 20
MARGIN_TOP = 40
GAP = 50
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class Series:
    """One line: its legend label and a y value per x value."""

    label: str
    values: Sequence[float]


@dataclass(frozen=True)
class Panel:
    """One plot area: a y-axis label and its lines."""

    y_label: str
    series: Sequence[Series]


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _tick(value: float, span: float) -> str:
    """An x tick label: whole numbers over a wide span, one decimal over a narrow one."""
    return f"{value:.0f}" if span >= 12 else f"{round(value, 1):g}"


def line_chart(title: str, x_label: str, xs: Sequence[float], panels: Sequence[Panel]) -> str:
    """The SVG document of ``panels`` over ``xs`` (every series has one value per x)."""
    height = MARGIN_TOP + len(panels) * (PANEL_HEIGHT + GAP) + 10
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    x_max = max(xs) if xs else 1.0
    x_min = min(xs) if xs else 0.0
    span = (x_max - x_min) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    for number, panel in enumerate(panels):
        top = MARGIN_TOP + number * (PANEL_HEIGHT + GAP)
        bottom = top + PANEL_HEIGHT
        y_top = _nice_max(max((max(s.values, default=0.0) for s in panel.series), default=0.0))
        out.append(
            f'<rect x="{MARGIN_LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" '
            'fill="none" stroke="#888"/>'
        )
        for tick in range(5):
            value = y_top * tick / 4
            y = bottom - PANEL_HEIGHT * tick / 4
            out.append(
                f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" y2="{y:.1f}" '
                'stroke="#eee"/>'
            )
            out.append(
                f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>'
            )
        for tick in range(7):
            value = x_min + span * tick / 6
            x = MARGIN_LEFT + plot_w * tick / 6
            out.append(
                f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_tick(value, span)}</text>'
            )
        out.append(
            f'<text x="16" y="{(top + bottom) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 16 {(top + bottom) / 2})">{escape(panel.y_label)}</text>'
        )
        for index, series in enumerate(panel.series):
            colour = COLOURS[index % len(COLOURS)]
            points = " ".join(
                f"{MARGIN_LEFT + plot_w * (x - x_min) / span:.1f},"
                f"{bottom - PANEL_HEIGHT * y / y_top:.1f}"
                for x, y in zip(xs, series.values, strict=True)
            )
            # Every other line dashed, so a line that lies on another one still shows.
            dash = ' stroke-dasharray="6,4"' if index % 2 else ""
            out.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"'
                f"{dash}/>"
            )
            legend_y = top + 16 + 16 * index
            out.append(
                f'<line x1="{MARGIN_LEFT + 10}" y1="{legend_y - 4}" x2="{MARGIN_LEFT + 30}" '
                f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"{dash}/>'
            )
            out.append(f'<text x="{MARGIN_LEFT + 36}" y="{legend_y}">{escape(series.label)}</text>')
    last_bottom = MARGIN_TOP + len(panels) * (PANEL_HEIGHT + GAP) - GAP
    out.append(
        f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{last_bottom + 34}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
