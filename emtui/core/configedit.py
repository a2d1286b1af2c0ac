"""Write a scan's meters into a config file, keeping its comments and order (tomlkit).

Only ``id``, ``label`` and ``map`` are written per new meter. A meter the file already has is
left as it is (its label, values and expectations are the technician's), and nothing else in
the file changes, so saving a scan never loses a setting. The result is validated with the
same parser as every other command before it replaces the file (atomically).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.items import AoT, Table

from emtui.core.config import ConfigError, parse_config
from emtui.core.durable import atomic_write_bytes


@dataclass(frozen=True, slots=True)
class NewMeter:
    """A meter to add: its id, label and map name."""

    id: int
    label: str
    map: str = "em6400ng"


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What :func:`save_meters` did."""

    path: Path
    added: list[int]
    kept: list[int]


def writable(path: Path) -> bool:
    """True if ``path`` (or, when it does not exist, its nearest existing folder) is writable."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return os.access(probe, os.W_OK)


def save_meters(path: Path, meters: Sequence[NewMeter], *, base: Path | None = None) -> SaveResult:
    """Add ``meters`` to the config at ``path`` (created when missing).

    ``base``: when ``path`` does not exist yet, start from this file's text (the config the
    app loaded but may not write), so the new file keeps every setting of it: config files are
    not merged, the first one found wins.

    Raises:
        ConfigError: the file is not valid TOML, or the result would not be a valid config
            (nothing is written then).
        OSError: the file cannot be written.
    """
    if path.exists():
        text = path.read_text(encoding="utf-8")
    elif base is not None and base.exists():
        text = base.read_text(encoding="utf-8")
    else:
        text = ""
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix it before saving a scan") from None
    existing = document.get("meters")
    if existing is None:
        tables = tomlkit.aot()
        document.append("meters", tables)
    elif isinstance(existing, AoT):
        tables = existing
    else:
        raise ConfigError(f"{path}: meters must be an array of [[meters]] tables")
    have = {int(t["id"]) for t in tables if isinstance(t, Table) and "id" in t}
    added, kept = [], []
    for meter in meters:
        if meter.id in have:
            kept.append(meter.id)
            continue
        table = tomlkit.table()
        table.add("id", meter.id)
        table.add("label", meter.label)
        table.add("map", meter.map)
        tables.append(table)
        added.append(meter.id)
        have.add(meter.id)
    new_text = tomlkit.dumps(document)
    parse_config(new_text, path)  # raises ConfigError: never write a file emtui cannot read
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, new_text.encode("utf-8"))
    return SaveResult(path, added, kept)
