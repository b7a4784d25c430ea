"""Word-level differences between two report texts (revision history and edit metrics).

Words are compared, not characters: a radiologist reads "no effusion" -> "small effusion" as
one changed word, and the timing study's word edit rate counts the same units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

_TOKEN = re.compile(r"\s+|[^\s]+")

DiffOp = Literal["equal", "insert", "delete"]


@dataclass(frozen=True)
class DiffPiece:
    """A run of text that both versions share, or that only the new or the old one has."""

    op: DiffOp
    text: str


def words(text: str) -> list[str]:
    """The words of ``text`` (whitespace dropped)."""
    return text.split()


def word_diff(old: str, new: str) -> list[DiffPiece]:
    """Pieces that rebuild ``old`` (equal + delete) and ``new`` (equal + insert), in order."""
    old_tokens = _TOKEN.findall(old)
    new_tokens = _TOKEN.findall(new)
    matcher = SequenceMatcher(a=old_tokens, b=new_tokens, autojunk=False)
    pieces: list[DiffPiece] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            _append(pieces, "equal", "".join(old_tokens[a0:a1]))
            continue
        if tag in ("delete", "replace"):
            _append(pieces, "delete", "".join(old_tokens[a0:a1]))
        if tag in ("insert", "replace"):
            _append(pieces, "insert", "".join(new_tokens[b0:b1]))
    return pieces


def _append(pieces: list[DiffPiece], op: DiffOp, text: str) -> None:
    if not text:
        return
    if pieces and pieces[-1].op == op:
        pieces[-1] = DiffPiece(op, pieces[-1].text + text)
    else:
        pieces.append(DiffPiece(op, text))


def word_edit_distance(old: str, new: str) -> int:
    """Levenshtein distance counted in words (insertions, deletions, substitutions)."""
    a, b = words(old), words(new)
    previous = list(range(len(b) + 1))
    for i, word_a in enumerate(a, start=1):
        current = [i]
        for j, word_b in enumerate(b, start=1):
            cost = 0 if word_a == word_b else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1]
