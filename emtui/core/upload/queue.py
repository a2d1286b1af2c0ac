"""The durable upload queue (design §8).

When a meter's day is over its CSV file is final: the logger queues it here, and the upload
runs (:mod:`emtui.core.upload.run`) send it later. The queue must survive a power cut or a
``kill -9`` at any moment without losing or corrupting an entry, because a lost entry means a
day of data that never reaches the server, and a file deleted before the server confirmed it
is gone for good.

On disk (``state_dir``)::

    queue/<device>_<day>_<file>.json   one record per file still to send
    sent/<device>_<day>_<file>.json    one record per file the server confirmed
    dropped/<device>_<day>_<file>.json one record per file a person dropped (``emtui upload
                                       --drop``): never sent, never rebuilt, day stays closed
    corrupt/                           unreadable records moved aside (their files are queued
                                       again from the data folder: :meth:`UploadQueue.rebuild`)
    state.json                         last run, its result, next scheduled run
    queue.lock                         flock held briefly around every read-modify-write
    run.lock                           flock held for a whole upload run

Every record is written atomically (temporary file, fsync, rename, fsync of the folder), so a
reader sees either the old or the new version, never half of one. A record moves from
``queue/`` to ``sent/`` by writing the new copy first and removing the old one second; a crash
in between leaves both, and the one with the higher revision wins. Records are read from disk
on every call rather than cached, so the logger service and a technician's ``emtui upload
--now`` in another process see the same queue; the run lock keeps them from sending at once.

All times are epoch seconds from an injectable clock; the Pi has no real-time clock, so the
code tolerates times that jump backwards (a retry due "in three days" is due now).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from emtui.core.durable import atomic_write_bytes, fsync_dir

log = logging.getLogger(__name__)

#: First retry delay after a failed upload (seconds); it doubles with each failure …
BACKOFF_FIRST = 60.0
#: … up to this cap (seconds).
BACKOFF_CAP = 3600.0
#: The record of a sent file whose local copy retention deleted is kept this long (days) so
#: that ``is_queued`` still protects that day from being reopened after a clock jump.
RECORD_KEEP_DAYS = 400
#: Temporary files older than this (seconds) are leftovers of a crash and are removed at open.
STALE_TEMP_AGE = 60.0
#: Longest error text kept in a record.
MAX_ERROR_LEN = 500

_RECORD_VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DAY_SECONDS = 86400.0


class ItemState(enum.StrEnum):
    """Where a queued file stands."""

    QUEUED = "queued"
    """Waiting for (another) upload attempt."""
    SENT = "sent"
    """The server confirmed the file (size and content verified)."""
    DROPPED = "dropped"
    """A person took it out of the queue (``emtui upload --drop``); the local file is kept."""


PROBLEMS = ("failed", "unreachable", "unconfirmed", "collision", "changed", "missing")
"""Why a file is still queued after an attempt (:attr:`QueueItem.problem`):

- ``failed``: the attempt failed (a write error, a timeout, an HTTP error), retried;
- ``unreachable``: the server could not be reached or refused us, retried;
- ``unconfirmed``: sent, but the server did not prove it holds the content, retried;
- ``collision``: the server holds a different file of that name, which was not replaced;
- ``changed`` / ``missing``: the local file is not what was queued; not sent until a person
  re-queues it (``emtui upload --requeue``) or drops it (``--drop``).
