"""How a log record becomes one line: peers' bytes escaped, their values withheld, no traces.

The services log to a stream that a journal or a container runtime collects line by line, and
some records carry what a DICOM peer sent (AE titles, UIDs, pynetdicom's complaints about
them). Such bytes must not start a new line, and a library must not write a traceback per
hostile connection; a thread that dies must say so in one line, not in a trace on stderr.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from pathlib import Path

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

ONE_LINE_LIBRARIES = frozenset({"pynetdicom"})
"""Libraries whose logged exceptions become one line (message and type), not a traceback, and
whose quoted values are withheld. pynetdicom logs a trace with ``LOGGER.exception`` for every
PDU it cannot decode: a peer sending garbage would otherwise write some fifteen lines per
connection, at will."""

WITHHELD = "(withheld)"

_PYNETDICOM_VALUES = (
    # utils.validate_uid / validate_ae / set_uid: "Non-conformant 'Affected SOP Instance UID'
    # value '1.2.03...'" (a warning for every C-STORE of a sender whose UIDs have leading
    # zeros) and "Invalid 'Called AE Title' value '...' - must not ...".
    re.compile(r"^((?:Non-conformant|Invalid) '[^']*' value )'.*'( - [^']*)?$", re.DOTALL),
    # utils.decode_bytes: "Unable to decode '31 2E 32 ...' using the ascii codec(s)", a
    # value's bytes in hex.
    re.compile(r"(Unable to decode )'[0-9A-F ]*'()"),
)
"""pynetdicom's messages that quote a value a peer sent: a SOP Instance UID is one, and those
stay out of logs like names and accession numbers (docs/operations.md, Logs)."""

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable(text: str) -> str:
    """``text`` with every character outside printable ASCII written as its escape.

    A value with a line break or a terminal's control sequence in it would forge or hide lines
    in the log; written as ``\\n``, ``\\x1b`` or ``\\xe9`` it stays on its line.
    """
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def withhold_values(message: str) -> str:
    """``message`` with the values pynetdicom quotes replaced by ``(withheld)``."""
    for pattern in _PYNETDICOM_VALUES:
        message = pattern.sub(lambda match: f"{match[1]}{WITHHELD}{match[2] or ''}", message)
    return message


class OneLineFormatter(logging.Formatter):
    """Each record's line in printable ASCII; a library's record without its quoted values,
    and with its exception as the exception's type, not a trace.

    Our own ``logger.exception`` calls keep their tracebacks: they mark a fault of ours.
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.name.partition(".")[0] in ONE_LINE_LIBRARIES:
            record = _library_line(record)
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _library_line(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of a library's ``record`` (other handlers still get it as it was): values
    withheld, and the exception's type in place of its trace."""
    message = withhold_values(record.getMessage())
    if record.exc_info:
        error_type = record.exc_info[0]
        message = f"{message} ({error_type.__name__ if error_type else 'error'})"
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg, copy.args, copy.exc_info, copy.exc_text = message, None, None, None
    return copy


def log_uncaught_thread_error(arguments: threading.ExceptHookArgs) -> None:
    """A thread ended by an exception: one ERROR line with its type and where it was raised.

    Python's default prints the whole trace to stderr, message included, and a message may
    quote what the thread was handling (a value from a data set or an HL7 field); the place
    in the code (the innermost three frames) is what a fault report needs.
    """
    if arguments.exc_type is SystemExit:
        return
    frames = traceback.extract_tb(arguments.exc_traceback)[-3:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(frames))
    thread = arguments.thread.name if arguments.thread else "unknown"
    logging.getLogger("radraft.threads").error(
        "thread.uncaught_error thread=%s error=%s at=%s",
        thread,
        arguments.exc_type.__name__,
        where,
    )
