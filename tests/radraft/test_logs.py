"""Log lines stay lines: peers' bytes escaped, library traces folded, thread deaths reported."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

from radraft.log_lines import (
    LINE_FORMAT,
    OneLineFormatter,
    log_uncaught_thread_error,
)
from radraft.logs import log_event


def formatted(name: str, message: str, *, error: BaseException | None = None) -> str:
    """``message`` logged at ERROR on logger ``name`` and formatted as the services do."""
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)
    return OneLineFormatter(LINE_FORMAT).format(record)


def raised(error: BaseException) -> BaseException:
    """``error`` with a traceback, as an ``except`` clause sees it."""
    try:
        raise error
    except BaseException as caught:
        return caught


def test_a_value_with_a_line_break_or_a_control_sequence_stays_on_its_line() -> None:
    forged = "1.2.3\n2026-12-01 00:00:00,000 INFO gateway.intake gateway.instance_stored\x1b[2J"
    line = formatted("gateway.intake", f"gateway.instance_refused sop_class={forged}")
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.endswith("sop_class=1.2.3\\n2026-12-01 00:00:00,000 INFO gateway.intake "
                         "gateway.instance_stored\\x1b[2J")  # fmt: skip


def test_characters_outside_ascii_are_escaped_not_dropped() -> None:
    line = formatted("gateway.intake", "gateway.instance_refused sop_class=1.¿.840")
    assert line.endswith("sop_class=1.\\xbf.840")


def test_a_library_exception_is_one_line_with_its_type() -> None:
    error = raised(ValueError("Invalid 'Called AE Title' value"))
    line = formatted("pynetdicom.dul", "Exception in DUL.run(), aborting association", error=error)
    assert "\n" not in line
    assert "Traceback" not in line
    assert line.endswith("Exception in DUL.run(), aborting association (ValueError)")


def test_our_own_exception_keeps_its_traceback() -> None:
    error = raised(KeyError("status"))
    text = formatted("gateway.pdata", "Exception in the C-STORE intake", error=error)
    first, *rest = text.splitlines()
    assert first.endswith("Exception in the C-STORE intake")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "KeyError: 'status'"


def test_a_thread_ended_by_an_exception_logs_where_not_what(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The message may quote what the thread handled (here a name): only type and place."""
    monkeypatch.setattr(threading, "excepthook", log_uncaught_thread_error)

    def handle_order() -> None:
        raise KeyError("DOE^JANE")

    with caplog.at_level(logging.ERROR, logger="radraft.threads"):
        thread = threading.Thread(target=handle_order, name="order-intake")
        thread.start()
        thread.join()
    [record] = [r for r in caplog.records if r.name == "radraft.threads"]
    message = record.getMessage()
    assert message.startswith("thread.uncaught_error thread=order-intake error=KeyError at=")
    assert "test_logs.py" in message
    assert ":handle_order" in message
    assert "DOE" not in message


def test_a_thread_that_exits_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(threading, "excepthook", log_uncaught_thread_error)
    with caplog.at_level(logging.ERROR, logger="radraft.threads"):
        thread = threading.Thread(target=sys.exit)
        thread.start()
        thread.join()
    assert not [r for r in caplog.records if r.name == "radraft.threads"]


def test_structured_events_are_escaped_too(caplog: pytest.LogCaptureFixture) -> None:
    """``log_event`` leaves escaping to the formatter, so every handler of ours gets it."""
    logger = logging.getLogger("gateway.test")
    with caplog.at_level(logging.WARNING, logger="gateway.test"):
        log_event(logger, "gateway.refused", logging.WARNING, calling_ae="A\r\nB")
    [record] = caplog.records
    line = OneLineFormatter(LINE_FORMAT).format(record)
    assert line.endswith("gateway.refused calling_ae=A\\r\\nB")


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "Non-conformant 'Affected SOP Instance UID' value '1.2.826.0.1.3680043.10.01'",
            "Non-conformant 'Affected SOP Instance UID' value (withheld)",
        ),
        (
            "Invalid 'Called AE Title' value 'RAD\\RAFT' - must not contain control characters "
            "or backslashes",
            "Invalid 'Called AE Title' value (withheld) - must not contain control characters "
            "or backslashes",
        ),
        (
            "Unable to decode '31 2E 32 2E C3 38' using the ascii codec(s)",
            "Unable to decode (withheld) using the ascii codec(s)",
        ),
        ("Unknown PDU type received '0x00'", "Unknown PDU type received '0x00'"),
    ],
    ids=["non-conformant UID", "invalid AE title", "undecodable bytes", "no value"],
)
def test_values_pynetdicom_quotes_are_withheld(message: str, shown: str) -> None:
    """A sender whose UIDs have leading zeros would otherwise put every SOP Instance UID in the
    log (pynetdicom warns once per C-STORE), and those stay out like names."""
    assert formatted("pynetdicom.utils", message).endswith(f"pynetdicom.utils {shown}")


def test_a_value_in_a_library_exception_is_withheld_too() -> None:
    error = raised(ValueError("Unable to decode '31 2E 32 2E C3' using the ascii codec(s)"))
    line = formatted("pynetdicom.dul", str(error), error=error)
    assert line.endswith("Unable to decode (withheld) using the ascii codec(s) (ValueError)")


def test_our_own_lines_are_not_withheld() -> None:
    """The gateway's own events choose their fields; only the escaping applies."""
    message = "gateway.instance_refused sop_class=1.2.840.10008.5.1.4.1.1.1.1 status=0xA900"
    assert formatted("gateway.intake", message).endswith(message)


@pytest.mark.parametrize("configured", [True, False])
def test_no_progress_bars_from_transformers_once_logging_is_configured(configured: bool) -> None:
    """Loading a checkpoint drew bars of block characters and carriage returns in the log."""
    setup = (
        "from radraft.logs import configure_logging; configure_logging(); " if configured else ""
    )
    probe = setup + (
        "from transformers.utils import logging; print(logging.is_progress_bar_enabled())"
    )
    environment = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env=environment, timeout=120, check=True)  # fmt: skip
    assert shown.stdout.strip() == str(not configured)
