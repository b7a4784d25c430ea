"""Derived session times from raw events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from radraft.enums import TimingEventType
from reporting.timing import StampedEvent, derive_times

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def at(seconds: float, kind: TimingEventType, **payload: object) -> StampedEvent:
    return StampedEvent(kind, T0 + timedelta(seconds=seconds), dict(payload))


def test_idle_gaps_and_idle_spans_are_not_active() -> None:
    events = [
        at(0, TimingEventType.OPENED),
        at(2, TimingEventType.DRAFT_SHOWN),
        at(12, TimingEventType.FIRST_INPUT, keystrokes=1, inserted=1),
        at(20, TimingEventType.INPUT, keystrokes=30, inserted=25, deleted=4),
        at(80, TimingEventType.INPUT, keystrokes=5, inserted=50, paste=True),  # 60 s gap: idle
        at(85, TimingEventType.IDLE_START),
        at(95, TimingEventType.IDLE_END),  # 10 s declared idle
        at(100, TimingEventType.SUBMIT),
    ]
    times = derive_times(events, idle_threshold=30)
    assert times.total_seconds == 100
    assert times.active_seconds == 100 - 60 - 10
    assert times.time_to_first_input_seconds == 12
    assert times.edit_seconds == 88
    assert (times.keystrokes, times.characters_inserted, times.characters_deleted) == (36, 76, 4)
    assert times.pasted
    assert times.active_seconds <= times.total_seconds


def test_no_events() -> None:
    assert derive_times([], idle_threshold=30).total_seconds == 0
