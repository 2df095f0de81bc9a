"""Draw throughput against concurrency as a PNG: an SVG line chart rendered by the same
headless Chromium the UI tests use, so the benchmarks need no plotting library."""

from __future__ import annotations

from html import escape
from pathlib import Path

from playwright.sync_api import sync_playwright

WIDTH, HEIGHT = 800, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 240, 40, 60
COLOURS = ["#4f46e5", "#15803d", "#b45309", "#6b7280"]


def _svg(title: str, series: dict[str, dict[int, float]]) -> str:
    levels = sorted({level for points in series.values() for level in points})
    top = max(value for points in series.values() for value in points.values()) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(level: int) -> float:
        return LEFT + plot_w * levels.index(level) / max(1, len(levels) - 1)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<text x="{LEFT}" y="24" font-size="16" font-weight="600">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#9ca3af"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#9ca3af"/>',
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle" font-size="13">'
        "concurrent connections (wrk)</text>",
        f'<text x="18" y="{TOP + plot_h / 2}" font-size="13" transform="rotate(-90 18 {TOP + plot_h / 2})"'
        ' text-anchor="middle">requests / second</text>',
    ]
    for step in range(5):
        value = top * step / 4
        parts.append(
            f'<text x="{LEFT - 8}" y="{y(value) + 4}" text-anchor="end" font-size="12">{value:,.0f}</text>'
            f'<line x1="{LEFT}" y1="{y(value)}" x2="{LEFT + plot_w}" y2="{y(value)}" stroke="#e5e7eb"/>'
        )
    for level in levels:
        parts.append(
            f'<text x="{x(level)}" y="{TOP + plot_h + 20}" text-anchor="middle" font-size="12">{level}</text>'
        )
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{x(level):.1f},{y(value):.1f}" for level, value in sorted(points.items()))
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>'
        )
        for level, value in points.items():
            parts.append(f'<circle cx="{x(level)}" cy="{y(value)}" r="3.5" fill="{colour}"/>')
        legend_y = TOP + 10 + index * 22
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 16}" y="{legend_y - 9}" width="14" height="4" fill="{colour}"/>'
            f'<text x="{WIDTH - RIGHT + 36}" y="{legend_y - 3}" font-size="12">{escape(name)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="system-ui, sans-serif" fill="#111827">' + "".join(parts) + "</svg>"
    )


def draw(path: Path, title: str, series: dict[str, dict[int, float]]) -> None:
    html = f'<html><body style="margin:0;background:#fff">{_svg(title, series)}</body></html>'
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.set_content(html)
        page.screenshot(path=str(path))
        browser.close()
