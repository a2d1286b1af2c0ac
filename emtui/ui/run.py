"""Start the app: on a configured bus (``emtui [CONNECTION]``) or on the demo site (``--demo``).

Textual draws on stderr, so nothing else may write there while the app runs: Python logging
goes to ``app.log`` in the state dir and pymodbus is silenced.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from emtui.core.bus.link import ConnectionSettings, LinkError, PortBusy
from emtui.core.config import BusConfig, Config, LoggingConfig, MeterConfig, UploadConfig
from emtui.core.log.livefile import find_live
from emtui.core.observer import LoggerObserver
from emtui.core.session import BusSession, Engine

if TYPE_CHECKING:
    from emtui.ui.connect import Connected

#: The demo's site: the reference site's four pumps.
DEMO_IDS = (1, 2, 3, 4)


def _log_to_file(state_dir: Path) -> None:
    """Send every log record to ``<state_dir>/app.log`` (never to the terminal)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(state_dir / "app.log")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)


def open_engine(config: Config, settings: ConnectionSettings) -> tuple[Engine, str]:
    """The started engine for the app, and a note for its header.

    A bus held by a headless logger gives a read-only :class:`LoggerObserver` of that logger
    (the app never fights it for the port); anything else that holds the port, or a port that
    cannot be opened, raises (the CLI prints one line before any screen opens).
    """
    session = BusSession(config, settings)
    try:
        session.start()
    except PortBusy:
        live = find_live(settings.port)
        if live is None:
            raise
        observer = LoggerObserver(config, settings, live)
        observer.start()
        return observer, observer.note
    return session, ""


def connect_first(
    config: Config, settings: ConnectionSettings | None, ask: bool = True
) -> Connected | None:
    """Open the configured bus, or ask with the connection dialog.

    The dialog (:class:`~emtui.ui.connect.ConnectApp`) is shown when no port is configured
    (``settings`` None) and when the configured port cannot be opened (not found, no
    permission, a gateway that does not answer, settings the adapter refuses); it then says
    why. A port held by a headless logger opens read-only without it; one held by any other
    program raises :class:`PortBusy` as before (the CLI names the holder, exit 3). Returns
    None when the technician leaves the dialog with escape. ``ask`` False (not on a
    terminal): no dialog, the error is raised.
    """
    from emtui.ui.connect import ConnectApp, Connected

    reason = ""
    if settings is not None:
        try:
            engine, note = open_engine(config, settings)
        except PortBusy:
            raise
        except LinkError as exc:
            if not ask:
                raise
            reason = f"Cannot open the configured port: {exc}"
        else:
            return Connected(config, settings, engine, note)
    return ConnectApp(config, open_engine, reason=reason).run()


def run_app(
    config: Config,
    settings: ConnectionSettings | None,
    keymap: Mapping[str, str],
    allow_writes: bool = False,
    ask: bool = True,
) -> int:
    """Run the app on the configured bus until the technician quits (``allow_writes``: the
    session may write; see :meth:`BusSession.write`). With no port (``settings`` None), or
    one that cannot be opened, the connection dialog asks first (see :func:`connect_first`;
    ``ask`` False: never); escape there quits with exit 0."""
    from emtui.ui.app import EmtuiApp

    _log_to_file(config.state_dir)
    connected = connect_first(config, settings, ask)
    if connected is None:
        return 0
    config, engine, note = connected.config, connected.engine, connected.note
    if isinstance(engine, BusSession):
        engine.allow_writes = allow_writes
    app = EmtuiApp(engine, config=config, keymap=keymap, note=note, start_engine=False)
    app.run()
    return 0


def demo_config(port: str, root: Path) -> Config:
    """The demo's configuration: the simulated reference site, files under ``root``."""
    return Config(
        bus=BusConfig(port=port, baud=19200, parity="E", stopbits=1),
        meters=tuple(MeterConfig(id=i, label=f"Pump {i}") for i in DEMO_IDS),
        logging=LoggingConfig(interval=1.0, data_dir=root / "data"),
        upload=UploadConfig(target=None, site="demo"),
        state_dir=root / "state",
        # a scan saved in the demo goes here, never into a real config
        source=root / "config.toml",
    )


def run_demo(keymap: Mapping[str, str], allow_writes: bool = False) -> int:
    """Run the app on the built-in simulated reference site (no hardware, no real data;
    ``allow_writes``: writes, setups and clock sets go to the simulated meters, audited in
    the demo's state dir).

    The simulator runs on its own thread and event loop, paced as 19200 8E1 with a 20 ms
    meter turnaround, behind RTU-over-TCP on the loopback; the data and state dirs are new
    temporary folders and there is no upload target, whatever config exists.
    """
    from emtui.sim.bus import SimulatedBus
    from emtui.ui.app import EmtuiApp

    root = Path(tempfile.mkdtemp(prefix="emtui-demo-"))
    _log_to_file(root / "state")
    with SimulatedBus(ids=DEMO_IDS, running=True) as bus:
        port = bus.start_tcp("127.0.0.1", 0, framing="rtu")
        config = demo_config(port, root)
        session = BusSession(
            config,
            description="demo site (simulated, 19200 8E1)",
        )
        session.allow_writes = allow_writes
        session.start()
        note = f"Demo: 4 simulated pumps; files go to {root} (kept after quitting)."
        app = EmtuiApp(session, config=config, keymap=keymap, note=note, start_engine=False)
        app.run()
    return 0
