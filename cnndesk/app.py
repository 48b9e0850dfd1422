"""Start the desktop app: ``cnndesk`` or ``python -m cnndesk``.

The window appears before TensorFlow is imported; the engine thread imports
it and enables what needs it.
"""

from __future__ import annotations

import multiprocessing
import sys
import traceback


USAGE = """usage: cnndesk [PATH ...] [--selftest [--keep DIR]] [--version]

Open the cnndesk window; PATH may be a project folder, a dataset folder, a
.keras model or images.

  --selftest     check this installation headless (train, save, reopen,
                 predict, inspect, export) and exit 0 if everything works
  --keep DIR     with --selftest: work in DIR and leave its files there
  --version      print the version and exit
"""


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    from .core.app_log import start_logging
    from .core.library_warnings import quiet_libraries

    quiet_libraries()  # before the engine imports TensorFlow: it reads the kernel choice once
    argv = list(sys.argv if argv is None else argv)
    options = argv[1:]
    if not {"--help", "-h", "--version"} & set(options):
        start_logging("cnndesk --selftest" if "--selftest" in options else "cnndesk")
    if "--help" in options or "-h" in options:
        print(USAGE)
        return 0
    if "--version" in options:
        from . import __version__

        print(f"cnndesk {__version__}")
        return 0
    if "--selftest" in options:
        from .selftest import run_selftest

        keep = options[options.index("--keep") + 1] if "--keep" in options[:-1] else None
        return run_selftest(keep=keep)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv)
    try:
        window = _open_window(app, argv)  # noqa: F841 - kept alive while the event loop runs
    except Exception as error:  # noqa: BLE001 - started from a menu there is no terminal: say it in a window
        from .core.app_log import log

        log.critical("cnndesk could not start", exc_info=True)
        start_failure_dialog(error).exec()
        return 1
    return app.exec()


def _open_window(app, argv: list[str]):
    """Set the application up and show the main window (opening PATH arguments in it)."""
    from . import __version__
    from .ui.main_window import MainWindow
    from .ui.resources import app_icon

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
    return window


def start_failure_dialog(error: BaseException):
    """The message box for a window that could not open: what failed and where the log is.

    Started from the desktop menu, cnndesk has no terminal, so without it a failure
    on start would show nothing at all. The caller runs ``exec()`` on it.
    """
    from PySide6.QtWidgets import QMessageBox

    from .core.app_log import where_the_log_is

    box = QMessageBox(QMessageBox.Icon.Critical, "cnndesk could not start",
                      f"cnndesk could not open its window: {type(error).__name__}: {error}")
    box.setInformativeText(where_the_log_is())
    box.setDetailedText("".join(traceback.format_exception(error)))
    return box


if __name__ == "__main__":
    sys.exit(main())
