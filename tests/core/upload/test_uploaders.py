"""The uploaders against real servers on loopback (design §8, §9).

- ``file://`` into a temporary folder;
- ``https://``: ``http.server`` in a thread behind TLS with a throwaway CA (trustme); its PUT
  handler checks the bearer token and the hash, honours ``If-None-Match: *`` and stores the
  bodies; HEAD/GET show them; a "lying" mode answers 200 text/html and stores nothing;
- ``sftp://``: asyncssh's SFTP server in-process (its own loop on a thread, rooted in a temporary
  folder), and once OpenSSH's sshd started by the test.

Fault tests cut uploads off half way, and the acceptance scenario keeps each server down for
three simulated days (injected clock) before bringing it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trustme

from emtui.core.config import Config, UploadConfig, validate_config
from emtui.core.upload.queue import ItemState, UploadQueue
from emtui.core.upload.rules import PLAIN_HTTP_RULE
from emtui.core.upload.run import UploadScheduler, run_uploads
from emtui.core.upload.schedule import Schedule
from emtui.core.upload.targets import (
    LocalFileChanged,
    UploadCollision,
    UploadConnectionError,
    Uploader,
    UploadUnconfirmed,
    make_uploader,
)

SITE = "pump-house"
TOKEN = "s3cret-token-for-tests"


def sha(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def day_file(folder: Path, device_id: int, day: date, rows: int = 200) -> Path:
    """A day file like the CSV writer's, with content that differs per meter and day."""
    path = folder / f"meter_{device_id}" / f"meter_{device_id}_{day.isoformat()}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"{day}T00:{i // 60:02d}:{i % 60:02d},{device_id},ok,{i * 0.25}\n" for i in range(rows)
    )
    path.write_text("timestamp,epoch,status,frequency\n" + body)
    return path


def upload_file(uploader: Uploader, path: Path) -> str:
    """Upload ``path`` as ``meter_1/<name>``; returns its hash."""
    data = path.read_bytes()
    uploader.upload(path, f"meter_1/{path.name}", sha(data), len(data))
    return sha(data)


