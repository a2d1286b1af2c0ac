"""``emtui serve`` answers only at its own address: Host names (DNS rebinding) and websocket
Origins (cross-site websocket hijacking), as rules and on a real server subprocess."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from served import Served, served

from emtui.serve.hosts import HostCheck, origin_address, split_host

#: The headers of a websocket handshake, for reading a refusal's body (ws_connect drops it).
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def _check(listen: str = "127.0.0.1", public: bool = False) -> HostCheck:
    return HostCheck.for_listen(listen, 8000, public, "127.0.0.1", ("pi", "pi.site.lan"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("LocalHost", ("localhost", None)),
        ("localhost.:9000", ("localhost", 9000)),
        ("[::1]:8000", ("::1", 8000)),
        ("[0:0::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("[::1", None),
        ("[::1]x", None),
        ("evil.example:http", None),
        ("evil.example:0", None),
        (":8000", None),
        ("", None),
    ],
)
def test_host_header_splits_into_name_and_port(
    text: str, expected: tuple[str, int | None] | None
) -> None:
    """A Host header gives its name (lower case, IPv6 without brackets and shortened, no final
    dot) and port (None when not given); a malformed one gives None."""
    assert split_host(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("http://127.0.0.1", ("127.0.0.1", 80)),
        ("https://Example.COM", ("example.com", 443)),
        ("http://[::1]:8000", ("::1", 8000)),
        ("null", None),
        ("file://", None),
        ("http://127.0.0.1:99999", None),
    ],
)
def test_origin_header_gives_host_and_port(text: str, expected: tuple[str, int] | None) -> None:
    """An Origin gives its host and port, the scheme's default port when it names none;
    ``null`` and other non-URLs give None."""
    assert origin_address(text) == expected


def test_only_own_host_names_are_answered() -> None:
    """The loopback names, the listen host and the machine's names are answered on any port
    (an SSH forward's); another name (a DNS-rebinding one) or a malformed Host is refused with
    the URL to open; an IP address other than those only with --public."""
    check = _check("127.0.0.2")
    for host in ("127.0.0.1:8000", "127.0.0.1:9000", "localhost:9000", "[::1]:8000", "::1",
                 "127.0.0.2:8000", "PI:8000", "pi.site.lan", "pi.site.lan.:8000"):  # fmt: skip
        assert check.wrong_host(host) is None, host
    for host in ("evil.example:8000", "127.0.0.1.evil.example:8000", "192.168.1.20:8000",
                 "[fe80::1]:8000", "pi.evil:8000", "[::1", None):  # fmt: skip
        why = check.wrong_host(host)
        assert why is not None, host
        assert why.startswith("emtui serve answers only at its own address; open http://")
    assert check.wrong_host("evil.example:9000") == (
        "emtui serve answers only at its own address; open http://127.0.0.1:9000/"
    )
    assert check.wrong_host("evil.example") == (
        "emtui serve answers only at its own address; open http://127.0.0.1:8000/"
    )
    public = _check("0.0.0.0", public=True)
    for host in ("192.168.1.20:8000", "[fe80::1]:8000", "10.0.0.1", "pi:8000", "localhost"):
        assert public.wrong_host(host) is None, host
    assert public.wrong_host("evil.example:8000") is not None


def test_websocket_origin_must_match_the_host() -> None:
    """No Origin (not a browser) passes; an Origin with the Host's host and port passes
    whatever its scheme, default ports counted; another host, another port, ``null`` or a
    garbled Origin is refused, naming the Origin and the URL to open."""
    check = _check()
    for origin, host, scheme in [
        (None, "127.0.0.1:8000", "http"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "http"),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "http"),
        ("http://LOCALHOST:9000", "localhost:9000", "http"),
        ("http://127.0.0.1", "127.0.0.1:80", "http"),
        ("http://127.0.0.1:80", "127.0.0.1", "http"),
        ("https://127.0.0.1", "127.0.0.1", "https"),
        ("http://[::1]:8000", "[::1]:8000", "http"),
    ]:
        assert check.foreign_origin(origin, host, scheme) is None, (origin, host)
    for origin, host, scheme in [
        ("http://evil.example", "127.0.0.1:8000", "http"),
        ("http://127.0.0.1:9000", "127.0.0.1:8000", "http"),
        ("http://localhost:8000", "127.0.0.1:8000", "http"),
        ("https://127.0.0.1", "127.0.0.1", "http"),
        ("null", "127.0.0.1:8000", "http"),
        ("", "127.0.0.1:8000", "http"),
    ]:
        why = check.foreign_origin(origin, host, scheme)
        assert why is not None, (origin, host)
        assert "refuses a websocket opened by a page of another site" in why
        assert "open http://127.0.0.1:8000/ itself" in why
    why = check.foreign_origin("http://evil.example", "127.0.0.1:9000", "http")
    assert why == (
        "emtui serve refuses a websocket opened by a page of another site (Origin "
        "http://evil.example, this server is 127.0.0.1:9000); open http://127.0.0.1:9000/ itself"
    )


async def _upgrade(server: Served, headers: dict[str, str]) -> tuple[int, str]:
    """Status and body of a websocket handshake with ``headers`` to ``server``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}/ws", headers={**UPGRADE, **headers}) as r,
    ):
        return r.status, await r.text()


