"""The raw register view (key r) and its decoder panel: ModScan's block read in a terminal.

A block of registers (or bits) from one meter, numbered base 1 (the vendor's register numbers)
or base 0 (wire addresses), the map's names beside them, a value column in any raw format and
order; the decoder panel shows the selected register in every type and order, names N/A
sentinels and says when the block is one register off. Reads go through the engine's arbiter
at interactive priority (the logger's polls go first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from emtui.core.bus.arbiter import reply_values
from emtui.core.bus.link import LinkError, Outcome, Reply
from emtui.core.maps.codec import RAW_FORMATS, WORD_ORDERS, format_raw
from emtui.core.maps.rawregs import (
    ORDER_LABELS,
    WIDE_TYPES,
    ShiftHint,
    decode_wide,
    exception_text,
    find_shift_hint,
    na_name,
    names_by_register,
    shift_hint,
)
from emtui.core.maps.registers import RegisterMap
from emtui.core.session import Engine
from emtui.ui.screens import ConfirmScreen
from emtui.ui.widgets.live_table import Column, LiveTable

RAW_COLUMNS = (
    Column("reg", "register", 8, "right"),
    Column("name", "name", 24),
    Column("hex", "hex", 6, "right"),
    Column("value", "value", 22, "right"),
)
#: Live polling rates offered (Hz); while logging the rate is capped at 1 Hz.
RATES = (0.5, 1.0, 2.0, 5.0)
LOGGING_RATE_CAP = 1.0
MAX_REGISTERS = 125
#: Lines of the decoder panel (the 16-bit line, the order header(s), six types, a note).
DECODER_LINES = 10
MAX_BITS = 2000


def _number(value: float | int | None) -> str:
    if value is None:
        return "nan"
    return f"{value:.7g}" if isinstance(value, float) else str(value)


def decoder_text(values: list[int], index: int, first_register: int, width: int = 98) -> str:
    """The decoder panel's text for the register at ``index``: every type in every order,
    N/A sentinels named, in ``width`` columns. A type whose values do not fit the width is
    left out and named (numbers are never cut)."""
    if not 0 <= index < len(values):
        return ""
    raw = values[index]
    register = first_register + index
    na16 = na_name([raw], "uint16") or na_name([raw], "int16")
    lines = [
        f"register {register} (address {register - 1}): 0x{raw:04X}  {raw:016b}  "
        f"uint16 {raw}  int16 {raw - 0x10000 if raw & 0x8000 else raw}"
        + (f"  {na16}" if na16 else "")
    ]
    cell = max(12, (width - 8) // 4)
    labelled = all(len(f"{o} {ORDER_LABELS[o].short}") < cell for o in WORD_ORDERS)
    head = [f"{o} {ORDER_LABELS[o].short}" if labelled else o for o in WORD_ORDERS]
    lines.append(" " * 8 + "".join(h.ljust(cell) for h in head))
    if not labelled:
        lines.append(" · ".join(f"{o} {ORDER_LABELS[o].short}" for o in WORD_ORDERS))
    left_out = []
    for type_name, span in WIDE_TYPES.items():
        chunk = values[index : index + span]
        if len(chunk) < span:
            continue
        cells = []
        for order in WORD_ORDERS:
            na = na_name(chunk, type_name, order)  # "N/A (FLOAT32 0xFFC00000)" → "N/A (FLOAT32)"
            text = na.split(" 0x")[0] + ")" if na else _number(decode_wide(chunk, type_name, order))
            cells.append(text)
        if any(len(c) >= cell for c in cells):
            left_out.append(type_name)
            continue
        lines.append(f"{type_name:<8}" + "".join(c.ljust(cell) for c in cells))
    if left_out:
        lines.append(f"({', '.join(left_out)}: too wide here; emtui read --raw --json has them)")
    return "\n".join(lines)


class RawScreen(Screen[None]):
    """Read a block, try formats and orders, see the decoder panel and the off-by-one hint.

    Args:
        engine: the bus.
        device_ids: the meters (the id field starts on the first).
        map_for: the register map of a device id.
        logging_on: whether the logger runs (polling is then capped, the logger first).
    """

    DEFAULT_CSS = """
    RawScreen { layout: vertical; }
    RawScreen #raw-form { height: auto; padding: 0 1; }
    RawScreen #raw-form Label { padding: 1 1 0 0; }
    RawScreen #raw-form Input { width: 10; }
    RawScreen #raw-status { height: auto; padding: 0 1; }
    RawScreen LiveTable { height: 1fr; min-height: 5; }
    RawScreen #raw-decoder { height: auto; padding: 0 1; border-top: solid $primary; }
    RawScreen .decoder-line { height: auto; }
    RawScreen #raw-hint { height: auto; padding: 0 1; color: $warning; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "read", "Read", priority=True),
        Binding("ctrl+t", "write", "Write"),
        Binding("ctrl+b", "toggle_base", "Base"),
        Binding("ctrl+f", "next_format", "Format"),
        Binding("ctrl+o", "next_order", "Order"),
        Binding("ctrl+g", "toggle_polling", "Poll"),
        Binding("ctrl+r", "next_rate", "Rate"),
        Binding("ctrl+y", "apply_hint", "Shift to hint"),
        Binding("escape", "close", "Back"),
    ]

    def __init__(
        self,
        engine: Engine,
        device_ids: list[int],
        map_for: Callable[[int], RegisterMap],
        logging_on: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.map_for = map_for
        self.logging_on = logging_on
        self.device_id = device_ids[0] if device_ids else 1
        self.function = 3
        self.register = 3110
        self.count = 20
        self.base = 1
        self.format = "float32"
        self.order = "ABCD"
        self.polling = False
        self.rate = 2.0
        self.values: list[int] | None = None
        self.first = self.register
        self.reply: Reply | None = None
        self.hint: ShiftHint | None = None
        self.reads = 0
        self._previous: list[int] | None = None
        self._busy = False
        self._confirmed: tuple[int, int, int] | None = None
        self._timer: object | None = None
        self._texts: dict[str, str] = {}
        self._shown_hint: ShiftHint | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="raw-form"):
            yield Label("id")
            yield Input(str(self.device_id), id="raw-id", restrict=r"[0-9]*")
            yield Label("function")
            yield Input(str(self.function), id="raw-function", restrict=r"[1-4]?")
            yield Label("start")
            yield Input(str(self.register), id="raw-start", restrict=r"[0-9]*")
            yield Label("count")
            yield Input(str(self.count), id="raw-count", restrict=r"[0-9]*")
        yield Static("", id="raw-status", markup=False)
        yield LiveTable(RAW_COLUMNS, show_cursor=True, id="raw-table")
        with Vertical(id="raw-decoder"):
            # one line per widget: a new value repaints its own line, not the whole panel
            for n in range(DECODER_LINES):
                yield Static("", classes="decoder-line", markup=False, id=f"raw-decoder-{n}")
        yield Static("", id="raw-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        # A blinking cursor repaints its field twice a second: bytes over SSH for nothing.
        for field in self.query(Input):
            field.cursor_blink = False
        self._show_status()

    # -- the form -------------------------------------------------------------------------------

    def _parse(self) -> tuple[int, int, int, int] | None:
        """(id, function, first 1-based register, count) from the form, or None (said)."""
        try:
            device_id = int(self.query_one("#raw-id", Input).value)
            function = int(self.query_one("#raw-function", Input).value)
            start = int(self.query_one("#raw-start", Input).value)
            count = int(self.query_one("#raw-count", Input).value)
        except ValueError:
            self._say("fill in id, function (1-4), start and count")
            return None
        register = start + (1 - self.base)
        limit = MAX_BITS if function in (1, 2) else MAX_REGISTERS
        if not 1 <= device_id <= 247:
            self._say(f"id {device_id}: use 1-247")
        elif function not in (1, 2, 3, 4):
            self._say("function: 1 coils, 2 discrete inputs, 3 holding, 4 input registers")
        elif not 1 <= count <= limit:
            self._say(f"count {count}: function {function} reads 1-{limit} at a time")
        elif register < 1 or register - 1 + count > 65536:
            self._say(f"start {start} (base {self.base}) and count {count} leave 0-65535")
        else:
            return device_id, function, register, count
        return None

    def action_read(self) -> None:
        """Read the block in the form once (asking first if it touches a register that acts)."""
        block = self._parse()
        if block is None:
            return
        device_id, function, register, count = block
        acting = sorted(
            r for r in self.map_for(device_id).acting_registers if register <= r < register + count
        )
        if acting and function in (3, 4) and self._confirmed != (device_id, register, count):
            self.polling = False

            def answer(yes: bool | None) -> None:
                if yes:
                    self._confirmed = (device_id, register, count)
                    self._start_read(device_id, function, register, count)

            self.app.push_screen(
                ConfirmScreen(
                    f"This block touches register {acting[0]}, which acts when read (5680 "
                    "takes the command-interface semaphore for about 4 minutes). Read it?"
                ),
                answer,
            )
            return
        self._start_read(device_id, function, register, count)

    def _start_read(self, device_id: int, function: int, register: int, count: int) -> None:
        if self._busy:
            return
        self._busy = True
        self._read(device_id, function, register, count, self._confirmed is not None)

    @work(thread=True, exclusive=True, group="raw", exit_on_error=False)
    def _read(
        self, device_id: int, function: int, register: int, count: int, confirmed: bool
    ) -> None:
        rmap = self.map_for(device_id)
        try:
            reply = self.engine.read_raw(device_id, register - 1, count, function)
        except LinkError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        values = reply_values(reply, function, count)
        hint = None
        if values is not None and function in (3, 4):

            def read(start: int, n: int) -> tuple[list[int] | None, int | None]:
                try:
                    r = self.engine.read_raw(device_id, start - 1, n, function)
                except LinkError:
                    return None, None
                return reply_values(r, function, n), r.exception_code

            hint = find_shift_hint(rmap, values, register, register, read)
        self.app.call_from_thread(self._show, device_id, function, register, reply, values, hint)

    def _failed(self, text: str) -> None:
        self._busy = False
        self._say(text)

    def _show(
        self,
        device_id: int,
        function: int,
        register: int,
        reply: Reply,
        values: list[int] | None,
        hint: ShiftHint | None,
    ) -> None:
        self._busy = False
        self.reads += 1
        same_block = (device_id, function, register) == (self.device_id, self.function, self.first)
        self._previous = self.values if same_block else None
        self.device_id, self.function, self.first = device_id, function, register
        self.reply, self.values, self.hint = reply, values, hint
        if values is not None and (
            not same_block or self._previous is None or len(self._previous) != len(values)
        ):
            table = self.query_one(LiveTable)
            table.set_rows((str(register + i), None) for i in range(len(values)))
        self._fill()
        self._show_status()

    # -- drawing ----------------------------------------------------------------------------------

    def _fill(self) -> None:
        values = self.values
        if values is None:
            return
        table = self.query_one(LiveTable)
        names = names_by_register(self.map_for(self.device_id))
        bits = self.function in (1, 2)
        shown = [str(v) for v in values] if bits else format_raw(values, self.format, self.order)
        width = (
            1
            if bits or self.format in ("hex", "uint16", "int16", "binary", "ascii")
            else (2 if self.format in ("uint32", "int32", "float32") else 4)
        )
        for i, raw in enumerate(values):
            key = str(self.first + i)
            changed = self._previous is not None and self._previous[i] != raw
            style = "warn" if changed else ""
            number = self.first + i - (1 - self.base)
            table.set_cell(key, "reg", str(number))
            table.set_cell(key, "name", names.get(self.first + i, ""), "dim")
            table.set_cell(key, "hex", str(raw) if bits else f"{raw:04X}", style)
            text = shown[i // width] if i % width == 0 and i // width < len(shown) else ""
            table.set_cell(key, "value", text, style)
        table.flush()
        self._show_decoder()

    def _selected_index(self) -> int:
        return self.query_one(LiveTable).cursor_row

    def _update(self, widget_id: str, text: str) -> None:
        """Set a Static's text only when it changed (an update repaints the whole widget)."""
        if self._texts.get(widget_id) != text:
            self._texts[widget_id] = text
            widget = self.query_one(f"#{widget_id}", Static)
            widget.update(text)
            if widget.has_class("decoder-line"):
                widget.display = bool(text)  # unused lines take no room

    @property
    def decoder(self) -> str:
        """The decoder panel's text, as shown."""
        return "\n".join(
            self._texts.get(f"raw-decoder-{n}", "") for n in range(DECODER_LINES)
        ).rstrip("\n")

    def _show_decoder(self) -> None:
        if self.values is None or self.function in (1, 2):
            lines: list[str] = []
            hint = None
        else:
            index = self._selected_index()
            width = max(40, (self.size.width or 100) - 2)
            lines = decoder_text(self.values, index, self.first, width).split("\n")
            chosen = self.first + index
            hint = self.hint if index == 0 else None
            if hint is None:
                hint = shift_hint(self.map_for(self.device_id), self.values, self.first, chosen)
        for n in range(DECODER_LINES):
            self._update(f"raw-decoder-{n}", lines[n] if n < len(lines) else "")
        self._shown_hint = hint
        self._update("raw-hint", f"hint: {hint.text()} — ctrl+y shifts the block" if hint else "")

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._show_decoder()

    def _say(self, text: str) -> None:
        self._update("raw-status", text)

    def _show_status(self) -> None:
        parts = [
            f"base {self.base} ({'register' if self.base else 'address'})",
            f"format {self.format} {self.order} ({ORDER_LABELS[self.order].short})",
            f"polling {self._effective_rate():g} Hz" if self.polling else "polling off",
        ]
        reply = self.reply
        if reply is not None:
            if reply.outcome is Outcome.EXCEPTION and reply.exception_code is not None:
                parts.insert(0, exception_text(reply.exception_code))
            elif reply.outcome is not Outcome.OK:
                parts.insert(0, f"no reading: {reply.outcome.value}")
            else:
                parts.insert(0, f"meter {self.device_id} FC{self.function:02d} ok")
        self._say(" · ".join(parts))

    # -- keys ---------------------------------------------------------------------------------

    def action_toggle_base(self) -> None:
        """Number the rows (and the start field) base 1 (register) or base 0 (address)."""
        start = self.query_one("#raw-start", Input)
        try:
            register = int(start.value) + (1 - self.base)
        except ValueError:
            register = None
        self.base = 0 if self.base else 1
        if register is not None:
            start.value = str(register - (1 - self.base))
        self._fill()
        self._show_status()

    def action_next_format(self) -> None:
        """The value column's next format."""
        self.format = RAW_FORMATS[(RAW_FORMATS.index(self.format) + 1) % len(RAW_FORMATS)]
        self._fill()
        self._show_status()

    def action_next_order(self) -> None:
        """The value column's next word/byte order."""
        self.order = WORD_ORDERS[(WORD_ORDERS.index(self.order) + 1) % len(WORD_ORDERS)]
        self._fill()
        self._show_status()

    def _effective_rate(self) -> float:
        return min(self.rate, LOGGING_RATE_CAP) if self.logging_on() else self.rate

    def action_toggle_polling(self) -> None:
        """Live polling on/off at its own rate."""
        self.polling = not self.polling
        self._schedule()
        self._show_status()

    def action_next_rate(self) -> None:
        """The next polling rate."""
        self.rate = RATES[(RATES.index(self.rate) + 1) % len(RATES)] if self.rate in RATES else 1
        self._schedule()
        self._show_status()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()  # type: ignore[attr-defined]
            self._timer = None
        if self.polling:
            self._timer = self.set_interval(1.0 / self._effective_rate(), self.poll_once)

    def poll_once(self) -> None:
        """One live poll (skipped while the last one is still on the bus)."""
        if self.polling and not self._busy:
            self.action_read()

    def action_apply_hint(self) -> None:
        """Move the block by the hint's shift and read it again."""
        hint = self._shown_hint
        if hint is None:
            return
        start = self.query_one("#raw-start", Input)
        start.value = str(self.first + hint.shift - (1 - self.base))
        self.action_read()

    def action_write(self) -> None:
        """The write dialog for the selected register or coil (the block's first before a
        read); the block is read again after a write went on the wire."""
        from emtui.ui.write_screen import WriteScreen

        block = self._parse()
        if block is None:
            return
        device_id, function, register, count = block
        start = register
        value = None
        if self.values is not None and (device_id, function) == (self.device_id, self.function):
            index = self._selected_index()
            if 0 <= index < len(self.values):
                register, value = self.first + index, self.values[index]
        self.polling = False
        self._schedule()
        self._show_status()

        def reread() -> None:
            self._start_read(device_id, function, start, count)

        self.app.push_screen(WriteScreen(self.engine, device_id, register, function, value, reread))

    def action_close(self) -> None:
        """Back to the app."""
        self.polling = False
        self._schedule()
        self.app.pop_screen()
