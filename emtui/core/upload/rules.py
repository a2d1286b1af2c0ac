"""Rules about upload targets shared by ``config check`` and the uploaders (design §8).

Both places must agree: a target that ``config check`` accepts is one the uploader uses, and
the other way round. Kept free of heavy imports (``config check`` stays fast).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import uuid
from pathlib import Path

PLAIN_HTTP_RULE = (
    "plain http:// is accepted only to this machine (localhost, 127.0.0.0/8, ::1), for "
    "testing: anywhere else the bearer token would travel in clear — use https://"
)
"""Why an ``http://`` target to another host is refused (one wording for both places)."""

#: Where a stable machine id is looked for, in order (systemd, then D-Bus's copy).
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
#: A Raspberry Pi's CPU serial, used when the machine has no machine-id.
CPUINFO = Path("/proc/cpuinfo")

_SITE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SITE_MAX = 64


def plain_http_allowed(host: str | None) -> bool:
    """Whether ``http://host`` may be used: only a loopback host (tests, a local relay).

    ``localhost`` by name, or a literal loopback address (``127.0.0.0/8``, ``::1``).
    """
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def machine_id(
    id_files: tuple[Path, ...] = MACHINE_ID_FILES, cpuinfo: Path = CPUINFO
) -> str | None:
    """A stable identifier of this machine, or ``None`` if none can be found.

    ``/etc/machine-id`` (or D-Bus's copy), else a Raspberry Pi's CPU serial from
    ``/proc/cpuinfo``, else the network card's MAC address when it is a real one (Python
    returns a random multicast one when it cannot read it: that would not be stable).
    """
    for path in id_files:
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if text and set(text) != {"0"}:
            return text
    try:
        for line in cpuinfo.read_text(encoding="ascii", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "serial" and value.strip().strip("0"):
                return f"serial:{value.strip()}"
    except OSError:
        pass
    node = uuid.getnode()
    if not node & (1 << 40):  # the multicast bit marks a random stand-in
        return f"mac:{node:012x}"
    return None


def default_site(hostname: str | None = None, ident: str | None = None) -> str:
    """The default ``upload.site``: the host name plus a short stable machine id.

    Many Pis are all called ``raspberrypi``: the suffix (6 hex digits of a SHA-256 of the
    machine id, never the id itself) keeps their folders apart on the server. Without any
    machine id the host name alone is used (``config check`` warns that ``site`` is unset).
    """
    host = hostname if hostname is not None else socket.gethostname()
    host = _SITE_CHARS.sub("-", host.split(".")[0]).strip("-._") or "emtui"
    ident = ident if ident is not None else machine_id()
    if ident is None:
        return host[:_SITE_MAX]
    suffix = hashlib.sha256(f"emtui-site:{ident}".encode()).hexdigest()[:6]
    return f"{host[: _SITE_MAX - 7]}-{suffix}"
