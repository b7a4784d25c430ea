"""HL7 v2 text on the wire: character sets (MSH-18), delimiters (MSH-1/2), escape sequences.

Shared by order intake (gateway) and ORU delivery (reporting). Writing is strict: every value is
escaped, and the bytes are in the character set MSH-18 names. Reading is tolerant of versions
and separators, and precise when the bytes do not match the declared character set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from radraft.errors import RadraftError

HL7_CHARACTER_SETS = {
    "ASCII": "ascii",
    "8859/1": "iso8859_1",
    "8859/2": "iso8859_2",
    "8859/3": "iso8859_3",
    "8859/4": "iso8859_4",
    "8859/5": "iso8859_5",
    "8859/6": "iso8859_6",
    "8859/7": "iso8859_7",
    "8859/8": "iso8859_8",
    "8859/9": "iso8859_9",
    "8859/15": "iso8859_15",
    "ISO IR14": "iso2022_jp",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
}
"""HL7 table 0211 names and the Python codec of each (UTF-16/32 and CNS 11643 are not supported:
MLLP frames by single bytes, which UTF-16 and UTF-32 text can contain)."""


class CharacterSetError(RadraftError):
    """MSH-18 names a character set radraft cannot read, or the bytes are not in it."""


def python_codec(hl7_name: str) -> str:
    """The Python codec of an HL7 table 0211 character set name (case and spaces tolerated)."""
    key = " ".join(hl7_name.upper().split())
    try:
        return HL7_CHARACTER_SETS[key]
    except KeyError:
        raise ValueError(f"unsupported HL7 character set {hl7_name!r}") from None


@dataclass(frozen=True)
class Delimiters:
    """The encoding characters of a message: MSH-1 and the four of MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def of(cls, message: str) -> Delimiters:
        """Read the delimiters from a message's MSH segment (defaults where it omits some).

        Raises
        ------
        ValueError
            If the declared delimiters are not five distinct printable punctuation
            characters: an answer written with them could not be read back.
        """
        if not message.startswith("MSH") or len(message) < 4:
            return cls()
        field = message[3]
        encoding = message[4:].split(field, 1)[0]
        defaults = "^~\\&"
        chars = [encoding[i] if i < len(encoding) else defaults[i] for i in range(4)]
        declared = [field, *chars]
        usable = all(
            not c.isalnum() and not c.isspace() and c.isprintable() and c.isascii()
            for c in declared
        )
        if not usable or len(set(declared)) != len(declared):
            raise ValueError("MSH-1/MSH-2 do not declare usable delimiters")
        return cls(field, chars[0], chars[1], chars[2], chars[3])


STANDARD = Delimiters()


def message_character_set(raw: bytes) -> str:
    """MSH-18 (its first repetition) read from the raw bytes; empty if absent.

    MSH up to field 18 is ASCII in every character set radraft supports, so it can be read
    before the message is decoded.
    """
    if not raw.startswith(b"MSH") or len(raw) < 8:
        return ""
    separator = raw[3:4]
    first_segment = re.split(rb"[\r\n]", raw, maxsplit=1)[0]
    fields = first_segment.split(separator)
    # fields[0] is "MSH", fields[1] MSH-2, so MSH-n is fields[n - 1].
    if len(fields) < 18:
        return ""
    repetition = raw[5:6] or b"~"
    value = fields[17].split(repetition)[0]
    return value.decode("ascii", "replace").strip()


def decode_message(raw: bytes) -> tuple[str, str]:
    """Decode a received message by its MSH-18; returns (text, the MSH-18 value read).

    Without MSH-18 the standard's default is ASCII; UTF-8 is read too, since it is a superset
    that senders use without saying so.

    Raises
    ------
    CharacterSetError
        If MSH-18 names an unsupported set, or the bytes are not valid in the declared one.
    """
    declared = message_character_set(raw)
    try:
        codec = python_codec(declared) if declared else "utf-8"
    except ValueError as error:
        raise CharacterSetError(str(error)) from error
    try:
        return raw.decode(codec), declared
    except UnicodeDecodeError as error:
        raise CharacterSetError(
            f"message bytes are not valid {declared or 'ASCII/UTF-8'} (MSH-18)"
        ) from error


FORMATTING = re.compile(r"^\.(br|sp\d*|in[+-]?\d*|ti[+-]?\d*|sk\d*|ce|fi|nf)$")


def unescape(value: str, delimiters: Delimiters = STANDARD) -> str:
    """Decode HL7 escape sequences in one field or component (v2.5.1 section 2.7).

    \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ become the delimiters, \\.br\\ a line break,
    \\Xhh..\\ the bytes it spells (read as Latin-1); highlighting and character-set switches
    are dropped.
    """
    escape = delimiters.escape
    if escape not in value:
        return value
    out: list[str] = []
    position = 0
    while position < len(value):
        start = value.find(escape, position)
        if start < 0:
            out.append(value[position:])
            break
        end = value.find(escape, start + 1)
        if end < 0:
            out.append(value[position:])
            break
        out.append(value[position:start])
        out.append(_escape_sequence(value[start + 1 : end], delimiters))
        position = end + 1
    return "".join(out)


def _escape_sequence(code: str, delimiters: Delimiters) -> str:
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": delimiters.escape,
    }
    if code in simple:
        return simple[code]
    if code.startswith("X") and re.fullmatch(r"X([0-9A-Fa-f]{2})+", code):
        return bytes.fromhex(code[1:]).decode("latin-1")
    if code == ".br":
        return "\n"
    if FORMATTING.match(code) or code in ("H", "N") or code[:1] in ("C", "M", "Z"):
        return ""
    return delimiters.escape + code + delimiters.escape  # unknown: keep as it came


def escape(value: str, delimiters: Delimiters = STANDARD) -> str:
    """Escape a value for ER7 (the escape character first); line breaks become \\.br\\."""
    e = delimiters.escape
    out = value.replace(e, f"{e}E{e}")
    for raw, code in (
        (delimiters.field, "F"),
        (delimiters.component, "S"),
        (delimiters.subcomponent, "T"),
        (delimiters.repetition, "R"),
    ):
        out = out.replace(raw, f"{e}{code}{e}")
    out = out.replace("\r\n", "\n").replace("\r", "\n")
    return out.replace("\n", f"{e}.br{e}")
