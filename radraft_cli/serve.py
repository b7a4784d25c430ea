"""The embedded all-in-one run (``radraft serve``): gateway, a Celery worker and the web app.

The gateway and the web app run in this process; the Celery worker is a supervised child
process (``radraft worker``), as it is in production, restarted if it dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from gateway.service import Gateway
from radraft.broker import celery_publisher, drafting_queue_depth
from radraft.db import engine_for, make_sessionmaker
from radraft.logs import log_event
from radraft.migrate import upgrade
from radraft.settings import Settings, settings_to_environment
from radraft_cli.stop_signals import relay_stop_signals
from radraft_cli.web_server import WebServer, web_server
from reporting.delivery.relay import OutputDeliveryRelay

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 2.0
PR_SET_PDEATHSIG = 1
"""prctl option: the signal a child gets when its parent dies (linux/prctl.h)."""
CONFIGURATION_ERROR_EXIT_CODE = 2
"""``radraft`` exits with 2 on a RadraftError (e.g. no model): restarting cannot help."""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux), so a killed
    supervisor never leaves children holding the port or the model."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildSupervisor:
    """Keeps one ``radraft ...`` child process running until stopped (a worker, a gateway).

    A child that exits is started again after a short pause; one that exits with the
    configuration-error code (it cannot start, e.g. no model) stops everything instead of
    looping.
    """

    def __init__(
        self, settings: Settings, stop: threading.Event, arguments: list[str], *, name: str
    ) -> None:
        self._environment = {**os.environ, **settings_to_environment(settings)}
        self._stop = stop
        self._arguments = arguments
        self._name = name
        self._process: subprocess.Popen[bytes] | None = None
        self.fatal_exit_code: int | None = None
        self._thread = threading.Thread(target=self._supervise, name=f"radraft-{name}-supervisor")

    @property
    def pid(self) -> int | None:
        """The current child's process id."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child and the thread that restarts it."""
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "radraft_cli", *self._arguments]
        return subprocess.Popen(command, env=self._environment, preexec_fn=_die_with_parent)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            self._process = self._spawn()
            log_event(logger, "serve.child_started", child=self._name, pid=self._process.pid)
            while self._process.poll() is None and not self._stop.wait(0.5):
                pass
            if self._stop.is_set():
                break
            if self._process.returncode == CONFIGURATION_ERROR_EXIT_CODE:
                self.fatal_exit_code = self._process.returncode
                log_event(logger, "serve.child_cannot_start", logging.ERROR, child=self._name)
                self._stop.set()
                break
            log_event(logger, "serve.child_exited", logging.WARNING, child=self._name,
                      code=self._process.returncode)  # fmt: skip
            self._stop.wait(RESTART_DELAY_SECONDS)

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM) without waiting: several children stop together."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the child for a warm shutdown; kill it if it does not finish in time."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._thread.join(timeout=timeout)


class EmbeddedServer:
    """Everything radraft needs on one machine, started and stopped as one."""

    def __init__(self, settings: Settings, *, run_worker: bool = True) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._run_worker = run_worker
        self.gateway: Gateway | None = None
        self._worker: ChildSupervisor | None = None
        self._web: WebServer | None = None
        self._web_thread: threading.Thread | None = None
        self._delivery_thread: threading.Thread | None = None

    def start(self) -> None:
        """Migrate the database and start gateway, worker and web app; returns once all are up."""
        settings = self.settings
        self.install_signal_handlers()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.effective_database_url)
        engine = engine_for(settings)
        session_factory = make_sessionmaker(engine)
        self.gateway = Gateway(
            settings,
            session_factory,
            celery_publisher(settings),
            queue_depth=drafting_queue_depth(settings),
        )
        self.gateway.start()
        relay = OutputDeliveryRelay(session_factory, settings)
        self._delivery_thread = threading.Thread(
            target=relay.run_until,
            args=(self._stop, settings.outbox_poll_seconds),
            name="radraft-delivery",
        )
        self._delivery_thread.start()
        if self._run_worker:
            self._worker = ChildSupervisor(settings, self._stop, ["worker"], name="worker")
            self._worker.start()
        self._web = web_server(settings)
        # uvicorn installs no signal handlers outside the main thread; this server owns them.
        self._web_thread = threading.Thread(target=self._web.run, name="radraft-web")
        self._web_thread.start()
        deadline = time.monotonic() + 30
        while not self._web.started:
            if time.monotonic() > deadline or not self._web_thread.is_alive():
                raise RuntimeError("the web app did not start; is the HTTP port free?")
            time.sleep(0.05)
        log_event(
            logger,
            "serve.started",
            dicom_port=self.gateway.port,
            http_port=settings.http_port,
            data_dir=settings.data_dir,
        )

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the server cleanly (call from the main thread)."""
        if threading.current_thread() is threading.main_thread():
            relay_stop_signals(self._stop)

    def wait(self) -> None:
        """Block until the server is to stop: ``stop`` was called, or SIGTERM or SIGINT came
        (``install_signal_handlers`` relays them to the same event)."""
        while not self._stop.wait(0.5):
            pass

    def stop(self, *_args: Any) -> None:
        """Stop accepting work and shut everything down cleanly."""
        self._stop.set()

    @property
    def failed(self) -> bool:
        """True if a part stopped the server because it cannot run (see the log)."""
        return self._worker is not None and self._worker.fatal_exit_code is not None

    def shutdown(self) -> None:
        """Tear down after ``wait`` returned."""
        if self.gateway is not None:
            self.gateway.stop()
        if self._web is not None:
            self._web.should_exit = True
        if self._web_thread is not None:
            self._web_thread.join(timeout=10)
        if self._worker is not None:
            self._worker.stop()
        if self._delivery_thread is not None:
            self._delivery_thread.join(timeout=30)
        log_event(logger, "serve.stopped")