async def test_a_foreign_origin_gets_no_app_and_its_own_gets_one() -> None:
    """A websocket from a page of another site is refused (403, saying why) and starts no
    app, while the browser slot stays free: the same-origin websocket right after it gets the
    app."""
    with served("--demo") as server:
        own = f"127.0.0.1:{server.port}"
        status, text = await _upgrade(server, {"Origin": "http://evil.example"})
        assert status == 403
        assert "refuses a websocket opened by a page of another site" in text
        assert f"open http://{own}/ itself" in text
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await session.ws_connect(
                    f"ws://{own}/ws", origin=f"http://127.0.0.1:{server.port + 1}"
                )
            assert caught.value.status == 403
            assert server.app_pids() == []
            ws = await session.ws_connect(
                f"ws://{own}/ws?width=120&height=30", origin=f"http://{own}"
            )
            got = b""
            while b"Pump 4" not in got:
                message = await ws.receive(timeout=20)
                assert message.type == aiohttp.WSMsgType.BINARY, message
                got += message.data
            assert len(server.app_pids()) == 1
            await ws.close()
        _, _, err = server.stop()
        assert "refused /ws from 127.0.0.1" in err


async def test_a_rebinding_host_name_is_refused_and_a_forwarded_port_served() -> None:
    """``Host: evil.example:PORT`` (a DNS-rebinding name) gets 403 with the URL to open, for
    the page and for the websocket (no app); ``Host: 127.0.0.1:9000`` (another local port of
    an SSH forward) and the machine's hostname get the page."""
    with served("--demo") as server:
        evil = {"Host": f"evil.example:{server.port}"}
        expected = (
            f"emtui serve answers only at its own address; open http://127.0.0.1:{server.port}/"
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url, headers=evil) as response:
                assert response.status == 403
                assert (await response.text()).strip() == expected
            status, text = await _upgrade(server, evil)
            assert (status, text.strip()) == (403, expected)
            status, _ = await _upgrade(
                server, {**evil, "Origin": f"http://evil.example:{server.port}"}
            )
            assert status == 403 and server.app_pids() == []
            async with session.get(server.url, headers={"Host": "127.0.0.1:9000"}) as response:
                assert response.status == 200
                page = await response.text()
                assert 'data-session-websocket-url="ws://127.0.0.1:9000/ws"' in page
            hostname = {"Host": f"{socket.gethostname()}:{server.port}"}
            async with session.get(server.url, headers=hostname) as response:
                assert response.status == 200
