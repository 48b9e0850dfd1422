"""Start the desktop app: ``cnndesk`` or ``python -m cnndesk``.

The window appears before TensorFlow is imported; the engine thread imports
it and enables what needs it.
"""

from __future__ import annotations

import multiprocessing
import sys


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
    from .core.cpu_kernels import use_onednn_kernels
    from .core.library_warnings import hide_library_warnings

    hide_library_warnings()
    use_onednn_kernels()  # before the engine imports TensorFlow: it reads the choice once
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

    from . import __version__
    from .ui.main_window import MainWindow
    from .ui.resources import app_icon

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
