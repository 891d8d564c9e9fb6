"""Every PUBLISH in a Lua script names a channel passed in KEYS: on a cluster the scripts SPUBLISH,
and a script may touch only its own slot, so a channel built from a value it read (an opponent
room's channel stored in a hash, say) fails there, or worse, only there. With every channel in
KEYS, the slot tests (tests/test_keys.py, tests/wallet/test_slots.py) cover the channels too."""

from __future__ import annotations

import re

from server.storage.scripts import LUA_DIR

_PUBLISH = re.compile(r"redis\.call\(\s*'S?PUBLISH'\s*,\s*([^,]+),")
_PUSH = re.compile(r"balance_push\(\s*[^,]+,\s*([^,]+),")
_KEYS_ARG = re.compile(r"KEYS\[\d+\]")


def test_every_script_publishes_only_on_channels_given_in_keys() -> None:
    wrong: list[str] = []
    scripts = sorted(LUA_DIR.glob("*.lua"))
    assert scripts
    for path in scripts:
        source = path.read_text()
        for channel in _PUBLISH.findall(source) + _PUSH.findall(source):
            if not _KEYS_ARG.fullmatch(channel.strip()):
                wrong.append(f"{path.name}: {channel.strip()}")
    assert wrong == []


def test_the_shared_balance_push_publishes_only_the_channel_its_caller_passes() -> None:
    source = (LUA_DIR / "lib" / "balance_push.lua").read_text()
    assert [c.strip() for c in _PUBLISH.findall(source)] == ["channel"]
    assert "local function balance_push(wallet_key, channel," in source
