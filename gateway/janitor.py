"""The full gateway's housekeeping thread: partial receptions, spool retention, spool space.

At start it settles files a crashed purge left aside (``gateway.retention``), then applies
retention and checks the spool's free space; from then on it checks the free space every
``SPACE_CHECK_SECONDS`` (a statvfs call) and at once when the intake finds it below the target
(``wake``; at most once a second while nothing more can go), and every ``ROUND_SECONDS``
removes partial receptions and applies retention. A dead database or a disk error skips a
step with a log line; the gateway keeps receiving, and the next check tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.retention import recover_set_aside, run_retention
from gateway.space_purge import free_space
from gateway.spool import Spool
from radraft.logs import log_event
from radraft.settings import Settings
from radraft.timeutil import utcnow

logger = logging.getLogger(__name__)
T = TypeVar("T")

INCOMING_MAX_AGE_SECONDS = 3600.0
ROUND_SECONDS = 600.0
SPACE_CHECK_SECONDS = 30.0
MIN_CHECK_GAP_SECONDS = 1.0
"""Between two checks at least, once a check found nothing more to purge: a flood of instances
arriving short of space then wakes one check a second, not one query per instance."""


class Janitor:
    """Runs until ``stop`` is set (``run`` is a thread's target)."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        spool: Spool,
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._factory = session_factory
        self._spool = spool
        self._stop = stop
        self._sr_deliveries = settings.sr_destination is not None
        self._was_short = False
        self._woken = threading.Event()

    def wake(self) -> None:
        """Check the free space now (the intake found it below the target; the stop, too)."""
        self._woken.set()

    def run(self) -> None:
        """Settle a crashed purge's leftovers, then check and clean until the stop."""
        self._keep_going(lambda: recover_set_aside(self._factory, self._spool))
        self.apply_retention()
        self.check_space()
        last_round = time.monotonic()
        while not self._stop.is_set():
            self._woken.wait(SPACE_CHECK_SECONDS)
            self._woken.clear()
            if self._stop.is_set():
                return
            self.check_space()
            if time.monotonic() - last_round >= ROUND_SECONDS:
                last_round = time.monotonic()
                self._spool.clean_incoming(older_than_seconds=INCOMING_MAX_AGE_SECONDS)
                self.apply_retention()
            if self._was_short:  # nothing more could go: let a flood of wakes wait a little
                self._stop.wait(MIN_CHECK_GAP_SECONDS)

    def apply_retention(self) -> None:
        """Purge rounds until none is left waiting (each one bounded) or the gateway stops."""
        days = self._settings.spool_retention_days
        if days is None:
            return
        while not self._stop.is_set():
            done = self._keep_going(
                lambda: run_retention(self._factory, self._spool, retention_days=days,
                                      sr_deliveries=self._sr_deliveries, now=utcnow())
            )  # fmt: skip
            if done is None or not done.purged or not done.more_waiting:
                return  # the next round tries again; a round that freed nothing would spin

    def check_space(self) -> None:
        """Below ``RADRAFT_SPOOL_TARGET_FREE_BYTES``: purge for space; say once when nothing
        more can go (the gateway will refuse instances at the floor)."""
        target = self._settings.spool_target_free_bytes
        if target is None:
            return
        done = self._keep_going(
            lambda: free_space(self._factory, self._spool, target_free_bytes=target,
                               sr_deliveries=self._sr_deliveries, now=utcnow())
        )  # fmt: skip
        if done is None:
            return
        if done.short and not self._was_short:
            log_event(logger, "gateway.spool_short_of_space", logging.WARNING,
                      free_bytes=done.free_bytes, target_free_bytes=target,
                      reason="no settled study idle an hour is left to purge")  # fmt: skip
        self._was_short = done.short

    @staticmethod
    def _keep_going(step: Callable[[], T]) -> T | None:
        try:
            return step()
        except (SQLAlchemyError, OSError) as error:
            log_event(logger, "gateway.janitor_failed", logging.ERROR, error=type(error).__name__)
            return None
