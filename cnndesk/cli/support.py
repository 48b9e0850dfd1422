"""What the ``cnndesk-cli`` commands share: start-up, running a command, JSON lines, the option types, and the
on-disk cache's options.

Every command runs through :func:`run_command`, which turns the user's mistakes
(:class:`UserError`, a path that cannot be read or written, running out of
memory, Ctrl+C) into one line on stderr and exit status 2 (130 for Ctrl+C),
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.app_log import log
from ..core.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_command(command) -> int:
    """Run ``command()``, turning the user's mistakes into one line on stderr and exit status 2."""
    try:
        return command()
    except UserError as e:
        log.info("refused: %s", e)
        print(f"cnndesk-cli: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a path that cannot be written or read: the user's to fix
        log.warning("file error", exc_info=True)
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"cnndesk-cli: error:{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        log.warning("out of memory", exc_info=True)
        print("cnndesk-cli: error: out of memory: use a smaller image size, batch size or model", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cnndesk-cli: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def emit_json(obj: dict) -> None:
    """Print ``obj`` as one line of strict JSON (a NaN loss as null), flushed, so a script reading the output sees
    it at once."""
    from ..core.project.store import json_safe

    print(json.dumps(json_safe(obj), allow_nan=False), flush=True)


# -- option types shared by several commands ---------------------------------------------------------------

def image_size(text: str) -> tuple[int, int]:
    """``--image-size N|HxW``."""
    from ..core.data.images import parse_image_size

    try:
        return parse_image_size(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def fraction(text: str) -> float:
    """A share from 0 up to (not including) 1: ``--val-split``."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number at least 0 and below 1 (got {text!r})") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError("must be at least 0 and below 1")
    return v


def whole_number(text: str, low: int, high: int | None = None, *, what: str, out_of_range: str) -> int:
    """``text`` as a whole number from ``low`` to ``high`` (no upper end: None); the errors say ``must be {what}``
    (not a number) and ``out_of_range``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what} (got {text!r})") from None
    if v < low or (high is not None and v > high):
        raise argparse.ArgumentTypeError(out_of_range)
    return v


def seed(text: str) -> int:
    """``--seed``: what NumPy and TensorFlow take."""
    top = 2**32 - 1
    return whole_number(text, 0, top, what=f"a whole number from 0 to {top}",
                        out_of_range=f"must be a whole number from 0 to {top}")


def positive(text: str) -> int:
    """A whole number of at least 1."""
    return whole_number(text, 1, what="a whole number of at least 1", out_of_range="must be at least 1")


def _memory_limit(text: str) -> int:
    from ..core.data.cache_plan import parse_bytes

    try:
        return parse_bytes(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    """``--cache-memory-limit`` and ``--cache-dir``, for the commands that read a dataset (train, map)."""
    parser.add_argument("--cache-memory-limit", type=_memory_limit, metavar="SIZE",
                        help="memory the decoded images may take, e.g. 8G or 512M (default: half of the available "
                             "memory); a dataset that needs more is decoded once into a cache on disk and read "
                             "from there; 0 always uses the disk")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="folder for on-disk dataset caches (default: $CNNDESK_CACHE_DIR, else the user's "
                             "cache folder, e.g. ~/.cache/cnndesk/datasets); delete it to free the space")


def cache_settings(args):
    """The ``CacheSettings`` of :func:`add_cache_options`' options."""
    from ..core.data.cache_plan import CacheSettings

    return CacheSettings(args.cache_memory_limit, Path(args.cache_dir) if args.cache_dir else None)
