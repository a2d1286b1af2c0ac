"""The progress line of the commands that walk ids (``scan``, ``detect``): on stderr, gone
when done, its time left from the command's own estimate (the cost silent ids have had so far),
never Rich's extrapolation."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn


def id_progress(what: str, console: Console, *, disable: bool) -> Progress:
    """A transient bar ``<what> id N  ━━━  done/total  about T left`` on ``console``.

    ``what`` is a Rich format string over the task's fields (``{task.fields[settings]}``);
    every task needs the fields ``current`` (the id on the wire) and ``eta`` (:func:`eta_text`).
    """
    return Progress(
        TextColumn(what + " id {task.fields[current]:>3}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("about {task.fields[eta]} left"),
        console=console,
        transient=True,
        disable=disable,
    )


def eta_text(eta: float | None) -> str:
    """Seconds left as the bar shows them: ``?`` unknown, whole seconds from 10 s, else 0.1 s."""
    if eta is None:
        return "?"
    return f"{eta:.0f} s" if eta >= 10 else f"{eta:.1f} s"
