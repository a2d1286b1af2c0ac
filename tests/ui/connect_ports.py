"""A fixed serial-port listing for the connection dialog's tests and pictures."""

from __future__ import annotations

from emtui.core.bus.ports import Holder, PortInfo

#: The Pi's own UART, an FTDI RS-485 adapter, and a CH340 adapter a logger holds.
PORTS = [
    PortInfo("/dev/ttyAMA0", None, None, "ttyAMA0", ()),
    PortInfo(
        "/dev/ttyUSB0",
        0x0403,
        0x6001,
        "FT232R USB UART",
        ("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1XYZ-if00-port0",),
        manufacturer="FTDI",
        product="FT232R USB UART",
    ),
    PortInfo(
        "/dev/ttyUSB1",
        0x1A86,
        0x7523,
        "USB Serial",
        ("/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0",),
        busy_by=Holder(812, "/usr/bin/python3 /usr/local/bin/emtui --log"),
    ),
]
