"""Structured logging without PHI: a dotted event name plus internal ids and measurements."""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom import _config as pynetdicom_config


def configure_logging(level: str = "INFO") -> None:
    """Set up process logging and silence library output that can carry PHI.

    pynetdicom logs C-FIND/MOVE/GET identifiers by default and dumps PDUs at DEBUG; both are
    switched off, and pynetdicom's own logger stays at WARNING whatever our level is.
    """
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event key=value ...``; callers pass only ids, AE titles, sizes and statuses."""
    if not logger.isEnabledFor(level):
        return
    parts = [event] + [f"{key}={value}" for key, value in fields.items()]
    logger.log(level, " ".join(parts))
