"""The raw view's write dialog (ctrl+t): one register or coil write, shown and confirmed.

A write can take a meter off the bus, so the dialog follows ``emtui write`` step by step:
the function (FC16 for registers by default, FC05/FC15 for coils; FC06 only when typed, the
EM6400NG documents none), the values in a type and word order, then the exact frame with
every field named, and only a second key press sends it. The engine refuses (and audits)
every write unless emtui was started with ``--allow-writes``, and never writes to id 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from emtui.core.bus.link import LinkError, Outcome
from emtui.core.bus.writes import (
    ENCODINGS,
    WriteRefused,
    WriteRequest,
    WriteResult,
    build_request,
    exception_hint,
    format_frame,
)
from emtui.core.maps.codec import WORD_ORDERS
from emtui.core.session import Engine

#: The write functions the dialog takes (typed into its function field).
WRITE_FUNCTIONS = (5, 6, 15, 16)
NOT_ALLOWED = "writes are off: start emtui with --allow-writes (nothing will be sent)"


def outcome_text(result: WriteResult) -> str:
    """The dialog's line for what became of a write."""
    device_id = result.request.device_id
    if result.ok:
        return f"ok: id {device_id} acknowledged the write"
    reply = result.reply
    if reply is not None and reply.outcome is Outcome.EXCEPTION:
        code = reply.exception_code
        return f"id {device_id} refused it: exception {code or 0:02d}" + exception_hint(code)
    return (
        f"no acknowledgement ({result.outcome}): it may or may not have taken effect; "
        "the block is read again"
    )


