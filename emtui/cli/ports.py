"""``emtui ports``: the serial adapters on this machine and who holds each (design §12).

A technician plugging in an RS-485 adapter needs its stable ``/dev/serial/by-id/…`` name for
the config, the USB ids that tell it from a modem, and — when a scan says "in use" — which
process has it open.
"""

from __future__ import annotations

import argparse

from emtui.cli.common import ExitCode, emit_json
from emtui.core.bus.ports import list_serial_ports


def ports(args: argparse.Namespace) -> int:
    """List the ports (and any DEVICE named) with USB ids, by-id names and holder."""
    found = list_serial_ports(args.devices, busy=True)
    if args.json:
        emit_json({"ports": [p.as_dict() for p in found]})
        return int(ExitCode.OK)
    if not found:
        print("no serial ports found. Is the USB RS-485 adapter plugged in? (check `dmesg | tail`)")
        return int(ExitCode.OK)
    for port in found:
        print(port.describe())
    return int(ExitCode.OK)
