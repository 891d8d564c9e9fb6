"""The display-name policy: what a name shown to a whole room may contain.

A display name reaches every viewer and the creator's overlay (gift events, the leaderboard), so it
must not be able to disturb the text around it. `display_name` normalises to NFC (one spelling per
visible name), then refuses, with `invalid_display_name`:
- empty names, names over `MAX_DISPLAY_NAME_LEN` characters, leading or trailing spaces, runs of
  spaces, and any space but U+0020;
- control characters (Cc), line and paragraph separators (Zl, Zp), surrogates, private-use and
  unassigned code points;
- format characters (Cf): bidi overrides, embeddings, isolates and marks (U+202A-202E,
  U+2066-2069, U+200E/200F, U+061C) that reorder the text after the name, zero-width spaces,
  word joiners, BOMs, invisible operators, tag characters;
- except zero-width joiners and non-joiners (U+200D, U+200C), which emoji sequences need: at most
  `MAX_DISPLAY_NAME_JOINERS`, each between two visible characters (not first or last, not next
  to a space or another joiner);
- more than `MAX_COMBINING_MARKS` combining marks on one character, or a mark with no character.
"""

import unicodedata

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_COMBINING_MARKS, MAX_DISPLAY_NAME_JOINERS, MAX_DISPLAY_NAME_LEN

JOINERS = frozenset("\u200c\u200d")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _refuse(why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_DISPLAY_NAME, f"display name: {why}")


def display_name(value: str) -> str:
    """The name in NFC; raises ProtocolError(invalid_display_name) when the policy refuses it."""
    name = unicodedata.normalize("NFC", value)
    if not name:
        raise _refuse("must not be empty")
    if len(name) > MAX_DISPLAY_NAME_LEN:
        raise _refuse(f"longer than {MAX_DISPLAY_NAME_LEN} characters")
    if name[0] == " " or name[-1] == " " or "  " in name:
        raise _refuse("no leading, trailing or repeated spaces")
    joiners = marks = 0
    for i, ch in enumerate(name):
        if ch in JOINERS:
            joiners += 1
            if (joiners > MAX_DISPLAY_NAME_JOINERS or i == 0 or i == len(name) - 1
                    or not _visible(name[i - 1]) or not _visible(name[i + 1])):
                raise _refuse(f"U+{ord(ch):04X} only between two visible characters, "
                              f"at most {MAX_DISPLAY_NAME_JOINERS} times")
            marks = 0
            continue
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES or (category == "Zs" and ch != " "):
            raise _refuse(f"U+{ord(ch):04X} ({category}) is not allowed")
        if category.startswith("M"):
            marks += 1
            if i == 0 or marks > MAX_COMBINING_MARKS:
                raise _refuse(f"at most {MAX_COMBINING_MARKS} combining marks per character")
        else:
            marks = 0
    return name


def _visible(ch: str) -> bool:
    return ch != " " and ch not in JOINERS and unicodedata.category(ch) not in _REFUSED_CATEGORIES
