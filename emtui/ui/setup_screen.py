"""The meter tab's setup dialog (e): a new id, baud and parity through the command interface.

The same procedure as ``emtui setup`` (:func:`emtui.core.setup.commission`) runs on the
engine's bus with polling paused; its steps are streamed into the dialog, the command block
is shown field by field and sent only on a second key press, and the verdict stays on screen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from emtui.core.bus.link import LinkError
from emtui.core.bus.writes import WriteRefused
from emtui.core.session import Engine
from emtui.core.setup import BAUD_CODE, PARITY_CODE, SetupFailed, SetupPlan, SetupReport

log = logging.getLogger(__name__)

NOT_ALLOWED = "writes are off: start emtui with --allow-writes (nothing will be sent)"


class Question:
    """A yes/no asked from a worker thread and answered on the UI thread.

    The worker calls :meth:`ask` (it blocks); the screen shows the question and calls
    :meth:`answer`; closing the screen answers no.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._answer = False
        self.open = False

    def ask(self, show: Callable[[], None], app_call: Callable[..., object]) -> bool:
        """Show the question through ``app_call`` (``app.call_from_thread``), wait."""
        self._event.clear()
        self._answer = False
        self.open = True
        app_call(show)
        self._event.wait()
        self.open = False
        return self._answer

    def answer(self, yes: bool) -> None:
        """Give the worker its answer."""
        self._answer = yes
        self._event.set()


