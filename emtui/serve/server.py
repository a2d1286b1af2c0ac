"""textual-serve's :class:`~textual_serve.server.Server`, narrowed to what a bus needs.

textual-serve spawns the command once per browser websocket. For emtui that would be a second
app fighting the first for the serial port, so this server runs ONE session at a time: while
a browser holds it, the websocket of any other browser gets a line saying so in its terminal
and no app (the bus lock would stop a second app anyway, but only with an exit the browser
never shows). The page itself is always served: on a reload the old page's socket closes
only after the new page has arrived, so a new socket waits a moment for the session it
replaces to end before it is refused.

What changes against upstream, and why:

- the page is our own template (``templates/app_index.html``): no web font, no script or
  style from another host, a system monospace font, and the "session ended" notice as a bar
  that leaves the terminal's last words readable;
- the page's websocket URL comes from the request's Host header, not from the listen
  address, so it works through ``ssh -L 9000:127.0.0.1:8000`` and on ``0.0.0.0``;
- the app runs from an argv (no shell) in its own session (process group): Ctrl+C on the
  server does not hit it mid-frame, and stopping kills the whole group if quitting hangs; on
  Linux the kernel kills it if the server dies (``kill -9``, a crash), which would otherwise
  leave it running and holding the bus (Textual's web driver ignores the end of its stdin);
- what the app prints on stderr is kept, and when the app exits with an error (a bus held
  by another program: exit 3 "in use by PID …") it is written into the browser's terminal;
- only this server's own Host names are answered (no DNS rebinding), and a websocket opened
  by a page of another site (its Origin) is refused before any app starts (see
  :mod:`emtui.serve.hosts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import textual_serve
from aiohttp import WSCloseCode, web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from emtui.serve.hosts import HostCheck

log = logging.getLogger("emtui.serve")

#: Our page template (package data).
TEMPLATES = Path(__file__).parent / "templates"
#: textual-serve's own statics (textual.js with xterm.js, xterm.css): nothing in them fetches
#: from the web.
STATICS = Path(textual_serve.__file__).parent / "static"
#: How long a quitting app may take before its process group is killed.
QUIT_TIMEOUT_S = 5.0
#: How long a new browser waits for a session that may be closing (a reload) to end.
RELOAD_GRACE_S = 1.0
#: The tail of the app's stderr kept to show in the browser.
STDERR_KEEP = 8192

BUSY_TEXT = (
    "The app is open in another browser ({peer}, since {since}). "
    "One browser at a time: close it there first, then reload this page."
)

#: Linux prctl(2) option: the signal the child gets when its parent dies.
PR_SET_PDEATHSIG = 1


def _die_with_server() -> None:  # pragma: no cover - runs in the child, before exec
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


if sys.platform == "linux":
    # looked up here, not in the forked child (which should do as little as possible)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    DIE_WITH_SERVER: Callable[[], None] | None = _die_with_server
else:
    DIE_WITH_SERVER = None


def terminal_text(lines: Sequence[str]) -> bytes:
    """``lines`` as bytes for the browser's terminal: cleared screen, CR LF line ends.

    More than 10 bytes, so textual.js reveals the terminal (it does on the first such write).
    """
    body = "\r\n".join(line.replace("\n", "\r\n") for line in lines)
    return ("\x1b[0m\x1b[2J\x1b[H" + body + "\r\n").encode()


class AppProcess(AppService):
    """One spawned app: textual-serve's service, run from an argv in its own process group,
    killed when quitting hangs, its stderr shown in the browser when it fails."""

    def __init__(self, argv: Sequence[str], **kwargs: Any) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.argv = tuple(argv)
        self.stderr = bytearray()
        self.stopping = False
        self._stderr_task: asyncio.Task[None] | None = None

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
        """Start the app (no shell, new session); stderr is read here, not by upstream."""
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            start_new_session=True,
            preexec_fn=DIE_WITH_SERVER,
        )
        assert process.stdin is not None and process.stderr is not None
        self._process = process
        self._stdin = process.stdin
        self._stderr_task = asyncio.create_task(self._keep_stderr(process.stderr))
        # upstream's run() reads process.stderr and copies it to our stdout twice: hand it
        # a stream at its end, this class keeps the real one
        done = asyncio.StreamReader()
        done.feed_eof()
        process.stderr = done
        return process

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            self.stderr += chunk
            del self.stderr[:-STDERR_KEEP]

    async def run(self) -> None:
        """Relay the app until it exits; an app that failed leaves its error on the page."""
        await super().run()
        process = self._process
        assert process is not None
        code = await process.wait()
        if self._stderr_task is not None:
            await self._stderr_task
        text = self.stderr.decode("utf-8", "replace").strip()
        if code != 0 and not self.stopping:
            log.warning("the app exited with code %s: %s", code, text or "no message")
            lines = [f"The app stopped (exit code {code}):", "", text or "(no message)", ""]
            lines.append("Fix that, then reload this page.")
            with contextlib.suppress(Exception):  # the browser may be gone already
                await self.remote_write_bytes(terminal_text(lines))
        with contextlib.suppress(Exception):
            await self.remote_close()

    async def stop(self) -> None:
        """Ask the app to quit; kill its process group if it has not within the timeout."""
        self.stopping = True
        try:
            await asyncio.wait_for(super().stop(), QUIT_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._task = None
        self.kill()
        if self._process is not None:
            await self._process.wait()

    def kill(self) -> None:
        """SIGKILL the app's process group if it still runs (idempotent)."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Session:
    """The browser that holds the app."""

    peer: str
    since: float
    websocket: web.WebSocketResponse
    app: AppProcess | None = None
    #: the browser left (or the app ended): the app is being stopped
    ending: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class EmtuiServer(Server):
    """Serve the app at ``argv`` to one browser at a time (see the module docstring)."""

    def __init__(self, argv: Sequence[str], title: str, hosts: HostCheck) -> None:
        super().__init__(
            " ".join(argv),
            title=title,
            statics_path=STATICS,
            templates_path=TEMPLATES,
        )
        self.argv = tuple(argv)
        self.hosts = hosts
        self.session: Session | None = None

    def initialize_logging(self) -> None:
        """The CLI set logging up (``emtui: …`` lines); upstream's own "failed to start"
        is said better by :class:`AppProcess`."""
        logging.getLogger("textual-serve").setLevel(logging.CRITICAL)

    def busy_text(self) -> str:
        """What a second browser is told."""
        assert self.session is not None
        since = time.strftime("%H:%M:%S", time.localtime(self.session.since))
        return BUSY_TEXT.format(peer=self.session.peer, since=since)

    async def on_startup(self, app: web.Application) -> None:
        """The CLI prints the banner (upstream prints its logo here)."""

    async def on_shutdown(self, app: web.Application) -> None:
        """Stop the app of the open session (quit, then kill) and close its websocket."""
        session = self.session
        if session is None:
            return
        if session.app is not None:
            await session.app.stop()
        await session.websocket.close(code=WSCloseCode.GOING_AWAY, message=b"server stopped")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.done.wait(), QUIT_TIMEOUT_S)

    def check(self, request: web.Request, websocket: bool) -> None:
        """Raise a 403 for a Host name this server does not own or (``websocket``) an Origin
        of another site, with a line saying why and where to go instead."""
        why = self.hosts.wrong_host(request.host)
        if why is None and websocket:
            origin = request.headers.get("Origin")
            why = self.hosts.foreign_origin(origin, request.host, request.scheme)
        if why is not None:
            log.warning("refused %s from %s: %s", request.path, request.remote or "?", why)
            raise web.HTTPForbidden(text=why + "\n")

    async def handle_index(self, request: web.Request) -> web.Response:
        """The page, its URLs taken from the request (so an SSH forward's port works)."""
        self.check(request, websocket=False)
        scheme = "wss" if request.scheme == "https" else "ws"
        context = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{scheme}://{request.host}/ws",
            "static_url": "/static/",
            "title": self.title,
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_download(self, request: web.Request) -> web.StreamResponse:
        """A file the app offers, to this server's own page only."""
        self.check(request, websocket=False)
        return await super().handle_download(request)

    async def _free(self) -> bool:
        """Whether no browser holds the app: at once, within :data:`RELOAD_GRACE_S` (the
        page reloaded), or once the app of a browser that left has quit."""
        session = self.session
        if session is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.done.wait(), RELOAD_GRACE_S)
        if not session.done.is_set() and (session.ending or session.websocket.closed):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.done.wait(), QUIT_TIMEOUT_S + 1)
        # another new browser may have taken it meanwhile: the caller claims it at once
        return self.session is None

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Run the app for this browser, or tell it that another browser has it."""
        self.check(request, websocket=True)  # before prepare(): no app, no session taken
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        peer = request.remote or "?"
        if not await self._free():
            busy = self.busy_text()
            log.warning("refused a second browser (%s): %s", peer, busy)
            with contextlib.suppress(Exception):
                await websocket.send_bytes(terminal_text([busy]))
                await websocket.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"in use")
            return websocket
        session = self.session = Session(peer=peer, since=time.time(), websocket=websocket)
        print(f"emtui serve: browser connected from {peer}", flush=True)
        try:
            session.app = AppProcess(
                self.argv,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
            )
            await session.app.start(
                to_int(request.query.get("width", "80"), 80),
                to_int(request.query.get("height", "24"), 24),
            )
            await self._process_messages(websocket, session.app)
        except asyncio.CancelledError:
            pass
        except Exception as error:  # a broken socket must not take the server down
            log.warning("browser session failed: %s", error)
        finally:
            session.ending = True
            if session.app is not None:
                await session.app.stop()
            with contextlib.suppress(Exception):
                await websocket.close()
            self.session = None
            session.done.set()
            print(f"emtui serve: browser from {peer} disconnected", flush=True)
        return websocket

    async def run(self, sock: socket.socket, stop: asyncio.Event) -> None:
        """Serve on the bound ``sock`` until ``stop`` is set, then shut down cleanly."""
        self.initialize_logging()
        runner = web.AppRunner(
            await self._make_app(), handle_signals=False, shutdown_timeout=QUIT_TIMEOUT_S
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            await stop.wait()
        finally:
            await runner.cleanup()
            if self.session is not None and self.session.app is not None:
                self.session.app.kill()
