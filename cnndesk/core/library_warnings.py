"""Library noise kept off the user's terminal.

Pillow warns "Corrupt EXIF data" (the image is still read, as upright),
zipfile "Duplicate name", h5py and Keras about details of files, TensorFlow
prints C++ log lines. What matters of these reaches the user as cnndesk's own
messages (unreadable images are skipped files with a reason, bad model files
are refused with one sentence); the raw lines are hidden.
"""

from __future__ import annotations

import os
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
