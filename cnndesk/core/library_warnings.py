"""Library noise kept off the user's terminal.

Pillow warns "Corrupt EXIF data" (the image is still read, as upright),
zipfile "Duplicate name", h5py and Keras about details of files, TensorFlow
prints C++ log lines. What matters of these reaches the user as cnndesk's own
messages (unreadable images are skipped files with a reason, bad model files
are refused with one sentence); the raw lines are hidden.

TensorFlow's real errors are not noise: ``import_tensorflow`` hides only its
"no GPU here" start-up lines and the lines below ``TF_CPP_MIN_LOG_LEVEL``, and
keeps every one of its lines in the log file (``app_log``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings

from .cpu_kernels import use_onednn_kernels

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


def quiet_libraries() -> None:
    """The start-up of every cnndesk process (the app, the CLI, the selftest, the JAX child): keep the libraries'
    noise off the terminal and choose TensorFlow's CPU kernels, before TensorFlow is imported.

    Their Python warnings and TensorFlow's C++ lines below its log level are hidden
    (:func:`hide_library_warnings`); TensorFlow's real errors still reach stderr, because it is always started
    through :func:`import_tensorflow`. The oneDNN kernel choice (``cpu_kernels``) is made here too, as
    TensorFlow reads it once.
    """
    hide_library_warnings()
    use_onednn_kernels()


#: TensorFlow's C++ log lines: absl's preamble, glog-style "I0000 00:00:… file.cc:31] …" lines, and the
#: continuation of the CPU-feature note.
_TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                          r"|(?P<severity>[IWEF])\d{4} [\d:.]+ +\d+ [\w./-]+\.(cc|h):\d+\]"
                          r"|To enable the following instructions:)")

#: What TensorFlow says at start-up on every machine without a usable NVIDIA GPU (the ``tensorflow`` wheel is
#: built with CUDA): no driver, cuInit failing, TensorRT missing, the CUDA plugin factories. Expected on a CPU
#: machine, so hidden whatever ``TF_CPP_MIN_LOG_LEVEL`` says; written to the log file instead.
_NO_GPU = re.compile(r"cuInit|cuda drivers|CUDA driver|libcuda|cudart|Cannot dlopen some GPU libraries"
                     r"|GPU will not be used|TF-TRT|TensorRT|Unable to register cu(DNN|FFT|BLAS) factory"
                     r"|computation placer already registered|CUDA-capable device", re.IGNORECASE)

#: severities in the order of ``TF_CPP_MIN_LOG_LEVEL`` (0 shows all, 3 only fatal ones)
_SEVERITIES = "IWEF"


def is_tensorflow_log_line(line: str) -> bool:
    """True for one of TensorFlow's raw C++ log lines."""
    return bool(_TF_LOG_LINE.match(line))


def shown_on_terminal(line: str, min_log_level: int) -> bool:
    """Whether a line TensorFlow wrote to stderr at start-up reaches the terminal.

    Lines that are not TensorFlow's pass. Of TensorFlow's own, the "no GPU here"
    lines never pass; the others pass when their severity is at least
    ``min_log_level`` (TensorFlow prints its earliest lines before it reads the
    variable, so this applies it to them too). The preamble and the CPU-feature
    note count as information.
    """
    match = _TF_LOG_LINE.match(line)
    if not match:
        return True
    if _NO_GPU.search(line):
        return False
    severity = _SEVERITIES.index(match.group("severity")) if match.group("severity") else 0
    return severity >= min_log_level


def _min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


@contextlib.contextmanager
def tensorflow_start_up_filtered():
    """Filter TensorFlow's start-up lines out of the process's stderr while the block runs (see ``shown_on_terminal``).

    TensorFlow's C++ side writes to file descriptor 2 directly, so Python cannot
    filter it: the descriptor is pointed at a pipe for the block's duration and a
    small thread copies every line that should be seen (other threads' warnings,
    TensorFlow's real errors) through to the real stderr. Every TensorFlow line,
    shown or not, also goes to cnndesk's log file.
    """
    from .app_log import log

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured in-process): nothing to do
        yield
        return
    level = _min_log_level()
    sys.stderr.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def copy_through() -> None:
        try:
            with os.fdopen(read_end, "rb") as pipe:
                for raw in pipe:
                    line = raw.decode("utf-8", "replace")
                    shown = shown_on_terminal(line, level)
                    if is_tensorflow_log_line(line):
                        log.info("TensorFlow%s: %s", "" if shown else " (not shown)", line.rstrip())
                    if shown:
                        os.write(saved, raw)
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


def import_tensorflow():
    """Import TensorFlow and let it look for GPUs, with its start-up lines filtered; return the module.

    The one way cnndesk starts TensorFlow (the window's engine, the CLI, the
    selftest). Listing the GPUs here makes TensorFlow try CUDA now, inside the
    filter, instead of at the first operation, where its "failed call to cuInit"
    would reach the terminal.
    """
    global _tensorflow_started
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not _tensorflow_started:
        with tensorflow_start_up_filtered():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        _tensorflow_started = True
    import tensorflow as tf

    return tf


_tensorflow_started = False


@contextlib.contextmanager
def quiet_tensorflow_logger():
    """Keep TF/absl warnings about the input pipeline out of the user's terminal."""
    import logging

    logger = logging.getLogger("tensorflow")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)
