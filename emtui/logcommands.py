"""The unattended side of the CLI: ``--log``, ``upload``, ``status``, ``config``, ``service``.

Output is plain text (journald reads the logger's stderr) or one JSON document; no Rich.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from emtui.cli import CliError, ExitCode, effective_config, emit_json, settings_from
from emtui.core.config import (
    PORT_MISSING,
    Config,
    check_config,
    config_check_text,
    effective_dict,
    redact_target,
)
from emtui.core.link import LinkError, PortBusy, PortPermission
from emtui.core.runstate import PortLock, read_status


def _stamp(t: object) -> str:
    if not isinstance(t, int | float):
        return "—"
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _report(line: str) -> None:
    """One status line on stderr (journald adds the time)."""
    print(f"emtui: {line}", file=sys.stderr, flush=True)


# -- emtui --log ---------------------------------------------------------------------------------


def log(args: argparse.Namespace) -> int:
    """``emtui --log``: poll and log until SIGTERM/SIGINT or ``--cycles`` cycles."""
    from emtui.core.arbiter import BusArbiter
    from emtui.core.logger import LoggingWorker

    config = effective_config(args)
    if not config.meters:
        raise CliError(
            "no meters to log: give --ids (e.g. --ids 1-4) or [[meters]] in the config file",
            ExitCode.USAGE,
        )
    report = check_config(config)
    if not report.ok:
        raise CliError("\n".join(report.errors), ExitCode.CONFIG)
    # Before the warnings: with no port, "bus.port: not set" and the error said it twice.
    settings = settings_from(config)
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
    arbiter = BusArbiter(settings)
    with PortLock(config.state_dir, settings.port):
        _report(_start_line(config, settings.describe()))
        try:
            arbiter.start()
        except (PortBusy, PortPermission):
            raise  # a person must act: stop the other program, fix the group
        except LinkError:  # unplugged adapter, gateway down: log the gap, keep trying
            # Not reported here: the first cycle's "bus down: …" says it (it was said twice).
            arbiter.start(require_link=False)
        try:
            worker = LoggingWorker(config, arbiter, report=_report)
            worker.run(stop, cycles=args.cycles)
            _report(f"stopped: {worker.summary()}")
        finally:
            arbiter.stop()
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
    """``emtui upload``: show the queue; ``--now``: send every queued file once."""
    from emtui.core.uploaders import make_uploader
    from emtui.core.uploadqueue import UploadQueue
    from emtui.core.uploadrun import run_uploads

    config = effective_config(args, meters=False)
    queue = UploadQueue(config.state_dir)
    result_doc: dict[str, Any] | None = None
    code = ExitCode.OK
    if args.now:
        target = config.upload.target
        if not target:
            raise CliError(
                "no upload target: set target in the config's [upload] table", ExitCode.CONFIG
            )
        factory = functools.partial(
            make_uploader,
            target,
            site=config.upload.site,
            key_file=config.upload.key_file,
            known_hosts=config.upload.known_hosts,
            token_file=config.upload.token_file,
            timeout=config.upload.timeout,
        )
        result = run_uploads(queue, factory, force=True)
        if result.busy:
            raise CliError("another upload run is in progress; try again later", ExitCode.UPLOAD)
        queue.purge(config.upload.retention_days)
        result_doc = {"summary": result.summary(), "ok": result.ok}
        code = ExitCode.OK if result.ok else ExitCode.UPLOAD
    items = queue.queued()
    if args.json:
        document: dict[str, Any] = {
            "queued": [
                {
                    "device_id": i.device_id,
                    "day": i.day.isoformat(),
                    "file": str(i.path),
                    "attempts": i.attempts,
                    "next_attempt": i.next_attempt,
                    "last_error": i.last_error,
                }
                for i in items
            ]
        }
        if result_doc is not None:
            document["run"] = result_doc
        emit_json(document)
    else:
        if result_doc is not None:
            print(f"upload run: {result_doc['summary']}")
        if not items:
            print("nothing queued")
        for i in items:
            extra = f", {i.attempts} failed attempt(s): {i.last_error}" if i.attempts else ""
            print(f"queued  meter {i.device_id}  {i.day}  {i.path}{extra}")
    return int(code)


# -- emtui status --------------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    """``emtui status``: the logger's last status, the queue, last and next upload."""
    from emtui.core.schedule import Schedule
    from emtui.core.uploadqueue import UploadQueue

    config = effective_config(args, meters=False)
    running = read_status(config.state_dir)
    state = UploadQueue(config.state_dir).state
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
    from emtui.core.service import (
        ServiceError,
        ServiceOptions,
        default_executable,
        install,
        unit_text,
    )

    options = ServiceOptions(
        executable=default_executable(),
        config=Path(args.config),
        user=args.user,
        data_dir=Path(args.data_dir),
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
