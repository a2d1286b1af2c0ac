"""The unattended side of the CLI: ``--log``, ``upload``, ``status``, ``config``, ``service``.

Output is plain text (journald reads the logger's stderr) or one JSON document; no Rich.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from emtui.cli.common import CliError, ExitCode, effective_config, emit_json, settings_from
from emtui.core.bus.link import LinkError, PortBusy, PortPermission
from emtui.core.config import (
    PORT_MISSING,
    Config,
    check_config,
    config_check_text,
    effective_dict,
    redact_target,
)
from emtui.core.log.livefile import LivePublisher
from emtui.core.log.runstate import DirProblem, PortLock, dir_problem, read_status, user_name

if TYPE_CHECKING:
    from emtui.core.upload.queue import QueueItem, UploadQueue
    from emtui.core.upload.run import UploadRunResult


def _stamp(t: object) -> str:
    if not isinstance(t, int | float):
        return "—"
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _report(line: str) -> None:
    """One status line on stderr (journald adds the time)."""
    print(f"emtui: {line}", file=sys.stderr, flush=True)


def _usable_dir(path: Path, role: str, *, write: bool, create: bool = False) -> None:
    """Stop with one line (exit STORAGE) when ``path`` cannot be used; create it if asked.

    ``role`` is ``data`` or ``state``: it names the flag and the config key to fix.
    """
    problem = dir_problem(path, write=write)
    if problem is None and create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = DirProblem(f"cannot be created ({exc.strerror or exc})", anyone=True)
    if problem is None:
        return
    key = "state_dir" if role == "state" else "[logging] data_dir"
    raise CliError(
        f"{role} dir {path} {problem.text}: give --{role}-dir (or {key} in the config) a "
        f"directory that user {user_name()} can {'write' if write else 'read'}",
        ExitCode.STORAGE,
    )


def _queue_error(state_dir: Path, exc: OSError) -> CliError:
    """One line for an upload queue that cannot be read or locked (another user's state)."""
    where = exc.filename or state_dir
    return CliError(
        f"cannot use the upload queue in {state_dir} ({where}: {exc.strerror or exc}): run "
        f"as the logger's user (sudo -u emtui emtui ...) or give --state-dir",
        ExitCode.STORAGE,
    )


# -- emtui --log ---------------------------------------------------------------------------------


def log(args: argparse.Namespace) -> int:
    """``emtui --log``: poll and log until SIGTERM/SIGINT or ``--cycles`` cycles."""
    from emtui.core.session import BusSession

    config = effective_config(args)
    if not config.meters:
        raise CliError(
            "no meters to log: give --ids (e.g. --ids 1-4) or [[meters]] in the config file",
            ExitCode.USAGE,
        )
    # First the dirs (the same line and code as status and upload give for them), then the
    # rest of the config; the lock lives in the state dir, so it is created before the lock.
    _usable_dir(config.state_dir, "state", write=True)
    _usable_dir(config.logging.data_dir, "data", write=True)
    report = check_config(config)
    if not report.ok:
        raise CliError("\n".join(report.errors), ExitCode.CONFIG)
    # Before the warnings: with no port, "bus.port: not set" and the error said it twice.
    settings = settings_from(config)
    _usable_dir(config.state_dir, "state", write=True, create=True)
    _usable_dir(config.logging.data_dir, "data", write=True, create=True)
    for warning in report.warnings:
        if ": bus.port: " in warning and PORT_MISSING in warning:
            continue  # opening the port says it, with the ports found: once is enough
        _report(f"warning: {warning}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _report(f"{signal.Signals(signum).name}: finishing the current row")
        # Not stop.set() here: the handler runs in the main thread, which may be inside
        # stop.wait() holding the Event's (non-reentrant) lock; another thread can wait for it.
        threading.Thread(target=stop.set, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    session = BusSession(config, settings, report=_report)
    with PortLock(config.state_dir, settings.port):
        _report(_start_line(config, settings.describe()))
        try:
            session.open_bus()
        except (PortBusy, PortPermission):
            raise  # a person must act: stop the other program, fix the group
        except LinkError:  # unplugged adapter, gateway down: log the gap, keep trying
            # Not reported here: the first cycle's "bus down: …" says it (it was said twice).
            session.open_bus(require_link=False)
        try:
            live = LivePublisher(settings.port, settings.describe(), config.logging.interval)
            worker = session.run_logging(stop, cycles=args.cycles, live=live)
            _report(f"stopped: {worker.summary()}")
        finally:
            session.stop()
    lost = sum(m.writer.rows_lost for m in worker.meters)
    if args.cycles is not None and lost:
        # A bounded run is a script's: it must learn that the CSVs miss rows.
        raise CliError(
            f"{lost} row(s) were not written to {config.logging.data_dir} (see above): free "
            "space on that disk or fix the directory",
            ExitCode.STORAGE,
        )
    return int(ExitCode.OK)


def _start_line(config: Config, bus: str) -> str:
    meters = ", ".join(f"{m.id}{f' ({m.label})' if m.label else ''} {m.map}" for m in config.meters)
    upload = config.upload
    target = (
        f"upload {redact_target(upload.target)} at '{upload.schedule}' as site {upload.site}"
        if upload.target
        else "no upload target"
    )
    return (
        f"logging {bus}: meters {meters}; every {config.logging.interval:g} s "
        f"to {config.logging.data_dir}; {target}; state {config.state_dir}"
    )


# -- emtui upload --------------------------------------------------------------------------------


def upload(args: argparse.Namespace) -> int:
    """``emtui upload``: list the queue (state and reason of each file), send or repair it.

    ``--now`` sends every queued file, ``--retry FILE|all`` sends those now (their backoff
    waived), ``--requeue FILE`` queues a file that changed (or was dropped) again with its
    content now and says what changed, ``--drop FILE`` takes one out of the queue for good
    (the local file is kept). With a target configured, files of past days that have no
    queue record (an unreadable one was moved aside) are queued again first.
    """
    from emtui.core.upload.queue import UploadQueue

    config = effective_config(args, meters=False)
    _usable_dir(config.state_dir, "state", write=True)
    try:
        queue = UploadQueue(config.state_dir)
    except OSError as exc:
        raise _queue_error(config.state_dir, exc) from None
    document: dict[str, Any] = {}
    lines: list[str] = []
    code = ExitCode.OK
    if config.upload.target:  # each file queued this way is reported on stderr
        queue.rebuild(config.logging.data_dir, datetime.now().date())
    if args.requeue is not None:
        document["requeued"], line = _requeue(queue, args.requeue)
        lines.append(line)
    elif args.drop is not None:
        item = _find(queue, args.drop)
        was = item.status
        dropped = queue.drop(item)
        document["dropped"] = {**_item_doc(dropped), "was": was}
        lines.append(
            f"dropped {item.path} from the upload queue (it was {was}); the file itself is "
            "kept, and emtui never sends or deletes it (emtui upload --requeue brings it back)"
        )
    elif args.now or args.retry is not None:
        result = _send_now(queue, config, args.retry)
        document["run"] = {"summary": result.summary(), "ok": result.ok}
        lines.append(f"upload run: {result.summary()}")
        code = ExitCode.OK if result.ok else ExitCode.UPLOAD
    items = queue.queued()
    if args.json:
        emit_json({**document, "queued": [_item_doc(i) for i in items]})
        return int(code)
    for line in lines:
        print(line)
    if not items:
        print("nothing queued")
    for i in items:
        tries = f", {i.attempts} failed attempt(s), next {_stamp(i.next_attempt)}"
        print(f"{i.status:<11} meter {i.device_id}  {i.day}  {i.path}{tries if i.attempts else ''}")
        if i.last_error:
            print(f"            {i.last_error}")
    return int(code)


def _item_doc(item: QueueItem) -> dict[str, Any]:
    """One queue entry for ``emtui upload --json``."""
    return {
        "device_id": item.device_id,
        "day": item.day.isoformat(),
        "file": str(item.path),
        "state": item.status,
        "reason": item.last_error if item.problem else None,
        "size": item.size,
        "sha256": item.sha256,
        "attempts": item.attempts,
        "next_attempt": item.next_attempt,
        "last_error": item.last_error,
    }


def _find(queue: UploadQueue, what: str) -> QueueItem:
    try:
        return queue.find(what)
    except KeyError as exc:
        raise CliError(
            f"{exc.args[0]} — give a file as `emtui upload` lists it", ExitCode.USAGE
        ) from None


def _requeue(queue: UploadQueue, what: str) -> tuple[dict[str, Any], str]:
    """``--requeue FILE``: hash the file anew, queue it, and say what changed."""
    from emtui.core.upload.queue import describe_change

    item = _find(queue, what)
    try:
        before, after = queue.requeue(item)
    except FileNotFoundError:
        raise CliError(
            f"cannot requeue {item.path}: the file is gone — take it out of the queue with "
            f"emtui upload --drop {item.path.name}",
            ExitCode.UPLOAD,
        ) from None
    except OSError as exc:
        raise CliError(f"cannot read {item.path}: {exc.strerror or exc}", ExitCode.UPLOAD) from None
    change = describe_change(before, after.size, after.sha256)
    doc = {
        **_item_doc(after),
        "was": before.status,
        "changed": (before.size, before.sha256) != (after.size, after.sha256),
        "before": {"size": before.size, "sha256": before.sha256},
        "now": {"size": after.size, "sha256": after.sha256},
    }
    line = (
        f"requeued {after.path} (it was {before.status}): {change}; it is sent at the next "
        f"run (now: emtui upload --retry {after.path.name})"
    )
    return doc, line


def _send_now(queue: UploadQueue, config: Config, retry: str | None) -> UploadRunResult:
    """``--now`` / ``--retry FILE|all``: one upload run, then retention."""
    from emtui.core.upload.queue import ItemState
    from emtui.core.upload.run import run_uploads
    from emtui.core.upload.targets import uploader_factory

    target = config.upload.target
    if not target:
        raise CliError(
            "no upload target: set target in the config's [upload] table", ExitCode.CONFIG
        )
    only: set[str] | None = None
    if retry is not None:
        chosen = queue.queued() if retry == "all" else [_find(queue, retry)]
        for item in chosen:
            if item.state is not ItemState.QUEUED:
                raise CliError(f"{item.path} is {item.status}: nothing to retry", ExitCode.UPLOAD)
            queue.retry(item)
        only = {item.key for item in chosen}
    factory = uploader_factory(config.upload)
    result = run_uploads(queue, factory, force=True, only=only)
    if result.busy:
        raise CliError("another upload run is in progress; try again later", ExitCode.UPLOAD)
    queue.purge(config.upload.retention_days)
    return result


# -- emtui status --------------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    """``emtui status``: the logger's last status, the queue, last and next upload."""
    from emtui.core.upload.queue import QueueState, UploadQueue
    from emtui.core.upload.schedule import Schedule

    config = effective_config(args, meters=False)
    _usable_dir(config.state_dir, "state", write=False)
    running = read_status(config.state_dir)
    try:
        # No state dir yet: nothing ran here; reading must not create it.
        if config.state_dir.is_dir():
            state = UploadQueue(config.state_dir).state
        else:
            state = QueueState(
                queued=0,
                failing=0,
                sent=0,
                oldest_day=None,
                oldest_queued_at=None,
                last_run=None,
                last_result=None,
                last_ok=None,
                next_run=None,
                next_retry=None,
                last_error=None,
            )
    except OSError as exc:
        raise _queue_error(config.state_dir, exc) from None
    next_run = Schedule(config.upload.schedule).next_after(time.time())
    queue: dict[str, Any] = {
        "queued": state.queued,
        "failing": state.failing,
        "oldest_day": state.oldest_day.isoformat() if state.oldest_day else None,
        "last_run": state.last_run,
        "last_result": state.last_result,
        "next_run": next_run if config.upload.target else None,
        "last_error": state.last_error,
    }
    if args.json:
        emit_json({"logger": running, "queue": queue, "state_dir": str(config.state_dir)})
        return int(ExitCode.OK)
    if running is None:
        print(f"logger: no status file in {config.state_dir} (never ran here)")
    else:
        how = "running" if running["running"] else "not running"
        print(
            f"logger: {how} (PID {running.get('pid')}), port {running.get('port')}, "
            f"updated {_stamp(running.get('updated'))}, {running.get('cycles')} cycles"
        )
        for meter in running.get("meters", []):
            statuses = ", ".join(f"{k} {v}" for k, v in sorted(meter["statuses"].items()))
            label = f" ({meter['label']})" if meter.get("label") else ""
            print(
                f"  meter {meter['id']}{label}: {meter['rows']} rows, "
                f"{meter['errors']} errors [{statuses}]; last {meter['last_status']}"
                + (f"; NOT WRITTEN {meter['rows_lost']}" if meter.get("rows_lost") else "")
            )
    print(
        f"upload: {queue['queued']} queued ({queue['failing']} failing), "
        f"last run {_stamp(queue['last_run'])}: {queue['last_result'] or '—'}; "
        f"next run {_stamp(queue['next_run']) if config.upload.target else '— (no target)'}"
    )
    return int(ExitCode.OK)


# -- emtui config check --------------------------------------------------------------------------


def config(args: argparse.Namespace) -> int:
    """``emtui config check``: validate and print the effective configuration."""
    cfg = effective_config(args)
    report = check_config(cfg)
    if args.json:
        emit_json(
            {
                **effective_dict(cfg),
                "errors": list(report.errors),
                "warnings": list(report.warnings),
                "ok": report.ok,
            }
        )
    else:
        sys.stdout.write(config_check_text(cfg, report.errors, report.warnings))
    return int(ExitCode.OK if report.ok else ExitCode.CONFIG)


# -- emtui service -------------------------------------------------------------------------------


def service(args: argparse.Namespace) -> int:
    """``emtui service print|install``: the systemd unit for ``emtui --log``."""
    from emtui.core.log.service import (
        ServiceError,
        default_executable,
        install,
        options_from,
        unit_text,
        user_problem,
    )

    problem = user_problem(args.user)
    if problem is not None:
        raise CliError(problem, ExitCode.USAGE)
    options = options_from(
        default_executable(),
        Path(args.config),
        args.user,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )
    if args.action == "print":
        sys.stdout.write(unit_text(options))
        return int(ExitCode.OK)
    try:
        for step in install(options):
            print(step)
    except ServiceError as exc:
        raise CliError(str(exc), ExitCode.FAILURE) from None
    return int(ExitCode.OK)


__all__ = ["config", "log", "service", "status", "upload"]
