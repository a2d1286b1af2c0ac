"""Sending one finished day file to the central server (design §8).

Three targets, one contract: :meth:`Uploader.upload` returns only once the file is confirmed
at ``<base>/<site>/<remote_rel>`` (``remote_rel`` is ``meter_<id>/<file name>``) with the
size and SHA-256 that were recorded when the file was queued, and raises :class:`UploadError`
otherwise. Every target writes under a temporary name and moves it into place without ever
replacing a file already there: sending the same file twice is harmless (the copy there is
checked and counts as confirmed), and a *different* file of the same name is never
overwritten - the upload is refused with :class:`UploadCollision`, both copies are kept (the
server's at its name, ours queued locally) and the message says so.

- ``sftp://user@host[:port]/base`` - asyncssh; key authentication only, the host key must be
  in a known_hosts file (never accepted blindly). An existing file is stat'ed and read back
  first; the temporary file is checked by stat and reading back, then hard-linked to the
  final name (``hardlink@openssh.com``, which fails if the name exists, so a file created
  meanwhile by someone else is not replaced either; it is then read and compared). Servers
  without that extension get a plain SFTP rename, which never overwrites.
  ``posix-rename@openssh.com`` is not used: it replaces.
- ``https://host[:port]/base`` - httpx; ``PUT`` with a bearer token read from a file, an
  ``X-Content-SHA256`` header and ``If-None-Match: *``. A 2xx alone confirms nothing: the
  server must echo the same hash in ``X-Content-SHA256``, or a following ``HEAD`` (that
  header) or ``GET`` (the body's hash) must show it; otherwise :class:`UploadUnconfirmed`
  ("sent, unconfirmed": kept queued and retried, never deleted). 409/412 with the same hash
  means the file is already there; with another one it is a collision. TLS is verified
  (system CAs, or a given CA file). Plain ``http://`` only to a loopback host (testing),
  by the same rule ``config check`` applies (:func:`~emtui.core.upload.rules.plain_http_allowed`).
- ``file:///path`` - a mounted share or local folder: copy, fsync, read back, hard-link into
  place (fails if the name exists), fsync the folder. On a share without hard links the
  final name is checked just before a rename: only a second writer into this same site's
  folder in that instant could slip in between.

Connection-level failures (unreachable, refused, TLS or host key rejected, authentication
failed) raise :class:`UploadConnectionError`, which tells the run to stop early and back off
everything; other failures concern one file. Each error class names its ``problem`` (what the
queue records and ``emtui upload`` shows). Tokens and key contents are never logged or put
into error messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import hashlib
import logging
import os
import posixpath
import re
import secrets
import ssl
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    # asyncssh (with cryptography) and httpx cost ~20 MB of RSS: a logger imports only the
    # one its upload target needs, when it first uploads.
    import asyncssh

    from emtui.core.config import UploadConfig

from emtui.core.durable import fsync_dir, write_new_file
from emtui.core.upload.rules import PLAIN_HTTP_RULE, plain_http_allowed

log = logging.getLogger(__name__)

T = TypeVar("T")

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UploadError(Exception):
    """An upload failed; the file is not confirmed at the destination (message says why)."""

    problem = "failed"
    """What the queue records as the reason the file is still queued."""


class UploadConnectionError(UploadError):
    """The destination cannot be used at all (down, refused, rejected credentials or keys).

    Every other file would fail the same way, so the run stops and backs everything off.
    """

    problem = "unreachable"


class UploadCollision(UploadError):
    """A different file of the same name is already at the destination: it was not replaced.

    Both copies are kept; the local one stays queued until a person resolves it (moves the
    server's copy away, or drops the file from the queue with ``emtui upload --drop``).
    """

    problem = "collision"


class UploadUnconfirmed(UploadError):
    """The file was sent but the server did not prove it holds it ("sent, unconfirmed").

    It stays queued and is retried; it is never deleted locally on the strength of this.
    """

    problem = "unconfirmed"


class LocalFileChanged(UploadError):
    """The local file is no longer what was queued (edited, or gone): it is not sent.

    ``problem`` is ``"changed"`` or ``"missing"``; ``emtui upload --requeue``/``--drop`` act.
    """

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


class Uploader(Protocol):
    """Sends files to one destination; reuse it for a whole run, then :meth:`close` it."""

    def upload(self, local: Path, remote_rel: str, sha256: str, size: int) -> None:
        """Send ``local`` to ``<base>/<site>/<remote_rel>`` and verify it there.

        Raises:
            UploadError: the file is not confirmed (``UploadConnectionError`` when the
                destination itself cannot be reached or refuses us).
        """
        ...

    def close(self) -> None:
        """Release connections; the uploader is not used afterwards."""
        ...


def make_uploader(
    target: str,
    *,
    site: str,
    key_file: Path | str | None = None,
    known_hosts: Path | str | None = None,
    token_file: Path | str | None = None,
    ca_file: Path | str | None = None,
    timeout: float = 30.0,
) -> Uploader:
    """Build the uploader for a target URL (nothing is contacted yet).

    Args:
        target: ``sftp://user@host[:port]/base``, ``https://host[:port]/base`` or
            ``file:///path`` (``http://`` to a loopback host only, for testing).
        site: This Pi's folder on the server (by default the host name plus a short machine
            id, :func:`~emtui.core.upload.rules.default_site`), so several Pis never collide.
        key_file: SSH private key for sftp (default: the user's keys in ``~/.ssh``).
        known_hosts: known_hosts file for sftp (default ``~/.ssh/known_hosts``).
        token_file: File holding the bearer token for https (required there).
        ca_file: CA bundle to verify the https server with instead of the system CAs.
        timeout: Seconds allowed for connecting and for each file.

    Raises:
        ValueError: the target or site is not usable (wrong scheme, missing parts).
        UploadError: the token file cannot be read.
    """
    _check_part(site, "site")
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise ValueError(f"upload target {target!r} must not have a query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// target {target!r} must be a local path (file:///path)")
        base = unquote(parts.path)
        if not base.startswith("/"):
            raise ValueError(f"file:// target {target!r} needs an absolute path")
        return FileUploader(Path(base), site=site)
    if scheme == "http" and not plain_http_allowed(parts.hostname):
        raise ValueError(f"upload target {target!r}: {PLAIN_HTTP_RULE}")
    if scheme in ("https", "http"):
        if not parts.hostname:
            raise ValueError(f"{scheme}:// target {target!r} has no host")
        if parts.username or parts.password:
            raise ValueError(f"{scheme}:// target must not carry credentials: use token_file")
        if token_file is None:
            raise ValueError(f"{scheme}:// upload needs a token file (bearer token)")
        return HttpsUploader(
            target.rstrip("/"),
            site=site,
            token_file=Path(token_file),
            ca_file=Path(ca_file) if ca_file is not None else None,
            timeout=timeout,
        )
    if scheme == "sftp":
        if not parts.hostname:
            raise ValueError(f"sftp:// target {target!r} has no host")
        if parts.password:
            raise ValueError("sftp:// target must not carry a password: keys only")
        try:
            port = parts.port or 22
        except ValueError:
            raise ValueError(f"sftp:// target {target!r} has a bad port") from None
        return SftpUploader(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            base=unquote(parts.path).rstrip("/") or ".",
            site=site,
            key_file=Path(key_file) if key_file is not None else None,
            known_hosts=Path(known_hosts) if known_hosts is not None else None,
            timeout=timeout,
        )
    raise ValueError(f"unsupported upload target {target!r}: use sftp://, https:// or file://")


def describe_digest(size: int, sha256: str) -> str:
    """``1234 bytes, sha256 0123456789ab…`` for messages (a short hash is enough to compare)."""
    return f"{size} bytes, sha256 {sha256[:12]}…"


# --------------------------------------------------------------------------- shared checks


def _check_part(value: str, what: str) -> None:
    if not _SAFE_PART.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"bad {what} {value!r}: use letters, digits and ._- only")


def _split_remote(remote_rel: str) -> tuple[str, str]:
    """Check ``meter_<id>/<file>`` and return its folder and file name."""
    folder, _, name = remote_rel.partition("/")
    if "/" in name:
        raise ValueError(f"bad remote path {remote_rel!r}: expected meter_<id>/<file>")
    _check_part(folder, "remote folder")
    _check_part(name, "remote file name")
    return folder, name


def _read_verified(local: Path, sha256: str, size: int) -> bytes:
    """The local file's bytes, checked against what was recorded when it was queued."""
    try:
        data = local.read_bytes()
    except FileNotFoundError:
        raise LocalFileChanged(
            f"{local} is gone since it was queued; not sending anything "
            "(emtui upload --drop FILE removes it from the queue)",
            "missing",
        ) from None
    except OSError as exc:
        raise UploadError(f"cannot read {local}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != size or digest != sha256.lower():
        raise LocalFileChanged(
            f"{local} changed since it was queued (was {describe_digest(size, sha256)}, now "
            f"{describe_digest(len(data), digest)}); not sending it "
            "(emtui upload --requeue FILE sends the new content, --drop FILE drops it)",
            "changed",
        )
    return data


def _collision(where: str, remote_sha: str | None, sha256: str) -> UploadCollision:
    theirs = f"sha256 {remote_sha[:12]}…" if remote_sha else "content not shown"
    return UploadCollision(
        f"{where} already holds a different file ({theirs}, ours sha256 {sha256[:12]}…): "
        "not replaced; both are kept and the local file stays queued"
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# --------------------------------------------------------------------------- file://


class FileUploader:
    """Copies files into a folder tree (a mounted share, or a local folder).

    The base folder must exist: if a network share is not mounted, the upload fails rather
    than filling the SD card under the empty mount point.
    """

    def __init__(self, base: Path, *, site: str) -> None:
        self._base = base
        self._site = site

    def upload(self, local: Path, remote_rel: str, sha256: str, size: int) -> None:
        """Copy to a temporary name, fsync, verify, link into place (never replacing)."""
        folder_name, name = _split_remote(remote_rel)
        if not self._base.is_dir():
            raise UploadConnectionError(f"target folder {self._base} does not exist (mounted?)")
        data = _read_verified(local, sha256, size)
        sha256 = sha256.lower()
        folder = self._base / self._site / folder_name
        final = folder / name
        tmp = folder / f".{name}.part-{secrets.token_hex(4)}"
        try:
            self._makedirs(folder)
            if self._already_there(final, sha256):
                self._remove_leftovers(folder, name)
                return
            write_new_file(tmp, data)
            back = tmp.read_bytes()
            if len(back) != size or hashlib.sha256(back).hexdigest() != sha256:
                raise UploadError(f"{tmp} does not read back as written")
            try:
                os.link(tmp, final)  # atomic, and fails if the name exists: never replaces
            except FileExistsError:
                if not self._already_there(final, sha256):  # other content raises here
                    gone = f"{final} appeared and vanished meanwhile; retried later"
                    raise UploadError(gone) from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # A share without hard links (vfat, some SMB): check, then rename.
                if not self._already_there(final, sha256):
                    os.rename(tmp, final)
            self._remove_leftovers(folder, name)
            fsync_dir(folder)
        except FileExistsError:
            try:
                remote = _sha_or_none(final)
            except OSError:
                remote = None
            raise _collision(str(final), remote, sha256) from None
        except OSError as exc:
            raise UploadError(f"copy to {final} failed: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    @staticmethod
    def _already_there(final: Path, sha256: str) -> bool:
        """True if ``final`` holds this content; ``FileExistsError`` if it holds other."""
        remote = _sha_or_none(final)
        if remote is None:
            return False
        if remote != sha256:
            raise FileExistsError(errno.EEXIST, "exists with other content", str(final))
        return True

    @staticmethod
    def _remove_leftovers(folder: Path, name: str) -> None:
        for leftover in folder.glob(f".{name}.part-*"):  # earlier attempts cut off
            leftover.unlink(missing_ok=True)

    def _makedirs(self, folder: Path) -> None:
        """Create missing folders and make each new entry durable in its parent."""
        missing: list[Path] = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                new.mkdir()
            fsync_dir(new.parent)

    def close(self) -> None:
        """Nothing to release."""


def _sha_or_none(path: Path) -> str | None:
    """Hex SHA-256 of a file, or ``None`` if there is no such file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- https://


class HttpsUploader:
    """PUTs files to an HTTPS server with a bearer token; only proven content counts.

    Redirects are not followed (the token must not travel elsewhere); plain ``http://`` is
    offered only to a loopback host (:func:`~emtui.core.upload.rules.plain_http_allowed`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        site: str,
        token_file: Path,
        ca_file: Path | None,
        timeout: float,
    ) -> None:
        import httpx

        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UploadConnectionError(
                f"cannot read token file {token_file}: {exc.strerror or exc}"
            ) from None
        if not token or any(c.isspace() for c in token):
            raise UploadConnectionError(f"token file {token_file} must hold one token on one line")
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise UploadConnectionError(f"cannot load CA file {ca_file}: {exc}") from None
        self._base_url = base_url
        self._site = site
        self._client = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"Authorization": f"Bearer {token}"},
        )

    def url_for(self, remote_rel: str) -> str:
        """The URL a file is PUT to: ``<base>/<site>/meter_<id>/<file>``."""
        folder, name = _split_remote(remote_rel)
        parts = (quote(p, safe="") for p in (self._site, folder, name))
        return f"{self._base_url}/" + "/".join(parts)

    def upload(self, local: Path, remote_rel: str, sha256: str, size: int) -> None:
        """PUT the file (never replacing); confirmed only when the server shows our hash."""
        url = self.url_for(remote_rel)
        data = _read_verified(local, sha256, size)
        sha256 = sha256.lower()
        headers = {
            "X-Content-SHA256": sha256,
            "Content-Type": "text/csv",
            "If-None-Match": "*",  # an existing file is not replaced
        }
        response = self._request("PUT", url, content=data, headers=headers)
        status = response.status_code
        echoed = _echoed_sha(response)
        if 200 <= status < 300:
            if echoed == sha256:
                return
            if echoed:
                raise UploadError(f"PUT {url}: the server reports other content ({echoed[:12]}…)")
            remote = self._remote_sha(url)
            if remote == sha256:
                return
            shown = "shows other content" if remote else "does not show it"
            raise UploadUnconfirmed(
                f"PUT {url}: HTTP {status} but not confirmed (no X-Content-SHA256 echoed, and "
                f"HEAD/GET {shown}): sent, unconfirmed - kept queued and retried"
            )
        if status in (409, 412):
            remote = echoed or self._remote_sha(url)
            if remote == sha256:
                return  # already there with the same content
            raise _collision(f"{url} (HTTP {status})", remote, sha256)
        if status in (401, 403):
            raise UploadConnectionError(f"PUT {url}: HTTP {status}: the server refused the token")
        reason = response.reason_phrase or ""
        raise UploadError(f"PUT {url}: HTTP {status} {reason}".rstrip())

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise UploadConnectionError(f"cannot reach {self._base_url}: {_short(exc)}") from None
        except httpx.HTTPError as exc:
            raise UploadError(
                f"{method} {url} failed: {type(exc).__name__}: {_short(exc)}"
            ) from None

    def _remote_sha(self, url: str) -> str | None:
        """The server's copy's hash: ``HEAD``'s ``X-Content-SHA256``, else the ``GET`` body's.

        ``None`` when the server has no such file (or shows nothing: then nothing is proven).
        """
        head = self._request("HEAD", url)
        if 200 <= head.status_code < 300 and (echoed := _echoed_sha(head)):
            return echoed
        got = self._request("GET", url)
        if 200 <= got.status_code < 300:
            return hashlib.sha256(got.content).hexdigest()  # the body itself is the proof
        return None

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def _echoed_sha(response: Any) -> str:
    return str(response.headers.get("X-Content-SHA256", "")).strip().lower()


# --------------------------------------------------------------------------- sftp://


class _LoopThread:
    """A private asyncio loop on its own thread, so sync callers can drive asyncssh.

    Works whatever the calling thread is doing, even if it runs an event loop of its own.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="emtui-sftp", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # also the coroutine's own wait_for timeout
            future.cancel()
            raise _Timeout(f"gave up after {timeout:.0f} s") from None

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


class _Timeout(UploadError):
    """A coroutine on the private loop did not finish in time."""


class SftpUploader:
    """Uploads over SFTP with asyncssh, one SSH connection reused for a run.

    Args:
        host, port, username: The server (``username`` defaults to the local user).
        base: Remote base folder (``.`` = the login folder).
        site: This Pi's folder below ``base``.
        key_file: Private key (``None``: the default keys in ``~/.ssh``); password and
            keyboard-interactive logins are never tried: the logger runs unattended.
        known_hosts: Trusted host keys (``None``: ``~/.ssh/known_hosts``). Host keys are
            always checked; an unknown or changed key fails the connection.
        timeout: Seconds for connecting and for each file.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        base: str,
        site: str,
        key_file: Path | None,
        known_hosts: Path | None,
        timeout: float,
    ) -> None:

        self._host = host
        self._port = port
        self._username = username
        self._base = base
        self._site = site
        self._key_file = key_file
        self._known_hosts = known_hosts or Path("~/.ssh/known_hosts").expanduser()
        self._timeout = timeout
        self._loop: _LoopThread | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    @property
    def _where(self) -> str:
        user = f"{self._username}@" if self._username else ""
        return f"sftp://{user}{self._host}:{self._port}"

    def upload(self, local: Path, remote_rel: str, sha256: str, size: int) -> None:
        """Check the final name, write ``.<file>.part-<random>``, verify, link into place."""
        folder_name, name = _split_remote(remote_rel)
        data = _read_verified(local, sha256, size)
        if self._loop is None:
            self._loop = _LoopThread()
        try:
            self._loop.run(
                asyncio.wait_for(
                    self._upload(data, folder_name, name, sha256.lower()), self._timeout
                ),
                self._timeout + 5.0,
            )
        except _Timeout:  # a stalled connection must not be reused for the next file
            self._drop_connection()
            raise UploadError(
                f"{self._where}: {remote_rel} not confirmed within {self._timeout:.0f} s"
            ) from None
        except UploadError:
            raise
        except Exception as exc:  # anything unexpected still must not pass as "sent"
            self._drop_connection()
            raise UploadError(f"{self._where}: {type(exc).__name__}: {_short(exc)}") from None

    async def _connect(self) -> asyncssh.SFTPClient:
        import asyncssh

        if self._sftp is not None and self._conn is not None and not self._conn.is_closed():
            return self._sftp
        await self._aclose()
        if not self._known_hosts.is_file():
            raise UploadConnectionError(
                f"{self._where}: known_hosts file {self._known_hosts} not found; add the "
                "server's host key to it (host keys are never accepted blindly)"
            )
        if self._key_file is not None and not self._key_file.is_file():
            raise UploadConnectionError(f"{self._where}: key file {self._key_file} not found")
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    self._host,
                    self._port,
                    username=self._username if self._username else (),
                    # Only what the target and our arguments say: no ~/.ssh/config (it could
                    # switch host key checking off), no agent, no passwords.
                    config=[],
                    known_hosts=str(self._known_hosts),
                    client_keys=[str(self._key_file)] if self._key_file else (),
                    agent_path=None,
                    password_auth=False,
                    kbdint_auth=False,
                    connect_timeout=self._timeout,
                    login_timeout=self._timeout,
                ),
                self._timeout,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise UploadConnectionError(
                f"{self._where}: host key not verified against {self._known_hosts}: {_short(exc)}"
            ) from None
        except asyncssh.PermissionDenied:
            raise UploadConnectionError(f"{self._where}: the server refused our key") from None
        except asyncssh.KeyImportError as exc:
            raise UploadConnectionError(
                f"{self._where}: cannot load key {self._key_file}: {_short(exc)}"
            ) from None
        except TimeoutError:
            raise UploadConnectionError(f"{self._where}: connection timed out") from None
        except (OSError, asyncssh.Error) as exc:
            raise UploadConnectionError(f"{self._where}: cannot connect: {_short(exc)}") from None
        try:
            sftp = await conn.start_sftp_client()
        except (OSError, asyncssh.Error) as exc:
            conn.abort()
            raise UploadConnectionError(
                f"{self._where}: SFTP not available: {_short(exc)}"
            ) from None
        self._conn, self._sftp = conn, sftp
        return sftp

    async def _upload(self, data: bytes, folder_name: str, name: str, sha256: str) -> None:
        import asyncssh

        sftp = await self._connect()
        folder = posixpath.join(self._base, self._site, folder_name)
        final = posixpath.join(folder, name)
        tmp = posixpath.join(folder, f".{name}.part-{secrets.token_hex(4)}")
        step = "mkdir"
        created = False
        try:
            await sftp.makedirs(folder, exist_ok=True)
            step = "check existing"
            existing = await self._remote_sha(sftp, final)
            if existing is not None:
                if existing != sha256:
                    raise _collision(f"{self._where}: {final}", existing, sha256)
                await self._remove_leftovers(sftp, folder, name)
                return  # sent before (its confirmation was lost): harmless
            step = "write"
            created = True
            async with sftp.open(tmp, "wb") as remote:
                await remote.write(data)
                with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                    await remote.fsync()
            step = "stat"
            stored = (await sftp.stat(tmp)).size
            if stored != len(data):
                raise UploadError(f"{self._where}: {tmp} has {stored} bytes, sent {len(data)}")
            step = "read back"
            if await self._remote_sha(sftp, tmp) != sha256:
                raise UploadError(f"{self._where}: {tmp} does not read back as sent")
            step = "link"
            await self._place(sftp, tmp, final, sha256)
            step = "stat"
            stored = (await sftp.stat(final)).size
            if stored != len(data):  # a last sanity check of what now holds the name
                raise UploadError(f"{self._where}: {final} has {stored} bytes, sent {len(data)}")
            await self._remove_leftovers(sftp, folder, name)
            created = False
        except UploadError:
            raise
        except asyncssh.SFTPError as exc:
            if isinstance(exc, asyncssh.SFTPConnectionLost):
                created = False
                await self._aclose()
            raise UploadError(f"{self._where}: {step} {final}: {_short(exc)}") from None
        except (OSError, asyncssh.Error) as exc:
            created = False
            await self._aclose()
            raise UploadError(f"{self._where}: {step} {final}: {_short(exc)}") from None
        finally:
            if created:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sftp.remove(tmp), 5.0)

    @staticmethod
    async def _remote_sha(sftp: asyncssh.SFTPClient, path: str) -> str | None:
        """Hex SHA-256 of a remote file read back (files are small), ``None`` if absent."""
        import asyncssh

        try:
            async with sftp.open(path, "rb") as remote:
                back = await remote.read()
        except asyncssh.SFTPNoSuchFile:
            return None
        if not isinstance(back, bytes):
            raise UploadError(f"reading back {path} gave text, not bytes")
        return hashlib.sha256(back).hexdigest()

    async def _place(self, sftp: asyncssh.SFTPClient, tmp: str, final: str, sha256: str) -> None:
        """Give ``tmp`` its final name without ever replacing a file already there.

        A hard link (``hardlink@openssh.com``) fails if ``final`` exists, so a file that
        appeared since the check is kept; it is then read: ours (another run of this Pi) is
        fine, anything else is a collision. Without the extension, a plain SFTP rename, which
        by the protocol never overwrites (OpenSSH does it as link + unlink).
        """
        import asyncssh

        try:
            try:
                await sftp.link(tmp, final)
            except asyncssh.SFTPOpUnsupported:
                await sftp.rename(tmp, final)
                return
        except asyncssh.SFTPConnectionLost:
            raise
        except asyncssh.SFTPError:
            existing = await self._remote_sha(sftp, final)
            if existing is None:
                raise
            if existing != sha256:
                raise _collision(f"{self._where}: {final}", existing, sha256) from None
        await sftp.remove(tmp)

    @staticmethod
    async def _remove_leftovers(sftp: asyncssh.SFTPClient, folder: str, name: str) -> None:
        """Remove temporary files of earlier attempts at this file cut off by a lost link."""
        import asyncssh

        prefix = f".{name}.part-"
        with contextlib.suppress(asyncssh.Error, OSError):
            for entry in await sftp.listdir(folder):
                if isinstance(entry, str) and entry.startswith(prefix):
                    await sftp.remove(posixpath.join(folder, entry))

    async def _aclose(self) -> None:
        sftp, conn = self._sftp, self._conn
        self._sftp = self._conn = None
        if sftp is not None:
            sftp.exit()
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5.0)

    def _drop_connection(self) -> None:
        if self._loop is not None and self._conn is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._aclose(), 10.0)

    def close(self) -> None:
        """Close the SSH connection and stop the private event loop."""
        if self._loop is None:
            return
        self._drop_connection()
        self._loop.close()
        self._loop = None


def uploader_factory(upload: UploadConfig) -> Callable[[], Uploader]:
    """What builds a fresh uploader for one run from the config's ``[upload]`` table (the
    logger's schedule, ``emtui upload --now`` and the app's upload key all use this one).

    Raises:
        ValueError: no target is configured.
    """
    if not upload.target:
        raise ValueError("no upload target: set target in the config's [upload] table")
    return functools.partial(
        make_uploader,
        upload.target,
        site=upload.site,
        key_file=upload.key_file,
        known_hosts=upload.known_hosts,
        token_file=upload.token_file,
        timeout=upload.timeout,
    )
