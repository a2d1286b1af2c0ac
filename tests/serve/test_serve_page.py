"""``emtui serve`` over HTTP and websockets: the offline page, one browser at a time, an app
that cannot start, Ctrl+C (a real server subprocess on the demo site; no browser)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import aiohttp
from served import Served, alive, free_port, served, wait_until

from emtui.core.bus.link import ConnectionSettings
from emtui.core.log.runstate import ConnectionLock

#: Any absolute or scheme-relative URL in a page, script or style sheet: its host.
URL_HOST = re.compile(r"""(?:https?:|wss?:)?//([A-Za-z0-9.\-\[\]:]+)""")


async def _fetch(session: aiohttp.ClientSession, url: str, **kw: object) -> tuple[int, str]:
    async with session.get(url, **kw) as response:  # type: ignore[arg-type]
        return response.status, await response.text()


async def _read_until(ws: aiohttp.ClientWebSocketResponse, text: bytes, timeout: float) -> bytes:
    """What the app sent until ``text`` appeared (or the socket closed, or the timeout)."""
    got = b""
    deadline = time.monotonic() + timeout
    while text not in got and time.monotonic() < deadline:
        try:
            message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if message.type == aiohttp.WSMsgType.BINARY:
            got += message.data
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    return got


def _ws_url(server: Served) -> str:
    return f"ws://127.0.0.1:{server.port}/ws?width=120&height=30"


async def test_page_and_its_statics_reference_no_other_host() -> None:
    """The page, and every script and style sheet it loads (outside CSS comments), name no
    host but the server (upstream's page asks Google Fonts for Roboto Mono); each loads; the
    websocket URL follows the Host header the browser used (an SSH forward's local port)."""
    with served("--demo") as server:
        own = f"127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            status, page = await _fetch(session, server.url)
            assert status == 200
            assert f'data-session-websocket-url="ws://{own}/ws"' in page
            assert "googleapis" not in page and "Roboto Mono" not in page.split("-->")[1]
            assets = re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", page)
            assert sorted(assets) == ["/static/css/xterm.css", "/static/js/textual.js"]
            hosts = set(URL_HOST.findall(page))
            for asset in assets:
                status, body = await _fetch(session, f"http://{own}{asset}")
                assert status == 200, asset
                if asset.endswith(".css"):  # xterm.css's licence comment names two sites
                    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
                hosts |= set(URL_HOST.findall(body))
            assert hosts <= {own}, hosts
            _, forwarded = await _fetch(session, server.url, headers={"Host": "localhost:9000"})
            assert 'data-session-websocket-url="ws://localhost:9000/ws"' in forwarded


async def test_one_browser_at_a_time() -> None:
    """While one browser runs the app, a second websocket gets the "open in another browser"
    line (close code 1013) and no second app is started; when the first browser leaves, its
    app ends."""
    with served("--demo") as server:
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(_ws_url(server))
            assert b"Pump 4" in await _read_until(first, b"Pump 4", 20)
            apps = server.app_pids()
            assert len(apps) == 1
            second = await session.ws_connect(_ws_url(server))
            refused = await _read_until(second, b"reload this page", 10)
            assert b"The app is open in another browser (127.0.0.1, since " in refused
            assert b"close it there first, then reload this page" in refused
            await second.receive(timeout=5)
            assert second.closed and second.close_code == 1013
            assert server.app_pids() == apps  # no second app was started
            await first.close()
            assert wait_until(lambda: not alive(apps[0]), 10), "the app outlived its browser"
        code, out, _ = server.stop()
        assert code == 0 and "browser from 127.0.0.1 disconnected" in out


async def test_a_reload_gets_the_app_again() -> None:
    """A browser that closes its socket and opens a new one at once (a reload) gets a new
    app, not the "open in another browser" line: the server waits for the old app to quit."""
    with served("--demo") as server:
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(_ws_url(server))
            assert b"Pump 4" in await _read_until(first, b"Pump 4", 20)
            [old] = server.app_pids()
            await first.close()
            again = await session.ws_connect(_ws_url(server))
            shown = await _read_until(again, b"Pump 4", 20)
            assert b"another browser" not in shown and b"Pump 4" in shown
            assert not alive(old) and len(server.app_pids()) == 1
            await again.close()


async def test_ctrl_c_stops_the_app_and_the_server() -> None:
    """SIGINT to the server with a browser connected ends the app (and the demo's simulator,
    a thread of it) and then the server, exit 0, within the quit timeout."""
    with served("--demo") as server:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(_ws_url(server))
            assert b"Pump 1" in await _read_until(ws, b"Pump 1", 20)
            [app] = server.app_pids()
            started = time.monotonic()
            code, out, _ = server.stop()
            assert time.monotonic() - started < 8
            assert code == 0 and "emtui serve: stopped" in out
            assert not alive(app)
            await ws.close()


async def test_a_killed_server_leaves_no_app_on_the_bus() -> None:
    """``kill -9`` of the server (no clean-up possible) still ends its app within 5 s: the
    kernel signals it (PR_SET_PDEATHSIG), so no orphan keeps the bus locked."""
    with served("--demo") as server:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(_ws_url(server))
            assert b"Pump 1" in await _read_until(ws, b"Pump 1", 20)
            [app] = server.app_pids()
            os.kill(server.process.pid, signal.SIGKILL)
            assert wait_until(lambda: not alive(app), 5), "the app outlived its server"
            await ws.close()


async def test_an_app_that_cannot_take_the_bus_says_so_in_the_browser(tmp_path: Path) -> None:
    """When another process holds the bus (here: this test holds its connection lock) the
    spawned app exits 3 "in use by PID"; the browser's terminal shows that line and the
    socket closes."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    port = f"socket://127.0.0.1:{free_port()}"
    lock = ConnectionLock(ConnectionSettings(port=port))
    lock.acquire()
    try:
        flags = ("--config", str(config), "--state-dir", str(tmp_path / "state"))
        with served(*flags, "--port", port, "--ids", "1") as server:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(_ws_url(server))
                shown = await _read_until(ws, b"reload this page", 20)
                assert b"The app stopped (exit code 3):" in shown
                assert f"in use by PID {os.getpid()}".encode() in shown
                await ws.receive(timeout=5)
                assert ws.closed
    finally:
        lock.release()
