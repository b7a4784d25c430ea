"""One format for every draft a reader is shown, so its source cannot be told from its style.

Model drafts and resident reports differ in surface habits (a bracketed source tag, line
breaks, spacing, capitals, missing full stops). Every draft is rewritten to the same shape:
sentences with a capital first letter and a full stop, separated by single spaces. The words
are left alone: changing them would change what the reader has to edit.
"""

from __future__ import annotations

import re

BLINDED_LABEL = "Draft report"
_SOURCE_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*|\s+\|\s+")


def normalise_draft(text: str) -> str:
    """The blinded form of one report section."""
    text = _SOURCE_TAG.sub("", text)
    sentences = []
    for piece in _SENTENCE_END.split(text):
        sentence = " ".join(piece.split()).strip(" -*•")
        if not sentence:
            continue
        sentence = sentence[0].upper() + sentence[1:]
        if sentence[-1] not in ".!?":
            sentence += "."
        sentences.append(sentence)
    return " ".join(sentences)
