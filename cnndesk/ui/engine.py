"""The one thread that owns TensorFlow.

``Engine`` (GUI side) sends jobs to ``EngineWorker`` (living in its own
``QThread``); the worker runs them one after another, in the order they were
submitted, and answers with signals. Exactly this thread imports
TensorFlow/Keras: importing it from two threads at once deadlocked in every
trial (docs/tensorflow-notes.md).

A job is a method of ``EngineWorker`` and its arguments::

    engine.submit(EngineWorker.predict_files, paths, k=3, on_done=show)

so a reader (or a tool) follows a job from the call to its code. Each job
carries its own ``TaskState`` (as Orange3's ``ConcurrentWidgetMixin`` gives each
task its state), the one channel of that job's progress and cancelling: what the
job reports through it (``set_progress_value``, ``set_status``, ``report``)
reaches the ``on_progress``, ``on_status`` and ``on_report`` callbacks given with
the job, on the GUI thread, while its answer is still wanted; ``engine.cancel(job)``
sets its cancel flag, which only a job that takes a ``task`` argument
(``@cancellable``) reads.
An exception in a job comes back as a readable message, never as an uncaught
exception in the thread. Warnings raised in a job are forwarded as ``warned``.
"""

from __future__ import annotations

import itertools
import sys
import threading
from typing import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.project.session import Runtime
from ..core.tasks import ReportingTaskState
from .engine_worker import EngineWorker, Job


class _EngineThread(QThread):
    """A QThread whose event loop runs inside a Python ``run``.

    With a plain ``QThread``, each queued slot call gets a fresh Python thread
    state that is destroyed when the slot returns; TensorFlow keeps its eager
    context in thread-local storage, so a tensor made in a later job than the
    one that imported TensorFlow segfaulted (docs/tensorflow-notes.md).
    Running ``exec()`` from Python keeps one thread state for the thread's life.
    """

    native_id: int | None = None  # the thread's id for the system, once it runs

    def run(self) -> None:
        from ..core.cpu_kernels import yield_to_the_window

        self.native_id = threading.get_native_id()
        yield_to_the_window()  # before TensorFlow starts its threads from this one: they inherit it
        self.exec()


