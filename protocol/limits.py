"""Every size and count limit of the wire protocol, in one place.

The server enforces these, the load tester respects them, and docs/protocol.md quotes them; a limit
that lives anywhere else drifts. String lengths are in UTF-8 bytes, which equals characters for
identifiers because identifiers are ASCII.
"""

from typing import Final

PROTOCOL_VERSION: Final = 1
# Versions a `hello` may name. One today; a server in transition can list two.
SUPPORTED_VERSIONS: Final = frozenset({PROTOCOL_VERSION})

# Client frames are small requests; 4 KiB bounds per-frame parse work and memory per connection.
MAX_CLIENT_FRAME_BYTES: Final = 4096
# Server frames carry batches of events; a client decoder needs a bound too, but a generous one.
MAX_SERVER_FRAME_BYTES: Final = 1 << 20
# JSON from clients (text frames, HTTP bodies) nested deeper than this is refused: no request is
# more than one map deep, and a bound of our own replaces the interpreter's recursion limit.
# (msgpack's decoder has its own fixed stack bound and never recurses in Python.)
MAX_JSON_DEPTH: Final = 16

MAX_ROOM_ID_LEN: Final = 64
MAX_GIFT_ID_LEN: Final = 32
MAX_TX_ID_LEN: Final = 64
MAX_COMBO_ID_LEN: Final = 64
MAX_REQUEST_ID_LEN: Final = 64
# A room's epoch id (the server makes 12 characters); a client sends back the one it was given.
MAX_EPOCH_LEN: Final = 32
# A battle's id (the server makes 32 hex characters).
MAX_BATTLE_ID_LEN: Final = 64
MAX_CLIENT_NAME_LEN: Final = 64
# User ids are opaque (a token's `sub`); the HTTP routes that name a user (room moderation, the
# creator dashboard) bound them by this.
MAX_USER_LEN: Final = 128
# No v1 client message carries free text; reserved so chat-like additions share one bound.
MAX_MESSAGE_TEXT_LEN: Final = 256
# Display names (a token's `name`, shown with gifts and on the leaderboard), in characters (code
# points) after NFC normalisation; see protocol/names.py for the character policy.
MAX_DISPLAY_NAME_LEN: Final = 32
# Zero-width joiners/non-joiners in one display name: enough for emoji sequences (a family of
# four needs 3), not for invisible padding.
MAX_DISPLAY_NAME_JOINERS: Final = 4
# Combining marks on one character (accents stack 1-2 deep in real scripts; "zalgo" text stacks
# dozens and overflows the lines around it).
MAX_COMBINING_MARKS: Final = 3
# Also bounds `?token=` in the URL, which is why it exceeds what fits in a hello frame.
MAX_TOKEN_LEN: Final = 4096

# A single send of 1,000 of one gift is already far beyond any real tap rate; larger counts are
# almost certainly bugs or abuse, and a bound keeps the coin arithmetic far from overflow.
MAX_GIFT_COUNT: Final = 1000

# Every integer on the wire stays within JavaScript's safe range so the browser overlay, which
# decodes numbers as doubles, sees exactly what the server sent.
MAX_SAFE_INT: Final = 2**53 - 1

MAX_ROOMS_PER_CONNECTION: Final = 8

# The server closes a connection that has not completed `hello` within this many seconds (4011):
# the default of the server's `hello_timeout_s` setting.
HELLO_TIMEOUT_S: Final = 10
# The idle timeout (4010) a server announces in `welcome.idle_timeout_s` is at least this many
# heartbeat intervals, so a client that pings every `heartbeat_s` survives one late or lost ping;
# the server refuses a configuration that breaks it.
MIN_IDLE_TIMEOUT_HEARTBEATS: Final = 2
# After this many rejected frames on one connection the server stops answering and closes (4002):
# a client that keeps sending garbage is broken or hostile, not unlucky.
MAX_PROTOCOL_ERRORS: Final = 10

# Identifiers (room, gift, tx, combo, request ids) use RFC 3986's unreserved characters only: safe
# in URLs, log lines and Redis key names (no `{`/`}` that would break hash tags).
IDENTIFIER_PATTERN: Final = r"[A-Za-z0-9._~-]+"
