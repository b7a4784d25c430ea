"""A consumer that takes one drafting message and dies before claiming the job.

Run as ``python -m tests.vanishing_consumer`` with radraft's settings in the environment: it
receives the next message from the drafting queue the way a worker does (unacknowledged), prints
the job id and waits to be SIGKILLed, as a worker killed between receipt and claim would be.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from radraft.broker import make_celery
from radraft.contract import DRAFTING_QUEUE
from radraft.settings import Settings


def main() -> None:
    app = make_celery(Settings())
    connection = app.connection_for_read()
    channel: Any = connection.default_channel  # kombu types it as the abstract StdChannel
    deadline = time.monotonic() + 30
    while (message := channel.basic_get(DRAFTING_QUEUE, no_ack=False)) is None:
        if time.monotonic() > deadline:
            sys.exit("no drafting message arrived")
        time.sleep(0.05)
    body = message.body if isinstance(message.body, bytes) else message.body.encode()
    args = json.loads(body)[0]
    sys.stdout.write(f"taken job {args[0]}\n")
    sys.stdout.flush()
    time.sleep(600)


if __name__ == "__main__":
    main()
