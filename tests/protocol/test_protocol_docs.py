"""docs/protocol.md documents exactly what the code implements, and its examples are real frames.

The doc is the contract for clients in other languages, so drift is a bug: these tests fail when a
message type, field, error code, close code or limit is added to the code without the doc, or the
doc lists one the code lacks.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    CloseCode,
    ErrorCode,
    JsonCodec,
    Message,
    MsgpackCodec,
    limits,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
MP = MsgpackCodec()
JS = JsonCodec()


@dataclass
class Section:
    """One `##` or `###` section of the doc: its table rows and fenced code blocks."""

    title: str
    rows: list[list[str]] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (info string, body)


def parse(text: str) -> tuple[dict[str, Section], dict[str, list[Section]]]:
    """Returns the `##` sections by title, and the `###` sections grouped by their `##` parent."""
    top: dict[str, Section] = {}
    children: dict[str, list[Section]] = {}
    parent = current = Section("")
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("```"):
            info = line[3:].strip()
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            current.blocks.append((info, "\n".join(body)))
            if current is not parent:
                parent.blocks.append((info, "\n".join(body)))
        elif line.startswith("## "):
            parent = current = top.setdefault(line[3:].strip(), Section(line[3:].strip()))
            children[parent.title] = []
        elif line.startswith("### "):
            current = Section(line[4:].strip())
            children[parent.title].append(current)
        elif line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            current.rows.append(cells)
            if current is not parent:
                parent.rows.append(cells)
    return top, children


TOP, CHILDREN = parse(DOC.read_text(encoding="utf-8"))


def section(prefix: str) -> Section:
    (match,) = [s for title, s in TOP.items() if re.sub(r"^\d+\.\s*", "", title) == prefix]
    return match


def children(prefix: str) -> list[Section]:
    return CHILDREN[section(prefix).title]


def backticked_first_cells(rows: list[list[str]]) -> set[str]:
    return {m[1] for row in rows if (m := re.fullmatch(r"`([^`]+)`", row[0]))}


def message_sections(prefix: str) -> dict[str, Section]:
    out = {}
    for sub in children(prefix):
        m = re.fullmatch(r"`([a-z_]+)`.*", sub.title)
        if m:
            out[m[1]] = sub
    return out


@pytest.mark.parametrize(
    ("prefix", "table"),
    [("Client messages", CLIENT_MESSAGES), ("Server messages", SERVER_MESSAGES)],
)
def test_every_message_type_has_a_section(prefix: str, table: dict[str, type[Message]]) -> None:
    assert set(message_sections(prefix)) == set(table)


@pytest.mark.parametrize(
    ("prefix", "table"),
    [("Client messages", CLIENT_MESSAGES), ("Server messages", SERVER_MESSAGES)],
)
def test_every_field_is_in_its_message_table(prefix: str, table: dict[str, type[Message]]) -> None:
    for type_, sub in message_sections(prefix).items():
        cls = table[type_]
        # The first table of a section is the message's own; later ones describe nested maps.
        own: list[list[str]] = []
        for row in sub.rows:
            if row[0] == "field" and own:
                break
            own.append(row)
        assert backticked_first_cells(own) == set(cls._FIELDS), type_


def test_nested_value_tables_match_the_code() -> None:
    from protocol import Goal, TopEntry

    joined = message_sections("Server messages")["joined"]
    documented = backticked_first_cells(joined.rows)
    for cls in (TopEntry, Goal):
        assert set(cls.__dataclass_fields__) <= documented


def test_error_code_table_matches_the_code() -> None:
    documented = backticked_first_cells(section("Error codes").rows)
    assert documented == {code.value for code in ErrorCode}


def test_close_code_table_matches_the_code() -> None:
    rows = section("Close codes").rows
    documented = {int(row[0]) for row in rows if row[0].isdigit()}
    assert documented == {int(code) for code in CloseCode}


def test_limits_table_matches_the_code() -> None:
    rows = section("Limits").rows
    documented = {m[1]: row[1] for row in rows if (m := re.fullmatch(r"`([A-Z_0-9]+)`", row[0]))}
    expected = {
        name: str(value)
        for name, value in vars(limits).items()
        if name.isupper() and isinstance(value, int)
    }
    assert documented == expected


def examples() -> list[tuple[str, str, str, str]]:
    """(section, direction, json text, msgpack hex) for every example pair in the doc."""
    out = []
    for title, sec in TOP.items():
        pending: tuple[str, str] | None = None
        for info, body in sec.blocks:
            kind, _, direction = info.partition(" ")
            if kind == "json" and direction in ("client", "server"):
                assert pending is None, f"{title}: json example without msgpack hex"
                pending = (direction, body.strip())
            elif kind == "msgpack-hex":
                assert pending is not None and pending[0] == direction, title
                out.append((title, direction, pending[1], body.strip()))
                pending = None
        assert pending is None, f"{title}: json example without msgpack hex"
    return out


EXAMPLES = examples()


def test_examples_cover_every_message_type() -> None:
    client = {JS.decode_client(j).TYPE for _, d, j, _ in EXAMPLES if d == "client"}
    server = {m.TYPE for _, d, j, _ in EXAMPLES if d == "server" for m in JS.decode_server(j)}
    assert client == set(CLIENT_MESSAGES)
    assert server == set(SERVER_MESSAGES)


@pytest.mark.parametrize(("title", "direction", "text", "hexed"), EXAMPLES)
def test_example_decodes_and_matches_its_msgpack(
    title: str, direction: str, text: str, hexed: str
) -> None:
    data = bytes.fromhex(hexed)
    if direction == "client":
        msg = JS.decode_client(text)
        assert MP.decode_client(data) == msg
        # Examples are canonical: exactly what the reference encoder emits.
        assert JS.encode_client(msg) == text
        assert MP.encode_client(msg) == data
    else:
        msgs = JS.decode_server(text)
        assert msgs, "a server example must hold at least one known message"
        # Strict mode: the doc's examples must obey every limit, not just parse.
        for item in msgs:
            assert type(item).from_dict(item.to_dict(), strict=True) == item
        assert MP.decode_server(data) == msgs
        assert JS.encode_frame(msgs) == text
        assert MP.encode_frame(msgs) == data


def test_subprotocols_are_documented() -> None:
    from protocol import SUBPROTOCOLS

    text = DOC.read_text(encoding="utf-8")
    for name in SUBPROTOCOLS:
        assert f"`{name}`" in text


def test_session_ending_errors_name_their_close_code() -> None:
    from protocol import CLOSE_ON_ERROR

    rows = {row[0].strip("`"): " | ".join(row[1:]) for row in section("Error codes").rows}
    for code, close in CLOSE_ON_ERROR.items():
        assert f"({int(close)})" in rows[code.value], code


# -- examples name what the server can send -----------------------------------------------------


def exchange() -> list[tuple[str, str]]:
    """(direction, json text) for each line of the `exchange` block in "Writing a client"."""
    (body,) = [b for info, b in section("Writing a client").blocks if info == "exchange"]
    out = []
    for line in body.splitlines():
        who, _, text = line.partition(": ")
        assert who in ("C", "S"), line
        out.append(("client" if who == "C" else "server", text))
    return out


def example_messages() -> list[Message]:
    msgs: list[Message] = []
    pairs = [(d, j) for _, d, j, _ in EXAMPLES] + exchange()
    for direction, text in pairs:
        if direction == "client":
            msgs.append(JS.decode_client(text))
        else:
            msgs.extend(JS.decode_server(text))
    return msgs


def test_the_exchange_is_real_frames() -> None:
    for direction, text in exchange():
        if direction == "client":
            assert JS.encode_client(JS.decode_client(text)) == text
        else:
            msgs = JS.decode_server(text)
            assert msgs and JS.encode_frame(msgs) == text
            for item in msgs:
                assert type(item).from_dict(item.to_dict(), strict=True) == item


def test_examples_name_catalog_gifts_at_catalog_prices() -> None:
    from protocol import ComboProgress, GiftEvent, SendGift
    from server.money.catalog import load_catalog

    gifts = load_catalog().gifts
    seen = 0
    for msg in example_messages():
        if not isinstance(msg, SendGift | GiftEvent | ComboProgress):
            continue
        seen += 1
        assert msg.gift in gifts, f"{msg.gift!r} is not in the catalog"
        gift = gifts[msg.gift]
        if isinstance(msg, GiftEvent):
            assert msg.coins == gift.coins * msg.count, msg
        if isinstance(msg, ComboProgress) or msg.combo is not None:
            assert gift.streakable, f"{msg.gift!r} cannot be streaked"
    assert seen >= 5


# -- every timeout and default the doc states is the server's ------------------------------------


def test_documented_defaults_are_the_servers() -> None:
    from server.config import ENV_NAMES, Config
    from server.serve import uvicorn_config

    text = DOC.read_text(encoding="utf-8")
    stated = re.findall(r"`(GIFTWIRE_[A-Z_]+)`(?:\s+seconds)?,\s+default\s+(\d+)", text)
    fields = {var: name for name, var in ENV_NAMES.items()}
    defaults = Config()
    assert {var for var, _ in stated} >= {
        "GIFTWIRE_HEARTBEAT_S", "GIFTWIRE_IDLE_TIMEOUT_S", "GIFTWIRE_HELLO_TIMEOUT_S",
        "GIFTWIRE_WS_PING_INTERVAL_S", "GIFTWIRE_WS_PING_TIMEOUT_S",
        "GIFTWIRE_RATE_PER_S", "GIFTWIRE_RATE_BURST",
    }
    for var, value in stated:
        assert getattr(defaults, fields[var]) == int(value), var
    # The keepalive the doc describes is what uvicorn is told to do.
    uv = uvicorn_config(defaults)
    assert (uv.ws_ping_interval, uv.ws_ping_timeout) == (
        defaults.ws_ping_interval_s, defaults.ws_ping_timeout_s)
    assert defaults.hello_timeout_s == limits.HELLO_TIMEOUT_S
    # The WebSocket layer's frame cap behind close 1009, as the close code table states it.
    rows = {int(row[0]): " | ".join(row[1:]) for row in section("Close codes").rows
            if row[0].isdigit()}
    assert defaults.ws_max_message_bytes == 64 * 1024 and "64 KiB" in rows[1009]


def test_the_welcome_example_announces_the_default_timeouts() -> None:
    from protocol import Welcome
    from server.config import Config

    (welcome,) = [m for m in example_messages() if isinstance(m, Welcome)][:1]
    defaults = Config()
    assert (welcome.heartbeat_s, welcome.idle_timeout_s) == (
        defaults.heartbeat_s, defaults.idle_timeout_s)
    assert welcome.idle_timeout_s >= limits.MIN_IDLE_TIMEOUT_HEARTBEATS * welcome.heartbeat_s


# -- close codes and HTTP codes ------------------------------------------------------------------


def test_close_code_rows_name_the_websocket_layer_keepalive() -> None:
    rows = {int(row[0]): " | ".join(row[1:]) for row in section("Close codes").rows
            if row[0].isdigit()}
    assert "keepalive ping timeout" in rows[1011]
    text = DOC.read_text(encoding="utf-8")
    assert "HTTP `403 Forbidden`" in text


def test_hub_doc_lists_only_close_codes_the_server_sends() -> None:
    hub = (DOC.parent / "hub.md").read_text(encoding="utf-8")
    top, _ = parse(hub)
    (close,) = [s for title, s in top.items() if title.startswith("Close codes")]
    codes = {int(c) for row in close.rows for c in re.findall(r"\b(\d{4})\b", row[0])}
    assert codes and codes <= {int(code) for code in CloseCode}
    assert "HTTP 403" in hub


def _http_codes() -> set[str]:
    """Every error code the HTTP layer can answer: literals given to the problem helpers, the
    fallback table of server/app.py, and the statuses the money scripts return."""
    import ast

    root = DOC.parents[1]
    found: set[str] = set()
    helpers = {"refusal", "HTTPProblem", "problem", "ReceiptError", "AuthError"}
    for path in [*(root / "server" / "web").glob("*.py"), root / "server" / "app.py",
                 root / "server" / "edge" / "transport" / "gate.py",
                 root / "server" / "money" / "payments.py", root / "server" / "auth.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in helpers:
                    found |= {a.value for a in node.args if isinstance(a, ast.Constant)
                              and isinstance(a.value, str) and re.fullmatch(r"[a-z_]+", a.value)}
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "ErrorCode":
                found.add(ErrorCode[node.attr].value)
    for lua in (root / "server" / "storage" / "lua").glob("*.lua"):
        found |= set(re.findall(r"return \{'([a-z_]+)'", lua.read_text(encoding="utf-8")))
    # Not errors: room_not_live is refined; blocks_unloaded makes the wallet load and call again.
    return found - {"ok", "dup", "room_not_live", "blocks_unloaded"}


def test_every_http_error_code_is_a_documented_code() -> None:
    codes = _http_codes()
    assert {"not_found", "method_not_allowed", "insufficient_funds"} <= codes
    assert codes <= {code.value for code in ErrorCode}


def test_seq_and_combo_count_are_stated_as_the_server_does_them() -> None:
    # tests/hub/test_contract.py shows the behaviour: seqs 1, 2, 3, 4 and clicks of 2 counting
    # 2, 4, 6; the doc must promise exactly that, not "increasing" or "clicks so far".
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert "`seq` is contiguous" in text and "not guaranteed to be contiguous" not in text
    combo = message_sections("Server messages")["combo"]
    (count,) = [row for row in combo.rows if row[0] == "`count`"]
    assert "sum of its clicks' `count`s" in count[3]
    assert "A click's `count` MAY be more than 1" in text
