"""What the ``cnndesk-cli`` commands share: importing TensorFlow quietly and printing JSON lines."""

from __future__ import annotations

import importlib
import json
import os
import sys


def load_tensorflow() -> None:
    """Import TensorFlow with its start-up log lines kept off stderr.

    TensorFlow 2.21 prints C++ log lines ("oneDNN custom operations are on",
    "Could not find cuda drivers") while it is imported, before it reads
    ``TF_CPP_MIN_LOG_LEVEL``; they would bury the one-line error messages.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured, redirected in-process)
        fd = None
    if fd is None:
        importlib.import_module("tensorflow")
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            importlib.import_module("tensorflow")
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def emit_json(obj: dict) -> None:
    """Print ``obj`` as one JSON line, flushed, so a script reading the output sees it at once."""
    print(json.dumps(obj), flush=True)
