"""``emtui serve``'s flags: --listen, --public, the spawned app's command (no server runs)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from emtui.cli import main
from emtui.cli.common import CliError, ExitCode
from emtui.cli.parser import build_parser
from emtui.cli.serve import Listen, app_argv, check_exposure, parse_listen


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:8000", "127.0.0.1", 8000),
        ("localhost:9000", "localhost", 9000),
        ("[::1]:8000", "::1", 8000),
        ("0.0.0.0:80", "0.0.0.0", 80),
        (" 192.168.1.20:8080 ", "192.168.1.20", 8080),
    ],
)
def test_listen_parses_host_and_port(text: str, host: str, port: int) -> None:
    """HOST:PORT with an IPv4, IPv6 (in brackets) or localhost host parses to both parts."""
    assert parse_listen(text) == Listen(host, port)


@pytest.mark.parametrize(
    "text", ["8000", ":8000", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:0",
             "127.0.0.1:65536", "pi.local:8000", "300.1.1.1:8000", "::1:8000x"],
)  # fmt: skip
def test_bad_listen_is_a_usage_error(text: str) -> None:
    """A listen address without a port, with a bad port or with a host that is not an IP
    address or localhost is a usage error that shows the expected form."""
    with pytest.raises(CliError) as caught:
        parse_listen(text)
    assert caught.value.code == ExitCode.USAGE
    assert "HOST:PORT" in str(caught.value)


def test_loopback_needs_no_public_and_others_do() -> None:
    """127.0.0.0/8, ::1 and localhost are served as they are; any other address is refused
    without --public (pointing at SSH forwarding) and warned about with it."""
    for text in ("127.0.0.1:8000", "127.1.2.3:8000", "[::1]:8000", "localhost:8000"):
        assert check_exposure(parse_listen(text), public=False) is None
    for text in ("0.0.0.0:8000", "[::]:8000", "192.168.1.20:8000"):
        with pytest.raises(CliError) as caught:
            check_exposure(parse_listen(text), public=False)
        assert caught.value.code == ExitCode.USAGE
        assert "--public" in str(caught.value) and "ssh -L" in str(caught.value)
        warning = check_exposure(parse_listen(text), public=True)
        assert warning is not None and "NO authentication" in warning


def test_non_loopback_without_public_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``emtui serve --listen 0.0.0.0:PORT`` exits 2 with one line naming --public and SSH."""
    assert main(["serve", "--demo", "--listen", "0.0.0.0:8000"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "add --public" in err[0] and "ssh -L 8000:127.0.0.1:8000" in err[0]


def test_bad_listen_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --listen exits 2 with one line."""
    assert main(["serve", "--demo", "--listen", "8000"]) == ExitCode.USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _held_port(host: str) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


def test_port_in_use_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """A listen port another program holds exits 3 (CONNECTION), saying to pick another."""
    sock, port = _held_port("127.0.0.1")
    with sock:
        assert main(["serve", "--demo", "--listen", f"127.0.0.1:{port}"]) == ExitCode.CONNECTION
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is in use" in err and "--listen 127.0.0.1:PORT" in err


def test_public_prints_the_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """``--public`` on 0.0.0.0 prints the no-authentication warning on stderr before it
    listens (the port is held here, so the command then stops with exit 3)."""
    sock, port = _held_port("0.0.0.0")
    with sock:
        code = main(["serve", "--demo", "--public", "--listen", f"0.0.0.0:{port}"])
    assert code == ExitCode.CONNECTION
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("emtui: warning: serving on 0.0.0.0:")
    assert "NO authentication" in err[0] and "ssh -L" in err[0]


def _argv(*flags: str) -> list[str]:
    return app_argv(build_parser("serve").parse_args(list(flags)))


def test_app_command_is_this_install_with_the_same_flags() -> None:
    """Each session runs this interpreter's emtui (``-P``: never a checkout's source tree)
    with the connection flags given to serve; writes only with --allow-writes."""
    prefix = [sys.executable, "-P", "-m", "emtui"]
    assert _argv("--demo") == [*prefix, "--demo"]
    assert _argv("--demo", "--config", "k.toml") == [*prefix, "--demo", "--config", "k.toml"]
    assert _argv("--port", "/dev/ttyUSB0", "--ids", "1-4", "--baud", "9600") == [
        *prefix, "--port", "/dev/ttyUSB0", "--baud", "9600", "--ids", "1-4",
    ]  # fmt: skip
    assert _argv("--port", "/dev/ttyUSB0", "--allow-writes")[-1] == "--allow-writes"
    assert "--allow-writes" not in _argv("--port", "/dev/ttyUSB0")
    # the demo's simulated meters take writes too (emtui --demo --allow-writes)
    assert _argv("--demo", "--allow-writes") == [*prefix, "--demo", "--allow-writes"]


def test_demo_with_connection_flags_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--demo`` with --port or --baud exits 2 naming the flags to leave out."""
    assert main(["serve", "--demo", "--port", "/dev/ttyUSB0", "--baud", "9600"]) == 2
    err = capsys.readouterr().err
    assert "leave out --port, --baud" in err


def test_no_port_is_a_usage_error_before_listening(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without --demo and without a port the command exits 2 at once (not in each browser)."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    assert main(["serve", "--config", str(config), "--ids", "1"]) == ExitCode.USAGE
    assert "no port given" in capsys.readouterr().err
