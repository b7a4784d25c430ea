"""The task contract between services: stable task names and queues (a wire format).

The gateway asks for a draft by name; it never imports the worker. Add parameters with
defaults; rename nothing.
"""

DRAFT_STUDY_TASK = "radraft.worker.draft_study"
"""Draft one study. Argument: ``job_id`` (int, a row of ``drafting_jobs``). Never PHI."""

DRAFTING_QUEUE = "drafting"
"""Queue of GPU work, taken by model workers with prefetch 1."""

DEFAULT_QUEUE = "default"
"""Queue of CPU and I/O work."""

TASK_QUEUES = {DRAFT_STUDY_TASK: DRAFTING_QUEUE}
"""Routing by resource: every task not named here goes to ``DEFAULT_QUEUE``."""
