"""Structured logging without PHI: a dotted event name plus internal ids and measurements."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any

from pydicom import config as pydicom_config
from pynetdicom import _config as pynetdicom_config

from radraft.log_lines import LINE_FORMAT, OneLineFormatter, log_uncaught_thread_error

LIBRARY_LOG_LEVELS = {
    "pynetdicom": logging.WARNING,
    "pydicom": logging.ERROR,
    "highdicom": logging.ERROR,
    "hl7apy": logging.ERROR,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
}
"""Floors for library loggers whose lower records quote UIDs, names or dates (pynetdicom's
warnings are about associations and AE titles, and identifier logging is off; httpx logs each
request's URL at INFO, and a worker's WADO-RS URLs name the study, series and instance)."""


def configure_logging(level: str = "INFO") -> None:
    """Set up process logging and silence library output that can carry PHI.

    pynetdicom logs C-FIND/MOVE/GET identifiers by default and dumps PDUs at DEBUG; both are
    switched off. pydicom, highdicom and hl7apy log and warn with values from the data they
    handle (highdicom logs source SOP Instance UIDs at INFO while building an SR), so their
    loggers have floors whatever our level is, and their value-quoting warnings are off.
    Records are written one line each by ``radraft.log_lines.OneLineFormatter``, and a thread
    that dies of an exception is logged in one line instead of a trace on stderr.
    """
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    # pynetdicom's standard event handlers describe every message and PDU at INFO and DEBUG,
    # which the floor below drops; unbound, they no longer format those texts for nothing
    # while a sender waits for its answer (about 0.3 ms per C-STORE).
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    # pydicom checks values as it reads and warns quoting them ("Invalid value for VR DA:
    # '19xx0101'", a birth date); the gateway validates what it keeps itself, so reading is
    # not checked. Writing stays checked: a bad value we write is an error, not a warning.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    # highdicom warns with the person name itself when a name has one component, and pydicom's
    # warnings about values it writes quote the values.
    warnings.filterwarnings("ignore", message="The string .* is unlikely to represent")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(LINE_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for name, floor in LIBRARY_LOG_LEVELS.items():
        logging.getLogger(name).setLevel(floor)
    threading.excepthook = log_uncaught_thread_error
    # transformers draws progress bars on stderr while it loads or saves a checkpoint (once per
    # worker start): carriage returns and block characters between the log's ASCII lines. The
    # switch is read when huggingface_hub is first imported, which is after this.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def printable_token(text: str, limit: int = 32) -> str:
    """A value a peer chose (an AE title, an HL7 sending application) made safe for one log
    field: printable ASCII without spaces, at most ``limit`` characters, so it can neither
    split the line nor forge another field."""
    return "".join(c if c.isascii() and c.isprintable() and c != " " else "?" for c in text)[:limit]


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event key=value ...``; callers pass only ids, AE titles, sizes and statuses."""
    if not logger.isEnabledFor(level):
        return
    parts = [event] + [f"{key}={value}" for key, value in fields.items()]
    logger.log(level, " ".join(parts))
