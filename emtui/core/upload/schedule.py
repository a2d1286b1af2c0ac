"""When uploads run: a cron expression, daily 14:00 local time by default (design §1, §8).

A Raspberry Pi has no real-time clock: after a power cut its time can be wrong until NTP
syncs, then jump. The schedule is therefore asked with explicit times (the caller's injected
clock) and never trusts a "last run" that lies in the future: that is treated as unknown, so a
clock that jumped back neither blocks uploads until the old date comes round again nor
triggers a burst of catch-up runs.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from croniter import croniter

#: The default: every day at 14:00 local time.
DEFAULT_EXPR = "0 14 * * *"


class Schedule:
    """A cron schedule evaluated in a time zone (the machine's local time by default).

    Args:
        expr: A five-field cron expression (minute hour day month weekday) or a croniter
            alias such as ``@daily``.
        tz: Time zone for the expression; ``None`` uses the system's local time, including
            its daylight-saving rules.

    Raises:
        ValueError: the expression is not valid.
    """

    def __init__(self, expr: str = DEFAULT_EXPR, tz: tzinfo | None = None) -> None:
        expr = " ".join(expr.split())
        if not expr.startswith("@") and len(expr.split()) != 5:
            raise ValueError(
                f"bad upload schedule {expr!r}: expected five cron fields "
                "(minute hour day month weekday), e.g. '0 14 * * *'"
            )
        if not croniter.is_valid(expr):
            raise ValueError(f"bad upload schedule {expr!r}: not a valid cron expression")
        self._expr = expr
        self._tz = tz

    @property
    def expr(self) -> str:
        """The cron expression."""
        return self._expr

    def __repr__(self) -> str:
        return f"Schedule({self._expr!r}, tz={self._tz!r})"

    def _to_dt(self, t: float) -> datetime:
        # Naive local time when no zone is given: datetime.timestamp() then applies the
        # system's rules (mktime), daylight-saving changes included.
        return datetime.fromtimestamp(t, tz=self._tz)

    def next_after(self, t: float) -> float:
        """The first scheduled time strictly after ``t`` (epoch seconds)."""
        nxt = croniter(self._expr, self._to_dt(t)).get_next(datetime)
        return nxt.timestamp()

    def last_at_or_before(self, t: float) -> float:
        """The latest scheduled time at or before ``t`` (epoch seconds)."""
        # croniter's get_prev is strictly before its start; nudge the start past ``t``.
        prev = croniter(self._expr, self._to_dt(t + 0.001)).get_prev(datetime)
        return prev.timestamp()

    def missed(self, last_run: float | None, now: float) -> bool:
        """Whether a run fell due between ``last_run`` and ``now`` (catch up at start).

        With no known last run - none recorded, or one in the future because the clock
        jumped back - a run counts as missed when the latest scheduled time is on today's
        local date: starting at 15:00 catches up today's 14:00, starting at 10:00 waits for
        it. The caller only runs if files are queued.
        """
        if last_run is None or last_run > now:
            due = self.last_at_or_before(now)
            return self._to_dt(due).date() == self._to_dt(now).date()
        return self.next_after(last_run) <= now
