"""Which TensorFlow kernels run the convolutions on an x86-64 CPU.

TensorFlow's x86-64 builds carry oneDNN's convolution kernels but use them by
default only on CPUs with AVX-512 neural-network instructions (VNNI, BF16,
AMX). Elsewhere, e.g. on an AVX2 CPU, a convolution runs as many small matrix
products through Eigen, which for the narrow layers of small CNNs costs about
three times the CPU time of oneDNN's kernels (docs/training-speed.md). The
variable that chooses is read once, when TensorFlow is imported, so the choice
is made at start-up, before anything imports TensorFlow.

It also says how the app's engine thread shares the CPU with the window
(:func:`yield_to_the_window`).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
from typing import MutableMapping

#: TensorFlow's switch for its oneDNN kernels ("1" on, "0" off); read when TensorFlow is imported
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
_X86_64 = ("x86_64", "amd64")


def use_onednn_kernels(environ: MutableMapping[str, str] | None = None, machine: str | None = None) -> bool:
    """Ask TensorFlow for its oneDNN kernels on an x86-64 CPU, unless the user chose already.

    Call it before TensorFlow is imported; afterwards it changes nothing. A
    value the user set (``TF_ENABLE_ONEDNN_OPTS=0`` included) is kept, and
    other processors (ARM, where TensorFlow decides with other libraries) are
    left alone.

    Args:
        environ: the environment to set. Defaults to ``os.environ``.
        machine: the processor as ``platform.machine()`` names it. Defaults to this one.

    Returns:
        True if it set the variable.
    """
    environ = os.environ if environ is None else environ
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in _X86_64 or ONEDNN_VARIABLE in environ:
        return False
    environ[ONEDNN_VARIABLE] = "1"
    return True


#: how much lower than the window the app's engine thread (and every thread it starts) runs, in nice steps
ENGINE_NICENESS = 5


def yield_to_the_window(steps: int = ENGINE_NICENESS) -> bool:
    """Lower the calling thread's CPU priority by ``steps`` nice steps, on Linux; elsewhere do nothing.

    The app calls it first thing in its engine thread, before TensorFlow is
    imported there, so TensorFlow's compute and ``tf.data`` threads, which
    that thread starts and which inherit its priority, run below the GUI
    thread. On a machine with few cores they keep every core busy while
    training, and the window's thread, at the same priority, waited its turn
    for tens of milliseconds (docs/training-speed.md). Nothing else runs slower
    while the CPU has room: a lower priority only decides who waits when it
    has not. The window stays at the priority it was started with.

    Linux keeps a priority per thread (``setpriority`` on the thread's id) and
    a new thread inherits its creator's; other systems do not work this way,
    so there the call changes nothing.

    Returns:
        True if the priority was lowered.
    """
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except OSError:  # a sandbox that forbids it: the app works as before
        return False
    return True
