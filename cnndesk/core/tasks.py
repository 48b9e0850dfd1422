"""A Qt-free progress/cancel interface for long work (scanning, training).

Long functions take a ``TaskState`` and report through it only: how far they are (``set_progress_value``),
what they do (``set_status``), typed reports a view draws (``report``: a training run's batches and epochs,
its probe frames, sentences for its log), and whether to stop (``is_interruption_requested``; stopping raises
``errors.Cancelled`` or one of its kinds). The GUI wraps it so that each engine job's reports reach the
callbacks given with that job, the CLI prints them. Modelled on Orange3's ``TaskState``.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class TaskState:
    """Progress reports and the cancel flag of one running task.

    Thread-safe for the one writer (the task) and any number of readers.
    Progress reports are throttled to at most one every ``min_interval``
    seconds, except the final 100 %.
    """

    def __init__(self, min_interval: float = 0.05):
        self._cancel = threading.Event()
        self._min_interval = min_interval
        self._last_report = 0.0

    # -- asked by the task -------------------------------------------------
    def is_interruption_requested(self) -> bool:
        return self._cancel.is_set()

    def set_status(self, text: str) -> None:
        """Say in words what the task is doing."""

    def report(self, item) -> None:
        """Send a typed report to whoever shows the task (never throttled: a chart draws each one)."""

    def set_progress_value(self, percent: float) -> None:
        """Report progress in percent (0-100); throttled."""
        now = time.monotonic()
        if percent < 100 and now - self._last_report < self._min_interval:
            return
        self._last_report = now
        self.on_progress(percent)

    def on_progress(self, percent: float) -> None:
        """Override to receive throttled progress."""

    # -- asked by the owner ------------------------------------------------
    def request_interruption(self) -> None:
        self._cancel.set()


class ReportingTaskState(TaskState):
    """A ``TaskState`` whose reports go to callables: a GUI thread's signals' ``emit``, a CLI's printing."""

    def __init__(self, status: Callable[[str], None] | None = None, progress: Callable[[float], None] | None = None,
                 min_interval: float = 0.05, report: Callable[[object], None] | None = None):
        super().__init__(min_interval)
        self._status, self._progress, self._report = status, progress, report

    def set_status(self, text: str) -> None:
        if self._status is not None:
            self._status(text)

    def report(self, item) -> None:
        if self._report is not None:
            self._report(item)

    def on_progress(self, percent: float) -> None:
        if self._progress is not None:
            self._progress(percent)