class Engine(QObject):
    """GUI-side handle of the engine thread.

    ``submit(EngineWorker.method, *args, on_done=…, on_error=…, **kwargs)``
    returns the ``Job``; the callbacks run on the GUI thread. With
    ``latest_only=True`` a result is dropped when a newer job of the same
    method was submitted after it (a stale prediction never overwrites a newer
    one). A failed job without ``on_error`` is announced by ``failed``.
    """

    ready = Signal(object)  # Runtime
    failed = Signal(str, str)  # job name, message: for jobs without their own error callback
    warned = Signal(str)
    _submit = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._latest: dict[Callable, int] = {}
        self.is_ready = False
        self.info: Runtime | None = None
        self.worker_thread = _EngineThread()
        self.worker_thread.setObjectName("cnndesk-engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.worker_thread)
        self._submit.connect(self.worker.run)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.partial.connect(self._on_partial)
        self.worker.ready.connect(self._on_ready)
        self.worker.progress.connect(self._on_progress)
        self.worker.status.connect(self._on_status)
        self.worker.reported.connect(self._on_reported)
        self.worker.warned.connect(self._on_warned)
        self.worker_thread.finished.connect(self.worker.deleteLater)
        self._stopped = False

    def start(self) -> None:
        self.worker_thread.start()
        self.submit(EngineWorker.init)

    def submit(self, method: Callable, *args, on_done: Callable | None = None, on_error: Callable | None = None,
               latest_only: bool = False, on_partial: Callable | None = None, on_progress: Callable | None = None,
               on_status: Callable | None = None, on_report: Callable | None = None, **kwargs) -> Job | None:
        """Run ``method(worker, *args, **kwargs)`` in the engine thread after the jobs before it.

        ``on_partial`` receives the first part of the answer when the job sends one (``EngineWorker.send_partial``),
        before ``on_done`` receives the whole. ``on_progress`` (percent), ``on_status`` (words) and ``on_report``
        (a typed report: a training run's ``BatchReport``, ``EpochReport``, ``ProbeFrame`` or log sentence) receive
        what the job reports through its ``TaskState``. Returns the job (to ``cancel`` it), or None once the engine
        has shut down.
        """
        if self._stopped:
            return None
        job = Job(next(self._ids), method, args, kwargs, on_done, on_error, latest_only, on_partial=on_partial,
                  on_progress=on_progress, on_status=on_status, on_report=on_report)
        worker = self.worker
        job.task = ReportingTaskState(status=lambda text: worker.status.emit(job, text),
                                      progress=lambda percent: worker.progress.emit(job, percent),
                                      report=lambda item: worker.reported.emit(job, item))
        self._jobs[job.id] = job
        if latest_only:
            self._latest[method] = job.id
        self._submit.emit(job)
        return job

    def cancel(self, job: Job | None) -> None:
        """Ask ``job`` to stop; training returns within one batch. Jobs that are not cancellable finish."""
        if job is not None:
            job.task.request_interruption()

    def pending(self) -> int:
        """Jobs submitted whose answer has not reached the GUI thread yet."""
        return len(self._jobs)

    # Cross-thread signals land in decorated slots only (a plain callable as the
    # receiver of another thread's signal crashed PySide6: docs/tensorflow-notes.md).
    def _reporting(self, job: Job) -> bool:
        """Whether ``job``'s reports are still wanted (after shutdown a job still finishing reports to no one)."""
        return job.id in self._jobs and self._wanted(job)

    @Slot(object, float)
    def _on_progress(self, job: Job, percent: float) -> None:
        if job.on_progress is not None and self._reporting(job):
            job.on_progress(percent)

    @Slot(object, str)
    def _on_status(self, job: Job, text: str) -> None:
        if job.on_status is not None and self._reporting(job):
            job.on_status(text)

    @Slot(object, object)
    def _on_reported(self, job: Job, item) -> None:
        if job.on_report is not None and self._reporting(job):
            job.on_report(item)

    @Slot(str)
    def _on_warned(self, text: str) -> None:
        if not self._stopped:
            self.warned.emit(text)

    @Slot(object)
    def _on_ready(self, info: Runtime) -> None:
        self.is_ready = True
        self.info = info
        self.ready.emit(info)

    def _wanted(self, job: Job) -> bool:
        """Whether ``job``'s answer would still be delivered (no newer job of its kind, no shutdown)."""
        if job.latest_only and self._latest.get(job.method) != job.id:
            return False
        return not self._stopped

    def _take(self, job: Job) -> bool:
        """Forget ``job``; True when its answer is still wanted."""
        self._jobs.pop(job.id, None)
        return self._wanted(job)

    @Slot(object, object)
    def _on_partial(self, job: Job, payload) -> None:
        if job.id in self._jobs and self._wanted(job) and job.on_partial:
            job.on_partial(payload)

    @Slot(object, object)
    def _on_done(self, job: Job, result) -> None:
        if self._take(job) and job.on_done:
            job.on_done(result)

    @Slot(object, str)
    def _on_failed(self, job: Job, message: str) -> None:
        if not self._take(job):
            return
        if job.on_error:
            job.on_error(message)
        else:
            self.failed.emit(job.name, message)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel running jobs, finish the current one, stop the thread. Safe to call twice.

        Returns False (and says so on stderr) when the thread did not stop within ``timeout_ms``.
        """
        if self._stopped:
            return not self.worker_thread.isRunning()
        self._stopped = True
        for job in list(self._jobs.values()):
            job.task.request_interruption()
        self.worker_thread.quit()
        if self.worker_thread.wait(timeout_ms):
            return True
        print(f"cnndesk: the engine thread did not stop within {timeout_ms / 1000:.0f} s "
              "(a job is still running); quitting anyway.", file=sys.stderr)
        return False


class ShownJob:
    """One cancellable engine job at a time, shown by a view while it runs; stopped when training starts.

    The view has ``set_running(bool)``, ``set_progress(percent, text)`` and
    ``show_message(text)`` (the Evaluation tab's likely-mislabelled list, the Map
    tab). The job's status words and percent, reported through its ``TaskState``,
    go to ``set_progress``; its answer goes to ``on_done`` once the view shows it
    stopped, and an error to ``show_message``. A training run started meanwhile
    cancels it, so the run does not wait behind it.
    """

    def __init__(self, state, engine: Engine, view):
        self.state, self.engine, self.view = state, engine, view
        self._job: Job | None = None
        self._doing = ""  # what the job last said it does ("Retrain 1 of 3")
        state.observe(self._on_activity, "activity")

    def start(self, method: Callable, *args, on_done: Callable, on_error: Callable | None = None, **kwargs) -> None:
        """Run ``method`` as the view's job; its error goes to ``on_error`` when given, else to ``show_message``."""
        self._doing = ""
        self.view.set_running(True)
        failed = on_error or self.view.show_message
        self._job = self.engine.submit(method, *args, on_done=lambda answer: self._finish(on_done, answer),
                                       on_error=lambda message: self._finish(failed, message),
                                       on_status=self._on_status, on_progress=self._on_progress, **kwargs)

    def cancel(self) -> None:
        self.engine.cancel(self._job)

    def _on_status(self, text: str) -> None:
        self._doing = text

    def _on_progress(self, percent: float) -> None:
        self.view.set_progress(percent, self._doing)

    def _finish(self, then: Callable, value) -> None:
        self._job = None
        self.view.set_running(False)
        then(value)

    def _on_activity(self, _names) -> None:
        if self.state.training and self._job is not None:
            self.engine.cancel(self._job)
