"""A Qt-free progress/cancel interface for long work (scanning, training).

Long functions take a ``TaskState`` and report through it only; the GUI
subclasses or wraps it to turn reports into signals, the CLI prints them.
Modelled on Orange3's ``TaskState``.
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
    """A ``TaskState`` whose reports go to two callables: a GUI thread's signals' ``emit``, a CLI's printing.

    With ``stopped_by``, a cancel of that state (an engine job's own) stops this one's task too.
    """

    def __init__(self, status: Callable[[str], None] | None = None, progress: Callable[[float], None] | None = None,
                 min_interval: float = 0.05, stopped_by: TaskState | None = None):
        super().__init__(min_interval)
        self._status, self._progress = status, progress
        self._stopped_by = stopped_by

    def is_interruption_requested(self) -> bool:
        return super().is_interruption_requested() or (
            self._stopped_by is not None and self._stopped_by.is_interruption_requested())

    def set_status(self, text: str) -> None:
        if self._status is not None:
            self._status(text)

    def on_progress(self, percent: float) -> None:
        if self._progress is not None:
            self._progress(percent)
