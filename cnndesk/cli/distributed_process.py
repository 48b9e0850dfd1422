"""One process of a ``cnndesk-cli train --distributed`` run: ``python -m cnndesk.cli.distributed_process ARGS``.

:mod:`.launcher` starts it with ``KERAS_BACKEND=jax`` (and JAX's preemption
service off) and reads its output. It joins the run and trains as ``train``
does, through ``cmd_train`` with ``core.distributed.DistributedRun``'s ``fit``
and ``save``; process 0 reports and writes the project, the others say only
what goes wrong.
"""

from __future__ import annotations

import os
import sys

from ..core.distributed import DistributedRun
from ..core.library_warnings import quiet_libraries
from . import build_parser
from .launcher import CHILD_ENVIRONMENT
from .support import run_command
from .train import cmd_train


def main(argv: list[str]) -> int:
    """Join the other processes, then train on this process's share."""
    os.environ.update(CHILD_ENVIRONMENT)  # before Keras is first imported (in DistributedRun.start): it reads the
    # backend once
    args = build_parser().parse_args(argv)
    quiet_libraries()

    def work() -> int:
        run = DistributedRun.start(peer_timeout_s=args.peer_timeout, join_timeout_s=args.join_timeout)
        if run.process_id != 0:  # one process reports; the others say only what goes wrong
            args.json = True
            sys.stdout = open(os.devnull, "w")
        return cmd_train(args, fit=run.fit, save=run.save)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