class SetupScreen(ModalScreen[SetupReport | None]):
    """Re-address the meter on screen; closes with the report of a setup that succeeded.

    Args:
        engine: the bus (``setup_meter`` checks ``--allow-writes`` and audits).
        device_id: the meter's present id.
        label: its name on screen.
        settle: seconds to wait for the meter at its new settings.
    """

    DEFAULT_CSS = """
    SetupScreen { align: center middle; }
    SetupScreen > Vertical {
        width: 100%; max-width: 100; height: auto; max-height: 100%;
        border: thick $warning; padding: 0 1; background: $surface;
    }
    SetupScreen Horizontal { height: auto; }
    SetupScreen Label { padding: 1 1 0 0; }
    SetupScreen Input { width: 11; }
    SetupScreen #setup-allowed { color: $error; }
    SetupScreen #setup-log { height: auto; max-height: 17; }
    SetupScreen #setup-verdict { height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "start", "Plan and run", priority=True),
        Binding("y", "answer(True)", "Send"),
        Binding("n", "answer(False)", "Do not send"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, engine: Engine, device_id: int, label: str, settle: float = 5.0) -> None:
        super().__init__()
        self.engine = engine
        self.device_id = device_id
        self.label = label
        self.settle = settle
        self.state = "edit"
        """``edit``, ``running``, ``confirm`` (the block shown: y sends), ``done``."""
        self.lines: list[str] = []
        self.report: SetupReport | None = None
        self.error: str | None = None
        self.question = Question()
        self.declined = False
        """The technician answered no to the command block (nothing was sent)."""

    def compose(self) -> ComposeResult:
        settings = self.engine.settings
        with Vertical():
            yield Static(
                f"[b]Setup[/b] of {self.label} (id {self.device_id}), now at {settings.describe()}",
                id="setup-title",
            )
            if not self.engine.allow_writes:
                yield Static(NOT_ALLOWED, id="setup-allowed", markup=False)
            with Horizontal(id="setup-form"):
                yield Label("new id")
                yield Input(str(self.device_id), id="setup-id", restrict=r"[0-9]*")
                yield Label("baud")
                yield Input(str(settings.baud), id="setup-baud", restrict=r"[0-9]*")
                yield Label("parity E/O/N")
                yield Input(settings.parity.upper(), id="setup-parity", restrict=r"[EONeon]?")
            with VerticalScroll(id="setup-log"):
                yield Static("", id="setup-steps", markup=False)
            yield Static("", id="setup-verdict", markup=False)
            yield Static("", id="setup-keys", markup=False)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#setup-id", Input).focus()
        self._show()

    def _show(self) -> None:
        keys = {
            "edit": "enter show the plan and start · escape close",
            "running": "running: the bus is paused for polling …",
            "confirm": "y SEND this command block · n do not send · up/down scroll",
            "done": "escape close",
        }[self.state]
        self.query_one("#setup-keys", Static).update(keys)
        self.query_one("#setup-steps", Static).update("\n".join(self.lines))
        self.call_after_refresh(self._scroll_end)  # the newest step (or the block) in view

    def _plan(self) -> SetupPlan | None:
        try:
            new_id = int(self.query_one("#setup-id", Input).value)
            baud = int(self.query_one("#setup-baud", Input).value)
        except ValueError:
            self._verdict("fill in the new id and baud")
            return None
        parity = self.query_one("#setup-parity", Input).value.upper()
        if not 1 <= new_id <= 247:
            self._verdict(f"new id {new_id}: use 1-247 (never 0: a broadcast)")
            return None
        if baud not in BAUD_CODE:
            self._verdict(f"baud {baud}: the EM6400NG takes 4800, 9600, 19200 or 38400")
            return None
        if parity not in PARITY_CODE:
            self._verdict("parity: E, O or N")
            return None
        settings = self.engine.settings
        plan = SetupPlan(
            self.device_id,
            new_id if new_id != self.device_id else None,
            baud if baud != settings.baud else None,
            parity if parity != settings.parity.upper() else None,
        )
        if plan.new_id is None and plan.new_baud is None and plan.new_parity is None:
            self._verdict("nothing to change: give a new id, baud or parity")
            return None
        return plan

    def _verdict(self, text: str) -> None:
        self.query_one("#setup-verdict", Static).update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """enter starts only from the form; y and n only answer the block on screen."""
        if action == "start":
            return self.state == "edit"
        if action == "answer":
            return self.state == "confirm"
        return True

    def action_start(self) -> None:
        """Show the plan and run the procedure (it stops at the block for confirmation)."""
        plan = self._plan()
        if plan is None:
            return
        new_id, baud, parity = plan.target(self.engine.settings)
        self.lines = [
            f"plan: id {self.device_id} at {self.engine.settings.describe()} → id {new_id}, "
            f"{baud} 8{parity}{1 if parity != 'N' else '1 (or 2)'}"
        ]
        for field in self.query(Input):
            field.disabled = True
        self.query_one("#setup-form").display = False  # the plan line says it: room for the log
        self.query_one("#setup-log", VerticalScroll).focus()  # up/down scroll the steps
        self.state = "running"
        self._verdict("")
        self._show()
        self.refresh_bindings()
        self._run(plan)

    @work(thread=True, exclusive=True, group="setup", exit_on_error=False)
    def _run(self, plan: SetupPlan) -> None:
        call = self.app.call_from_thread

        def confirm(lines: Sequence[str]) -> bool:
            return self.question.ask(lambda: self._ask(list(lines)), call)

        def say(line: str) -> None:
            call(self._step, line)

        try:
            report = self.engine.setup_meter(plan, confirm, say, settle=self.settle)
        except (WriteRefused, SetupFailed, LinkError, OSError) as exc:
            prefix = "refused" if isinstance(exc, WriteRefused) else "failed"
            call(self._finished, None, f"{prefix}: {exc}")
        except Exception as exc:  # a bug: say so, and never leave the dialog "running"
            log.exception("setup of meter %d", self.device_id)
            call(self._finished, None, f"failed (an emtui bug, see app.log): {exc!r}")
        else:
            call(self._finished, report, None)

    def _ask(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        self.state = "confirm"
        self._show()
        self.refresh_bindings()

    def _step(self, line: str) -> None:
        self.lines.append(line)
        self._show()

    def _scroll_end(self) -> None:
        self.query_one("#setup-log", VerticalScroll).scroll_end(animate=False)

    def action_answer(self, yes: bool) -> None:
        """Send the command block on screen (y), or not (n)."""
        if self.state != "confirm":
            return
        self.lines.append("sending …" if yes else "not sent")
        self.declined = not yes
        self.state = "running"
        self._show()
        self.refresh_bindings()
        self.question.answer(yes)

    def _finished(self, report: SetupReport | None, error: str | None) -> None:
        self.report, self.error = report, error
        self.state = "done"
        if report is not None and report.settings is not None:
            self._verdict(
                f"ok: the meter answers at id {report.new_id}, {report.settings.describe()}"
            )
        elif self.declined:
            self._verdict("not sent: answered no (the semaphore was given back)")
        else:
            self._verdict(error or "failed")
        self._show()
        self.refresh_bindings()

    def on_unmount(self) -> None:
        if self.question.open:  # the app quits: the worker must not wait for ever
            self.question.answer(False)

    def action_close(self) -> None:
        """Close; while the block waits for an answer, escape means do not send."""
        if self.state == "confirm":
            self.action_answer(False)
            return
        if self.state == "running":
            self.app.notify("The setup is running: wait for its verdict", timeout=4)
            return
        self.dismiss(self.report if self.report is not None and self.report.ok else None)