def remote_files(root: Path) -> dict[str, str]:
    """Every file below ``root`` (relative path → sha256), temporary ones included."""
    return {
        str(p.relative_to(root)): sha(p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------ HTTPS server


class PutServer(http.server.ThreadingHTTPServer):
    """An HTTPS server storing PUT bodies below ``root``; behaviour switches for fault tests."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, root: Path, ctx: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", port), PutHandler)
        if ctx is not None:  # None: plain http (the loopback-only test)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.root = root
        self.cut_next = False
        self.conflict_if_exists = False
        self.lying = False  # answer every request 200 text/html and store nothing
        self.echo = True  # echo X-Content-SHA256 on PUT
        self.head_hash = True  # show X-Content-SHA256 on HEAD
        self.puts: list[str] = []
        self.if_none_match: list[str | None] = []
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        self.thread.join()


class PutHandler(http.server.BaseHTTPRequestHandler):
    """PUT /<path>: check the token and the hash, then store the body atomically."""

    server: PutServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def reply(self, status: int, digest: str | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        if digest:
            self.send_header("X-Content-SHA256", digest)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def lie(self) -> None:
        body = b"<html><body>OK</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def target(self) -> Path:
        target = self.server.root / self.path.lstrip("/")
        assert ".." not in target.parts
        return target

    def do_HEAD(self) -> None:
        if self.server.lying:
            self.lie()
            return
        target = self.target()
        if not target.is_file():
            self.reply(404)
            return
        self.send_response(200)
        if self.server.head_hash:
            self.send_header("X-Content-SHA256", sha(target.read_bytes()))
        self.send_header("Content-Length", str(target.stat().st_size))
        self.end_headers()

    def do_GET(self) -> None:
        if self.server.lying:
            self.lie()
            return
        target = self.target()
        if not target.is_file():
            self.reply(404)
            return
        self.reply(200, body=target.read_bytes())

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.rfile.read(length)
            self.reply(401)
            return
        self.server.if_none_match.append(self.headers.get("If-None-Match"))
        if self.server.lying:
            self.rfile.read(length)
            self.lie()
            return
        if self.server.cut_next:  # the connection drops half way through the body
            self.server.cut_next = False
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.rfile.read(length)
        claimed = self.headers.get("X-Content-SHA256", "")
        if sha(body) != claimed:
            self.reply(400, body=b"hash mismatch")
            return
        target = self.target()
        self.server.puts.append(self.path)
        if target.exists() and self.server.conflict_if_exists:
            self.reply(409, digest=sha(target.read_bytes()), body=b"exists")
            return
        if target.exists() and self.headers.get("If-None-Match") == "*":
            self.reply(412, digest=sha(target.read_bytes()))
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.upload")
        tmp.write_bytes(body)
        tmp.replace(target)
        self.reply(201, digest=sha(body) if self.server.echo else None)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the CA file that trusts it."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ctx, ca_file


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """The bearer token, as the config's token_file points to it."""
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def https(tmp_path: Path, tls: tuple[ssl.SSLContext, Path]) -> Iterator[PutServer]:
    """A running HTTPS PUT server."""
    server = PutServer(free_port(), tmp_path / "www", tls[0])
    yield server
    server.stop()


# ------------------------------------------------------------------------------- SFTP server


@dataclass
class SshKeys:
    """Keys and files for the SFTP tests."""

    client_key: Path
    authorized_keys: Path
    host_key: asyncssh.SSHKey
    host_public: str


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> SshKeys:
    """A client key pair and a host key, made on the fly."""
    folder = tmp_path_factory.mktemp("keys")
    client = asyncssh.generate_private_key("ssh-ed25519")
    client.write_private_key(str(folder / "id_ed25519"))
    (folder / "authorized_keys").write_bytes(client.export_public_key())
    host = asyncssh.generate_private_key("ssh-ed25519")
    return SshKeys(
        client_key=folder / "id_ed25519",
        authorized_keys=folder / "authorized_keys",
        host_key=host,
        host_public=host.export_public_key().decode().strip(),
    )


class SftpServer:
    """asyncssh's SSH/SFTP server on its own event loop thread, rooted in ``root``."""

    def __init__(
        self,
        root: Path,
        keys: SshKeys,
        port: int = 0,
        sftp_class: type[asyncssh.SFTPServer] = asyncssh.SFTPServer,
    ) -> None:
        self.root = root
        self.keys = keys
        self.port = port
        self.sftp_class = sftp_class
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.acceptor: asyncssh.SSHAcceptor | None = None

    def start(self) -> SftpServer:
        """Start listening (on ``port``, or a free one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        root = str(self.root)
        cls = self.sftp_class

        def factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
            return cls(chan, chroot=root.encode())

        async def listen() -> asyncssh.SSHAcceptor:
            return await asyncssh.listen(
                "127.0.0.1",
                self.port,
                server_host_keys=[self.keys.host_key],
                authorized_client_keys=str(self.keys.authorized_keys),
                sftp_factory=factory,
                allow_scp=False,
            )

        self.acceptor = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self.port = self.acceptor.get_port()
        return self

    def known_hosts(self, path: Path) -> Path:
        """Write a known_hosts file trusting this server's host key."""
        path.write_text(f"[127.0.0.1]:{self.port} {self.keys.host_public}\n")
        return path

    def stop(self) -> None:
        """Stop listening and the loop."""

        async def close() -> None:
            if self.acceptor is not None:
                self.acceptor.close()
                await self.acceptor.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sftp(tmp_path: Path, ssh_keys: SshKeys) -> Iterator[SftpServer]:
    """A running in-process SFTP server."""
    server = SftpServer(tmp_path / "sftproot", ssh_keys).start()
    yield server
    server.stop()


def sftp_uploader(server: SftpServer, tmp_path: Path, **kwargs: Any) -> Uploader:
    """An uploader for ``sftp://emtui@127.0.0.1:<port>/data``."""
    return make_uploader(
        f"sftp://emtui@127.0.0.1:{server.port}/data",
        site=SITE,
        key_file=server.keys.client_key,
        known_hosts=kwargs.pop("known_hosts", None) or server.known_hosts(tmp_path / "kh"),
        timeout=10.0,
        **kwargs,
    )


# ------------------------------------------------------------------------------------ file://


def test_file_round_trip_resend_and_never_replace(tmp_path: Path) -> None:
    """file:// lands at <base>/<site>/meter_<id>/<file>; sending it again is harmless; a
    different file of the same name already there is kept, the upload reports a collision."""
    base = tmp_path / "share"
    base.mkdir()
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    uploader = make_uploader(f"file://{base}", site=SITE)
    digest = upload_file(uploader, path)
    final = f"{SITE}/meter_1/{path.name}"
    assert remote_files(base) == {final: digest}
    upload_file(uploader, path)  # the same file again: fine, nothing changes
    assert remote_files(base) == {final: digest}
    path.write_text("changed\n")
    with pytest.raises(UploadCollision, match="already holds a different file") as refused:
        upload_file(uploader, path)
    assert "not replaced" in str(refused.value)
    assert remote_files(base) == {final: digest}  # the server's copy stays, no leftovers
    uploader.close()


def test_file_collision_keeps_both_and_the_file_queued(tmp_path: Path) -> None:
    """Through the queue: a different file of the same name on the target is a collision,
    reported in the run and on the record; the local file stays queued; both copies remain."""
    base = tmp_path / "share"
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    theirs = base / SITE / "meter_1" / path.name
    theirs.parent.mkdir(parents=True)
    theirs.write_text("another Pi's file of the same name\n")
    queue = UploadQueue(tmp_path / "state", clock=lambda: 1e9)
    queue.enqueue(path, 1, date(2024, 3, 4))
    result = run_uploads(queue, lambda: make_uploader(f"file://{base}", site=SITE))
    assert (result.sent, result.failed) == (0, 1)
    assert "different file" in result.errors[0]
    [item] = queue.all()
    assert item.state is ItemState.QUEUED and item.status == "collision"
    assert theirs.read_text() == "another Pi's file of the same name\n"
    assert path.exists() and sha(path.read_bytes()) == item.sha256
    queue.purge(0)
    assert path.exists()  # never deleted while unconfirmed


def test_file_collision_race_after_the_check(tmp_path: Path, monkeypatch: Any) -> None:
    """A file that appears at the final name after the check (another writer) is still not
    replaced: the final step is a hard link, which fails if the name exists."""
    base = tmp_path / "share"
    base.mkdir()
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    theirs = base / SITE / "meter_1" / path.name
    real_link = os.link

    def link_after_intruder(src: Any, dst: Any, **kwargs: Any) -> None:
        Path(dst).write_text("written in between\n")
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", link_after_intruder)
    with pytest.raises(UploadCollision):
        upload_file(make_uploader(f"file://{base}", site=SITE), path)
    assert theirs.read_text() == "written in between\n"
    assert list(theirs.parent.iterdir()) == [theirs]  # no temporary file left


def test_file_target_checks(tmp_path: Path) -> None:
    """An unmounted share is a connection failure; a changed local file is not sent."""
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    uploader = make_uploader(f"file://{tmp_path / 'not-mounted'}", site=SITE)
    with pytest.raises(UploadConnectionError, match="does not exist"):
        upload_file(uploader, path)
    assert not (tmp_path / "not-mounted").exists()
    (tmp_path / "share").mkdir()
    uploader = make_uploader(f"file://{tmp_path / 'share'}", site=SITE)
    data = path.read_bytes()
    with pytest.raises(LocalFileChanged, match="changed since it was queued"):
        uploader.upload(path, f"meter_1/{path.name}", sha(data + b"x"), len(data))
    assert remote_files(tmp_path / "share") == {}
    with pytest.raises(LocalFileChanged, match="gone") as gone:
        uploader.upload(tmp_path / "absent.csv", "meter_1/absent.csv", sha(data), len(data))
    assert gone.value.problem == "missing"
    for bad in ("ftp://host/x", "file://server/share", "https://user:pw@host/x"):
        with pytest.raises(ValueError):
            make_uploader(bad, site=SITE, token_file=tmp_path / "t")
    with pytest.raises(ValueError, match="site"):
        make_uploader(f"file://{tmp_path}", site="../escape")


# ------------------------------------------------------------------------------------ https://


def https_uploader(server: PutServer, token_file: Path, ca_file: Path | None) -> Uploader:
    """An uploader for ``https://127.0.0.1:<port>/upload``."""
    return make_uploader(
        f"https://127.0.0.1:{server.server_address[1]}/upload",
        site=SITE,
        token_file=token_file,
        ca_file=ca_file,
        timeout=10.0,
    )


def test_https_put_with_token_and_hash(
    https: PutServer, token_file: Path, tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    """PUT /upload/<site>/meter_<id>/<file> with the bearer token and If-None-Match: *; the
    server stores it. Again: 412/409 with the same hash counts as there; with another hash it
    is a collision and the server's copy is not replaced."""
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    uploader = https_uploader(https, token_file, tls[1])
    digest = upload_file(uploader, path)
    assert https.puts == [f"/upload/{SITE}/meter_1/{path.name}"]
    assert https.if_none_match == ["*"]
    stored = {f"upload/{SITE}/meter_1/{path.name}": digest}
    assert remote_files(https.root) == stored
    upload_file(uploader, path)  # 412 with the same hash: already there
    https.conflict_if_exists = True
    upload_file(uploader, path)  # 409 with the same hash: already there
    original = path.read_bytes()
    path.write_text("other content\n")
    with pytest.raises(UploadCollision, match="409"):
        upload_file(uploader, path)
    https.conflict_if_exists = False
    with pytest.raises(UploadCollision, match="412"):
        upload_file(uploader, path)
    assert remote_files(https.root) == stored
    assert sha(original) == digest
    uploader.close()


def test_https_200_that_stores_nothing_stays_unconfirmed(
    https: PutServer, token_file: Path, tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    """A server answering 200 text/html that stores nothing confirms nothing: the file stays
    queued as "unconfirmed" and retention keeps it; once the server is fixed the file is
    confirmed, and only then does retention delete the local copy."""
    t = [1e9]
    queue = UploadQueue(tmp_path / "state", clock=lambda: t[0])
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    queue.enqueue(path, 1, date(2024, 3, 4))
    https.lying = True
    with pytest.raises(UploadUnconfirmed, match="sent, unconfirmed"):
        upload_file(https_uploader(https, token_file, tls[1]), path)
    for _ in range(2):  # retried, never confirmed
        result = run_uploads(queue, lambda: https_uploader(https, token_file, tls[1]), force=True)
        assert (result.sent, result.failed) == (0, 1)
        [item] = queue.all()
        assert item.state is ItemState.QUEUED and item.status == "unconfirmed"
        assert "unconfirmed" in (item.last_error or "")
        t[0] += 40 * 86400
        assert queue.purge(0) == [] and path.exists()
    assert remote_files(https.root) == {}
    https.lying = False  # fixed
    result = run_uploads(queue, lambda: https_uploader(https, token_file, tls[1]), force=True)
    assert result.sent == 1
    [item] = queue.all()
    assert item.state is ItemState.SENT and item.problem is None
    assert remote_files(https.root) == {f"upload/{SITE}/meter_1/{path.name}": item.sha256}
    t[0] += 1
    assert [i.key for i in queue.purge(0)] == [item.key]
    assert not path.exists()


def test_https_confirmed_by_head_or_get_when_not_echoed(
    https: PutServer, token_file: Path, tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    """A server that stores the file but echoes no hash on PUT: a HEAD showing the hash, or
    else a GET of the same bytes, confirms it."""
    uploader = https_uploader(https, token_file, tls[1])
    https.echo = False
    first = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    upload_file(uploader, first)  # HEAD shows X-Content-SHA256
    https.head_hash = False
    second = day_file(tmp_path / "data", 1, date(2024, 3, 5))
    upload_file(uploader, second)  # HEAD shows nothing: the GET body is hashed
    assert len(remote_files(https.root)) == 2
    uploader.close()


def test_plain_http_only_to_loopback_in_both_places(tmp_path: Path, token_file: Path) -> None:
    """config check and the uploader apply one rule: http:// to a loopback host is accepted
    by both (and works), http:// elsewhere is refused by both with the same reason."""
    server = PutServer(free_port(), tmp_path / "www", None)
    try:
        target = f"http://127.0.0.1:{server.server_address[1]}/upload"
        assert validate_config(Config(upload=UploadConfig(target=target))) == []
        uploader = make_uploader(target, site=SITE, token_file=token_file, timeout=10.0)
        digest = upload_file(uploader, day_file(tmp_path / "data", 1, date(2024, 3, 4)))
        uploader.close()
        assert list(remote_files(server.root).values()) == [digest]
    finally:
        server.stop()
    for remote in ("http://central.example.net/x", "http://10.0.0.5/x", "http://localhost.evil/x"):
        [problem] = validate_config(Config(upload=UploadConfig(target=remote)))
        assert PLAIN_HTTP_RULE in problem, remote
        with pytest.raises(ValueError, match="only to this machine"):
            make_uploader(remote, site=SITE, token_file=token_file)
    for loopback in ("http://localhost:8080/x", "http://127.0.0.2/x", "http://[::1]:81/x"):
        assert validate_config(Config(upload=UploadConfig(target=loopback))) == [], loopback
        make_uploader(loopback, site=SITE, token_file=token_file).close()


def test_https_rejections_are_clear_and_hide_the_token(
    https: PutServer, tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    """A wrong token or an untrusted certificate fails the connection; the token is not shown."""
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    with pytest.raises(UploadConnectionError, match="refused the token") as refused:
        upload_file(https_uploader(https, wrong, tls[1]), path)
    assert "not-the-token" not in str(refused.value)
    good = tmp_path / "token"
    good.write_text(TOKEN)
    with pytest.raises(UploadConnectionError, match="cannot reach") as untrusted:
        upload_file(https_uploader(https, good, None), path)  # system CAs do not know it
    assert TOKEN not in str(untrusted.value)
    with pytest.raises(UploadConnectionError, match="token file"):
        https_uploader(https, tmp_path / "missing", tls[1])
    assert remote_files(https.root) == {}


def test_https_upload_cut_off_half_way(
    https: PutServer, token_file: Path, tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    """The server drops the connection after half the body: an error, not marked sent."""
    queue = UploadQueue(tmp_path / "state", clock=lambda: 1e9)
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4), rows=20000)  # ~700 kB
    queue.enqueue(path, 1, date(2024, 3, 4))
    https.cut_next = True
    result = run_uploads(queue, lambda: https_uploader(https, token_file, tls[1]))
    assert (result.sent, result.failed) == (0, 1)
    assert "PUT" in result.errors[0]
    [item] = queue.all()
    assert item.state is ItemState.QUEUED and item.attempts == 1
    assert remote_files(https.root) == {}
    result = run_uploads(queue, lambda: https_uploader(https, token_file, tls[1]), force=True)
    assert result.sent == 1
    assert remote_files(https.root) == {f"upload/{SITE}/meter_1/{path.name}": item.sha256}


# ------------------------------------------------------------------------------------ sftp://


def test_sftp_round_trip_resend_and_never_replace(sftp: SftpServer, tmp_path: Path) -> None:
    """Upload under a temporary name, verify, link into place; sending it again is harmless;
    a different file of the same name already there is kept and the upload reports it."""
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    uploader = sftp_uploader(sftp, tmp_path)
    final = f"data/{SITE}/meter_1/{path.name}"
    digest = upload_file(uploader, path)
    assert remote_files(sftp.root) == {final: digest}
    upload_file(uploader, path)
    assert remote_files(sftp.root) == {final: digest}
    path.write_text("replaced\n")
    with pytest.raises(UploadCollision, match="not replaced"):
        upload_file(uploader, path)
    assert remote_files(sftp.root) == {final: digest}  # kept, and no temporary file left
    uploader.close()


def test_sftp_collision_keeps_both_and_the_file_queued(sftp: SftpServer, tmp_path: Path) -> None:
    """Through the queue: another file of that name on the server stays; the run reports the
    collision; the local file stays queued (and is not deleted by retention)."""
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    theirs = sftp.root / "data" / SITE / "meter_1" / path.name
    theirs.parent.mkdir(parents=True)
    theirs.write_text("another Pi's day\n")
    queue = UploadQueue(tmp_path / "state", clock=lambda: 1e9)
    queue.enqueue(path, 1, date(2024, 3, 4))
    result = run_uploads(queue, lambda: sftp_uploader(sftp, tmp_path))
    assert (result.sent, result.failed) == (0, 1)
    assert "different file" in result.errors[0]
    [item] = queue.all()
    assert item.state is ItemState.QUEUED and item.status == "collision"
    assert theirs.read_text() == "another Pi's day\n"
    queue.purge(0)
    assert path.exists()


class IntruderBeforeLink(asyncssh.SFTPServer):
    """Someone else writes the final name just after our check, before our link."""

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        Path(self.map_path(newpath).decode()).write_text("written in between\n")
        super().link(oldpath, newpath)


class NoHardlinks(asyncssh.SFTPServer):
    """A server without hardlink@openssh.com: the client falls back to a plain rename."""

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no hard links here")

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        raise AssertionError("posix-rename replaces files: it must not be used")


@pytest.mark.parametrize("server_class", [IntruderBeforeLink, NoHardlinks])
def test_sftp_race_after_the_check_does_not_replace(
    server_class: type[asyncssh.SFTPServer], ssh_keys: SshKeys, tmp_path: Path
) -> None:
    """The final step never replaces: a hard link (fails if the name exists), or without it a
    plain SFTP rename (never overwrites). A file that appears after the check is kept and the
    upload reports a collision; without a rival the upload still works."""
    server = SftpServer(tmp_path / "root", ssh_keys, sftp_class=server_class).start()
    try:
        uploader = sftp_uploader(server, tmp_path)
        path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
        final = server.root / "data" / SITE / "meter_1" / path.name
        if server_class is IntruderBeforeLink:
            with pytest.raises(UploadCollision):
                upload_file(uploader, path)
            assert final.read_text() == "written in between\n"
        else:
            digest = upload_file(uploader, path)
            assert remote_files(server.root) == {f"data/{SITE}/meter_1/{path.name}": digest}
            final.write_text("theirs\n")
            with pytest.raises(UploadCollision):
                upload_file(uploader, path)
            assert final.read_text() == "theirs\n"
        assert [p.name for p in final.parent.iterdir()] == [path.name]  # no temporary left
        uploader.close()
    finally:
        server.stop()


def test_sftp_host_key_must_be_known(sftp: SftpServer, tmp_path: Path) -> None:
    """A host key missing from known_hosts (or a missing file) is never accepted."""
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sftp.port} {other}")
    for known_hosts in (wrong, tmp_path / "absent"):
        uploader = sftp_uploader(sftp, tmp_path, known_hosts=known_hosts)
        with pytest.raises(UploadConnectionError, match=r"known_hosts|host key"):
            upload_file(uploader, path)
        uploader.close()
    assert remote_files(sftp.root) == {}


def test_sftp_refused_key(sftp: SftpServer, tmp_path: Path) -> None:
    """A key the server does not know fails the connection with a clear message."""
    stranger = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    uploader = make_uploader(
        f"sftp://emtui@127.0.0.1:{sftp.port}/data",
        site=SITE,
        key_file=stranger,
        known_hosts=sftp.known_hosts(tmp_path / "kh"),
    )
    with pytest.raises(UploadConnectionError, match="refused our key"):
        upload_file(uploader, day_file(tmp_path / "data", 1, date(2024, 3, 4)))
    uploader.close()


class FailingWrite(asyncssh.SFTPServer):
    """Answers every write with an error (a full disk)."""

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        raise asyncssh.SFTPFailure("no space left on device")


class DropMidWrite(asyncssh.SFTPServer):
    """Writes half of the first chunk, then drops the connection."""

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        super().write(file_obj, offset, data[: len(data) // 2])
        self.connection.abort()
        raise asyncssh.SFTPConnectionLost("gone")


@pytest.mark.parametrize("server_class", [FailingWrite, DropMidWrite])
def test_sftp_upload_cut_off_half_way(
    server_class: type[asyncssh.SFTPServer], ssh_keys: SshKeys, tmp_path: Path
) -> None:
    """A write failure or a dropped connection: error, not sent, nothing at the final name."""
    server = SftpServer(tmp_path / "root", ssh_keys, sftp_class=server_class).start()
    try:
        queue = UploadQueue(tmp_path / "state", clock=lambda: 1e9)
        path = day_file(tmp_path / "data", 1, date(2024, 3, 4))
        queue.enqueue(path, 1, date(2024, 3, 4))
        result = run_uploads(queue, lambda: sftp_uploader(server, tmp_path))
        assert (result.sent, result.failed) == (0, 1), result
        [item] = queue.all()
        assert item.state is ItemState.QUEUED and item.attempts == 1
        landed = remote_files(server.root)
        assert not any(name.endswith(path.name) for name in landed)
        if server_class is FailingWrite:
            assert landed == {}  # the temporary file was removed
    finally:
        server.stop()
    # The same server, healthy again on the same port: the file arrives, leftovers go.
    healthy = SftpServer(tmp_path / "root", ssh_keys, port=server.port).start()
    try:
        result = run_uploads(queue, lambda: sftp_uploader(healthy, tmp_path), force=True)
        assert result.sent == 1
        final = f"data/{SITE}/meter_1/{path.name}"
        assert remote_files(healthy.root) == {final: item.sha256}
    finally:
        healthy.stop()


# -------------------------------------------------------------------------- acceptance scenario


class Target:
    """One kind of destination that starts down and can be brought up."""

    def __init__(
        self,
        factory: Callable[[], Uploader],
        up: Callable[[], None],
        landed: Path,
        stop: Callable[[], None],
    ) -> None:
        self.factory = factory
        self.up = up
        self.landed = landed
        self.stop = stop


def make_target(
    scheme: str, tmp_path: Path, tls: tuple[ssl.SSLContext, Path], keys: SshKeys
) -> Target:
    """A destination of the given scheme, down for now (unmounted share / closed port)."""
    if scheme == "file":
        base = tmp_path / "mnt" / "share"
        return Target(
            lambda: make_uploader(f"file://{base}", site=SITE),
            lambda: base.mkdir(parents=True),
            base / SITE,
            lambda: None,
        )
    port = free_port()
    if scheme == "https":
        token = tmp_path / "token"
        token.write_text(TOKEN)
        servers: list[PutServer] = []

        def https_up() -> None:
            servers.append(PutServer(port, tmp_path / "www", tls[0]))
            servers[-1].conflict_if_exists = True

        def https_stop() -> None:
            for server in servers:
                server.stop()

        return Target(
            lambda: make_uploader(
                f"https://127.0.0.1:{port}/upload", site=SITE, token_file=token, ca_file=tls[1]
            ),
            https_up,
            tmp_path / "www" / "upload" / SITE,
            https_stop,
        )
    server = SftpServer(tmp_path / "sftproot", keys, port=port)
    known_hosts = server.known_hosts(tmp_path / "known_hosts")

    def sftp_up() -> None:
        server.start()

    return Target(
        lambda: make_uploader(
            f"sftp://emtui@127.0.0.1:{port}/srv/emtui",
            site=SITE,
            key_file=keys.client_key,
            known_hosts=known_hosts,
            timeout=10.0,
        ),
        sftp_up,
        tmp_path / "sftproot" / "srv" / "emtui" / SITE,
        server.stop,
    )


def ts(text: str) -> float:
    """Epoch seconds of an ISO time in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("scheme", ["sftp", "https", "file"])
def test_server_down_for_three_days_then_back(
    scheme: str, tmp_path: Path, tls: tuple[ssl.SSLContext, Path], ssh_keys: SshKeys
) -> None:
    """Acceptance: down 3 simulated days, then back: all arrive verified, none lost or doubled.

    Two meters log; each day end queues their files; the scheduler steps every 10 simulated
    minutes, runs at 14:00 and retries with backoff, all failing while the server is down.
    Retention is one day, yet nothing is deleted before its confirmation.
    """
    target = make_target(scheme, tmp_path, tls, ssh_keys)
    t = [ts("2024-03-05T00:00:00")]
    queue = UploadQueue(tmp_path / "state", clock=lambda: t[0])
    sched = UploadScheduler(
        queue, Schedule(tz=UTC), target.factory, clock=lambda: t[0], retention_days=1
    )
    data = tmp_path / "data"
    runs = 0

    def live(until: float) -> None:
        nonlocal runs
        while t[0] < until:
            midnight = datetime.fromtimestamp(t[0], UTC).replace(hour=0, minute=0, second=0)
            if t[0] - midnight.timestamp() < 600:  # the day just ended: queue its files
                day = midnight.date() - timedelta(days=1)
                for device in (1, 2):
                    queue.enqueue(day_file(data, device, day), device, day)
            if sched.step() is not None:
                runs += 1
            t[0] += 600

    try:
        live(ts("2024-03-08T00:00:00"))
        assert runs > 3 * 5  # 14:00 every day plus backoff retries, all failed
        queued = queue.queued()
        assert len(queued) == 6 and all(i.attempts >= 5 for i in queued)
        assert all(i.path.exists() for i in queued)
        assert queue.state.last_ok is False

        target.up()
        live(ts("2024-03-08T03:00:00"))  # day 4's files are queued at midnight too
        items = queue.all()
        assert len(items) == 8 and all(i.state is ItemState.SENT for i in items)
        expected = {f"meter_{i.device_id}/{i.path.name}": i.sha256 for i in items}
        assert remote_files(target.landed) == expected
        assert all(sha(i.path.read_bytes()) == i.sha256 for i in items)  # none deleted early

        # A confirmation lost (the Pi died after the rename): sending again is harmless.
        uploader = target.factory()
        for item in items:
            uploader.upload(item.path, item.remote_rel, item.sha256, item.size)
        uploader.close()
        assert remote_files(target.landed) == expected
        assert run_uploads(queue, target.factory, force=True).attempted == 0

        # Retention: a day after confirmation the local copies go, the remote ones stay.
        live(ts("2024-03-09T15:00:00"))
        assert not any(i.path.exists() for i in items)
        landed = remote_files(target.landed)
        assert landed.items() >= expected.items() and len(landed) == len(expected) + 2
    finally:
        target.stop()


# ------------------------------------------------------------------------ OpenSSH end to end


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """OpenSSH's sshd on 127.0.0.1 with host and client keys made on the fly.

    Yields (port, client key, known_hosts). Skips if sshd is missing, except in CI.
    """
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    keygen = shutil.which("ssh-keygen")
    if not os.path.exists(sshd_bin) or keygen is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sshd/ssh-keygen missing in CI (apt package openssh-server)")
        pytest.skip("OpenSSH server not installed (apt package openssh-server)")
    folder = tmp_path / "sshd"
    folder.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True
        )
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {folder / 'host_key'}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin yes",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    host_pub = (folder / "host_key.pub").read_text().split()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    log = (folder / "sshd.log").open("w")
    proc = subprocess.Popen(
        [sshd_bin, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"sshd did not start:\n{(folder / 'sshd.log').read_text()}")
            time.sleep(0.05)
        yield port, folder / "client_key", known_hosts
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_sftp_end_to_end_with_openssh(sshd: tuple[int, Path, Path], tmp_path: Path) -> None:
    """A real OpenSSH server: upload, send again (harmless), a different file of the same name
    is refused and the server's copy kept; verify the bytes on disk."""
    port, key, known_hosts = sshd
    remote = tmp_path / "remote"
    remote.mkdir()
    uploader = make_uploader(
        f"sftp://{getpass.getuser()}@127.0.0.1:{port}{remote}",
        site=SITE,
        key_file=key,
        known_hosts=known_hosts,
        timeout=15.0,
    )
    path = day_file(tmp_path / "data", 1, date(2024, 3, 4), rows=5000)
    try:
        digest = upload_file(uploader, path)
        final = f"{SITE}/meter_1/{path.name}"
        assert remote_files(remote) == {final: digest}
        upload_file(uploader, path)
        assert remote_files(remote) == {final: digest}
        path.write_text("second version\n")
        with pytest.raises(UploadCollision, match="not replaced"):
            upload_file(uploader, path)
        assert remote_files(remote) == {final: digest}
    finally:
        uploader.close()
