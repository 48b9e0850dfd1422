"""cnndesk's log file: what went wrong, kept where a person can find it.

A window started from the desktop menu has no terminal, so a traceback printed
to stderr is lost. Every program of cnndesk (the window, the CLI, the
selftest) writes its log to one rotating file in the user's data folder, and
the window names that file in About and in its error dialogs.

The folder is ``$CNNDESK_LOG_DIR`` where set, else:

- Linux: ``$XDG_DATA_HOME/cnndesk/logs`` (``~/.local/share/cnndesk/logs``);
- macOS: ``~/Library/Logs/cnndesk``;
- Windows: ``%LOCALAPPDATA%\\cnndesk\\logs``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path

LOG_DIR_ENV = "CNNDESK_LOG_DIR"
LOG_NAME = "cnndesk.log"
#: one file of this size and this many older ones: a few weeks of ordinary use, a few MB on disk
MAX_BYTES = 1_000_000
BACKUPS = 3

#: the logger every cnndesk module logs through (``logging.getLogger(__name__)`` is a child of it)
log = logging.getLogger("cnndesk")

_FORMAT = "%(asctime)s %(levelname)-7s %(process)d %(threadName)s %(name)s: %(message)s"
_handler: logging.Handler | None = None
_path: Path | None = None


def default_log_folder() -> Path:
    """The folder the log file goes in (see the module's docstring)."""
    chosen = os.environ.get(LOG_DIR_ENV)
    if chosen:
        return Path(chosen).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "cnndesk" / "logs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "cnndesk"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cnndesk" / "logs"


def log_path() -> Path | None:
    """The file this process logs to, or None when logging to a file could not start."""
    return _path


def where_the_log_is() -> str:
    """One sentence for dialogs: where the details are, or that there is no log file."""
    return f"Details are in the log file {_path}." if _path else "No log file could be written."


def start_logging(program: str, echo: bool = False) -> Path | None:
    """Send cnndesk's log to the rotating file, and uncaught exceptions of every thread with it.

    Call it once at start-up. A folder that cannot be written (read-only home,
    full disk) is no reason not to start: the log then goes nowhere and
    ``log_path()`` is None.

    Args:
        program: what started (``"cnndesk"``, ``"cnndesk-cli train"``), written in the first line.
        echo: also print the log, debug lines included, to stderr (the CLI's ``--verbose``). Defaults to False.

    The file gets INFO and above.
    """
    global _handler, _path
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if _handler is None:
        folder = default_log_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _handler = logging.handlers.RotatingFileHandler(folder / LOG_NAME, maxBytes=MAX_BYTES,
                                                            backupCount=BACKUPS, encoding="utf-8", delay=True)
        except OSError:
            _handler = None
        else:
            _handler.setFormatter(logging.Formatter(_FORMAT))
            _handler.setLevel(logging.INFO)
            log.addHandler(_handler)
            _path = folder / LOG_NAME
            _catch_uncaught()
    if echo and not any(getattr(h, "_cnndesk_echo", False) for h in log.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        stream._cnndesk_echo = True
        log.addHandler(stream)
    log.info("%s started (Python %s, %s)", program, sys.version.split()[0], sys.platform)
    return _path


def _catch_uncaught() -> None:
    """Write uncaught exceptions of the main thread and of other threads to the log, then do what Python does."""
    previous_hook = sys.excepthook
    previous_thread_hook = threading.excepthook

    def excepthook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            log.critical("uncaught exception", exc_info=(kind, value, tb))
        previous_hook(kind, value, tb)

    def thread_excepthook(args):
        if args.exc_type is not SystemExit:
            log.critical("uncaught exception in thread %s", getattr(args.thread, "name", "?"),
                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        previous_thread_hook(args)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
