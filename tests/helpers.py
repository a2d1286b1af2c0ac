"""Shared test helpers."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The installed ``emtui`` program. Tests never run ``python -m emtui``: from a checkout that
#: would import the source tree, where the register maps are not (they install as the
#: ``emtui.registers`` package), instead of the installed package under test.
EMTUI = [str(Path(sys.executable).with_name("emtui"))]
#: The repository's root (the checkout under test) and the test data folder.
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@contextmanager
def sim_listen(*args: str) -> Iterator[str]:
    """``emtui sim --listen 127.0.0.1:0`` with ``args``; yields its socket:// URL."""
    proc = subprocess.Popen(
        [*EMTUI, "sim", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://"), proc.stderr.read() if proc.stderr else url
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


@contextmanager
def headless_logger(url: str, tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``emtui --log`` of meter 1 on ``url`` (dirs under ``tmp_path``, ``args`` added),
    yielded once it says it is logging (it holds the bus); stopped with SIGTERM."""
    logger = subprocess.Popen(
        [
            *EMTUI,
            "--log",
            "--port",
            url,
            "--ids",
            "1",
            *args,
            "--data-dir",
            str(tmp_path / "d"),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert logger.stderr is not None and "logging" in logger.stderr.readline()
        yield logger
    finally:
        logger.send_signal(signal.SIGTERM)
        logger.wait(30)
