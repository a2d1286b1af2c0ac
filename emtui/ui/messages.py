"""Messages from the engine's threads to the app, named as the events they report.

The engine calls back on its own threads; these carry the news onto Textual's loop
(``post_message`` is thread-safe). One :class:`SamplesRead` per meter per poll, never one per
register; scan progress replaces a queued one of its kind so a fast line cannot flood the
queue.
"""

from __future__ import annotations

from textual.message import Message

from emtui.core.bus.reader import Sample
from emtui.core.bus.scanner import FoundDevice, ScanReport


class SamplesRead(Message, bubble=False):
    """One meter was read (its logged set, or a block of its tab's other registers)."""

    def __init__(self, sample: Sample) -> None:
        super().__init__()
        self.sample = sample


class ScanProgressed(Message, bubble=False):
    """The scan is about to probe ``current`` (``done`` of ``total`` ids probed)."""

    def __init__(self, done: int, total: int, current: int, eta: float | None = None) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.current = current
        self.eta = eta
        """Seconds the scan still needs by the scanner's estimate (None: not known)."""

    def can_replace(self, message: Message) -> bool:
        """A newer progress report makes an unhandled older one pointless."""
        return isinstance(message, ScanProgressed)


class DeviceFound(Message, bubble=False):
    """A device answered the scan (and was identified)."""

    def __init__(self, device: FoundDevice) -> None:
        super().__init__()
        self.device = device


class ScanFinished(Message, bubble=False):
    """The scan ended (finished or cancelled); ``error`` when it could not run."""

    def __init__(self, report: ScanReport | None, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error