"""


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One file in the queue: what to send, where, and how the attempts went."""

    key: str
    """Stable identity: ``<device>_<day>_<file name>``; also the record's file name."""
    path: Path
    """The local file (absolute)."""
    device_id: int
    """The meter's Modbus id."""
    day: date
    """The local date the file holds."""
    remote_rel: str
    """Path below ``<base>/<site>/`` on the server: ``meter_<id>/<file name>``."""
    size: int
    """Size in bytes when queued (the file is final then)."""
    sha256: str
    """Hex SHA-256 of the content when queued; the server copy must match it."""
    state: ItemState
    """Queued or sent."""
    queued_at: float
    """When the file was queued (epoch seconds)."""
    attempts: int = 0
    """Failed upload attempts so far (reset when the content is queued anew)."""
    next_attempt: float = 0.0
    """Not before this time (epoch seconds) is the next retry due."""
    last_error: str | None = None
    """The last failure, for ``emtui status``."""
    sent_at: float | None = None
    """When the server confirmed the file."""
    purged_at: float | None = None
    """When retention deleted the local copy (only ever after ``sent_at``)."""
    rev: int = 0
    """Revision, raised on every write; the higher one wins if a crash left two copies."""
    problem: str | None = None
    """Why it is still queued after an attempt (one of :data:`PROBLEMS`), or ``None``."""

    @property
    def status(self) -> str:
        """One word for ``emtui upload``: ``sent``, ``dropped``, ``queued`` or the problem."""
        if self.state is not ItemState.QUEUED:
            return self.state.value
        return self.problem or ("failing" if self.attempts else "queued")

    def to_json(self) -> dict[str, Any]:
        """The record as stored on disk."""
        return {
            "v": _RECORD_VERSION,
            "key": self.key,
            "path": str(self.path),
            "device_id": self.device_id,
            "day": self.day.isoformat(),
            "remote_rel": self.remote_rel,
            "size": self.size,
            "sha256": self.sha256,
            "state": self.state.value,
            "queued_at": self.queued_at,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
            "last_error": self.last_error,
            "sent_at": self.sent_at,
            "purged_at": self.purged_at,
            "rev": self.rev,
            "problem": self.problem,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueueItem:
        """Parse a stored record.

        Raises:
            ValueError: a field is missing or has the wrong type.
        """
        try:
            item = cls(
                key=str(data["key"]),
                path=Path(data["path"]),
                device_id=int(data["device_id"]),
                day=date.fromisoformat(data["day"]),
                remote_rel=str(data["remote_rel"]),
                size=int(data["size"]),
                sha256=str(data["sha256"]),
                state=ItemState(data["state"]),
                queued_at=float(data["queued_at"]),
                attempts=int(data["attempts"]),
                next_attempt=float(data["next_attempt"]),
                last_error=_opt_str(data.get("last_error")),
                sent_at=_opt_float(data.get("sent_at")),
                purged_at=_opt_float(data.get("purged_at")),
                rev=int(data.get("rev", 0)),
                problem=_opt_str(data.get("problem")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad queue record: {exc!r}") from None
        if len(item.sha256) != 64:
            raise ValueError("bad queue record: sha256 is not 64 hex digits")
        return item


@dataclass(frozen=True, slots=True)
class QueueState:
    """What ``emtui status`` shows about uploads."""

    queued: int
    """Files waiting to be sent."""
    failing: int
    """Of those, how many failed at least once."""
    sent: int
    """Files the server confirmed (records still kept)."""
    oldest_day: date | None
    """The oldest day still waiting, if any."""
    oldest_queued_at: float | None
    """When the longest-waiting file was queued."""
    last_run: float | None
    """When the last upload run happened."""
    last_result: str | None
    """One line about it (``"3 sent"``, ``"server unreachable: …"``)."""
    last_ok: bool | None
    """Whether every attempted file was sent in the last run."""
    next_run: float | None
    """The next scheduled run, as the scheduler last recorded it."""
    next_retry: float | None
    """The earliest retry of a file that failed, if any."""
    last_error: str | None
    """The most recent failure of a queued file."""


def backoff_delay(attempts: int) -> float:
    """Delay (s) before the next try after ``attempts`` failures: 1 min, doubling, cap 1 h."""
    if attempts <= 0:
        return 0.0
    return min(BACKOFF_FIRST * 2.0 ** min(attempts - 1, 32), BACKOFF_CAP)


def file_digest(path: Path) -> tuple[int, str]:
    """Size and hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class UploadQueue:
    """The durable queue of finished day files (see the module docstring for the layout).

    Args:
        state_dir: Folder for the queue's records; created if missing.
        clock: Returns the current time in epoch seconds (injected by tests).
    """

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self._dir = Path(state_dir)
        self._clock = clock
        self._queued_dir = self._dir / "queue"
        self._sent_dir = self._dir / "sent"
        self._dropped_dir = self._dir / "dropped"
        self._state_file = self._dir / "state.json"
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_fd: int | None = None
        for folder in (self._dir, *self._folders):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()

    @property
    def _folders(self) -> tuple[Path, Path, Path]:
        return (self._queued_dir, self._sent_dir, self._dropped_dir)

    def now(self) -> float:
        """The current time by the queue's (injectable) clock."""
        return self._clock()

    @property
    def state_dir(self) -> Path:
        """The folder holding the queue."""
        return self._dir

    # ----------------------------------------------------------------- public API

    def enqueue(self, path: Path, device_id: int, day: date) -> QueueItem:
        """Queue a finished day file; calling it again for the same file changes nothing.

        The size and SHA-256 are taken now: the file is final once its day is queued. If the
        same file was queued before with different content (it should not happen: a queued
        day is never reopened, so someone edited it), the new content is *not* queued
        silently: a waiting record is marked ``changed`` (and is not sent) until a person
        re-queues it with :meth:`requeue` or drops it; a sent one keeps its record (and its
        local copy is not deleted, see :meth:`purge`). A dropped file stays dropped.

        Raises:
            ValueError: the file name is not a plain name (letters, digits, ``._-``).
            OSError: the file cannot be read.
        """
        path = Path(path).absolute()
        key = self._key(device_id, day, path.name)
        with self._locked():
            existing = self._load(key)
            if existing is not None and (
                existing.purged_at is not None or existing.state is ItemState.DROPPED
            ):
                return existing
            size, sha256 = file_digest(path)
            if existing is not None and existing.sha256 == sha256 and existing.size == size:
                return existing
            now = self._clock()
            if existing is not None:
                what = describe_change(existing, size, sha256)
                log.warning(
                    "%s changed after it was queued (%s): %s; not sending it until it is "
                    "re-queued (emtui upload --requeue) or dropped",
                    path,
                    existing.state.value,
                    what,
                )
                if existing.state is ItemState.SENT:
                    return existing
                flagged = dataclasses.replace(
                    existing,
                    problem="changed",
                    last_error=f"{path} changed since it was queued: {what}",
                    rev=existing.rev + 1,
                )
                self._store(flagged)
                return flagged
            item = QueueItem(
                key=key,
                path=path,
                device_id=device_id,
                day=day,
                remote_rel=f"meter_{device_id}/{path.name}",
                size=size,
                sha256=sha256,
                state=ItemState.QUEUED,
                queued_at=now,
                next_attempt=now,
            )
            self._store(item)
            return item

    def all(self) -> list[QueueItem]:
        """Every record, queued and sent, ordered by day, meter and name."""
        with self._locked():
            items = self._load_all()
        return sorted(items.values(), key=lambda i: (i.day, i.device_id, i.key))

    def queued(self) -> list[QueueItem]:
        """Every file not yet confirmed, oldest day first, whether or not a retry is due."""
        return [item for item in self.all() if item.state is ItemState.QUEUED]

    def pending(self, now: float | None = None) -> list[QueueItem]:
        """The queued files whose next attempt is due at ``now``.

        A next attempt more than the backoff cap ahead can only come from a clock that jumped
        back since it was set: such an item counts as due, so it is never stuck for days.
        """
        now = self._clock() if now is None else now
        return [item for item in self.queued() if _is_due(item, now)]

    def get(self, key: str) -> QueueItem | None:
        """The current record for ``key``, if any."""
        with self._locked():
            return self._load(key)

    def holds(self, path: Path, device_id: int, day: date) -> bool:
        """Whether this very file was queued (sent or not); then it must not change."""
        return self.get(self._key(device_id, day, Path(path).name)) is not None

    def is_queued(self, device_id: int, day: date) -> bool:
        """Whether any file of this meter's day was queued (sent or not).

        The CSV writer asks before opening a day file: a queued day is final and is never
        reopened, even when the clock jumps back into it.
        """
        pattern = f"{device_id}_{day.isoformat()}_*.json"
        with self._locked():
            return any(any(folder.glob(pattern)) for folder in self._folders)

    def mark_sent(self, item: QueueItem, now: float | None = None) -> QueueItem:
        """Record that the server confirmed ``item``; returns the stored record.

        If the file was queued anew with other content while this upload ran, the confirmation
        is for stale content: the record stays queued.
        """
        now = self._clock() if now is None else now
        with self._locked():
            current = self._load(item.key) or item
            if current.sha256 != item.sha256:
                log.warning("%s: sent content is stale, keeping it queued", item.key)
                return current
            updated = dataclasses.replace(
                current,
                state=ItemState.SENT,
                sent_at=now,
                last_error=None,
                problem=None,
                next_attempt=now,
                rev=current.rev + 1,
            )
            self._store(updated)
            return updated

    def mark_failed(
        self, item: QueueItem, error: str, now: float | None = None, problem: str = "failed"
    ) -> QueueItem:
        """Record a failed attempt and push the next one back (1 min, doubling, cap 1 h).

        ``problem`` says why (one of :data:`PROBLEMS`); ``emtui upload`` shows it.
        """
        now = self._clock() if now is None else now
        with self._locked():
            current = self._load(item.key) or item
            if current.state is not ItemState.QUEUED:
                return current  # another run confirmed it meanwhile, or it was dropped
            attempts = current.attempts + 1
            updated = dataclasses.replace(
                current,
                attempts=attempts,
                next_attempt=now + backoff_delay(attempts),
                last_error=error[:MAX_ERROR_LEN],
                problem=problem,
                rev=current.rev + 1,
            )
            self._store(updated)
            return updated

    # ------------------------------------------------------------ repair (emtui upload)

    def find(self, what: str | Path) -> QueueItem:
        """The record of a file named by its path, its file name or its queue key.

        Raises:
            KeyError: no record matches (or a bare name matches several).
        """
        text = str(what)
        wanted = Path(text).absolute() if "/" in text else None
        items = self.all()
        matches = [
            i
            for i in items
            if (wanted is not None and i.path == wanted) or text in (i.key, i.path.name)
        ]
        if wanted is not None and not matches:  # a symlinked data folder, say
            with contextlib.suppress(OSError):
                real = wanted.resolve()
                matches = [i for i in items if i.path.resolve() == real]
        if len(matches) != 1:
            found = "several files" if matches else "no file"
            raise KeyError(f"{found} in the upload queue match {text!r}")
        return matches[0]

    def retry(self, item: QueueItem, now: float | None = None) -> QueueItem:
        """Make a queued file due now (its backoff waived); sent or dropped ones are left."""
        now = self._clock() if now is None else now
        with self._locked():
            current = self._load(item.key) or item
            if current.state is not ItemState.QUEUED:
                return current
            updated = dataclasses.replace(current, next_attempt=now, rev=current.rev + 1)
            self._store(updated)
            return updated

    def requeue(self, item: QueueItem, now: float | None = None) -> tuple[QueueItem, QueueItem]:
        """Queue the file anew with its content as it is now; returns (before, after).

        For a file edited after it was queued (or sent): the new size and hash are recorded
        and the file is sent again, as a fresh entry (no attempts, due now). A dropped file
        comes back. The caller shows what changed (``before`` against ``after``).

        Raises:
            FileNotFoundError: the local file is gone (drop it instead).
            OSError: it cannot be read.
        """
        now = self._clock() if now is None else now
        with self._locked():
            current = self._load(item.key) or item
            size, sha256 = file_digest(current.path)
            updated = dataclasses.replace(
                current,
                state=ItemState.QUEUED,
                size=size,
                sha256=sha256,
                queued_at=now,
                attempts=0,
                next_attempt=now,
                last_error=None,
                problem=None,
                sent_at=None,
                purged_at=None,
                rev=current.rev + 1,
            )
            self._store(updated)
        log.info("%s re-queued by hand: %s", current.path, describe_change(current, size, sha256))
        return current, updated

    def drop(self, item: QueueItem) -> QueueItem:
        """Take a file out of the queue for good; its local file is kept, its day stays closed.

        The record moves to ``dropped/``: the file is never sent, retention never deletes it,
        and :meth:`rebuild` does not bring it back (:meth:`requeue` does, on request).
        """
        with self._locked():
            current = self._load(item.key) or item
            updated = dataclasses.replace(current, state=ItemState.DROPPED, rev=current.rev + 1)
            self._store(updated)
        log.info("%s dropped from the upload queue by hand", current.path)
        return updated

    def rebuild(self, data_dir: Path, today: date) -> list[QueueItem]:
        """Queue again the files whose record was unreadable and moved aside.

        Such a day would otherwise be missing until the logger restarts (and rescans its
        data folder): the logger's upload thread calls this on every pass, and ``emtui
        upload`` too, so the day comes back at once. The moved-aside record's name tells the
        meter, the day and the file, found at ``<data_dir>/meter_<id>/<file>``; it was final
        when it was first queued, so it is queued as it is now (a record that was sent is
        simply sent again: harmless). Only records moved aside are considered - never a file
        the logger may still be writing - and only days before ``today``.
        """
        data_dir = Path(data_dir)
        aside = self._dir / "corrupt"
        rebuilt: list[QueueItem] = []
        with self._locked():
            known = set(self._load_all())  # also moves unreadable records aside, now
            for record in sorted(aside.glob("*.json.*")):
                key = record.name.partition(".json.")[0]
                found = _parse_key(key)
                if key in known or found is None or found[1] >= today:
                    continue
                device_id, day, name = found
                path = data_dir / f"meter_{device_id}" / name
                if not path.is_file():
                    continue  # sent and deleted by retention, or never there: nothing to send
                try:
                    item = self.enqueue(path, device_id, day)
                except OSError as exc:
                    log.warning("cannot queue %s again: %s", path, exc)
                    continue
                known.add(key)
                log.warning("%s: its queue record was unreadable; queued it again", path)
                rebuilt.append(item)
        return rebuilt

    def purge(self, retention_days: float, now: float | None = None) -> list[QueueItem]:
        """Delete the local copies of files sent more than ``retention_days`` ago.

        Only confirmed files are ever deleted, and only if their content is still what was
        sent (otherwise it is kept and marked ``changed``: ``emtui upload`` lists it). Records
        of purged files are dropped after :data:`RECORD_KEEP_DAYS`. Returns the items whose
        local file was deleted now.

        Raises:
            ValueError: ``retention_days`` is negative.
        """
        if retention_days < 0:
            raise ValueError("retention_days must be 0 or more")
        now = self._clock() if now is None else now
        purged: list[QueueItem] = []
        with self._locked():
            for item in self._load_all().values():
                if item.state is not ItemState.SENT or item.sent_at is None:
                    continue
                if item.purged_at is not None:
                    if now - item.purged_at > RECORD_KEEP_DAYS * _DAY_SECONDS:
                        self._remove_record(item)
                    continue
                if now - item.sent_at <= retention_days * _DAY_SECONDS:
                    continue
                purged_item = self._purge_one(item, now)
                if purged_item is not None:
                    purged.append(purged_item)
        return purged

    @property
    def state(self) -> QueueState:
        """Counts and times for ``emtui status``."""
        items = self.all()
        queued = [i for i in items if i.state is ItemState.QUEUED]
        failing = [i for i in queued if i.attempts > 0]
        run = self._read_state()
        latest_failure = max(failing, key=lambda i: i.next_attempt, default=None)
        return QueueState(
            queued=len(queued),
            failing=len(failing),
            sent=sum(i.state is ItemState.SENT for i in items),
            oldest_day=min((i.day for i in queued), default=None),
            oldest_queued_at=min((i.queued_at for i in queued), default=None),
            last_run=_lenient_float(run.get("last_run")),
            last_result=_opt_str(run.get("last_result")),
            last_ok=run.get("last_ok") if isinstance(run.get("last_ok"), bool) else None,
            next_run=_lenient_float(run.get("next_run")),
            next_retry=min((i.next_attempt for i in failing), default=None),
            last_error=latest_failure.last_error if latest_failure is not None else None,
        )

    def next_retry(self, now: float | None = None) -> float | None:
        """When the earliest failed file is due again (``now`` if one is due already)."""
        now = self._clock() if now is None else now
        times = [
            now if _is_due(item, now) else item.next_attempt
            for item in self.queued()
            if item.attempts > 0
        ]
        return min(times, default=None)

    def record_run(self, when: float, result: str, ok: bool) -> None:
        """Remember an upload run's time and one-line result (read by ``emtui status``)."""
        with self._locked():
            run = self._read_state()
            run.update(last_run=when, last_result=result, last_ok=ok)
            self._write_state(run)

    def record_next_run(self, when: float | None) -> None:
        """Remember the next scheduled run; the file is only rewritten when it changes."""
        with self._locked():
            run = self._read_state()
            if run.get("next_run") == when:
                return
            run["next_run"] = when
            self._write_state(run)

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[bool]:
        """Hold the run lock if it is free; yields whether it was acquired.

        One upload run at a time across processes: the logger's scheduled run and a
        technician's ``emtui upload --now`` never send the same files concurrently.
        """
        fd = os.open(self._dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                yield False
                return
            yield True
        finally:
            os.close(fd)  # also releases the flock

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _key(device_id: int, day: date, name: str) -> str:
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"cannot queue {name!r}: file names must be letters, digits, ._-")
        return f"{int(device_id)}_{day.isoformat()}_{name}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Thread lock plus an flock on ``queue.lock`` (re-entrant within the process)."""
        with self._thread_lock:
            if self._lock_depth == 0:
                fd = os.open(self._dir / "queue.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def _folder(self, state: ItemState) -> Path:
        return {
            ItemState.QUEUED: self._queued_dir,
            ItemState.SENT: self._sent_dir,
            ItemState.DROPPED: self._dropped_dir,
        }[state]

    def _store(self, item: QueueItem) -> None:
        """Write the record into its state's folder, then drop any copy in the other ones."""
        data = json.dumps(item.to_json(), indent=1, sort_keys=True).encode()
        home = self._folder(item.state)
        atomic_write_bytes(home / f"{item.key}.json", data)
        for other in self._folders:
            stale = other / f"{item.key}.json"
            if other != home and stale.exists():
                stale.unlink()
                fsync_dir(other)

    def _remove_record(self, item: QueueItem) -> None:
        for folder in self._folders:
            record = folder / f"{item.key}.json"
            if record.exists():
                record.unlink()
                fsync_dir(folder)

    def _read_record(self, record: Path) -> QueueItem | None:
        try:
            data = json.loads(record.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return QueueItem.from_json(data)
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as exc:
            self._set_aside(record, str(exc))
            return None

    def _set_aside(self, record: Path, why: str) -> None:
        """Move an unreadable record out of the way (never expected: writes are atomic)."""
        aside = self._dir / "corrupt"
        aside.mkdir(exist_ok=True)
        target = aside / f"{record.name}.{int(time.time())}"
        log.error("unreadable upload queue record %s (%s): moved to %s", record, why, target)
        with contextlib.suppress(OSError):
            os.replace(record, target)

    def _load(self, key: str) -> QueueItem | None:
        found = [
            item
            for folder in self._folders
            if (item := self._read_record(folder / f"{key}.json")) is not None
        ]
        return max(found, key=lambda i: i.rev, default=None)

    def _load_all(self) -> dict[str, QueueItem]:
        items: dict[str, QueueItem] = {}
        for folder in self._folders:
            for record in folder.glob("*.json"):
                item = self._read_record(record)
                if item is None:
                    continue
                other = items.get(item.key)
                if other is None or item.rev > other.rev:
                    items[item.key] = item
        return items

    def _purge_one(self, item: QueueItem, now: float) -> QueueItem | None:
        """Delete one sent file's local copy if it is unchanged; requeue it if it changed."""
        try:
            size, sha256 = file_digest(item.path)
        except FileNotFoundError:
            self._store(dataclasses.replace(item, purged_at=now, rev=item.rev + 1))
            return None
        if (size, sha256) != (item.size, item.sha256):
            # Not what the server confirmed: keep it, and never send it silently (the server's
            # copy would not be replaced anyway). ``emtui upload`` lists it as changed.
            if item.problem != "changed":
                what = describe_change(item, size, sha256)
                log.warning("%s changed after it was sent (%s): not deleting it", item.path, what)
                self._store(
                    dataclasses.replace(
                        item,
                        problem="changed",
                        last_error=f"{item.path} changed after it was sent: {what}",
                        rev=item.rev + 1,
                    )
                )
            return None
        # The file goes first: a crash right after leaves a sent record whose file is missing,
        # which the next purge notes (above) - nothing unsent is at stake either way.
        item.path.unlink()
        fsync_dir(item.path.parent)
        updated = dataclasses.replace(item, purged_at=now, rev=item.rev + 1)
        self._store(updated)
        return updated

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as exc:
            self._set_aside(self._state_file, str(exc))
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, run: dict[str, Any]) -> None:
        atomic_write_bytes(self._state_file, json.dumps(run, sort_keys=True).encode())

    def _remove_stale_temps(self) -> None:
        """Remove temporary files a crash left behind (old enough not to be in flight)."""
        cutoff = time.time() - STALE_TEMP_AGE
        for folder in (self._dir, *self._folders):
            for tmp in folder.glob(".*.tmp-*"):
                with contextlib.suppress(OSError):
                    if tmp.stat().st_mtime < cutoff:
                        tmp.unlink()


def describe_change(item: QueueItem, size: int, sha256: str) -> str:
    """``size 100 → 120 bytes, sha256 0123456789ab… → 89abcdef0123…`` (or ``unchanged``)."""
    if (size, sha256) == (item.size, item.sha256):
        return f"unchanged ({item.size} bytes, sha256 {item.sha256[:12]}…)"
    return f"size {item.size} → {size} bytes, sha256 {item.sha256[:12]}… → {sha256[:12]}…"


def _parse_key(key: str) -> tuple[int, date, str] | None:
    """The meter id, day and file name in a record key ``<id>_<YYYY-MM-DD>_<file>``."""
    device, _, rest = key.partition("_")
    day, _, name = rest.partition("_")
    if not device.isdigit() or not _SAFE_NAME.fullmatch(name):
        return None
    try:
        return int(device), date.fromisoformat(day), name
    except ValueError:
        return None


def _is_due(item: QueueItem, now: float) -> bool:
    return item.next_attempt <= now or item.next_attempt > now + BACKOFF_CAP


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"expected a number, got {value!r}")


def _lenient_float(value: object) -> float | None:
    try:
        return _opt_float(value)
    except ValueError:
        return None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
