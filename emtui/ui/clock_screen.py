"""The meter tab's clock dialog (k): the meter's clock against this machine's, and a set.

As ``emtui clock``: registers 1837–1843 read against this machine's local time (the
offset), and ``s`` sets the meter from this machine with command 1003 — only with
``--allow-writes``, the frame shown and confirmed, and, when this machine's clock is not
NTP-synchronised (a Pi has no real-time clock), only after a "set anyway" answer. The clock
is read back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from emtui.core.bus.link import LinkError
from emtui.core.bus.writes import WriteRefused
from emtui.core.clock import ClockReading, NtpStatus, ntp_status
from emtui.core.session import Engine
from emtui.ui.setup_screen import NOT_ALLOWED, Question


def reading_lines(reading: ClockReading) -> list[str]:
    """The dialog's lines for one reading."""
    pi = reading.pi_time.isoformat(sep=" ", timespec="milliseconds")
    if reading.meter_time is None:
        return [f"meter         no clock read ({reading.status})", f"this machine  {pi}"]
    offset = reading.offset_s or 0.0
    return [
        f"meter         {reading.meter_time.isoformat(sep=' ', timespec='milliseconds')}",
        f"this machine  {pi}",
        f"offset        {offset:+.3f} s (the meter is {'ahead' if offset >= 0 else 'behind'})",
    ]


class ClockScreen(ModalScreen[None]):
    """Read (r) and set (s) the clock of the meter on screen.

    Args:
        engine: the bus.
        device_id: the meter.
        label: its name on screen.
        ntp: how to learn whether this machine's clock is synchronised (tests inject one).
    """

    DEFAULT_CSS = """
    ClockScreen { align: center middle; }
    ClockScreen > Vertical {
        width: 100%; max-width: 100; height: auto; max-height: 100%;
        border: thick $accent; padding: 0 1; background: $surface;
    }
    ClockScreen #clock-allowed { color: $error; }
    ClockScreen #clock-scroll { height: auto; max-height: 12; }
    ClockScreen #clock-outcome { height: auto; color: $warning; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "read", "Read again"),
        Binding("s", "set", "Set from this machine"),
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(
        self,
        engine: Engine,
        device_id: int,
        label: str,
        ntp: Callable[[], NtpStatus] = ntp_status,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.device_id = device_id
        self.label = label
        self.ntp = ntp
        self.state = "reading"
        """``reading``, ``idle``, ``ask`` (a question on screen: y/n), ``setting``."""
        self.reading: ClockReading | None = None
        self.after: ClockReading | None = None
        self.outcome = ""
        self.question = Question()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"[b]Clock[/b] of {self.label} (id {self.device_id})", id="clock-title")
            if not self.engine.allow_writes:
                yield Static(
                    NOT_ALLOWED.replace("nothing will", "it is read; nothing will"),
                    id="clock-allowed",
                    markup=False,
                )
            yield Static("", id="clock-reading", markup=False)
            with VerticalScroll(id="clock-scroll"):
                yield Static("", id="clock-frame", markup=False)
            yield Static("", id="clock-outcome", markup=False)
            yield Static("", id="clock-keys", markup=False)

    def on_mount(self) -> None:
        self._show()
        self._read()

    def _show(self) -> None:
        keys = {
            "reading": "reading …",
            "idle": "r read again · s set from this machine · escape close",
            "ask": "y yes · n no · up/down scroll",
            "setting": "setting …",
        }[self.state]
        self.query_one("#clock-keys", Static).update(keys)
        self.query_one("#clock-outcome", Static).update(self.outcome)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """r and s when nothing runs; y and n only answer a question on screen."""
        if action in ("read", "set"):
            return self.state == "idle"
        if action == "answer":
            return self.state == "ask"
        return True

    def _state(self, state: str) -> None:
        self.state = state
        self._show()
        self.refresh_bindings()

    def action_read(self) -> None:
        """Read the clock again."""
        self._state("reading")
        self._read()

    @work(thread=True, exclusive=True, group="clock", exit_on_error=False)
    def _read(self) -> None:
        try:
            reading = self.engine.read_clock(self.device_id)
        except LinkError as exc:
            self.app.call_from_thread(self._failed, f"not read: {exc}")
            return
        self.app.call_from_thread(self._read_done, reading)

    def _read_done(self, reading: ClockReading) -> None:
        self.reading = reading
        self.query_one("#clock-reading", Static).update("\n".join(reading_lines(reading)))
        self._state("idle")

    def _failed(self, text: str) -> None:
        self.outcome = text
        self._state("idle")

    def action_set(self) -> None:
        """Set the meter's clock from this machine's (asks first; read back after)."""
        self.outcome = ""
        self.query_one("#clock-frame", Static).update("")
        self._state("setting")
        self._set()

    @work(thread=True, exclusive=True, group="clock", exit_on_error=False)
    def _set(self) -> None:
        call = self.app.call_from_thread
        if self.engine.allow_writes:
            ntp = self.ntp()
            if not ntp.synchronised:
                state = "NOT NTP-synchronised" if ntp.synchronised is False else "of unknown sync"
                question = [
                    f"this machine's clock is {state} ({ntp.how}): setting the meter from it "
                    "could give it a wrong time. Set it anyway?"
                ]
                if not self.question.ask(lambda: self._ask(question), call):
                    call(self._set_done, "not set: wait for NTP (timedatectl status)", None)
                    return

        def confirm(lines: Sequence[str]) -> bool:
            return self.question.ask(lambda: self._ask([*lines, "send it?"]), call)

        try:
            why = self.engine.set_clock(self.device_id, confirm)
        except WriteRefused as exc:
            call(self._set_done, f"refused: {exc}", None)
            return
        except (LinkError, OSError) as exc:
            call(self._set_done, f"not set: {exc}", None)
            return
        if why is not None:
            call(self._set_done, f"not set: {why}", None)
            return
        try:
            after = self.engine.read_clock(self.device_id)
        except LinkError as exc:
            call(self._set_done, f"set; not read back: {exc}", None)
            return
        offset = "—" if after.offset_s is None else f"{after.offset_s:+.3f} s"
        call(self._set_done, f"set: read back, offset now {offset}", after)

    def _ask(self, lines: list[str]) -> None:
        self.query_one("#clock-frame", Static).update("\n".join(lines))
        scroll = self.query_one("#clock-scroll", VerticalScroll)
        scroll.focus()  # up/down scroll the frame
        # the question (and the time fields of a frame) are at the end
        self.call_after_refresh(scroll.scroll_end, animate=False)
        self._state("ask")

    def action_answer(self, yes: bool) -> None:
        """Answer the question on screen."""
        if self.state != "ask":
            return
        self._state("setting")
        self.question.answer(yes)

    def _set_done(self, text: str, after: ClockReading | None) -> None:
        self.outcome = text
        if after is not None:
            self.after = after
            self.reading = after
            self.query_one("#clock-reading", Static).update("\n".join(reading_lines(after)))
            self.query_one("#clock-frame", Static).update("")
        self._state("idle")

    def on_unmount(self) -> None:
        if self.question.open:  # the app quits: the worker must not wait for ever
            self.question.answer(False)

    def action_close(self) -> None:
        """Close; a question on screen is answered no first."""
        if self.state == "ask":
            self.action_answer(False)
            return
        self.dismiss(None)
