"""Writing files so that a crash or power cut leaves the old content or the new, never half.

The CSV writer, the upload queue, the uploaders and the status file all need the same few
steps (write every byte, fsync, rename, fsync the folder); they live here once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_new_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it.

    Raises:
        FileExistsError: ``path`` exists.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path, *, strict: bool = True) -> None:
    """Make a new, renamed or removed entry in folder ``path`` durable.

    File systems that cannot fsync a folder (EINVAL) are never an error; with
    ``strict=False`` no error is (callers that will retry on the next write anyway).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if strict and exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same folder renamed over it.

    With ``sync`` the data and the rename are fsynced (durable); without, a reader still never
    sees half a file, but a power cut may keep the old content (cheap on SD cards).
    """
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        if sync:
            write_new_file(tmp, data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync:
        fsync_dir(path.parent)
