"""Reading an HL7 v2 message in ER7 (pipe) encoding: segments and fields, with its own
delimiters, every value unescaped.

The order port reads orders (``gateway.orders``) and ADT merges and updates
(``gateway.patient_merges``) with it; both need only fields by number, their repetitions and the
segments in their order, not a parser that insists on one HL7 version's message structures (a
RIS sends whichever 2.x it speaks).
"""

from __future__ import annotations

from radraft.errors import RadraftError
from radraft.hl7ack import AckCode
from radraft.hl7text import Delimiters, unescape


class OrderRejectedError(RadraftError):
    """The message cannot be used; ``code`` is AE (content) or AR (not ours / not HL7)."""

    def __init__(self, code: AckCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Er7Message:
    """Segments and fields of an ER7 message, read with its own delimiters."""

    def __init__(self, text: str) -> None:
        try:
            self.delimiters = Delimiters.of(text)
        except ValueError as error:
            raise OrderRejectedError(AckCode.REJECT, str(error)) from error
        self.segments: dict[str, list[list[str]]] = {}
        self.ordered: list[list[str]] = []
        """Every segment in the message's order (groups are told apart by where they start)."""
        for line in text.replace("\n", "\r").split("\r"):
            if len(line) >= 3:
                fields = line.split(self.delimiters.field)
                self.segments.setdefault(line[:3], []).append(fields)
                self.ordered.append(fields)

    def first(self, name: str) -> list[str] | None:
        return self.segments.get(name, [None])[0]

    def field(
        self,
        segment: list[str] | None,
        number: int,
        component: int = 0,
        subcomponent: int | None = None,
        repetition: int = 0,
    ) -> str:
        """Field ``number`` (HL7 numbering; MSH shifted by one) of a segment, one component
        (or one of its subcomponents), of one repetition (the first unless told), unescaped."""
        if segment is None:
            return ""
        index = number - 1 if segment[0] == "MSH" else number
        if index >= len(segment):
            return ""
        repetitions = segment[index].split(self.delimiters.repetition)
        if repetition >= len(repetitions):
            return ""
        value = repetitions[repetition]
        parts = value.split(self.delimiters.component)
        raw = parts[component] if component < len(parts) else ""
        if subcomponent is not None:
            pieces = raw.split(self.delimiters.subcomponent)
            raw = pieces[subcomponent] if subcomponent < len(pieces) else ""
        return unescape(raw, self.delimiters).strip()

    def repetition_count(self, segment: list[str] | None, number: int) -> int:
        """How many repetitions a (non-MSH) field has, empty ones included (0 if absent)."""
        if segment is None or number >= len(segment) or not segment[number]:
            return 0
        return segment[number].count(self.delimiters.repetition) + 1

    def repetitions(self, segment: list[str] | None, number: int) -> list[str]:
        """The first component of every repetition of a (non-MSH) field, unescaped, empty ones
        left out."""
        if segment is None or number >= len(segment):
            return []
        values = (
            repetition.split(self.delimiters.component)[0]
            for repetition in segment[number].split(self.delimiters.repetition)
        )
        return [text for value in values if (text := unescape(value, self.delimiters).strip())]
