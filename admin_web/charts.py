"""Geometry for the charts the staff page draws as inline SVG.

The strict CSP allows no inline styles and no script-drawn charts, so the server
works out every rectangle here and the template writes them as SVG attributes;
colours come from classes in omaovi.css. Plain numbers in, plain shapes out, so
the shapes can be tested without a browser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The drawing area of a bar chart in SVG units; the SVG scales to the page width.
#: On a phone it is drawn at about a third of its size, so omaovi.css sets the axis
#: labels up to 30 units tall there: the margins leave room for "1500" and a label row.
WIDTH, HEIGHT = 800, 270
LEFT, RIGHT, TOP, BOTTOM = 76, 8, 10, 44
#: At most this many period labels under the bars, so they stay readable on a tablet;
#: a phone shows every other one of them (``Tick.minor``).
MAX_LABELS = 12
#: Shades of the heatmap: heat-0 (none) to heat-5 (the busiest hours).
HEAT_LEVELS = 5


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    value: float
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    text: str
    #: Left out on a narrow screen, where the labels are drawn larger and would overlap.
    minor: bool = False
    #: SVG text-anchor: a label under the last bars ends there rather than past the chart's edge.
    anchor: str = "middle"


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    plot_left: int
    plot_right: int
    plot_bottom: int


def stacked_bars(labels: list[str], series: dict[str, list[float]], titles: list[str] | None = None) -> BarChart:
    """Bars stacked from the bottom in the order of ``series``, one column per label.

    ``titles`` is the hover text of each column (its full period name); the
    axis shows only every n-th label when there are many periods.
    """
    count = len(labels)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(values[i] for values in series.values()) for i in range(count)]
    top = nice_ceiling(max(totals, default=0))
    slot = plot_width / max(count, 1)
    gap = slot * 0.2 if slot > 4 else 0
    bars = []
    for i in range(count):
        base = TOP + plot_height
        for name, values in series.items():
            height = plot_height * values[i] / top
            if height > 0:
                base -= height
                bars.append(Bar(round(LEFT + i * slot + gap / 2, 2), round(base, 2), round(slot - gap, 2), round(height, 2),
                                name, values[i], (titles or labels)[i]))
    every = max(1, math.ceil(count / MAX_LABELS))
    x_ticks = [
        Tick(round(LEFT + (i + 0.5) * slot, 2), labels[i], minor=n % 2 == 1, anchor="end" if i + 0.5 > count - every else "middle")
        for n, i in enumerate(range(0, count, every))
    ]
    y_ticks = [Tick(round(TOP + plot_height * (1 - step / 4), 2), str(top * step // 4)) for step in range(5)]
    return BarChart(WIDTH, HEIGHT, bars, y_ticks, x_ticks, LEFT, WIDTH - RIGHT, TOP + plot_height)


def nice_ceiling(value: float) -> int:
    """The top of the value axis: four equal whole-number steps of a round size, reaching ``value``."""
    needed = value / 4
    power = 1
    while True:
        for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            if step * power >= needed and (step * power) == int(step * power):
                return int(4 * step * power)
        power *= 10


def heat_level(value: int, busiest: int) -> int:
    """0 for nothing, else 1..HEAT_LEVELS by the share of the busiest cell."""
    if value <= 0 or busiest <= 0:
        return 0
    return max(1, math.ceil(HEAT_LEVELS * value / busiest))


def share(value: float, largest: float) -> float:
    """``value`` as a percentage of ``largest``, for a bar in a list."""
    return round(100 * value / largest, 1) if largest > 0 else 0.0

