"""Purging for space: when the spool's disk runs short, settled studies go before their time.

Retention by age (``gateway.retention``) keeps the spool's size in step with the department's
volume, but a burst of studies, a larger modality or a smaller disk can still bring the free
space down to ``RADRAFT_SPOOL_MIN_FREE_BYTES``, where the gateway refuses every instance. With
``RADRAFT_SPOOL_TARGET_FREE_BYTES`` set, the gateway checks the free space every half minute,
and at once when an arriving instance finds it below the target (``gateway.janitor``); below
it, it purges studies by the same rule as retention (settled, undisputed, nothing still to do
with their images) but idle only an hour, the longest idle first, until the free space is back
at the target. Unsigned drafts are never taken: if only they are left,
the gateway refuses instances at the floor as before, and says why in its log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from gateway.retention import (
    STUDIES_PER_ROUND,
    PurgedStudy,
    RetentionRule,
    purge_candidates,
    purge_studies,
)
from gateway.spool import Spool
from radraft.db import session_scope
from radraft.logs import log_event

logger = logging.getLogger(__name__)

MIN_IDLE = timedelta(hours=1)
"""A study signed or received within this time keeps its files even when space runs short:
its readers may still be looking at it."""


@dataclass(frozen=True)
class SpaceRound:
    """What one check did: the studies purged, and the free space after."""

    purged: tuple[PurgedStudy, ...]
    free_bytes: int
    short: bool
    """Still below the target after the round (nothing more could go)."""


def free_space(
    factory: sessionmaker[Session], spool: Spool, *, target_free_bytes: int, sr_deliveries: bool,
    now: datetime, actor: str = "gateway", limit: int = STUDIES_PER_ROUND,
) -> SpaceRound:  # fmt: skip
    """Purge settled studies, the longest idle first, until the spool's disk has
    ``target_free_bytes`` free or none is left to take; nothing if it already has."""
    free = spool.free_bytes()
    if free >= target_free_bytes:
        return SpaceRound((), free, short=False)
    rule = RetentionRule(now - MIN_IDLE, sr_deliveries, reason="free_space")
    with session_scope(factory) as session:
        candidates = purge_candidates(session, rule, limit)
    purged = purge_studies(factory, spool, candidates, rule=rule, now=now, actor=actor,
                           enough=lambda: spool.free_bytes() >= target_free_bytes)  # fmt: skip
    free = spool.free_bytes()
    done = SpaceRound(tuple(purged), free, short=free < target_free_bytes)
    if purged:
        log_event(logger, "gateway.spool_purged_for_space", studies=len(purged),
                  files=sum(p.files for p in purged), bytes=sum(p.bytes for p in purged),
                  free_bytes=free, target_free_bytes=target_free_bytes)  # fmt: skip
    return done
