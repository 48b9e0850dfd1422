"""Library noise kept off the user's terminal.

Pillow warns "Corrupt EXIF data" (the image is still read, as upright),
zipfile "Duplicate name", h5py and Keras about details of files, TensorFlow
prints C++ log lines. What matters of these reaches the user as cnndesk's own
messages (unreadable images are skipped files with a reason, bad model files
are refused with one sentence); the raw lines are hidden.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings

#: modules whose Python warnings are hidden (regular expressions on the warning's module)
QUIET_MODULES = (r"PIL(\..*)?", r"zipfile", r"h5py(\..*)?", r"keras(\..*)?", r"tensorflow(\..*)?", r"absl(\..*)?")


def hide_library_warnings() -> None:
    """Hide the libraries' Python warnings and TensorFlow's C++ log lines for this process.

    Call it once at start-up, before TensorFlow is imported. Filters are
    process-wide, so decoding threads are covered too; the user's own
    ``TF_CPP_MIN_LOG_LEVEL`` is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    for module in QUIET_MODULES:
        warnings.filterwarnings("ignore", module=module)


#: TensorFlow's C++ start-up lines: absl's preamble, glog-style "I0000 00:00:… file.cc:31] …" lines, and the
#: continuation of the CPU-feature note. They are printed while TensorFlow is imported and its devices are
#: listed, before TF_CPP_MIN_LOG_LEVEL is read.
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                       r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+\.(cc|h):\d+\]"
                       r"|To enable the following instructions:)")


def is_tensorflow_log_line(line: str) -> bool:
    """True for one of TensorFlow's raw C++ log lines (see ``tensorflow_log_lines_hidden``)."""
    return bool(_TF_NOISE.match(line))


@contextlib.contextmanager
def tensorflow_log_lines_hidden():
    """Drop TensorFlow's C++ log lines from the process's stderr while the block runs; pass on the rest.

    TensorFlow's C++ side writes to file descriptor 2 directly, so Python cannot
    filter it: the descriptor is pointed at a pipe for the block's duration and a
    small thread copies every other line (Qt's, other threads' warnings) through
    to the real stderr, so nothing else is lost.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured in-process): nothing to do
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def copy_through() -> None:
        try:
            with os.fdopen(read_end, "rb") as pipe:
                for line in pipe:
                    if not is_tensorflow_log_line(line.decode("utf-8", "replace")):
                        os.write(saved, line)
        finally:
            os.close(saved)

    thread = threading.Thread(target=copy_through, name="cnndesk-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)  # the pipe's last write end closes: the thread sees the end and stops
        thread.join(timeout=5)
