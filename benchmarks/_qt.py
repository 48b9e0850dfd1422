"""Qt helpers for the benchmarks: waiting for the app (the event loop runs until a condition holds), drops, stalls."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float = 300.0, what: str = "the app") -> None:
    """Run the event loop (polling every millisecond) until ``condition()``; exit the benchmark on timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    end = time.perf_counter() + timeout
    timer = QTimer(interval=1)
    timer.timeout.connect(lambda: loop.quit() if condition() or time.perf_counter() > end else None)
    timer.start()
    loop.exec()
    timer.stop()
    if not condition():
        raise SystemExit(f"timed out waiting for {what}")


def pause(ms: int) -> None:
    """Let the event loop run for ``ms`` milliseconds."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def drop_file(widget, path) -> float:
    """Drop ``path`` on ``widget`` as a file manager does (drag enter, then drop); the time it was dropped."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = widget.rect().center()
    dropped = time.perf_counter()
    QApplication.sendEvent(widget, QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    QApplication.sendEvent(widget, QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    return dropped


class GapMeter:
    """The longest gap between ticks of a 10 ms timer on the GUI thread, since ``reset``."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)
        self.reset()
        self.timer.start()

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, (now - self.last) * 1000)
        self.last = now
