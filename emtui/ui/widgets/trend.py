"""A one-line trend of a value, in the eight block characters every terminal font has.

Textual's Sparkline colours each bar on its own, which costs an escape sequence per bar —
2.5 KB/s at 1 Hz on a 100-column line. This draws the whole line in one style: one short
write per new point.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

BARS = "▁▂▃▄▅▆▇█"


def bars(points: Sequence[float], width: int) -> str:
    """The newest ``width`` points scaled between their min and max (flat: the lowest bar)."""
    shown = list(points)[-width:] if width > 0 else []
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    span = high - low
    if span <= 0:
        return BARS[0] * len(shown)
    top = len(BARS) - 1
    return "".join(BARS[round((p - low) / span * top)] for p in shown)


class Trend(Widget):
    """The trend line; :meth:`show` sets its points (it repaints only when its text changes)."""

    DEFAULT_CSS = """
    Trend { height: 1; color: $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._points: list[float] = []
        self._text = ""

    def show(self, points: Sequence[float]) -> None:
        """Draw these points (the newest at the right)."""
        self._points = list(points)
        text = bars(self._points, self.size.width)
        if text != self._text:
            self._text = text
            self.refresh()

    def on_resize(self) -> None:
        self._text = bars(self._points, self.size.width)

    def render(self) -> Text:
        """The bars, one style."""
        return Text(self._text, no_wrap=True, overflow="crop")
