"""``cnndesk-cli train … --distributed``: the same training, one process of a run across machines.

The command runs in two processes. The one the user started (:func:`launch`)
never imports Keras or JAX: it starts :mod:`.distributed_process` as a child
(``python -m cnndesk.cli.distributed_process ARGS``) with ``KERAS_BACKEND=jax``
in its environment, passes the child's output through, and turns the child's
death into one line. The child joins the run and trains through ``cmd_train``
with ``cnndesk.core.distributed.DistributedRun``'s ``fit`` and ``save`` in
place of the single-machine ones.

The split exists because JAX ends a process whose peer died from native code
(an abort, after the peer timeout): no Python handler runs, so only a parent
can say what happened. JAX also takes SIGTERM for its preemption service;
the child is started with that service off, so that Ctrl+C or a scheduler's
SIGTERM ends it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..core.errors import UserError

#: the child's exit status when it was ended because another process of the run died or stopped answering
EXIT_RUN_LOST = 1

#: the module the child runs (``python -m``)
CHILD_MODULE = "cnndesk.cli.distributed_process"

CHILD_ENVIRONMENT = {"KERAS_BACKEND": "jax", "JAX_ENABLE_PREEMPTION_SERVICE": "false"}

#: what JAX's native abort says when not every process joined in time, and when one stopped sending heartbeats
_JOIN_FAILED = ("CoordinationService/RegisterTask",)
_PEER_LOST = ("stopped sending heartbeats", "JAX distributed service detected fatal errors", "tasks have crashed")


def launch_training(args, argv: list[str]) -> int:
    """``train --distributed``: ``argv`` (the command line, ``args`` parsed) run as one process of a distributed run.

    Raises:
        UserError: a device was chosen (JAX uses every device it finds), or JAX is not installed.
    """
    if args.device != "cpu":
        raise UserError("--distributed trains on every device JAX finds on each machine: leave out --device.")
    return launch(argv, args.peer_timeout, args.join_timeout)


def launch(argv: list[str], peer_timeout_s: int, join_timeout_s: int) -> int:
    """Run ``cnndesk-cli`` with ``argv`` as a distributed child; its exit status, or ``EXIT_RUN_LOST``.

    Raises:
        UserError: JAX is not installed.
    """
    if importlib.util.find_spec("jax") is None:
        raise UserError("--distributed needs JAX: install the extra with pip install \"cnndesk[distributed]\" (CPU) "
                        "or add jax[cuda13] for NVIDIA GPUs.")
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, **CHILD_ENVIRONMENT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    child = subprocess.Popen([sys.executable, "-m", CHILD_MODULE, *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    relays = [Relay(child.stdout, sys.stdout), Relay(child.stderr, sys.stderr)]
    code = _wait(child)
    for relay in relays:
        relay.join()
    lost = {relay.lost for relay in relays} - {None}
    if code >= 0 and not lost:
        return code  # the child said what went wrong, if anything
    if not lost and -code in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        print("cnndesk-cli: interrupted", file=sys.stderr)
        return 130
    print(f"cnndesk-cli: error: {_why_stopped(lost, code, peer_timeout_s, join_timeout_s)} Nothing was saved by this "
          "run.", file=sys.stderr)
    return EXIT_RUN_LOST


def _wait(child: subprocess.Popen) -> int:
    """The child's exit status. Ctrl+C and SIGTERM are passed on to it, so that it never outlives this process;
    a second Ctrl+C kills it (it may be blocked in native code that does not see the first)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    interrupts = 0
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    child.send_signal(signal.SIGINT)
                else:
                    child.kill()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _why_stopped(lost: set[str], code: int, peer_timeout_s: int, join_timeout_s: int) -> str:
    if "join" in lost:
        return (f"not every process of the distributed run joined within {join_timeout_s} s: are they all started, "
                "with the same coordinator address and number of processes?")
    if "peer" in lost:
        return (f"the distributed run stopped: another process of it died or stopped answering for {peer_timeout_s} s "
                "(see that process's output), so this one was ended too.")
    return f"the distributed training process ended with signal {signal.Signals(-code).name}."


class Relay:
    """Copy a child's stream to ours line by line, without the libraries' log lines and native crash dumps."""

    def __init__(self, source, target):
        self.source, self.target = source, target
        self.lost: str | None = None  # "join" or "peer", when JAX's native abort said which
        self._crashed = False
        self._thread = threading.Thread(target=self._run, name="cnndesk-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from ..core.library_warnings import is_tensorflow_log_line

        for raw in self.source:
            line = raw.decode("utf-8", "replace")
            if any(marker in line for marker in _JOIN_FAILED):
                self.lost = "join"
            elif self.lost is None and any(marker in line for marker in _PEER_LOST):
                self.lost = "peer"
            if is_tensorflow_log_line(line) and line.startswith("F"):
                self._crashed = True  # what follows a fatal native log line is its stack dump
            if self._crashed or is_tensorflow_log_line(line) or line.startswith("[Gloo]"):
                continue
            self.target.write(line)
            self.target.flush()

    def join(self) -> None:
        self._thread.join(timeout=10)
