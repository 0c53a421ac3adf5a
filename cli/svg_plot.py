"""Line plots as self-contained inline SVG (no libraries, no network): the report's curves."""
from __future__ import annotations

from html import escape
from typing import Sequence

#: colour-blind-friendly palette (Okabe & Ito), cycled
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 460,
    height: int = 300,
    tick_labels: Sequence[str] | None = None,
) -> str:
    """An ``<svg>`` with one polyline per ``name → (x, y)`` and a legend. ``tick_labels`` replaces
    the numeric x ticks by names at x = 0, 1, ... (for per-layer curves)."""
    left, right, top, bottom = 52, 150, 28, 44
    if tick_labels:  # names are drawn slanted below the axis
        bottom += 6 * max(len(str(t)) for t in tick_labels)
    height = max(height, top + bottom + 16 * len(series) + 8)  # room for the whole legend
    xs = [float(v) for x, _ in series.values() for v in x] or [0.0, 1.0]
    ys = [float(v) for _, y in series.values() for v in y] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(1.0, max(ys))
    x1 = x1 if x1 > x0 else x0 + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13" font-family="sans-serif" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>',
    ]
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{left - 4}" y1="{py(y):.1f}" x2="{left + plot_w}" y2="{py(y):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" font-size="10" text-anchor="end" font-family="sans-serif">{y:.2f}</text>')
    ticks = [(float(i), str(name)) for i, name in enumerate(tick_labels)] if tick_labels else [(x0 + (x1 - x0) * i / 4, f"{x0 + (x1 - x0) * i / 4:.2f}") for i in range(5)]
    for x, label in ticks:
        if tick_labels:
            ty = top + plot_h + 10
            parts.append(f'<text x="{px(x):.1f}" y="{ty}" font-size="9" text-anchor="end" font-family="sans-serif" transform="rotate(-45 {px(x):.1f} {ty})">{escape(label)}</text>')
        else:
            parts.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 14}" font-size="9" text-anchor="middle" font-family="sans-serif">{escape(label)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" font-family="sans-serif">{escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" font-family="sans-serif" transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')
    for i, (name, (x, y)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        dash = ("", ' stroke-dasharray="6 3"', ' stroke-dasharray="2 2"')[(i // len(PALETTE)) % 3]  # past the palette
        points = " ".join(f"{px(float(a)):.1f},{py(float(b)):.1f}" for a, b in zip(x, y))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>')
        ly = top + 12 + 16 * i
        parts.append(f'<line x1="{left + plot_w + 10}" y1="{ly - 4}" x2="{left + plot_w + 28}" y2="{ly - 4}" stroke="{colour}" stroke-width="2.5"{dash}/>')
        parts.append(f'<text x="{left + plot_w + 32}" y="{ly}" font-size="11" font-family="sans-serif">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
