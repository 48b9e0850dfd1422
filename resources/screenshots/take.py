"""Retake the README's screenshots from the running app.

    xvfb-run -s "-screen 0 1600x1000x24" python resources/screenshots/take.py

Starts the real window (its own settings and sample dataset in a temporary
folder), trains the seed model on the built-in sample, opens two sample images
in the viewer and evaluates, grabbing the window at each step into
``resources/screenshots/``. Under a real X server (Xvfb) the pictures are what
a user sees; with ``QT_QPA_PLATFORM=offscreen`` they are close but use Qt's
fallback fonts.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

HERE = Path(__file__).resolve().parent
EPOCHS = 12


def wait(app, condition, what: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float = 0.8) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    sys.path.insert(0, str(HERE.parents[1]))
    from cnndesk.core.data.samples import SAMPLE_CLASSES
    from cnndesk.ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    work = Path(tempfile.mkdtemp(prefix="cnndesk-shots-"))
    settings = QSettings(str(work / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(settings=settings, sample_dir=work / "sample")
    window.resize(1400, 900)
    window.show()
    wait(app, lambda: window.state.engine_ready and window.state.data is not None, "TensorFlow and the sample")

    window.model_panel.epochs.setValue(EPOCHS)
    window.train_action.trigger()
    wait(app, lambda: window.state.training, "training to start")
    wait(app, lambda: not window.state.training, "training to end")
    settle(app)
    window.grab().save(str(HERE / "training.png"))

    viewer = window.viewer_panel
    window.tabs.setCurrentIndex(window.TAB_VIEWER)
    images = [str(next((work / "sample" / name).glob("*.png"))) for name in SAMPLE_CLASSES[:2]]
    viewer.classify_paths(images)
    wait(app, lambda: viewer.strip.count() == 2 and viewer.inspection is not None, "the viewer")
    viewer.tabs.setCurrentWidget(viewer.activations)
    settle(app)
    window.grab().save(str(HERE / "viewer-layers.png"))

    viewer.tabs.setCurrentWidget(viewer.gradcam)
    settle(app)
    window.grab().save(str(HERE / "gradcam.png"))

    viewer.tabs.setCurrentWidget(viewer.evaluation_view)  # evaluated when shown
    wait(app, lambda: viewer.evaluation_view.evaluation is not None, "the evaluation")
    settle(app)
    window.grab().save(str(HERE / "evaluation.png"))

    window.state.modified = False
    QTimer.singleShot(0, window.close)
    settle(app, 0.5)
    window.shutdown()
    print("\n".join(str(HERE / n) for n in ("training.png", "viewer-layers.png", "gradcam.png", "evaluation.png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
