"""Start the desktop app: ``cnndesk`` or ``python -m cnndesk``.

The window appears before TensorFlow is imported; the engine thread imports
it and enables what needs it.
"""

from __future__ import annotations

import multiprocessing
import sys


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    from .core.library_warnings import hide_library_warnings

    hide_library_warnings()
    from PySide6.QtWidgets import QApplication

    from . import __version__
    from .ui.main_window import MainWindow
    from .ui.resources import app_icon

    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName("cnndesk")
    app.setApplicationName("cnndesk")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("cnndesk")
    app.setWindowIcon(app_icon())
    window = MainWindow()
    window.show()
    # cnndesk PATH: open a project, a dataset folder, a model or images
    if len(argv) > 1:
        window.handle_dropped_paths(argv[1:])
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
