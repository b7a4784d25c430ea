"""Celery configuration shared by the producer (outbox relay) and the worker.

With no ``RADRAFT_BROKER_URL`` the broker is kombu's filesystem transport under the data dir: it
needs no server, so the embedded run is one command. With Redis, the visibility timeout is set
above the longest task (``RADRAFT_BROKER_VISIBILITY_TIMEOUT``, default two hours) so a message of a
task still running is not redelivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from radraft.contract import DEFAULT_QUEUE, DRAFTING_QUEUE, TASK_QUEUES
from radraft.fsbroker import TRANSPORT as FILESYSTEM_TRANSPORT
from radraft.outbox import CeleryPublish, Publisher
from radraft.redisbroker import TRANSPORT as REDIS_TRANSPORT
from radraft.settings import Settings

TASK_SOFT_TIME_LIMIT_SECONDS = 600
TASK_HARD_TIME_LIMIT_SECONDS = 660
"""Applied by pools that time their tasks (prefork). The ``threads`` pool that drafting workers
run ignores them, so each wait inside a drafting task has a bound of its own: the generation
timeout, the WADO-RS fetch's deadline, the database's connect timeout."""


REDIS_SOCKET_BOUNDS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "socket_keepalive": True,
}
"""kombu's Redis transport waits without limit by default: a publish, or the gateway's count of
the drafting queue, sent to a broker that accepts a connection and never answers (hung, or a
proxy in front of a dead one) or that vanished mid-command waited for good (tested: still
waiting after 40 s), and with it the outbox relay's one thread. With these a command gives up
after 10 s, as a broker that is down does: the outbox row is retried and the count asked again
later. Workers' BRPOP is not a blocking command here (kombu's event loop reads it, with its own
health check), so a consumer is not cut by ``socket_timeout``."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for radraft's broker, queues and delivery guarantees."""
    config: dict[str, Any] = {
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT_SECONDS,
        "task_time_limit": TASK_HARD_TIME_LIMIT_SECONDS,
        "broker_connection_timeout": 3,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "task_serializer": "json",
        "accept_content": ["json"],
    }
    if settings.embedded_broker:
        queue_dir = settings.broker_dir / "queue"
        processed_dir = settings.broker_dir / "processed"
        queue_dir.mkdir(parents=True, exist_ok=True)
        processed_dir.mkdir(parents=True, exist_ok=True)
        # A host name, though the transport ignores it: without one kombu warns on the first
        # publish that it "reverts to localhost", in the log of every default installation.
        config["broker_url"] = "filesystem://localhost/"
        config["broker_transport"] = FILESYSTEM_TRANSPORT
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed_dir),
            "control_folder": str(settings.broker_dir / "control"),  # default: ./control
            "store_processed": False,
            "polling_interval": 0.1,
        }
        # The filesystem transport has no fanout exchange for remote control.
        config["worker_enable_remote_control"] = False
        config["worker_send_task_events"] = False
    else:
        config["broker_url"] = settings.broker_url
        if (settings.broker_url or "").startswith("redis://"):
            config["broker_transport"] = REDIS_TRANSPORT
        config["broker_transport_options"] = {
            "visibility_timeout": settings.broker_visibility_timeout,
            **REDIS_SOCKET_BOUNDS,
        }
    return config


def make_celery(settings: Settings, main: str = "radraft") -> Celery:
    """A Celery app bound to radraft's broker; tasks are registered by the worker package."""
    app = Celery(main)
    app.conf.update(celery_config(settings))
    return app


def celery_publisher(settings: Settings) -> Publisher:
    """The gateway's outbox publisher: send tasks by name, failing fast while the broker is down
    (the outbox row is retried, never lost)."""
    app = make_celery(settings, main="radraft-producer")

    def publish(message: CeleryPublish) -> None:
        app.send_task(message.task_name, args=message.args, task_id=message.task_id, retry=False)

    return publish


def drafting_queue_depth(settings: Settings) -> Callable[[], int]:
    """Ask the broker how many drafting messages wait in the queue, taken by no worker yet.

    The gateway's unclaimed-job check needs it (``gateway.redelivery``). A passive declare is
    AMQP's way to count a queue without creating it; Redis has no key for an empty queue and
    answers "not found", which means nothing waits. One connection attempt per question: a
    broker that is down raises, and the check is tried again later.
    """
    app = make_celery(settings, main="radraft-queue-depth")

    def depth() -> int:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            # Typed as kombu's abstract StdChannel; every transport's channel has AMQP's methods.
            channel: Any = connection.default_channel
            try:
                declared = channel.queue_declare(queue=DRAFTING_QUEUE, passive=True)
            except ChannelError:
                return 0
            return int(declared.message_count)

    return depth
