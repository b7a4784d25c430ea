"""Timing of an edit session, derived from its raw events (which are kept, so it can be redone).

Times use the server's stamps: a page reload restarts the browser's monotonic clock, the
server's clock goes on. A gap between two events longer than the idle threshold is idle, not
reading or editing; so is an explicit idle_start..idle_end span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from radraft.enums import TimingEventType


@dataclass(frozen=True)
class StampedEvent:
    """One stored event."""

    event_type: TimingEventType
    server_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class SessionTimes:
    """Derived per session; seconds, or None where the event never happened."""

    total_seconds: float
    active_seconds: float
    time_to_first_input_seconds: float | None
    edit_seconds: float | None
    keystrokes: int
    characters_inserted: int
    characters_deleted: int
    pasted: bool

    def columns(self) -> dict[str, float | int | bool | None]:
        """The times as table columns, named the same in every export and analysis."""
        return {
            "total_s": self.total_seconds,
            "active_s": self.active_seconds,
            "time_to_first_input_s": self.time_to_first_input_seconds,
            "edit_s": self.edit_seconds,
            "keystrokes": self.keystrokes,
            "characters_inserted": self.characters_inserted,
            "characters_deleted": self.characters_deleted,
            "pasted": self.pasted,
        }


def derive_times(events: Sequence[StampedEvent], *, idle_threshold: float) -> SessionTimes:
    """Total, active and editing times and edit counts of one session's events."""
    ordered = sorted(events, key=lambda e: e.server_at)
    if not ordered:
        return SessionTimes(0.0, 0.0, None, None, 0, 0, 0, False)
    start = ordered[0].server_at
    total = (ordered[-1].server_at - start).total_seconds()
    active = 0.0
    idle = False
    for previous, current in pairwise(ordered):
        if previous.event_type == TimingEventType.IDLE_START:
            idle = True
        if previous.event_type == TimingEventType.IDLE_END:
            idle = False
        gap = (current.server_at - previous.server_at).total_seconds()
        if not idle and gap <= idle_threshold:
            active += gap
    active = min(active, total)  # a sum of gaps can exceed the span by rounding only
    inputs = [
        e for e in ordered if e.event_type in (TimingEventType.FIRST_INPUT, TimingEventType.INPUT)
    ]
    submits = [e for e in ordered if e.event_type == TimingEventType.SUBMIT]
    first_input = (inputs[0].server_at - start).total_seconds() if inputs else None
    edit = None
    if inputs and submits:
        edit = (submits[-1].server_at - inputs[0].server_at).total_seconds()
    return SessionTimes(
        total_seconds=total,
        active_seconds=active,
        time_to_first_input_seconds=first_input,
        edit_seconds=edit,
        keystrokes=sum(int(e.payload.get("keystrokes", 0)) for e in inputs),
        characters_inserted=sum(int(e.payload.get("inserted", 0)) for e in inputs),
        characters_deleted=sum(int(e.payload.get("deleted", 0)) for e in inputs),
        pasted=any(bool(e.payload.get("paste")) for e in inputs),
    )
