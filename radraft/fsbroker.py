"""The embedded broker: kombu's filesystem transport, made safe for a disk that fills up.

kombu writes each message straight into the queue folder, so a full disk leaves a torn file
that the worker then fails to decode, and that failure escapes the consumer: the worker
crash-looped on it (``Unrecoverable error: JSONDecodeError``). Here a message is written to a
hidden name, fsync'd and renamed into the queue, so a reader sees whole messages or none (a
failed write raises, and the outbox retries the publish); and a message that does not decode
anyway is moved to ``<broker>/broken`` with a log line, and the worker goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

from radraft.logs import log_event

logger = logging.getLogger(__name__)

TRANSPORT = "radraft.fsbroker:Transport"
"""What Celery's ``broker_transport`` names to use this transport (with ``filesystem://``)."""


class Channel(filesystem.Channel):
    """Whole messages in, broken ones set aside."""

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        """Write the message under a hidden name, fsync it, then rename it into the queue."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = Path(self.data_folder_out) / name
        partial = final.with_name(f".{name}.partial")
        try:
            with open(partial, "wb") as stream:
                stream.write(dumps(payload).encode())
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(partial, final)
        except OSError as error:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise ChannelError(
                f"cannot add a message to queue {queue}: {error.strerror}"
            ) from error

    def _get(self, queue: str) -> dict[str, Any]:  # type: ignore[override]
        """The oldest whole message of ``queue``; one that does not decode is set aside."""
        wanted = f"{queue}.msg"
        folder = Path(self.data_folder_in)
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            taken = Path(self.processed_folder) / name
            try:
                shutil.move(folder / name, taken)
            except OSError:
                continue  # another consumer took it first
            try:
                payload = taken.read_bytes()
            except OSError as error:
                raise ChannelError(f"cannot read message {name}") from error
            try:
                message = loads(payload.decode())
            except (ValueError, UnicodeDecodeError):
                self._set_aside(taken)
                continue
            if not self.store_processed:
                taken.unlink()
            if not isinstance(message, dict):
                self._set_aside(taken)
                continue
            return message
        raise Empty

    def _set_aside(self, path: Path) -> None:
        broken = Path(self.data_folder_in).parent / "broken"
        broken.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.move(path, broken / path.name)
        log_event(logger, "broker.message_set_aside", logging.ERROR, file=path.name)


class Transport(filesystem.Transport):
    """kombu's filesystem transport with radraft's safe channel."""

    Channel = Channel
