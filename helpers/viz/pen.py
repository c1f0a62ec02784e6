"""A pen for block diagrams drawn in inches: boxes, arrows, polylines, residual adds, panel titles and
input buses (``helpers.viz.diagram`` draws the model with it). Matplotlib only, imported when drawing."""

from __future__ import annotations

from dataclasses import dataclass

FONT = 8.5  # box labels; titles are larger, nothing is below 8


@dataclass(frozen=True)
class Box:
    """A drawn box's extent in the diagram's coordinates (inches at the default figure size)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def top(self) -> float:
        return self.y + self.h

    @property
    def right(self) -> float:
        return self.x + self.w


def tint(hex_color: str, t: float = 0.82) -> tuple[float, float, float]:
    """``hex_color`` mixed ``t`` of the way to white (a box's fill)."""
    from matplotlib.colors import to_rgb

    return tuple((1 - t) * c + t for c in to_rgb(hex_color))


class Pen:
    """Draws boxes, arrows and residual adds into one axes whose data units are inches."""

    def __init__(self, ax):
        self.ax = ax

    def box(self, x, y, w, h, text, color, *, fill=0.82, fontsize=FONT, weight="normal", ls="-", lw=1.1,
            gid=None, text_color="black", z=2) -> Box:
        from matplotlib.patches import FancyBboxPatch

        patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06", ls=ls, lw=lw,
                               edgecolor=color, facecolor=tint(color, fill) if fill is not None else "none",
                               zorder=z)
        patch.set_gid(gid)
        self.ax.add_patch(patch)
        if text:
            self.ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize,
                         weight=weight, color=text_color, zorder=z + 1, linespacing=1.25)
        return Box(x, y, w, h)

    def outline(self, x, y, w, h, color, gid=None) -> Box:
        return self.box(x, y, w, h, "", color, fill=0.95, ls=(0, (4, 3)), lw=1.0, gid=gid, z=0)

    def arrow(self, start, end, color="#444444", *, ls="-", lw=1.1, head=True, both=False, z=1.5):
        from matplotlib.patches import FancyArrowPatch

        style = "<|-|>" if both else ("-|>" if head else "-")
        self.ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=color,
                                          ls=ls, lw=lw, shrinkA=0, shrinkB=0, zorder=z))

    def path(self, points, color="#444444", *, ls="-", lw=1.1):
        """A polyline with an arrow head on its last segment."""
        xs, ys = zip(*points[:-1])
        self.ax.plot(xs, ys, color=color, ls=ls, lw=lw, zorder=1.5, solid_capstyle="butt")
        self.arrow(points[-2], points[-1], color, ls=ls, lw=lw)

    def add(self, x, y, r=0.12, color="#444444"):
        """A residual add: ⊕."""
        from matplotlib.patches import Circle

        self.ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=color, lw=1.1, zorder=3))
        self.ax.plot([x - r * 0.6, x + r * 0.6], [y, y], color=color, lw=1.1, zorder=4)
        self.ax.plot([x, x], [y - r * 0.6, y + r * 0.6], color=color, lw=1.1, zorder=4)

    def text(self, x, y, s, **kwargs):
        kwargs = {"ha": "center", "va": "center", "fontsize": FONT, "zorder": 3, **kwargs}
        return self.ax.text(x, y, s, **kwargs)


def panel_title(pen: Pen, x: float, y_top: float, title: str, subtitle: str, color: str) -> None:
    """A detail panel's bold title and its one-line subtitle, at its top left."""
    pen.text(x + 0.12, y_top - 0.17, title, fontsize=9.5, ha="left", weight="bold", color=color)
    pen.text(x + 0.12, y_top - 0.4, subtitle, fontsize=8.5, ha="left", color="#333333")


def feed(pen: Pen, x: float, y: float, xs, label: str) -> float:
    """The input label at (x, y) and a bus line above it that feeds boxes centred at ``xs``; returns the
    bus height."""
    pen.text(x, y, label, fontsize=8.5, ha="left")
    bus = y + 0.2
    pen.ax.plot([x + 0.15, x + 0.15], [y + 0.1, bus], color="#444444", lw=1.1, zorder=1.5)
    pen.ax.plot([x + 0.15, max(xs)], [bus, bus], color="#444444", lw=1.1, zorder=1.5)
    return bus
