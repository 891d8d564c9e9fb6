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
