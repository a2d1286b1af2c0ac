"""A table that redraws only the cells that changed.

Textual repaints a changed region of a widget from the widget's left edge to the end of the
region, so one wide widget per row re-emits the whole row for one changed cell (a DataTable:
~130 bytes a row; 5 KB/s for forty values a second over a slow SSH link, design §10). Here
each column is its own narrow widget drawing its lines with the line API, and a changed cell
repaints one line of its column: a new value costs its own few characters. The columns sit
side by side in one scrolling body, so they scroll together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its key, title, width in cells and alignment (``left``/``right``)."""

    key: str
    title: str
    width: int
    align: str = "left"


@dataclass(slots=True)
class _Row:
    key: str
    cells: dict[str, tuple[str, str]]  # column key -> (text, style name)
    heading: str | None = None  # a group heading instead of cells (drawn in the first column)


STYLES: dict[str, Style] = {
    "": Style(),
    "heading": Style(bold=True, color="cyan"),
    "dim": Style(dim=True),
    "stale": Style(dim=True),
    "good": Style(color="green"),
    "warn": Style(color="yellow", bold=True),
    "bad": Style(color="red", bold=True),
    "na": Style(dim=True, italic=True),
}
"""Cell styles by name: callers say what a cell *is* (``stale``, ``bad``), not how it looks."""
CURSOR = Style(reverse=True)


def fit(text: str, width: int, align: str) -> str:
    """``text`` cut (with an ellipsis) or padded to ``width`` cells."""
    if len(text) > width:
        text = text[: width - 1] + "…" if width > 1 else text[:width]
    return text.rjust(width) if align == "right" else text.ljust(width)


class _ColumnStrip(Widget):
    """One column of a :class:`LiveTable`: a line per row, drawn by the table's data."""

    DEFAULT_CSS = """
    _ColumnStrip { height: auto; }
    """

    def __init__(self, table: LiveTable, column: Column, first: bool) -> None:
        super().__init__()
        self.table = table
        self.column = column
        self.first = first
        self.styles.width = column.width
        self.styles.height = 0

    def render_line(self, y: int) -> Strip:
        """Row ``y`` of this column."""
        table = self.table
        base = self.rich_style
        width = self.column.width
        if y >= len(table._rows):
            return Strip.blank(width, base)
        row = table._rows[y]
        highlighted = y == table.cursor_row and (table.show_cursor or table.has_focus)
        if row.heading is not None:
            text = fit(row.heading, width, "left") if self.first else " " * width
            style = base + STYLES["heading"]
        else:
            text, name = row.cells.get(self.column.key, ("", ""))
            text = fit(text, width, self.column.align)
            style = base + STYLES.get(name, Style())
        if highlighted:
            style += CURSOR
        return Strip([Segment(text, style)], width)


class LiveTable(Widget, can_focus=True):
    """Rows of fixed-width cells under a header line; only changed cells are repainted."""

    DEFAULT_CSS = """
    LiveTable { height: 1fr; layout: vertical; }
    LiveTable > .live-header { height: 1; text-style: bold underline; }
    LiveTable > VerticalScroll { height: 1fr; }
    LiveTable Horizontal { height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-10)", "Page up", show=False),
        Binding("pagedown", "cursor(10)", "Page down", show=False),
        Binding("home", "cursor(-100000)", "First", show=False),
        Binding("end", "cursor(100000)", "Last", show=False),
    ]

    class RowHighlighted(Message):
        """The cursor moved to the row with ``key``."""

        def __init__(self, table: LiveTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        show_cursor: bool = False,
        gap: int = 1,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.gap = gap
        self.show_cursor = show_cursor
        self.cursor_row = 0
        self._rows: list[_Row] = []
        self._index: dict[str, int] = {}
        self._dirty: set[tuple[int, str | None]] = set()
        self._strips = {
            c.key: _ColumnStrip(self, c, first=i == 0) for i, c in enumerate(self.columns)
        }
        for strip in list(self._strips.values())[:-1]:
            strip.styles.margin = (0, gap, 0, 0)
        header = (" " * gap).join(fit(c.title, c.width, c.align) for c in self.columns)
        self._header = Static(header, classes="live-header", markup=False)
        self._body = VerticalScroll()
        self._body.can_focus = False

    def compose(self) -> ComposeResult:
        yield self._header
        with self._body, Horizontal():
            yield from self._strips.values()

    # -- structure --------------------------------------------------------------------------

    def set_rows(self, rows: Iterable[tuple[str, str | None]]) -> None:
        """Replace the rows: (key, heading) pairs; a heading row shows that text only."""
        self._rows = [_Row(key, {}, heading) for key, heading in rows]
        self._index = {row.key: i for i, row in enumerate(self._rows)}
        self.cursor_row = min(self.cursor_row, max(0, len(self._rows) - 1))
        for strip in self._strips.values():
            strip.styles.height = len(self._rows)
            strip.refresh()
        self._dirty.clear()

    @property
    def row_keys(self) -> list[str]:
        """The keys of the rows, in order."""
        return [row.key for row in self._rows]

    @property
    def cursor_key(self) -> str | None:
        """The key of the highlighted row."""
        if not self._rows:
            return None
        return self._rows[self.cursor_row].key

    def set_cell(self, row_key: str, column_key: str, text: str, style: str = "") -> None:
        """Set a cell; it is repainted on the next :meth:`flush` only if it changed."""
        index = self._index.get(row_key)
        if index is None:
            return
        row = self._rows[index]
        if row.cells.get(column_key) == (text, style):
            return
        row.cells[column_key] = (text, style)
        self._dirty.add((index, column_key))

    def cell(self, row_key: str, column_key: str) -> str:
        """The text of a cell ("" when unset)."""
        index = self._index.get(row_key)
        if index is None:
            return ""
        return self._rows[index].cells.get(column_key, ("", ""))[0]

    def flush(self) -> int:
        """Repaint the cells changed since the last flush; returns how many."""
        count = len(self._dirty)
        for index, column_key in self._dirty:
            keys = self._strips if column_key is None else (column_key,)
            for key in keys:
                strip = self._strips[key]
                strip.refresh(Region(0, index, strip.column.width, 1))
        self._dirty.clear()
        return count

    # -- cursor -----------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        """Move the highlight by ``delta`` rows, skipping headings."""
        if not self._rows:
            return
        target = max(0, min(len(self._rows) - 1, self.cursor_row + delta))
        step = 1 if delta > 0 else -1
        while 0 <= target < len(self._rows) and self._rows[target].heading is not None:
            target += step
        if not 0 <= target < len(self._rows):
            return
        self.move_cursor(target)

    def move_cursor(self, index: int) -> None:
        """Highlight row ``index`` and scroll it into view."""
        self._dirty.add((self.cursor_row, None))
        self.cursor_row = index
        self._dirty.add((index, None))
        body = self._body
        top = round(body.scroll_y)
        visible = max(1, body.size.height)
        if index < top:
            body.scroll_to(y=index, animate=False)
        elif index >= top + visible:
            body.scroll_to(y=index - visible + 1, animate=False)
        self.flush()
        if self._rows:
            self.post_message(self.RowHighlighted(self, self._rows[index].key))

    def on_focus(self) -> None:
        self._dirty.add((self.cursor_row, None))
        self.flush()

    def on_blur(self) -> None:
        self._dirty.add((self.cursor_row, None))
        self.flush()
