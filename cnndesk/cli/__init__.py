"""``cnndesk-cli``: the headless command line, on the same core as the app.

User errors (bad path, bad option, unreadable dataset, bad model file) print
one line to stderr and exit 2, never a traceback. This module holds the
parser and :func:`main`; each family of commands adds its own options and
does its work in its own module:

- :mod:`.train`: ``train`` (``--distributed`` runs it through :mod:`.launcher`
  in a :mod:`.distributed_process` child);
- :mod:`.models`: ``predict``, ``inspect``, ``evaluate``, ``export``, ``map``, on a project or a model file;
- :mod:`.runs`: ``runs``, and finding a project's run for ``--run NAME``;
- :mod:`.quality`: ``check`` (duplicates and leaks);
- :mod:`.housekeeping`: ``samples``, ``clear-cache``, ``selftest``;
- :mod:`.support`: what they share (running a command, JSON lines, option types).
"""

from __future__ import annotations

import argparse
import sys

from ..core.app_log import start_logging
from ..core.errors import UserError
from . import housekeeping, models, quality, runs, train
from .launcher import launch_training
from ..core.library_warnings import quiet_libraries
from .support import EXIT_USER_ERROR, run_command

VERBOSE_HELP = ("print cnndesk's log to stderr as well, with TensorFlow's start-up lines; "
                "the log file always gets it (see docs/reliability.md)")

COMMANDS = {"train": train.cmd_train, "predict": models.cmd_predict, "undo-sort": models.cmd_undo_sort,
            "inspect": models.cmd_inspect, "evaluate": models.cmd_evaluate, "export": models.cmd_export, "map": models.cmd_map, "runs": runs.cmd_runs,
            "check": quality.cmd_check, "samples": housekeeping.cmd_samples,
            "clear-cache": housekeeping.cmd_clear_cache, "selftest": housekeeping.cmd_selftest}


class _UsageError(UserError):
    """A bad command line (unknown option, bad value)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one line on stderr and exit 2, like every user error."""

    def error(self, message):
        if message.startswith("argument --preprocessing: expected one argument"):
            # argparse takes "-1-1" for an option: say how to write it
            message += "; write --preprocessing=-1-1 for pixels from -1 to 1"
        raise _UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cnndesk-cli", description="Train and inspect CNN image classifiers headless.")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    models.add_parsers(sub)
    runs.add_parser(sub)
    quality.add_parser(sub)
    housekeeping.add_parsers(sub)
    for command in sub.choices.values():  # after the command, where people type it, as well as before
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"cnndesk-cli: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    quiet_libraries()
    start_logging(f"cnndesk-cli {args.command}", echo=args.verbose)
    if args.command == "train" and args.distributed:
        return run_command(lambda: launch_training(args, sys.argv[1:] if argv is None else argv))
    return run_command(lambda: COMMANDS[args.command](args))
