"""emtui: commission and log Modbus RTU smart meters on RS-485 from a terminal."""

__version__ = "0.1.0"