class WriteScreen(ModalScreen[bool]):
    """Compose, preview and send one write (closes with True when one went on the wire).

    Args:
        engine: the bus (its ``write`` checks ``--allow-writes`` and audits).
        device_id: the meter of the raw view's block.
        register: the selected register or coil (1-based).
        block_function: the raw view's read function (1/2 bits → FC05, else FC16).
        value: the selected register's present value (prefilled), if read.
        on_sent: called on the UI thread after a write went on the wire (the raw view
            reads its block again).
    """

    DEFAULT_CSS = """
    WriteScreen { align: center middle; }
    WriteScreen > Vertical {
        width: 100%; max-width: 100; height: auto; max-height: 100%;
        border: thick $warning; padding: 0 1; background: $surface;
    }
    WriteScreen Horizontal { height: auto; }
    WriteScreen Label { padding: 1 1 0 0; }
    WriteScreen #write-id { width: 9; }
    WriteScreen #write-function { width: 8; }
    WriteScreen #write-register { width: 11; }
    WriteScreen #write-values { width: 1fr; }
    WriteScreen #write-allowed { color: $error; }
    WriteScreen #write-scroll { height: auto; max-height: 13; }
    WriteScreen #write-outcome { height: auto; color: $warning; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "preview", "Show frame", priority=True),
        Binding("ctrl+t", "next_type", "Type"),
        Binding("ctrl+o", "next_order", "Order"),
        Binding("y", "send", "Send"),
        Binding("n", "edit", "Edit"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(
        self,
        engine: Engine,
        device_id: int,
        register: int,
        block_function: int = 3,
        value: int | None = None,
        on_sent: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.device_id = device_id
        self.register = register
        self.function = 5 if block_function in (1, 2) else 16
        self.value = value
        self.on_sent = on_sent
        self.kind = "uint16"
        self.order = "ABCD"
        self.state = "edit"
        """``edit``, ``preview`` (the frame shown, y sends), ``sending`` or ``done``."""
        self.request: WriteRequest | None = None
        self.result: WriteResult | None = None
        self.sent = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"[b]Write[/b] to meter {self.device_id}", id="write-title")
            if not self.engine.allow_writes:
                yield Static(NOT_ALLOWED, id="write-allowed", markup=False)
            with Horizontal():
                yield Label("id")
                yield Input(str(self.device_id), id="write-id", restrict=r"[0-9]*")
                yield Label("FC")
                yield Input(str(self.function), id="write-function", restrict=r"[0-9]*")
                yield Label("register")
                yield Input(str(self.register), id="write-register", restrict=r"[0-9]*")
                yield Label("value(s)")
                initial = "" if self.value is None else str(self.value)
                yield Input(initial, id="write-values", placeholder="1,2 or 49.9")
            yield Static("", id="write-format", markup=False)
            with VerticalScroll(id="write-scroll"):
                yield Static("", id="write-frame", markup=False)
            yield Static("", id="write-outcome", markup=False)
            yield Static("", id="write-keys", markup=False)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#write-values", Input).focus()
        self._show()

    # -- the form -----------------------------------------------------------------------------

    def _show(self) -> None:
        coils = self._function() in (5, 15)
        fmt = "coils 0/1 (on/off)" if coils else f"{self.kind} {self.order}"
        self.query_one("#write-format", Static).update(
            f"{fmt} · FC16 registers, FC05/FC15 coils; FC06 only if typed"
        )
        keys = {
            "edit": "enter show the frame · ctrl+t type · ctrl+o order · escape close",
            "preview": "y SEND this frame · n edit · escape close unsent · up/down scroll",
            "sending": "sending …",
            "done": "escape close · n another write",
        }[self.state]
        self.query_one("#write-keys", Static).update(keys)

    def _function(self) -> int:
        try:
            return int(self.query_one("#write-function", Input).value)
        except ValueError:
            return 0

    def _say(self, text: str) -> None:
        self.query_one("#write-outcome", Static).update(text)

    def _build(self) -> WriteRequest | None:
        """The write in the form, or None (the reason said)."""
        try:
            device_id = int(self.query_one("#write-id", Input).value)
            register = int(self.query_one("#write-register", Input).value)
        except ValueError:
            self._say("fill in the id and the register")
            return None
        function = self._function()
        if not 1 <= device_id <= 247:
            self._say(
                f"id {device_id}: use 1-247 (never 0: a broadcast reaches every meter at once)"
            )
            return None
        if function not in WRITE_FUNCTIONS:
            self._say("FC: 16 registers, 6 one register, 5 one coil, 15 coils")
            return None
        if not 1 <= register <= 65536:
            self._say(f"register {register}: use 1-65536")
            return None
        texts = self.query_one("#write-values", Input).value.split(",")
        try:
            return build_request(device_id, function, register - 1, texts, self.kind, self.order)
        except ValueError as exc:
            self._say(str(exc))
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """y sends only while the frame is on screen; enter only edits."""
        if action == "send":
            return self.state == "preview"
        if action == "preview":
            return self.state == "edit"
        if action == "edit":
            return self.state in ("preview", "done")
        if action in ("next_type", "next_order"):
            return self.state == "edit"
        return True

    def _editing(self, on: bool) -> None:
        for field in self.query(Input):
            field.disabled = not on
        if on:
            self.query_one("#write-values", Input).focus()

    def action_preview(self) -> None:
        """Show the exact frame, every field named; y then sends it."""
        request = self._build()
        if request is None:
            return
        self.request = request
        lines = format_frame(request)
        lines.append(f"  on {self.engine.settings.describe()}")
        if not self.engine.allow_writes:
            lines.append(f"  {NOT_ALLOWED}")
        self.query_one("#write-frame", Static).update("\n".join(lines))
        self._say("")
        self.state = "preview"
        self._editing(False)
        self.query_one("#write-scroll", VerticalScroll).focus()  # up/down scroll a long frame
        self._show()
        self.refresh_bindings()

    def action_edit(self) -> None:
        """Back to the form (nothing sent)."""
        self.state = "edit"
        self.request = None
        self.query_one("#write-frame", Static).update("")
        self._editing(True)
        self._show()
        self.refresh_bindings()

    def action_next_type(self) -> None:
        """The next value type (uint16, int16, uint32, int32, float32, …)."""
        kinds = list(ENCODINGS)
        self.kind = kinds[(kinds.index(self.kind) + 1) % len(kinds)]
        self._show()

    def action_next_order(self) -> None:
        """The next word/byte order of a value."""
        self.order = WORD_ORDERS[(WORD_ORDERS.index(self.order) + 1) % len(WORD_ORDERS)]
        self._show()

    def action_send(self) -> None:
        """Send the frame on screen (the second, explicit confirmation)."""
        if self.state != "preview" or self.request is None:
            return
        self.state = "sending"
        self._show()
        self.refresh_bindings()
        self._send(self.request)

    @work(thread=True, exclusive=True, group="write", exit_on_error=False)
    def _send(self, request: WriteRequest) -> None:
        try:
            result = self.engine.write(request)
        except WriteRefused as exc:
            self.app.call_from_thread(self._done, f"refused: {exc}", None)
        except (LinkError, OSError) as exc:
            self.app.call_from_thread(self._done, f"not sent: {exc}", None)
        else:
            self.app.call_from_thread(self._done, outcome_text(result), result)

    def _done(self, text: str, result: WriteResult | None) -> None:
        self.result = result
        self.state = "done"
        self._say(text)
        self._show()
        self.refresh_bindings()
        if result is not None:
            self.sent = True
            self.on_sent()

    def action_close(self) -> None:
        """Close (nothing is sent from the form or the preview)."""
        if self.state == "sending":
            return
        self.dismiss(self.sent)
