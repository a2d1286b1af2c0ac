"""``[meters.expect]``: expected setup values per meter, bound to the [[meters]] table above
it, for ``emtui check``'s setup check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import EMTUI

from emtui.core.config import ConfigError, effective_dict, parse_config

TWO = """
[[meters]]
id = 1
[meters.expect]
ct_primary = 200
vt_connection_type = 0

[[meters]]
id = 2
label = "Pump 2"
"""


def test_expect_binds_to_the_meter_above() -> None:
    """The [meters.expect] table belongs to the [[meters]] table above it; others get none."""
    config = parse_config(TWO)
    one, two = config.meters
    assert dict(one.expect) == {"ct_primary": 200, "vt_connection_type": 0}
    assert two.expect == ()
    assert effective_dict(config)["meters"][0]["expect"] == {
        "ct_primary": 200,
        "vt_connection_type": 0,
    }


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("ct_primry = 200", "did you mean ct_primary?"),
        ('ct_primary = "200"', "ct_primary must be a number"),
        ("ct_primary = true", "ct_primary must be a number"),
        ("ct_primary = nan", "finite"),
    ],
)
def test_bad_expect_is_a_config_error(table: str, words: str) -> None:
    """A misspelt key or a non-number in [meters.expect] is a config error naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[[meters]]\nid = 1\n[meters.expect]\n{table}\n")
    text = "\n".join(caught.value.errors)
    assert "meters[0].expect" in text and words in text


def test_expect_must_be_a_table() -> None:
    """expect = 200 (not a table) says how to write it."""
    with pytest.raises(ConfigError, match=r"\[meters.expect\]"):
        parse_config("[[meters]]\nid = 1\nexpect = 200\n")


def test_config_check_shows_expect(tmp_path: Path) -> None:
    """emtui config check prints the [meters.expect] table (pasteable TOML) and its JSON."""
    path = tmp_path / "emtui.toml"
    path.write_text('[bus]\nport = "socket://127.0.0.1:1"\n' + TWO)
    done = subprocess.run(
        [*EMTUI, "config", "check", str(path)], capture_output=True, text=True, timeout=30
    )
    assert "[meters.expect]\nct_primary = 200\nvt_connection_type = 0" in done.stdout
    done = subprocess.run(
        [*EMTUI, "config", "check", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    doc = json.loads(done.stdout)
    meters = doc.get("config", doc)["meters"]
    assert meters[0]["expect"] == {"ct_primary": 200, "vt_connection_type": 0}
