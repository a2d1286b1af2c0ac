"""Which requests ``emtui serve`` answers: its own Host names, and websockets from its own page.

The served app has no password, so the loopback (and SSH forwarding to it) is the only fence.
Two browser tricks would climb it from any web page the technician has open:

- cross-site websocket hijacking: a page of another site opens
  ``new WebSocket("ws://127.0.0.1:8000/ws")``; browsers send such a socket the page's
  ``Origin`` and let it through, so the server must compare the Origin with its own address;
- DNS rebinding: a name of the attacker's that resolves to 127.0.0.1 makes the browser take
  this server for that site (same origin, readable page and socket); the name shows in the
  ``Host`` header, so only names this server owns are answered.

The Host's port is not checked: an SSH forward may use another local port
(``ssh -L 9000:127.0.0.1:8000``), which the page's own URLs then carry.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The port a URL of this scheme means when it names none.
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

#: Names that are this machine wherever the browser runs (with an SSH forward: the laptop,
#: whose port leads here).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

WRONG_HOST_TEXT = "emtui serve answers only at its own address; open {url}"
FOREIGN_ORIGIN_TEXT = (
    "emtui serve refuses a websocket opened by a page of another site (Origin {origin}, "
    "this server is {host}); open {url} itself"
)


def normal_name(name: str) -> str:
    """``name`` lower case, without brackets or a final dot, an IP address in its short form."""
    name = name.strip().lower().removeprefix("[").removesuffix("]").removesuffix(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def is_ip(name: str) -> bool:
    """``name`` (normalised) is an IP address, not a name DNS answers for."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_host(text: str) -> tuple[str, int | None] | None:
    """A Host header's normalised name and port (None: none given); None if malformed.

    ``[::1]:8000`` and ``::1`` (no brackets: no port) are IPv6; ``name:8000`` or ``name``.
    """
    text = text.strip()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:  # a bare IPv6 address
        name, port_text = text, None
    else:
        name, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
    if not name:
        return None
    if port_text is None:
        return normal_name(name), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return normal_name(name), int(port_text)


def origin_address(origin: str) -> tuple[str, int] | None:
    """An Origin header's normalised host and port (its scheme's default if none given);
    None for ``null`` (a sandboxed page, a file) or anything else that is no ``scheme://host``."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in DEFAULT_PORTS:
        return None
    return normal_name(parts.hostname), port or DEFAULT_PORTS[parts.scheme]


@dataclass(frozen=True)
class HostCheck:
    """The Host names this server answers to, and how it tells a browser where it really is.

    Attributes:
        names: the normalised names allowed in the Host header.
        any_ip: any IP address is allowed too (``--public``: the server is reached at one of
            the machine's addresses, and an address, unlike a name, cannot be rebound).
        url_host: the host of the URL to open, as the start banner prints it.
        port: the listen port (the URL's port when the Host header names none).
    """

    names: frozenset[str]
    any_ip: bool
    url_host: str
    port: int

    @classmethod
    def for_listen(
        cls, listen_host: str, port: int, public: bool, url_host: str, machine: Iterable[str]
    ) -> HostCheck:
        """The check for a server on ``listen_host``: the loopback names, that host and the
        ``machine``'s own names (its hostname and FQDN)."""
        names = {normal_name(name) for name in (*LOOPBACK_NAMES, listen_host, *machine) if name}
        return cls(frozenset(names), public, url_host, port)

    def open_url(self, host: str | None) -> str:
        """The page's URL at this server's own address, on the port the browser used."""
        split = split_host(host or "")
        port = split[1] if split is not None and split[1] is not None else self.port
        return f"http://{self.url_host}:{port}/"

    def wrong_host(self, host: str | None) -> str | None:
        """Why a request with this Host header is refused (a name this server does not own,
        e.g. a DNS-rebinding one), or None to answer it."""
        split = split_host(host or "")
        if split is not None and (split[0] in self.names or (self.any_ip and is_ip(split[0]))):
            return None
        return WRONG_HOST_TEXT.format(url=self.open_url(host))

    def foreign_origin(self, origin: str | None, host: str | None, scheme: str) -> str | None:
        """Why a websocket with this Origin header is refused (a page of another site), or
        None: no Origin (not a browser), or the same host and port as the Host header (the
        scheme is not compared; the default ports of ``scheme`` and the Origin's are)."""
        if origin is None:
            return None
        split = split_host(host or "")
        if split is not None:
            name, port = split
            own = (name, port or DEFAULT_PORTS.get(scheme, 80))
            if origin_address(origin) == own:
                return None
        return FOREIGN_ORIGIN_TEXT.format(
            origin=origin.strip() or '""', host=host, url=self.open_url(host)
        )


def machine_names() -> tuple[str, ...]:
    """This machine's hostname and its fully qualified name."""
    hostname = socket.gethostname()
    return hostname, socket.getfqdn(hostname)
