"""Load a dataset folder off the GUI thread, with progress and cancel.

Decoding uses Pillow only (no TensorFlow), so it runs in its own short-lived
thread while the engine thread may still be importing TensorFlow. Each new
load cancels the previous one and disconnects it, so a stale load never
reaches the panel (the habit of Orange3's ``ConcurrentWidgetMixin``).
A dataset whose decoded images exceed the memory limit is prepared into an
on-disk cache in the same thread, with the same progress, cancel and
skipped-file reports (``core/disk_cache.py``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.data.color_hint import sample_colors
from ..core.data.dataset import DatasetConfig, load_dataset
from ..core.data.cache_plan import CacheSettings
from ..core.errors import Cancelled, UserError
from ..core.data.samples import ensure_sample_dataset
from ..core.tasks import ReportingTaskState


class _LoadThread(QThread):
    progress = Signal(float)
    status = Signal(str)
    colors_sampled = Signal(object)
    loaded = Signal(object)
    failed = Signal(str)

    def __init__(self, root: Path, config: DatasetConfig, make_sample: bool, cache: CacheSettings | None = None):
        super().__init__()
        self.root, self.config, self.make_sample, self.cache = root, config, make_sample, cache
        self.state = ReportingTaskState(self.status.emit, self.progress.emit, min_interval=0.05)

    def run(self) -> None:
        try:
            if self.make_sample:
                self.status.emit("Writing the sample dataset…")
                ensure_sample_dataset(self.root)
            data = load_dataset(self.root, self.config, self.state, cache=self.cache)
            colors = sample_colors(data.paths, data.images)
        except Cancelled:
            return
        except UserError as e:
            self.failed.emit(str(e))
            return
        except Exception as e:  # never leave the panel waiting
            self.failed.emit(f"Could not read the dataset: {type(e).__name__}: {e}")
            return
        if not self.state.is_interruption_requested():
            self.colors_sampled.emit(colors)  # queued before ``loaded``, so it arrives first
            self.loaded.emit(data)


class DatasetLoader(QObject):
    """Start, cancel and supersede dataset loads; results arrive as signals.

    Every cross-thread signal lands in a decorated ``@Slot`` method of this
    object (never a lambda): PySide6 crashed in trials when a worker thread's
    signal reached a plain Python callable (PYSIDE-3124).
    """

    progress = Signal(float)
    status = Signal(str)
    colors_sampled = Signal(object)  # ColorSample of the dataset that ``loaded`` brings next
    loaded = Signal(object)  # LoadedDataset
    failed = Signal(str)
    cancelled = Signal()
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._current: _LoadThread | None = None
        self._threads: list[_LoadThread] = []

    def load(self, root: str | Path, config: DatasetConfig, make_sample: bool = False,
             cache: CacheSettings | None = None) -> None:
        """Read ``root`` in a new thread; ``cache``: the memory limit and cache folder (``disk_cache``)."""
        self._supersede()
        thread = _LoadThread(Path(root), config, make_sample, cache)
        thread.progress.connect(self._on_progress)
        thread.status.connect(self._on_status)
        thread.colors_sampled.connect(self._on_colors_sampled)
        thread.loaded.connect(self._on_loaded)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_thread_finished)
        self._current = thread
        self._threads.append(thread)
        self.running_changed.emit(True)
        thread.start()

    def cancel(self) -> None:
        if self._current is not None:
            self._supersede()
            self.cancelled.emit()
            self.running_changed.emit(False)

    def _supersede(self) -> None:
        if self._current is not None:
            self._current.state.request_interruption()
            self._current = None

    def _is_current(self) -> bool:
        return self.sender() is not None and self.sender() is self._current

    @Slot(float)
    def _on_progress(self, percent: float) -> None:
        if self._is_current():
            self.progress.emit(percent)

    @Slot(str)
    def _on_status(self, text: str) -> None:
        if self._is_current():
            self.status.emit(text)

    @Slot(object)
    def _on_colors_sampled(self, sample) -> None:
        if self._is_current():
            self.colors_sampled.emit(sample)

    @Slot(object)
    def _on_loaded(self, data) -> None:
        if self._is_current():
            self._current = None
            self.running_changed.emit(False)
            self.loaded.emit(data)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._is_current():
            self._current = None
            self.running_changed.emit(False)
            self.failed.emit(message)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread = self.sender()
        if thread in self._threads:
            self._threads.remove(thread)
            thread.deleteLater()

    def shutdown(self) -> None:
        self._supersede()
        for t in list(self._threads):
            t.wait(10000)
