"""Modbus device-id lists as a technician types them: ``"1-4,7"``."""

from __future__ import annotations

import re

MIN_ID = 1
"""The lowest Modbus RTU slave id (0 is broadcast)."""

MAX_ID = 247
"""The highest Modbus RTU slave id."""


_ITEM_RE = re.compile(r"(?P<low>[0-9]+)\s*(?:-\s*(?P<high>[0-9]+))?", re.ASCII)


def parse_ids(text: str) -> list[int]:
    """Parse an id list such as ``"1-4,7"`` into sorted, unique ids.

    Items are separated by commas (spaces are ignored); an item is one id or an inclusive
    range ``A-B``. Every id must be 1-247.

    Raises:
        ValueError: the text is empty, an item is not a number or range, a range runs
            backwards, or an id is outside 1-247. The message quotes the offending item.
    """
    ids: set[int] = set()
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError(f"no ids given (expected e.g. 1-4,7; ids must be {MIN_ID}-{MAX_ID})")
    for item in items:
        if not item:
            raise ValueError(f"empty item in id list {text!r} (expected e.g. 1-4,7)")
        # ASCII digits only: int() alone would take "1_0", "+3" or other scripts' digits
        match = _ITEM_RE.fullmatch(item)
        if match is None:
            raise ValueError(f"bad id {item!r} in {text!r}: expected a number or a range like 1-4")
        low = int(match["low"])
        high = int(match["high"]) if match["high"] is not None else low
        if high < low:
            raise ValueError(f"bad id range {item!r}: {low} is above {high}")
        for value in (low, high):
            if not MIN_ID <= value <= MAX_ID:
                raise ValueError(f"id {value} out of range: ids must be {MIN_ID}-{MAX_ID}")
        ids.update(range(low, high + 1))
    return sorted(ids)


def format_ids(ids: list[int] | tuple[int, ...] | set[int]) -> str:
    """Format ids compactly, the inverse of :func:`parse_ids` (``[1, 2, 3, 7]`` → ``"1-3,7"``)."""
    ordered = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
